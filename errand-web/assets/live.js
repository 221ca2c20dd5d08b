// errand dashboard: live updates. A page whose <main> carries data-live refreshes its
// content every few seconds by fetching itself with the x-errand-fragment header; the
// header's button pauses and resumes it (remembered in this browser). Nothing else runs.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var button = document.getElementById("live-toggle");
  if (!main || !main.hasAttribute("data-live") || !button) return;
  var every = parseInt(button.getAttribute("data-every"), 10) || 2000;
  var key = "errand.live.paused";
  var paused = window.localStorage.getItem(key) === "1";
  var busy = false;
  var last = null;

  function label() {
    button.textContent = paused ? "Resume live updates" : "Pause live updates";
    button.setAttribute("aria-pressed", paused ? "true" : "false");
  }

  function editing() {
    // Never replace the page under a user who is choosing jobs or typing.
    var active = document.activeElement;
    if (active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) return true;
    return main.querySelector("input[type=checkbox]:checked") !== null;
  }

  function refresh() {
    if (paused || busy || document.hidden || editing()) return;
    busy = true;
    fetch(window.location.href, { headers: { "x-errand-fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        // Replaced only when it changed, and never under a paused or busy user.
        if (html !== null && html !== last && !paused && !editing()) {
          main.innerHTML = html;
          last = html;
        }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }

  button.addEventListener("click", function () {
    paused = !paused;
    window.localStorage.setItem(key, paused ? "1" : "0");
    label();
  });
  label();
  window.setInterval(refresh, every);
})();
