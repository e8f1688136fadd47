// A photo as the model sees it, in the browser: the bytes Python's Framing.tensor gives
// (microscope/data/images.py) and the floats Preprocessing gives (microscope/models/spec.py), so a
// unit's activation on a visitor's photo is measured as the site's examples were.
//
// window.microscopePreprocess = {
//   decode(blob, maxSide = 4096) -> Promise<{rgba: Uint8ClampedArray, width, height}>
//   frame(rgba, width, height, resize, crop) -> Uint8Array (crop * crop * 3: RGB, row-major)
//   normalise(rgb, crop, preprocessing) -> Float32Array (1, 3, crop, crop) NCHW
//   frameSize(width, height, resize, crop) -> [width, height] after the resize
// }
(function () {
  "use strict";

  // Python's round(): a half goes to the even neighbour. Framing's sizes and crop offsets use it.
  function roundHalfEven(x) {
    var r = Math.round(x);  // halves up
    return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }

  // The size a photo is resized to: shorter side to `resize` (to at least `crop` when resize is
  // null), the longer one keeping the aspect ratio; unchanged when the shorter side is already there.
  function frameSize(width, height, resize, crop) {
    var short = Math.min(width, height);
    var target = resize == null ? Math.max(short, crop) : resize;
    if (short === target) return [width, height];
    var scale = target / short;
    return width <= height ? [target, Math.max(target, roundHalfEven(height * scale))]
                           : [Math.max(target, roundHalfEven(width * scale)), target];
  }

  function triangle(x) {  // the bilinear filter
    x = Math.abs(x);
    return x < 1 ? 1 - x : 0;
  }

  // torch's antialiased bilinear taps along one axis (UpSampleKernel.cpp: _compute_indices_min_size_weights_aa,
  // then _compute_index_ranges_int16_weights): each output's first input, its count, and its weights in
  // fixed point, for the outputs [first, first + count) only. The fixed point's precision depends on the
  // largest weight of ALL outputs, so every output is looked at once.
  function axisTaps(inSize, outSize, first, count) {
    var scale = inSize / outSize;
    var support = scale >= 1 ? scale : 1;  // the filter widens with the scale when shrinking: antialias
    var invscale = scale >= 1 ? 1 / scale : 1;
    var ksize = Math.ceil(support) * 2 + 1;
    var w = new Float64Array(ksize);
    function taps(i) {  // fills w; [xmin, xsize, largest weight]
      var center = scale * (i + 0.5), total = 0, largest = 0, j;
      var xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      var xsize = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - xmin, 0), ksize);
      for (j = 0; j < xsize; j++) { w[j] = triangle((j + xmin - center + 0.5) * invscale); total += w[j]; }
      if (total !== 0) for (j = 0; j < xsize; j++) { w[j] /= total; largest = Math.max(largest, w[j]); }
      return [xmin, xsize, largest];
    }
    var wmax = 0, i, k;
    for (i = 0; i < outSize; i++) wmax = Math.max(wmax, taps(i)[2]);
    var precision;  // the most bits that keep every weight within int16
    for (precision = 0; precision < 22; precision++) {
      if (Math.trunc(0.5 + wmax * Math.pow(2, precision + 1)) >= 32768) break;
    }
    var start = new Int32Array(count), size = new Int32Array(count), weights = new Int32Array(count * ksize);
    for (i = 0; i < count; i++) {
      var t = taps(first + i);
      start[i] = t[0]; size[i] = t[1];
      for (k = 0; k < t[1]; k++) {
        var v = w[k] * Math.pow(2, precision);
        weights[i * ksize + k] = v < 0 ? Math.trunc(v - 0.5) : Math.trunc(v + 0.5);
      }
    }
    return {start: start, size: size, weights: weights, ksize: ksize, precision: precision};
  }

  // One separable pass in integers, as torch's uint8 kernel (and Pillow's) does it: a sum of pixels
  // times fixed-point weights, rounded by adding a half, shifted back and clamped to 0..255.
  // `src` has `lines` lines of `inLength` pixels of `channels` bytes, `along` says whether the filter
  // runs along a line (a horizontal pass) or across lines (a vertical one); out is RGB.
  function convolve(src, channels, lines, inLength, taps, along) {
    var count = taps.start.length, half = 1 << (taps.precision - 1), shift = taps.precision;
    var outLines = along ? lines : count, outLength = along ? count : inLength;
    var out = new Uint8Array(outLines * outLength * 3);
    for (var line = 0; line < outLines; line++) {
      for (var x = 0; x < outLength; x++) {
        var i = along ? x : line, first = taps.start[i], n = taps.size[i], base = i * taps.ksize;
        var o = (line * outLength + x) * 3;
        for (var c = 0; c < 3; c++) {
          var sum = half;
          for (var k = 0; k < n; k++) {
            var p = along ? (line * inLength + first + k) : ((first + k) * inLength + x);
            sum += src[p * channels + c] * taps.weights[base + k];
          }
          sum >>= shift;
          out[o + c] = sum < 0 ? 0 : (sum > 255 ? 255 : sum);
        }
      }
    }
    return out;
  }

  // Lines [first, first + count) and columns [left, left + columns) of an image, as RGB.
  function window_(src, channels, width, top, rows, left, columns) {
    var out = new Uint8Array(rows * columns * 3);
    for (var y = 0; y < rows; y++) {
      for (var x = 0; x < columns; x++) {
        var p = ((top + y) * width + left + x) * channels, o = (y * columns + x) * 3;
        out[o] = src[p]; out[o + 1] = src[p + 1]; out[o + 2] = src[p + 2];
      }
    }
    return out;
  }

  function frame(rgba, width, height, resize, crop) {
    if (!(crop >= 1) || (resize != null && resize < crop)) {
      throw new Error("resize (" + resize + ") must be at least the crop (" + crop + "), and the crop at least 1");
    }
    if (!(width >= 1 && height >= 1) || rgba.length !== width * height * 4) {
      throw new Error("expected " + width + " x " + height + " RGBA pixels, got " + rgba.length + " bytes");
    }
    var size = frameSize(width, height, resize, crop), outWidth = size[0], outHeight = size[1];
    // The offsets of torchvision's CenterCrop; only the pixels inside the crop are computed: each
    // output pixel depends on its own taps alone, so this is the full resize, cropped.
    var left = roundHalfEven((outWidth - crop) / 2), top = roundHalfEven((outHeight - crop) / 2);
    var pixels = rgba, channels = 4, lineWidth = width;
    if (outWidth !== width) {  // horizontal pass first, over every input line, as torch does
      pixels = convolve(pixels, channels, height, width, axisTaps(width, outWidth, left, crop), true);
      channels = 3; lineWidth = crop; left = 0;
    }
    if (outHeight !== height) {
      pixels = convolve(window_(pixels, channels, lineWidth, 0, height, left, crop), 3, height, crop,
                        axisTaps(height, outHeight, top, crop), false);
      return pixels;
    }
    return window_(pixels, channels, lineWidth, top, crop, left, crop);
  }

  // What Preprocessing.__call__ does to rgb / 255, in float32 at every step as torch computes it:
  // channel order, * scale, - mean, / std (mean and std in the network's channel order).
  function normalise(rgb, crop, preprocessing) {
    var order = preprocessing.channel_order || "RGB";
    if (order !== "RGB" && order !== "BGR") throw new Error("channel_order must be RGB or BGR, got " + order);
    var f = Math.fround, scale = f(preprocessing.scale == null ? 1 : preprocessing.scale);
    var mean = preprocessing.mean || [0, 0, 0], std = preprocessing.std || [1, 1, 1];
    var plane = crop * crop, out = new Float32Array(3 * plane);
    if (rgb.length !== plane * 3) throw new Error("expected " + crop + " x " + crop + " RGB pixels, got " + rgb.length);
    for (var c = 0; c < 3; c++) {
      var source = order === "BGR" ? 2 - c : c, m = f(mean[c]), s = f(std[c]);
      for (var i = 0; i < plane; i++) {
        out[c * plane + i] = f(f(f(rgb[i * 3 + source] / 255) * scale) - m) / s;  // (the store rounds)
      }
    }
    return out;
  }

  function describe(blob) {
    var name = blob && blob.name ? "'" + blob.name + "'" : "this file";
    return blob && blob.type ? name + " (" + blob.type + ")" : name;
  }

  // A file the visitor picked, as RGBA pixels: upright (EXIF orientation, the browser's default), the
  // stored colours (no ICC conversion, as Pillow reads them), transparency over white (as load_rgb),
  // a photo longer than maxSide scaled down first so that a huge image costs no more than that.
  function decode(blob, maxSide) {
    maxSide = maxSide || 4096;
    var options = {colorSpaceConversion: "none", premultiplyAlpha: "none"};
    return createImageBitmap(blob, options).catch(function () {
      throw new Error(describe(blob) + " is not an image this browser can read; pick a JPEG, PNG, GIF or WebP photo");
    }).then(function (bitmap) {
      var long = Math.max(bitmap.width, bitmap.height);
      if (long <= maxSide) return bitmap;
      var scale = maxSide / long;
      var resized = {resizeWidth: Math.max(1, Math.round(bitmap.width * scale)),
                     resizeHeight: Math.max(1, Math.round(bitmap.height * scale)), resizeQuality: "high"};
      return createImageBitmap(bitmap, resized).then(function (small) { bitmap.close(); return small; });
    }).then(function (bitmap) {
      var width = bitmap.width, height = bitmap.height;
      var canvas = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(width, height)
                                                         : document.createElement("canvas");
      canvas.width = width; canvas.height = height;
      var context = canvas.getContext("2d", {willReadFrequently: true});
      context.fillStyle = "#fff";
      context.fillRect(0, 0, width, height);
      context.drawImage(bitmap, 0, 0);
      bitmap.close();
      return {rgba: context.getImageData(0, 0, width, height).data, width: width, height: height};
    });
  }

  window.microscopePreprocess = {decode: decode, frame: frame, normalise: normalise, frameSize: frameSize};
})();
