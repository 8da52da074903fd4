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
  // A running job's page follows it: GET /api/v1/jobs/{id} every second, the bar and counts
  // updated in place, the page reloaded (results table) once it ends. Without the script the
  // page refreshes itself (a <noscript> meta refresh).
  const job = document.querySelector("[data-job]");
  if (job && !job.hasAttribute("data-finished")) {
    const id = job.getAttribute("data-job");
    const bar = job.querySelector("[data-job-progress]");
    const text = job.querySelector("[data-job-text]");
    const poll = function () {
      fetch("/api/v1/jobs/" + encodeURIComponent(id), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (j) {
          const processed = j.total - j.pending;
          const percent = j.total ? Math.floor(processed * 100 / j.total) : 100;
          if (bar) { bar.max = Math.max(1, j.total); bar.value = j.total ? processed : 1; bar.textContent = percent + "%"; }
          if (text) text.textContent = processed + " of " + j.total + " (" + percent + "%)";
          for (const el of job.querySelectorAll("[data-job-field]")) {
            const f = el.getAttribute("data-job-field");
            const v = j[f];
            if (f === "rate_per_s") el.textContent = v == null ? "—" : v.toFixed(1) + " per second";
            else if (f === "eta_s") el.textContent = v == null ? "—" : v.toFixed(1) + " s";
            else if (f === "state") { el.textContent = v; el.className = "badge badge-job-" + v; }
            else el.textContent = v;
          }
          if (j.state === "done" || j.state === "cancelled" || j.state === "failed") window.location.reload();
          else setTimeout(poll, 1000);
        })
        .catch(function () { setTimeout(poll, 3000); });
    };
    setTimeout(poll, 1000);
  }
  // The Extension Configuration checked as you type (nothing is saved until "Confirm changes").
  const editor = document.getElementById("extensions");
  const problems = document.getElementById("extensions-problems");
  const form = document.getElementById("device-form");
  if (editor && problems && form && !editor.readOnly) {
    const csrf = form.querySelector("input[name=csrf]").value;
    let timer = null;
    const show = function (items) {
      problems.replaceChildren();
      if (!items.length) return;
      const ul = document.createElement("ul");
      ul.className = "problems";
      for (const d of items) {
        const li = document.createElement("li");
        li.className = d.kind === "warning" ? "warning" : "field-error";
        let text = (d.kind === "warning" ? "Warning: " : "") + "line " + (d.line || 1) + ":" + (d.column || 1);
        if (d.pointer) text += " at " + d.pointer;
        li.textContent = text + " — " + d.message;
        ul.appendChild(li);
      }
      problems.appendChild(ul);
    };
    editor.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        fetch("/api/v1/validate/extensions", {
          method: "POST", credentials: "same-origin",
          headers: {"content-type": "application/json", "x-csrf-token": csrf},
          body: editor.value.trim() === "" ? "{}" : editor.value
        }).then(function (r) { return r.json(); }).then(function (b) {
          show(b.diagnostics || (b.error && b.error.details && b.error.details.diagnostics) || []);
        }).catch(function () {});
      }, 400);
    });
  }
})();
