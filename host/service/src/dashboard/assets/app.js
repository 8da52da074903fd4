// devext dashboard: optional enhancements only; every page works without this script.
"use strict";
(function () {
  // Dates in the viewer's time zone.
  for (const t of document.querySelectorAll("time[datetime]")) {
    if (t.hasAttribute("data-ago")) continue;
    const v = t.getAttribute("datetime");
    if (!/T/.test(v)) continue;
    const d = new Date(v);
    if (!isNaN(d)) { t.title = v; t.textContent = d.toLocaleString(); }
  }
  // "as of N s ago" kept current.
  const ago = document.querySelectorAll("time[data-ago]");
  if (ago.length) {
    setInterval(function () {
      for (const t of ago) {
        const s = Math.max(0, Math.round((Date.now() - new Date(t.getAttribute("datetime"))) / 1000));
        t.textContent = s < 90 ? s + " s ago" : s < 5400 ? Math.floor(s / 60) + " min ago" : Math.floor(s / 3600) + " h ago";
      }
    }, 1000);
  }
  // Characters counted as you type.
  for (const el of document.querySelectorAll("[data-counter]")) {
    const out = document.getElementById(el.getAttribute("data-counter"));
    const max = el.getAttribute("maxlength");
    if (!out) continue;
    const update = function () { out.textContent = Array.from(el.value).length + " / " + max + " characters"; };
    el.addEventListener("input", update);
  }
  // Destructive forms ask first (the server also requires their confirmation box).
  for (const f of document.querySelectorAll("form[data-confirm]")) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
    });
  }
})();
