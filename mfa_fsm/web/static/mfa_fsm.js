// Polls a pending out-of-band challenge (a push, a call, a link) from the "approve on your
// device" page. It waits until the server's next_poll_at, POSTs the page's poll route, and
// follows the flow to its next page once the request was answered: every JSON answer that
// carries "location" (the flow's next page, or where the application's on_complete sends the
// browser once signed in) is followed; one with "retry_after" is polled again after it. What it is doing is said in
// the page's aria-live region, once per change, so a screen reader is not flooded.
// Without scripts the page still works: its "Check now" button sends the same poll.
// It also shows the time left: an m:ss countdown, a progress bar (no animation of its own, so
// it needs no prefers-reduced-motion exception) and the deadline in this browser's local time.
// On any page with "Send a new code" / "Send another request" not yet allowed, the button is
// disabled until the server's wait (data-mfa-resend-in, seconds) has passed, its hint names
// that moment in this browser's local time, and it is enabled then. Without scripts the
// button stays usable and an early click comes back as a notice on the page.
(function () {
  "use strict";
  var button = document.querySelector("[data-mfa-resend-in]");
  var hint = document.getElementById("mfa-resend-wait");
  var wait = button ? parseFloat(button.getAttribute("data-mfa-resend-in")) : NaN;
  if (!button || !isFinite(wait) || wait <= 0) {
    return;
  }
  var at = new Date(Date.now() + wait * 1000);
  button.disabled = true;
  if (hint) {
    hint.textContent = "(available at ";
    var time = document.createElement("time");
    time.setAttribute("datetime", at.toISOString());
    time.textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    hint.appendChild(time);
    hint.appendChild(document.createTextNode(")"));
  }
  window.setTimeout(function () {
    button.disabled = false;
    button.removeAttribute("aria-describedby");
    if (hint) {
      hint.hidden = true;
    }
  }, wait * 1000);
})();

(function () {
  "use strict";
  var box = document.querySelector("[data-mfa-poll-url]");
  if (!box) {
    return;
  }
  var url = box.getAttribute("data-mfa-poll-url");
  var csrf = box.getAttribute("data-mfa-csrf");
  var status = document.getElementById("mfa-poll-status");
  var countdown = document.getElementById("mfa-countdown");
  var prompt = document.getElementById("mfa-prompt");
  var progress = document.getElementById("mfa-progress");
  var deadlineText = document.getElementById("mfa-deadline");
  var deadline = parseFloat(box.getAttribute("data-mfa-deadline"));
  // Server clock minus this browser's: next_poll_at and the deadline are the server's times.
  var skew = parseFloat(box.getAttribute("data-mfa-now")) - Date.now() / 1000;
  // The progress bar's whole: the time left when the page was rendered (at least a second).
  var span = Math.max(1, deadline - parseFloat(box.getAttribute("data-mfa-now")));
  var note = document.getElementById("mfa-no-script");
  if (note) {
    note.hidden = true;
  }
  var said = "";
  var lastMinute = null;

  function now() {
    return Date.now() / 1000 + skew;
  }

  function announce(text) {
    if (text && text !== said) {
      said = text;
      status.textContent = text;
    }
  }

  function schedule(at) {
    var wait = Math.min(Math.max(at - now(), 0.25), 30);
    window.setTimeout(poll, wait * 1000);
  }

  function poll() {
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
    })
      .then(function (reply) {
        // Every answer of the blueprint to this request is JSON, errors included; anything
        // else came from something in between (a proxy's error page): try again later.
        var type = reply.headers.get("Content-Type") || "";
        if (type.indexOf("application/json") !== 0) {
          throw new Error("not JSON");
        }
        return reply.json();
      })
      .then(function (data) {
        if (typeof data.now === "number") {
          skew = data.now - Date.now() / 1000;
        }
        announce(data.message);
        if (data.location) {
          window.location.assign(data.location);
          return;
        }
        if (typeof data.deadline === "number" && data.deadline !== deadline) {
          deadline = data.deadline;  // a new request was sent: a new deadline
          span = Math.max(span, deadline - now());
          showDeadline();
        }
        // The IdP's own words while it waits (its status message), as text, never markup.
        if (prompt && typeof data.prompt === "string" && data.prompt) {
          prompt.textContent = data.prompt;
        }
        var next = typeof data.next_poll_at === "number" ? data.next_poll_at : now() + (data.retry_after || 5);
        schedule(next);
      })
      .catch(function () {
        announce("Cannot reach the server; trying again in 5 seconds.");
        schedule(now() + 5);
      });
  }

  // The deadline (server epoch seconds) as this browser's local time of day.
  function showDeadline() {
    if (!deadlineText || !isFinite(deadline)) {
      return;
    }
    var local = new Date((deadline - skew) * 1000);
    deadlineText.setAttribute("datetime", local.toISOString());
    deadlineText.textContent = local.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // Seconds as m:ss ("4:05").
  function clock(seconds) {
    var s = seconds % 60;
    return Math.floor(seconds / 60) + ":" + (s < 10 ? "0" : "") + s;
  }

  function tick() {
    var left = Math.max(0, Math.round(deadline - now()));
    if (countdown) {
      countdown.textContent = ", in " + clock(left);
    }
    if (progress) {
      progress.hidden = false;
      progress.max = span;
      progress.value = Math.min(left, span);
    }
    // Once a minute is often enough for a screen reader to hear how long is left.
    var minute = Math.ceil(left / 60);
    if (lastMinute !== null && minute !== lastMinute && left > 0) {
      announce("Still waiting for your approval; about " + minute + " minute" + (minute === 1 ? "" : "s") + " left.");
    }
    lastMinute = minute;
  }

  announce("Waiting for your approval. This page checks automatically.");
  showDeadline();
  tick();
  window.setInterval(tick, 1000);
  schedule(parseFloat(box.getAttribute("data-mfa-next-poll-at")));
})();
