// Leasehold console: live lease countdowns and a live refresh of <main> that
// pauses while the tab is hidden or while the operator is typing in a form.
(function () {
  "use strict";
  var skew = 0; // server time minus browser time, in ms
  function syncClock(body) {
    var now = Number(body.dataset.now || 0);
    if (now) { skew = now - Date.now(); }
  }
  function fmt(ms) {
    var s = Math.floor(ms / 1000);
    if (s < 1) { return "<1s"; }
    if (s < 60) { return s + "s"; }
    if (s < 3600) { return Math.floor(s / 60) + "m " + (s % 60) + "s"; }
    if (s < 86400) { return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m"; }
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = Number(el.dataset.expires) - now;
      el.textContent = left > 0 ? "in " + fmt(left) : "expired " + fmt(-left) + " ago";
      el.classList.toggle("bad", left <= 0);
    });
  }
  function editing() {
    var a = document.activeElement;
    if (a && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName) && a.closest("main")) { return true; }
    return Array.prototype.some.call(
      document.querySelectorAll("main form.act textarea, main form.act input[type=text]"),
      function (el) { return el.value !== ""; });
  }
  var busy = false;
  function setLive(text, paused) {
    var el = document.getElementById("live");
    if (el) { el.textContent = text; el.classList.toggle("paused", paused); }
  }
  var skipped = 0;
  function refresh() {
    if (document.hidden) {
      // Counted on the badge so a test can see that ticks ran and held off.
      skipped += 1;
      var el = document.getElementById("live");
      if (el) { el.dataset.skipped = String(skipped); }
      setLive("paused (tab hidden)", true);
      return;
    }
    if (busy || editing()) { setLive("paused (editing)", true); return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "X-Console-Refresh": "1" } })
      .then(function (r) {
        // The session ended (logout elsewhere, restart): go to the login page.
        if (r.redirected && r.url.indexOf("/login") !== -1) { location.href = r.url; return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (!text) { setLive("refresh failed", true); return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        var cur = document.getElementById("main");
        if (fresh && cur && !editing()) {
          cur.replaceWith(fresh);
          syncClock(doc.body);
          tick();
          setLive("live", false);
        }
      })
      .catch(function () { setLive("refresh failed", true); })
      .then(function () { busy = false; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    syncClock(document.body);
    tick();
    setInterval(tick, 1000);
    var period = Number(document.body.dataset.refresh || 0);
    if (period > 0) {
      setInterval(refresh, period * 1000);
      document.addEventListener("visibilitychange", function () {
        if (document.hidden) { setLive("paused (tab hidden)", true); } else { refresh(); }
      });
    }
    // Destructive forms ask once more (the server still checks everything).
    document.addEventListener("submit", function (ev) {
      var msg = ev.target.dataset && ev.target.dataset.confirm;
      if (msg && !window.confirm(msg)) { ev.preventDefault(); }
    });
  });
})();
