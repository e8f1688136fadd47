// "Try an image" (site/try_page.py): the visitor's photo through the network in this browser. try.json says what
// to fetch; static/preprocess.js frames and normalises the photo exactly as the Python side does; onnxruntime-web
// (static/ort/, WebGPU where the browser has an adapter, WebAssembly otherwise) runs model.onnx; each layer's units
// are ranked by their maximum over positions and shown with what the layer's layer.json says of them.
// Everything from data (class names, labels, file names) goes into the page as text, never as HTML.
(function () {
  "use strict";
  var box = document.querySelector("[data-try]");
  if (!box) return;
  var TOP_UNITS = 8, TOP_CLASSES = 5;
  var status = document.getElementById("try-status");
  var state = window.microscopeTry = { ready: null, result: null, overlay: null, error: null, backend: null };

  function say(text) { status.textContent = text; }
  function stop(text) { say(text); box.setAttribute("data-state", "unavailable"); state.error = text; }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function url(path) { return new URL(path, location.href).href; }

  if (location.protocol === "file:") {
    stop("This page runs the network in your browser and needs the site served over HTTP: run `python build.py serve` " +
         "(or publish the site) and open it from there.");
    return;
  }
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    stop("This page needs a browser with WebAssembly to run the network; the rest of the site works without it.");
    return;
  }

  function addScript(src) {
    return new Promise(function (resolve, reject) {
      var tag = el("script", { src: src });
      tag.onload = resolve;
      tag.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(tag);
    });
  }

  function fetchBytes(path, total) {
    return fetch(url(path)).then(function (response) {
      if (!response.ok) throw new Error(path + ": HTTP " + response.status);
      if (!response.body || !response.body.getReader) return response.arrayBuffer();
      var reader = response.body.getReader(), parts = [], got = 0;
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) {
            var all = new Uint8Array(got), at = 0;
            parts.forEach(function (p) { all.set(p, at); at += p.length; });
            return all.buffer;
          }
          parts.push(step.value); got += step.value.length;
          if (total) say("Fetching the network: " + Math.round(100 * got / total) + "% of " + (total / 1e6).toFixed(1) + " MB…");
          return pump();
        });
      }
      return pump();
    });
  }

  function adapter() {
    if (!navigator.gpu || !navigator.gpu.requestAdapter) return Promise.resolve(null);
    return navigator.gpu.requestAdapter().catch(function () { return null; });
  }

  // The WebGPU build also holds the WebAssembly backend; a browser without an adapter gets the smaller one.
  function startSession(data, model) {
    return adapter().then(function (gpu) {
      var runtime = data.runtime;
      return addScript(url(gpu ? runtime.webgpu : runtime.wasm)).then(function () {
        var ort = window.ort;
        ort.env.wasm.wasmPaths = url(runtime.dir);
        ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
        var order = gpu ? ["webgpu", "wasm"] : ["wasm"];
        return ort.InferenceSession.create(model, { executionProviders: order }).then(function (session) {
          state.backend = order[0];
          return session;
        }, function (error) {
          if (!gpu) throw error;
          state.backend = "wasm";  // an operation WebGPU lacks: the CPU backend runs every one
          return ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
        });
      });
    });
  }

  var layerJson = {};
  function layerRecord(layer) {
    if (!layerJson[layer.layer]) {
      layerJson[layer.layer] = fetch(url(layer.json)).then(function (r) {
        if (!r.ok) throw new Error(layer.json + ": HTTP " + r.status);
        return r.json();
      }).then(function (record) {
        var byUnit = {};
        record.units.forEach(function (u) { byUnit[u.unit] = u; });
        return byUnit;
      });
    }
    return layerJson[layer.layer];
  }

  // Each unit's maximum over the layer's positions, and the units ranked by it (ties to the lower unit).
  function maxima(values, channels, positions) {
    var out = new Array(channels);
    for (var c = 0; c < channels; c++) {
      var best = -Infinity, base = c * positions;
      for (var p = 0; p < positions; p++) if (values[base + p] > best) best = values[base + p];
      out[c] = best;
    }
    return out;
  }
  function ranked(values, top) {
    var order = values.map(function (v, i) { return i; });
    order.sort(function (a, b) { return values[b] - values[a] || a - b; });
    return order.slice(0, top);
  }

  // Bilinear, half-pixel centres, edges clamped: torch's interpolate(mode="bilinear", align_corners=False).
  function upsample(map, height, width, size) {
    var out = new Float32Array(size * size);
    function source(i, n) {
      var s = (i + 0.5) * n / size - 0.5;
      s = s < 0 ? 0 : s;
      var i0 = Math.floor(s), i1 = i0 < n - 1 ? i0 + 1 : i0;
      return [i0, i1, s - i0];
    }
    for (var y = 0; y < size; y++) {
      var sy = source(y, height);
      for (var x = 0; x < size; x++) {
        var sx = source(x, width);
        var top = map[sy[0] * width + sx[0]] * (1 - sx[2]) + map[sy[0] * width + sx[1]] * sx[2];
        var bottom = map[sy[1] * width + sx[0]] * (1 - sx[2]) + map[sy[1] * width + sx[1]] * sx[2];
        out[y * size + x] = top * (1 - sy[2]) + bottom * sy[2];
      }
    }
    return out;
  }

  function drawOverlay(map, size, caption) {
    var canvas = document.getElementById("try-overlay"), ctx = canvas.getContext("2d");
    var image = ctx.createImageData(size, size), peak = 0;
    for (var i = 0; i < map.length; i++) if (map[i] > peak) peak = map[i];
    for (var j = 0; j < map.length; j++) {
      var v = peak > 0 ? Math.max(0, map[j]) / peak : 0;
      image.data[4 * j] = 255; image.data[4 * j + 1] = 200; image.data[4 * j + 2] = 0;
      image.data[4 * j + 3] = Math.round(200 * v);
    }
    ctx.putImageData(image, 0, 0);
    document.getElementById("try-overlay-caption").textContent = caption;
  }

  function unitItem(layer, unit, value, info, output, data) {
    var item = el("li", { "data-unit": String(unit) });
    var what = layer.kind === "sae" ? "feature" : "unit";
    var link = el("a", { href: info ? layer.dir + info.url : layer.href, "data-unit": String(unit) });
    if (info && info.thumb) {
      var folder = info.url.replace(/[^/]*$/, "");
      link.appendChild(el("img", { src: layer.dir + folder + info.thumb, alt: "", width: "64", height: "64", loading: "lazy" }));
    }
    link.appendChild(el("span", { "class": "cap" }, what + " " + unit));
    var name = info && (info.label || info.concept);
    if (name) link.appendChild(el("span", { "class": "cap" }, typeof name === "string" ? name : name.name || ""));
    item.appendChild(link);
    var best = info && info.examples && info.examples.max;
    var text = value.toFixed(value < 10 ? 2 : 1) + (best > 0 ? " · " + Math.round(100 * value / best) + "% of its best example" : "");
    item.appendChild(el("span", { "class": "small dim try-value" }, text));
    var button = el("button", { type: "button", "class": "try-where", "aria-pressed": "false" }, "Where");
    button.setAttribute("aria-label", "Show where " + what + " " + unit + " of " + layer.layer + " fires");
    button.addEventListener("click", function () {
      var pressed = button.getAttribute("aria-pressed") === "true";
      document.querySelectorAll(".try-where[aria-pressed=true]").forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
      if (pressed) { drawOverlay(new Float32Array(0), data.input.size, ""); state.overlay = null; return; }
      button.setAttribute("aria-pressed", "true");
      var positions = layer.height * layer.width;
      var map = output.data.slice(unit * positions, (unit + 1) * positions);
      var big = upsample(map, layer.height, layer.width, data.input.size);
      state.overlay = { layer: layer.layer, unit: unit, map: big };
      drawOverlay(big, data.input.size, "Where " + what + " " + unit + " of " + layer.layer + " fires (its " +
                  layer.height + "×" + layer.width + " map, upsampled; brighter is stronger).");
    });
    item.appendChild(button);
    return item;
  }

  function showLayer(layer, output, data, into) {
    var positions = layer.height * layer.width;
    var values = maxima(output.data, layer.channels, positions);
    var top = ranked(values, TOP_UNITS);
    var section = el("section", { "class": "try-layer", "data-layer": layer.layer });
    var heading = el("h2");
    heading.appendChild(el("a", { href: layer.href }, layer.layer));
    section.appendChild(heading);
    var list = el("ol", { "class": "try-units" });
    section.appendChild(list);
    into.appendChild(section);
    return layerRecord(layer).catch(function () { return {}; }).then(function (byUnit) {
      top.forEach(function (unit) { list.appendChild(unitItem(layer, unit, values[unit], byUnit[unit], output, data)); });
      return { maxima: values, top: top };
    });
  }

  function showClasses(logits, classes) {
    var values = Array.prototype.slice.call(logits), peak = Math.max.apply(null, values), sum = 0;
    var p = values.map(function (v) { var e = Math.exp(v - peak); sum += e; return e; }).map(function (e) { return e / sum; });
    var top = ranked(values, TOP_CLASSES), list = document.getElementById("try-classes");
    list.textContent = "";
    top.forEach(function (index) {
      list.appendChild(el("li", { "data-class": String(index) }, (classes[index] || ("class " + index)) + " · " + (100 * p[index]).toFixed(1) + "%"));
    });
    return top.map(function (index) { return { index: index, name: classes[index], p: p[index] }; });
  }

  function drawPhoto(rgb, size) {
    var ctx = document.getElementById("try-photo").getContext("2d"), image = ctx.createImageData(size, size);
    for (var i = 0; i < size * size; i++) {
      image.data[4 * i] = rgb[3 * i]; image.data[4 * i + 1] = rgb[3 * i + 1]; image.data[4 * i + 2] = rgb[3 * i + 2];
      image.data[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    drawOverlay(new Float32Array(0), size, "");
  }

  function run(data, session, blob, name) {
    var started = performance.now(), pre = window.microscopePreprocess, p = data.preprocessing, size = data.input.size;
    box.setAttribute("data-state", "running");
    say("Running the network on " + name + "…");
    return pre.decode(blob).then(function (decoded) {
      var rgb = pre.frame(decoded.rgba, decoded.width, decoded.height, p.resize, p.crop);
      drawPhoto(rgb, size);
      document.getElementById("try-seen").hidden = false;
      var feeds = {};
      feeds[data.input.name] = new window.ort.Tensor("float32", pre.normalise(rgb, size, p), [1, 3, size, size]);
      return session.run(feeds).then(function (outputs) {
        var into = document.getElementById("try-layers");
        into.textContent = "";
        var classes = data.logits ? showClasses(outputs[data.logits].data, data.classes) : [];
        return Promise.all(data.layers.map(function (layer) {
          return showLayer(layer, outputs[layer.output], data, into);
        })).then(function (shown) {
          var layers = {};
          data.layers.forEach(function (layer, i) { layers[layer.layer] = shown[i]; });
          var seconds = (performance.now() - started) / 1000;
          state.result = { name: name, classes: classes, layers: layers, seconds: seconds, backend: state.backend };
          box.setAttribute("data-state", "done");
          say("Results for " + name + " in " + seconds.toFixed(1) + " s (" + state.backend + ").");
          return state.result;
        });
      });
    }).catch(function (error) {
      box.setAttribute("data-state", "ready");
      state.error = String(error && error.message || error);
      say("Could not read " + name + ": " + state.error);
    });
  }

  function wire(data, session) {
    var input = document.getElementById("try-file"), drop = document.getElementById("try-drop");
    function take(blob, name) { if (blob) run(data, session, blob, name || blob.name || "your photo"); }
    input.disabled = false;
    input.addEventListener("change", function () { take(input.files[0]); });
    drop.addEventListener("dragover", function (event) { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
    drop.addEventListener("drop", function (event) {
      event.preventDefault(); drop.classList.remove("over");
      take(event.dataTransfer.files[0]);
    });
    document.addEventListener("paste", function (event) {
      var items = (event.clipboardData && event.clipboardData.items) || [];
      for (var i = 0; i < items.length; i++) {
        if (items[i].kind === "file") { take(items[i].getAsFile(), "the pasted image"); return; }
      }
    });
    document.querySelectorAll(".try-example").forEach(function (button) {
      button.disabled = false;
      button.addEventListener("click", function () {
        var src = button.getAttribute("data-src");
        fetch(url(src)).then(function (r) { return r.blob(); }).then(function (blob) {
          take(blob, button.querySelector("img").getAttribute("alt") || src);
        });
      });
    });
    box.setAttribute("data-state", "ready");
    say("Ready: choose, drop or paste a photo.");
  }

  state.ready = fetch(url(box.getAttribute("data-try"))).then(function (r) {
    if (!r.ok) throw new Error("try.json: HTTP " + r.status);
    return r.json();
  }).then(function (data) {
    // try.json's paths are relative to the model's folder, this page's own.
    return fetchBytes(data.onnx, data.onnx_bytes).then(function (model) {
      say("Starting the network…");
      return startSession(data, new Uint8Array(model));
    }).then(function (session) {
      state.run = function (blob, name) { return run(data, session, blob, name); };
      wire(data, session);
      return data;
    });
  }).catch(function (error) {
    stop("The network could not be loaded here (" + (error && error.message || error) + "); the rest of the site works without it.");
  });
})();
