// Unit page: show a dataset example's full image with its receptive field, on hover or on tap/click.
(function () {
  "use strict";
  var popup = document.getElementById("popup");
  if (!popup) return;
  var img = document.getElementById("popup-img"), box = document.getElementById("popup-box");
  var caption = document.getElementById("popup-cap");
  var canHover = window.matchMedia && window.matchMedia("(hover: hover)").matches;
  var pinned = false;
  // The tile under the pointer when the user dismissed the popup: a pinned popup covers the tiles,
  // so hiding it makes the browser report the pointer entering that tile again - which must not
  // reopen what the user just closed. It may reopen once the pointer has left the tile.
  var quiet = null, pointerX = -1, pointerY = -1;
  document.addEventListener("mousemove", function (e) { pointerX = e.clientX; pointerY = e.clientY; });

  function fill(link) {
    var tileImg = link.querySelector("img"), none = link.querySelector(".none");
    caption.textContent = tileImg ? tileImg.alt : (none ? none.getAttribute("aria-label") : "");
    var href = link.getAttribute("href");
    img.parentNode.hidden = !href;
    if (href) { img.src = href; img.alt = caption.textContent; }
    // The receptive field: top, left and side as fractions of the photo (see macros.html).
    var style = getComputedStyle(link);
    var t = parseFloat(style.getPropertyValue("--t")), l = parseFloat(style.getPropertyValue("--l"));
    var s = parseFloat(style.getPropertyValue("--s"));
    var ok = isFinite(t) && isFinite(l) && isFinite(s);
    box.hidden = !ok;
    if (ok) {
      var top = Math.max(0, t), left = Math.max(0, l), bottom = Math.min(1, t + s), right = Math.min(1, l + s);
      box.style.top = 100 * top + "%"; box.style.left = 100 * left + "%";
      box.style.height = 100 * (bottom - top) + "%"; box.style.width = 100 * (right - left) + "%";
    }
  }

  function place(link) {
    var r = link.getBoundingClientRect(), w = popup.offsetWidth, h = popup.offsetHeight;
    var left = r.right + 10, top = Math.max(8, Math.min(r.top, innerHeight - h - 8));
    if (left + w > innerWidth - 8) left = Math.max(8, r.left - w - 10);
    popup.style.left = left + "px"; popup.style.top = top + "px";
  }

  function open(link, pin) {
    fill(link);
    pinned = pin;
    popup.classList.toggle("pinned", pin);
    popup.hidden = false;
    if (!pin) place(link);
  }

  function close() { popup.hidden = true; pinned = false; popup.classList.remove("pinned"); }

  function dismiss() {
    close();
    var under = pointerX >= 0 ? document.elementFromPoint(pointerX, pointerY) : null;
    quiet = under ? under.closest(".tiles > *") : null;
  }

  document.querySelectorAll(".tiles > *").forEach(function (link) {
    if (canHover) {
      link.addEventListener("mouseenter", function () { if (!pinned && link !== quiet) open(link, false); });
      link.addEventListener("mouseleave", function () {
        if (link === quiet) quiet = null;
        if (!pinned) close();
      });
    }
    link.addEventListener("click", function (e) {
      e.preventDefault();  // without JS the link opens the photo itself
      open(link, true);
    });
  });
  document.addEventListener("click", function (e) {
    if (pinned && !e.target.closest(".tiles > *") && !e.target.closest(".popup")) close();
  });
  popup.addEventListener("click", dismiss);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") dismiss(); });

  // Permalink: copy the address of this unit (the site may live under any path or host).
  var permalink = document.querySelector(".permalink");
  if (permalink && navigator.clipboard) {
    permalink.addEventListener("click", function (e) {
      e.preventDefault();
      var url = location.href.split("#")[0];
      navigator.clipboard.writeText(url).then(function () {
        permalink.textContent = "link copied";
        setTimeout(function () { permalink.textContent = "permalink"; }, 1500);
      }, function () { location.href = url; });
    });
  }
})();
