// Layer page: the unit grid comes in pieces (site/layer_pages.py) and grows as the reader scrolls; a filter by
// number ("447"), range ("10-20"), list ("3, 7, 9"), label or concept text, or a sort by concept AP or
// polysemanticity, first loads every piece. Tables whose other rows
// come on request (the SAE's features) use the same loader.
(function () {
  "use strict";

  // A piece is a script that leaves its HTML in MICROSCOPE_PIECES[its name]: <script src> works on file://
  // pages, fetch() does not. The HTML was made and escaped by the site's templates, as the page's own.
  var loads = {};
  function piece(name) {
    if (!loads[name]) {
      loads[name] = new Promise(function (resolve, reject) {
        var tag = document.createElement("script");
        tag.src = name;
        tag.onload = function () {
          var html = (window.MICROSCOPE_PIECES || {})[name];
          if (typeof html === "string") resolve(html); else reject(new Error(name + " holds no piece"));
        };
        tag.onerror = function () { delete loads[name]; reject(new Error("could not load " + name)); };
        document.head.appendChild(tag);
      });
    }
    return loads[name];
  }

  function matcher(query) {
    query = query.trim().toLowerCase();
    if (!query) return function () { return true; };
    if (/^[\d\s,\-–]+$/.test(query)) {
      var parts = query.split(/[\s,]+/).filter(Boolean).map(function (p) {
        var r = p.split(/[-–]/);
        var lo = parseInt(r[0], 10), hi = r.length > 1 && r[1] !== "" ? parseInt(r[1], 10) : (r.length > 1 ? Infinity : lo);
        return [isNaN(lo) ? 0 : lo, hi];
      });
      return function (cell) {
        var u = parseInt(cell.getAttribute("data-u"), 10);
        return parts.some(function (r) { return u >= r[0] && u <= r[1]; });
      };
    }
    return function (cell) {
      return cell.getAttribute("data-l").indexOf(query) >= 0 || (cell.getAttribute("data-c") || "").indexOf(query) >= 0;
    };
  }

  // Hide the cells the query leaves out; returns how many it keeps.
  function keepMatching(cells, query) {
    var keep = matcher(query), matching = 0;
    Array.prototype.forEach.call(cells.children, function (cell) {
      cell.hidden = !keep(cell);
      if (!cell.hidden) matching++;
    });
    return matching;
  }

  // Put the cells in the order `by` asks: "unit" (number), "ap" (the best concept's held-out AP) or "p"
  // (polysemanticity), highest first; cells without the value last, and ties, in unit order.
  function sortCells(cells, by) {
    function value(cell) {
      var text = cell.getAttribute(by === "ap" ? "data-ap" : "data-p");
      return text === null ? -Infinity : parseFloat(text);
    }
    var all = Array.prototype.slice.call(cells.children);
    all.sort(function (a, b) {
      var first = by === "unit" ? 0 : value(b) - value(a);  // NaN (both without a value) counts as a tie
      return first || (+a.getAttribute("data-u")) - (+b.getAttribute("data-u"));
    });
    all.forEach(function (cell) { cells.appendChild(cell); });
  }

  // The grid's pieces 2..pieces, asked for in any order and number, join the grid in unit order.
  function pieceQueue(cells, pieces, added, failed) {
    var requested = 1, queue = Promise.resolve();
    function add(number) {
      var arriving = piece("tiles-" + number + ".js");
      queue = queue.then(function () { return arriving; }).then(function (html) {
        cells.insertAdjacentHTML("beforeend", html);
        added(number);
      });
    }
    return function want(upTo) {  // upTo: the last piece wanted; Infinity for all
      while (requested < Math.min(upTo, pieces)) add(++requested);
      return queue.catch(failed);
    };
  }

  function grid() {
    var input = document.getElementById("filter"), cells = document.getElementById("grid");
    if (!input || !cells) return;
    var count = document.getElementById("count"), none = document.getElementById("none");
    var more = document.getElementById("more"), loaded = document.getElementById("loaded");
    var pieces = parseInt(cells.getAttribute("data-pieces") || "1", 10);
    var total = parseInt(cells.getAttribute("data-units") || "0", 10);
    var shown = 1, watcher = null, sorter = document.getElementById("sort");
    var want = pieceQueue(cells, pieces, function (number) {
      shown = number;
      if (sorter && sorter.value !== "unit") sortCells(cells, sorter.value);
      apply(false);
      progress();
    }, function () {
      if (more) more.hidden = true;
      loaded.textContent = "Some units could not be loaded: the pages below list them all.";
      document.getElementById("pieces").hidden = false;
    });

    function progress() {
      if (!more) return;
      var have = cells.children.length;
      more.hidden = shown >= pieces;
      more.textContent = "Show more units (" + (total - have) + " more)";
      loaded.textContent = shown >= pieces ? "" : have + " of " + total + " shown";
      if (watcher && !more.hidden) { watcher.unobserve(more); watcher.observe(more); }  // still near the end? load on
    }

    function apply(remember) {
      var query = input.value.trim(), complete = shown >= pieces;
      var matching = keepMatching(cells, query);
      if (!query) matching = total;  // every unit, loaded yet or not
      count.textContent = matching + (matching === 1 ? " unit" : " units") +
        (query && !complete ? " so far, loading the others…" : "");
      none.hidden = matching > 0 || !complete;
      if (!remember) return;
      var url = new URL(location.href);
      url.hash = query ? "filter=" + encodeURIComponent(query) : "";
      history.replaceState(null, "", url.href);
    }

    function filter() {
      apply(true);
      if (input.value.trim()) want(Infinity);  // each piece that arrives is filtered too
    }

    // Near the end of the grid, the next piece loads by itself; the button asks for it by hand.
    if (more && pieces > 1) {
      document.getElementById("pieces").hidden = true;
      more.addEventListener("click", function () { want(shown + 1); });
      if ("IntersectionObserver" in window) {
        watcher = new IntersectionObserver(function (entries) {
          if (entries[entries.length - 1].isIntersecting && !input.value.trim()) want(shown + 1);
        }, {rootMargin: "0px 0px 800px 0px"});
      }
      progress();
    }

    if (sorter) {
      document.getElementById("sorting").hidden = false;
      sorter.addEventListener("change", function () {
        sortCells(cells, sorter.value);
        if (sorter.value !== "unit") want(Infinity);  // an order over the whole layer: every piece is needed
      });
    }

    var hash = location.hash.match(/^#filter=(.*)$/);
    if (hash) { input.value = decodeURIComponent(hash[1]); filter(); }
    input.addEventListener("input", filter);
  }

  // <button data-rows="features.js" aria-controls="tbody-id">: the table's other rows, on request.
  function tables() {
    Array.prototype.forEach.call(document.querySelectorAll("button[data-rows]"), function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        button.disabled = true;
        piece(button.getAttribute("data-rows")).then(function (html) {
          var body = document.getElementById(button.getAttribute("aria-controls")), before = body.rows.length;
          body.insertAdjacentHTML("beforeend", html);
          button.hidden = true;
          var next = body.rows[before] && body.rows[before].querySelector("a");  // keyboard focus moves on, not lost
          if (next) next.focus();
        }, function () {
          button.disabled = false;
          button.textContent = "Could not load the other rows: try again";
        });
      });
    });
  }

  // The caricatures' gallery is folded; an address naming one of its photos (#photo-<key>, the model page's links)
  // unfolds it and brings the photo into view.
  function openPhoto() {
    var target = /^#photo-[0-9a-f]+$/.test(location.hash) && document.getElementById(location.hash.slice(1));
    var folded = target && target.closest("details");
    if (folded) { folded.open = true; target.scrollIntoView(); }
  }

  grid();
  tables();
  openPhoto();
  window.addEventListener("hashchange", openPhoto);
})();
