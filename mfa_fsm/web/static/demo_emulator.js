// The demo's emulator control page updates itself: every two seconds it asks the page's state
// route (same origin, as the Content-Security-Policy requires) for a fingerprint of what the
// page shows (codes sent, numbers to match) and reloads when it changed. "Pause updates"
// stops it (WCAG 2.2.2, Pause, Stop, Hide); a hidden tab does not ask. Without scripts the
// page refreshes itself with a <noscript> meta refresh instead.
(function () {
  "use strict";
  var page = document.querySelector("[data-fingerprint]");
  if (!page) {
    return;
  }
  var url = page.getAttribute("data-state-url");
  var seen = page.getAttribute("data-fingerprint");
  var pause = document.getElementById("emulator-pause");
  var paused = false;
  if (pause) {
    pause.hidden = false;
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", paused ? "true" : "false");
      pause.textContent = paused ? "Resume updates" : "Pause updates";
    });
  }
  function check() {
    if (paused || document.hidden) {
      return;
    }
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (reply) {
        return reply.ok ? reply.json() : null;
      })
      .then(function (state) {
        if (state && state.fingerprint !== seen) {
          window.location.reload();
        }
      })
      .catch(function () {
        // The demo stopped or restarted: try again on the next tick.
      });
  }
  window.setInterval(check, 2000);
})();
