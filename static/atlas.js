// Activation atlas page (microscope/atlas/page.py): draws each cell's icon out of a sprite sheet on a canvas,
// at its place in the layout and sized by how many vectors it holds; mouse wheel, drag, pinch and keys pan and
// zoom; zooming in switches to the finer grid. Pointing at a cell (or tapping it, or moving to it with the arrow
// keys) shows its photos, nearest units and top classes beside the map.
(function () {
  "use strict";
  var canvas = document.getElementById("atlas-map");
  var dataNode = document.getElementById("atlas-data");
  if (!canvas || !dataNode) return;
  var atlas = JSON.parse(dataNode.textContent);
  var details = document.getElementById("atlas-details");
  var levelLabel = document.getElementById("atlas-level");
  var context = canvas.getContext("2d");
  var MIN_SCALE = 0.5, MAX_SCALE = 40;

  var index = {}, most = {}, sheets = {};
  ["coarse", "fine"].forEach(function (name) {
    var found = {}, top = 1;
    atlas.levels[name].cells.forEach(function (cell, i) {
      found[cell[0] + "," + cell[1]] = i;
      top = Math.max(top, cell[2]);
    });
    index[name] = found;
    most[name] = top;
  });

  var view = {scale: 1, x: 0, y: 0};  // a point (u, v) of the unit square is drawn at (x + u * size * scale, ...)
  var size = 0, ratio = 1;
  var hovered = null, chosen = null;  // {level, i}: the cell pointed at, the cell tapped or moved to with keys

  function sheet(name) {
    if (!sheets[name]) {
      var image = new Image();
      image.onload = draw;
      image.src = atlas.levels[name].sheet;
      sheets[name] = image;
    }
    return sheets[name];
  }
  function ready(image) { return image.complete && image.naturalWidth > 0; }

  // The fine grid takes over once its cells are drawn as large as the coarse ones are at first.
  function wanted() { return view.scale * atlas.levels.coarse.side >= atlas.levels.fine.side ? "fine" : "coarse"; }
  function shown() {  // the level drawn now: the fine one once it is wanted and its sheet has arrived
    var name = wanted();
    if (name === "fine" && !ready(sheet("fine"))) return "coarse";
    return name;
  }

  function resize() {
    var width = canvas.parentNode.clientWidth;
    var height = Math.max(320, Math.min(width, window.innerHeight - 170));
    ratio = window.devicePixelRatio || 1;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    var first = !size;
    size = Math.min(width, height);
    if (first) reset(); else draw();
  }

  function reset() {
    view.scale = 1;
    view.x = (canvas.width / ratio - size) / 2;
    view.y = (canvas.height / ratio - size) / 2;
    draw();
  }

  function zoom(factor, px, py) {
    var scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, view.scale * factor));
    factor = scale / view.scale;
    view.x = px - (px - view.x) * factor;
    view.y = py - (py - view.y) * factor;
    view.scale = scale;
    draw();
  }

  function cellBox(name, cell) {
    var level = atlas.levels[name], step = size * view.scale / level.side;
    var side = step * (0.5 + 0.5 * Math.sqrt(cell[2] / most[name]));  // as page.py's icon_scale
    return {x: view.x + (cell[1] + 0.5) * step - side / 2, y: view.y + (cell[0] + 0.5) * step - side / 2, side: side,
            step: step, cx: view.x + cell[1] * step, cy: view.y + cell[0] * step};
  }

  function draw() {
    if (!size) return;
    var name = shown(), level = atlas.levels[name], image = sheet(name);
    var width = canvas.width / ratio, height = canvas.height / ratio;
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    context.imageSmoothingQuality = "high";
    level.cells.forEach(function (cell, i) {
      var box = cellBox(name, cell);
      if (box.x > width || box.y > height || box.x + box.side < 0 || box.y + box.side < 0) return;
      if (ready(image)) {
        var sx = (i % level.columns) * level.tile, sy = Math.floor(i / level.columns) * level.tile;
        context.drawImage(image, sx, sy, level.tile, level.tile, box.x, box.y, box.side, box.side);
      } else {
        context.fillStyle = "#ddd";
        context.fillRect(box.x, box.y, box.side, box.side);
      }
    });
    [hovered, chosen].forEach(function (mark, k) {
      if (!mark || mark.level !== name) return;
      var box = cellBox(name, level.cells[mark.i]);
      context.lineWidth = k ? 3 : 2;
      context.strokeStyle = k ? "#d33" : "rgba(0, 0, 0, .55)";
      context.strokeRect(box.cx + 1, box.cy + 1, box.step - 2, box.step - 2);
    });
    var text = level.side + "×" + level.side + " grid, " + level.cells.length + " cells" +
      (wanted() !== name ? " (loading the finer grid…)" : "");
    if (levelLabel.textContent !== text) levelLabel.textContent = text;
  }

  function at(px, py) {
    var name = shown(), level = atlas.levels[name];
    var u = (px - view.x) / (size * view.scale), v = (py - view.y) / (size * view.scale);
    if (u < 0 || v < 0 || u >= 1 || v >= 1) return null;
    var i = index[name][Math.floor(v * level.side) + "," + Math.floor(u * level.side)];
    return i === undefined ? null : {level: name, i: i};
  }

  function element(tag, attributes, text) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function explain(mark) {
    var help = document.getElementById("atlas-help");
    details.textContent = "";
    details.appendChild(help);
    if (!mark) { help.hidden = false; return; }
    help.hidden = true;
    var level = atlas.levels[mark.level], cell = level.cells[mark.i];
    var box = element("div", {"class": "atlas-cell", "data-level": mark.level, "data-cell": String(mark.i)});
    box.appendChild(element("h2", {"class": "section"}, (mark.level === "fine" ? "Zoomed cell " : "Cell ") +
      "(" + cell[0] + ", " + cell[1] + ") of " + level.side + "×" + level.side));
    box.appendChild(element("p", {"class": "small"}, cell[2] + " of the " + atlas.n_vectors + " vectors"));
    if (cell[5] > 0) {
      box.appendChild(element("img", {"class": "atlas-patches", src: "patches/" + mark.level + "-" + mark.i + ".webp",
        alt: "The receptive fields of " + cell[5] + " photos whose vectors are most like the cell's mean",
        width: String(64 * cell[5]), height: "64"}));
    }
    box.appendChild(element("h3", {"class": "small"}, "Nearest units (cosine with the cell's mean)"));
    var units = element("ol", {"class": "units"});
    cell[4].forEach(function (pair) {
      var link = atlas.units[String(pair[0])] || {}, item = element("li");
      item.appendChild(link.href ? element("a", {href: link.href}, atlas.layer + " " + pair[0])
                                 : element("span", {}, atlas.layer + " " + pair[0]));
      if (link.label) item.appendChild(element("span", {"class": "lab"}, " " + link.label));
      item.appendChild(element("span", {"class": "val"}, " " + pair[1].toFixed(3)));
      units.appendChild(item);
    });
    box.appendChild(units);
    if (cell[3].length) {
      box.appendChild(element("h3", {"class": "small"}, "Top classes (attribution, mean of " + cell[6] + " vectors)"));
      var classes = element("ol", {"class": "classes"});
      cell[3].forEach(function (pair) {
        var item = element("li", {}, pair[0]);
        item.appendChild(element("span", {"class": "val"}, " " + pair[1].toPrecision(3)));
        classes.appendChild(item);
      });
      box.appendChild(classes);
    }
    if (cell[7] && cell[7].length) {
      box.appendChild(element("h3", {"class": "small"}, "Labels of its photos (vectors)"));
      var labels = element("ol", {"class": "labels"});
      cell[7].forEach(function (pair) {
        var item = element("li", {}, pair[0]);
        item.appendChild(element("span", {"class": "val"}, " " + pair[1]));
        labels.appendChild(item);
      });
      box.appendChild(labels);
    }
    details.appendChild(box);
  }

  function update() { draw(); explain(chosen || hovered); }

  // Pointers: one drags, two pinch; a press that does not move is a tap, which keeps the cell shown.
  var pointers = {}, moved = 0, pinch = null;
  canvas.addEventListener("pointerdown", function (event) {
    try { canvas.setPointerCapture(event.pointerId); } catch (error) { /* a pointer the browser no longer tracks */ }
    pointers[event.pointerId] = {x: event.offsetX, y: event.offsetY};
    moved = 0;
    pinch = null;
  });
  canvas.addEventListener("pointermove", function (event) {
    var last = pointers[event.pointerId];
    var ids = Object.keys(pointers);
    if (!last) {
      var found = at(event.offsetX, event.offsetY);
      if ((found && hovered && found.i === hovered.i && found.level === hovered.level) || found === hovered) return;
      hovered = found;
      update();
      return;
    }
    if (ids.length === 2) {
      var other = pointers[ids[0] === String(event.pointerId) ? ids[1] : ids[0]];
      var distance = Math.hypot(event.offsetX - other.x, event.offsetY - other.y);
      if (pinch) zoom(distance / pinch, (event.offsetX + other.x) / 2, (event.offsetY + other.y) / 2);
      pinch = distance;
    } else {
      view.x += event.offsetX - last.x;
      view.y += event.offsetY - last.y;
      draw();
    }
    moved += Math.abs(event.offsetX - last.x) + Math.abs(event.offsetY - last.y);
    pointers[event.pointerId] = {x: event.offsetX, y: event.offsetY};
  });
  function release(event) {
    var tap = pointers[event.pointerId] && Object.keys(pointers).length === 1 && moved < 5;
    delete pointers[event.pointerId];
    pinch = null;
    if (tap && event.type === "pointerup") {
      chosen = at(event.offsetX, event.offsetY);
      update();
    }
  }
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", release);
  canvas.addEventListener("pointerleave", function () {
    if (hovered && !Object.keys(pointers).length) { hovered = null; update(); }
  });
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    var lines = event.deltaMode === 1 ? 16 : event.deltaMode === 2 ? 400 : 1;
    zoom(Math.exp(-event.deltaY * lines * 0.0015), event.offsetX, event.offsetY);
  }, {passive: false});

  // Keys: arrows move to the next cell that has an icon, +/- zoom on it, 0 resets, Enter goes to its links.
  function move(dr, dc) {
    var name = shown(), level = atlas.levels[name];
    var start = chosen && chosen.level === name ? level.cells[chosen.i] : null;
    if (!start) {
      var centre = at(canvas.width / ratio / 2, canvas.height / ratio / 2);
      chosen = centre || {level: name, i: 0};
      return focusCell();
    }
    for (var r = start[0] + dr, c = start[1] + dc; r >= 0 && c >= 0 && r < level.side && c < level.side; r += dr, c += dc) {
      var found = index[name][r + "," + c];
      if (found !== undefined) { chosen = {level: name, i: found}; break; }
    }
    focusCell();
  }
  function focusCell() {  // keep the chosen cell on screen
    var box = cellBox(chosen.level, atlas.levels[chosen.level].cells[chosen.i]);
    var width = canvas.width / ratio, height = canvas.height / ratio;
    if (box.cx < 0) view.x -= box.cx - box.step;
    if (box.cy < 0) view.y -= box.cy - box.step;
    if (box.cx + box.step > width) view.x -= box.cx + 2 * box.step - width;
    if (box.cy + box.step > height) view.y -= box.cy + 2 * box.step - height;
    update();
  }
  function zoomKeys(factor) {
    var width = canvas.width / ratio, height = canvas.height / ratio;
    if (chosen) {
      var box = cellBox(chosen.level, atlas.levels[chosen.level].cells[chosen.i]);
      zoom(factor, box.cx + box.step / 2, box.cy + box.step / 2);
    } else {
      zoom(factor, width / 2, height / 2);
    }
    if (chosen && chosen.level !== shown()) chosen = recentre(chosen);
    update();
  }
  function recentre(mark) {  // the same place on the other level
    var from = atlas.levels[mark.level], name = shown(), to = atlas.levels[name], cell = from.cells[mark.i];
    var r = Math.floor((cell[0] + 0.5) * to.side / from.side), c = Math.floor((cell[1] + 0.5) * to.side / from.side);
    var i = index[name][r + "," + c];
    return i === undefined ? null : {level: name, i: i};
  }
  canvas.addEventListener("keydown", function (event) {
    var steps = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]};
    if (steps[event.key]) { move(steps[event.key][0], steps[event.key][1]); }
    else if (event.key === "+" || event.key === "=") { zoomKeys(1.5); }
    else if (event.key === "-" || event.key === "_") { zoomKeys(1 / 1.5); }
    else if (event.key === "0") { reset(); }
    else if (event.key === "Escape") { chosen = null; update(); }
    else if (event.key === "Enter") {
      var link = details.querySelector("a");
      if (link) link.focus();
    } else { return; }
    event.preventDefault();
  });
  document.getElementById("atlas-in").addEventListener("click", function () { zoomKeys(1.5); });
  document.getElementById("atlas-out").addEventListener("click", function () { zoomKeys(1 / 1.5); });
  document.getElementById("atlas-reset").addEventListener("click", reset);

  window.addEventListener("resize", resize);
  sheet("coarse");
  resize();
  explain(null);
}());
