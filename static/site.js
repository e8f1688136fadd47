// Site-wide behaviour: search without a server, and keyboard navigation (← →, /).
(function () {
  "use strict";
  var root = document.body.getAttribute("data-root") || "";
  var input = document.getElementById("q");
  var list = document.getElementById("results");
  var loading = false, pending = null, active = -1;

  // The index is a script, not JSON: fetch() is refused on file:// pages, <script src> is not.
  function withIndex(done) {
    if (window.MICROSCOPE_SEARCH) return done(window.MICROSCOPE_SEARCH);
    pending = done;  // the latest request wins: typing while the index loads
    if (loading) return;
    loading = true;
    var script = document.createElement("script");
    script.src = root + "search.js";
    script.onload = function () { loading = false; if (window.MICROSCOPE_SEARCH && pending) pending(window.MICROSCOPE_SEARCH); };
    script.onerror = function () { loading = false; };
    document.head.appendChild(script);
  }

  function hasUnit(ranges, unit) {
    for (var i = 0; i < ranges.length; i++) if (unit >= ranges[i][0] && unit <= ranges[i][1]) return true;
    return false;
  }

  function unitUrl(layerUrl, unit) { return layerUrl.replace(/index\.html$/, "") + unit + "/index.html"; }

  function matchesAll(text, words) {
    for (var i = 0; i < words.length; i++) if (text.indexOf(words[i]) < 0) return false;
    return true;
  }

  // Every word is in the layer's or the model's name, and some word is in the layer's own name
  // ("inception 4" should not list conv2 just because the model is called inceptionv1).
  function layerMatches(layer, words) {
    var name = layer[1].toLowerCase(), model = layer[0].toLowerCase(), inName = !words.length;
    for (var i = 0; i < words.length; i++) {
      if (name.indexOf(words[i]) >= 0) inName = true;
      else if (model.indexOf(words[i]) < 0) return false;
    }
    return inName;
  }

  function search(index, query) {
    var results = [];
    query = query.trim().toLowerCase();
    if (!query) return results;
    // "mixed4a 447", "mixed4a:447", "mixed4a/447" or just "447": a unit number at the end.
    var m = query.match(/^(.*?)[\s:\/#_-]*(\d+)$/);
    var unit = m ? parseInt(m[2], 10) : null;
    var words = (m ? m[1] : query).split(/[\s:\/#]+/).filter(Boolean);
    var allWords = query.split(/[\s:\/#]+/).filter(Boolean);
    index.models.forEach(function (model) {
      if (matchesAll((model[0] + " " + model[1]).toLowerCase(), allWords)) results.push({text: model[1], kind: "model", url: model[2]});
    });
    index.layers.forEach(function (layer) {
      if (unit !== null && layerMatches(layer, words) && hasUnit(layer[5], unit)) {
        results.push({text: layer[1] + " unit " + unit, kind: layer[0], url: unitUrl(layer[4], unit)});
      }
      if (layerMatches(layer, allWords)) {
        results.push({text: layer[1], kind: layer[2] + " · " + layer[3] + " channels", url: layer[4]});
      }
    });
    index.labels.forEach(function (entry) {
      var layer = index.layers[entry[0]];
      if (matchesAll(entry[2].toLowerCase(), allWords)) {
        results.push({text: entry[2], kind: layer[1] + " unit " + entry[1], url: unitUrl(layer[4], entry[1])});
      }
    });
    return results.concat(conceptResults(index, wordsOf(query))).slice(0, 30);
  }

  function wordsOf(text) { return text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean); }

  // Every query word starts a word of its own of the term: "domestic d" finds "domestic dog" (not
  // "domestic cat"), "og" finds nothing.
  function startsWords(term, query) {
    var have = wordsOf(term);
    return query.every(function (q) {
      for (var i = 0; i < have.length; i++) if (have[i].lastIndexOf(q, 0) === 0) { have.splice(i, 1); return true; }
      return false;
    });
  }

  // Concepts (site/search.py): [name, synonyms, [layer position, unit, AP in thousandths, ...]]. A concept
  // matches when its name or one synonym starts with the query's words; each of its units is a result,
  // best held-out AP first across concepts, layers and models, each unit once.
  function conceptResults(index, query) {
    var found = [], seen = {};
    if (!query.length) return found;
    (index.concepts || []).forEach(function (concept) {
      var terms = [concept[0]].concat(concept[1]), hit = null;
      for (var i = 0; i < terms.length && hit === null; i++) if (startsWords(terms[i], query)) hit = terms[i];
      if (hit === null) return;
      var text = hit === concept[0] ? hit : concept[0] + " (" + hit + ")", units = concept[2];
      for (var j = 0; j + 2 < units.length; j += 3) found.push({text: text, layer: units[j], unit: units[j + 1], ap: units[j + 2]});
    });
    found.sort(function (a, b) { return b.ap - a.ap; });  // a stable sort: equal APs keep the index's order
    var several = index.models.length > 1;
    return found.filter(function (r) {
      var key = r.layer + ":" + r.unit;
      return seen[key] ? false : (seen[key] = true);
    }).map(function (r) {
      var layer = index.layers[r.layer], what = layer[2] === "sae" ? " feature " : " unit ";
      return {text: r.text, url: unitUrl(layer[4], r.unit),
              kind: (several ? layer[0] + " · " : "") + layer[1] + what + r.unit + " · AP " + (r.ap / 1000).toFixed(2)};
    });
  }

  function show(results) {
    list.textContent = "";
    active = -1;
    results.forEach(function (r) {
      var li = document.createElement("li"), a = document.createElement("a"), kind = document.createElement("span");
      a.href = root + r.url;
      a.textContent = r.text;  // textContent: labels are data, never markup
      kind.className = "kind";
      kind.textContent = r.kind;
      a.appendChild(kind);
      li.appendChild(a);
      list.appendChild(li);
    });
    if (!results.length && input.value.trim()) {
      var li = document.createElement("li");
      li.className = "dim small";
      li.style.padding = ".3em .7em";
      li.textContent = "No match";
      list.appendChild(li);
    }
    list.hidden = !input.value.trim();
  }

  function update() { withIndex(function (index) { show(search(index, input.value)); }); }

  function move(step) {
    var links = list.querySelectorAll("a");
    if (!links.length) return;
    if (active >= 0) links[active].classList.remove("active");
    active = (active + step + links.length) % links.length;
    links[active].classList.add("active");
    links[active].scrollIntoView({block: "nearest"});
  }

  if (input) {
    input.addEventListener("focus", function () { withIndex(function () {}); });
    input.addEventListener("input", update);
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown") { move(1); e.preventDefault(); }
      else if (e.key === "ArrowUp") { move(-1); e.preventDefault(); }
      else if (e.key === "Enter") {
        var links = list.querySelectorAll("a");
        var target = links[active >= 0 ? active : 0];
        if (target) location.href = target.href;
      } else if (e.key === "Escape") { input.value = ""; list.hidden = true; input.blur(); }
    });
    document.addEventListener("click", function (e) { if (!e.target.closest(".search")) list.hidden = true; });
  }

  document.addEventListener("keydown", function (e) {
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || e.target.isContentEditable) return;
    if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    if (e.key === "/" && input) { input.focus(); e.preventDefault(); return; }
    var rel = e.key === "ArrowLeft" ? "prev" : e.key === "ArrowRight" ? "next" : null;
    if (!rel) return;
    var link = document.querySelector('link[rel="' + rel + '"]');
    if (link) location.href = link.href;
  });
})();
