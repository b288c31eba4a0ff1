// The console's own script: tick the countdowns the server sent, and place live board rows.
(function () {
  "use strict";
  function pad(n) { return String(n).padStart(2, "0"); }
  function tick() {
    var body = document.body, now = Date.now();
    document.querySelectorAll("time[data-deadline]").forEach(function (el) {
      var state = el.dataset.state, cell = el.closest("td");
      if (state === "done" || state === "paused" || !el.dataset.deadline) return;
      var left = Math.round((Date.parse(el.dataset.deadline) - now) / 1000);
      if (left <= 0) {
        el.textContent = body.dataset.breached;
        if (cell) { cell.classList.remove("clock-running", "clock-warned"); cell.classList.add("clock-breached"); }
        return;
      }
      var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
      el.textContent = (h >= 24 ? Math.floor(h / 24) + "d " + pad(h % 24) : pad(h)) + ":" + pad(m) + ":" + pad(s);
    });
  }
  // a live update: rows of the changed whistles replace theirs, rows no longer matching leave, new ones go on top
  function place(inbox) {
    var rows = document.getElementById("board-rows"), batch = inbox.querySelector("tbody");
    if (!rows || !batch) return;
    var changed = (batch.dataset.changed || "").split(" ").filter(Boolean), fresh = {};
    batch.querySelectorAll("tr").forEach(function (tr) { fresh[tr.id] = tr; });
    rows.querySelectorAll("tr").forEach(function (tr) {
      if (fresh[tr.id]) { tr.replaceWith(fresh[tr.id]); delete fresh[tr.id]; }
      else if (batch.dataset.full || changed.indexOf(tr.dataset.whistle) >= 0) tr.remove();
    });
    Object.keys(fresh).reverse().forEach(function (id) { rows.prepend(fresh[id]); });
    var empty = document.getElementById("board-empty");
    if (empty && rows.children.length) empty.remove();
    inbox.replaceChildren();
    tick();
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    // the SSE extension swaps each message into the hidden inbox; rows move from there to the board
    var inbox = document.getElementById("board-inbox");
    if (inbox) new MutationObserver(function () { if (inbox.querySelector("tbody")) place(inbox); })
      .observe(inbox, {childList: true});
  });
})();
