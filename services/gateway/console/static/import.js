// The 12345 upload: read a CSV or JSON file, send it in chunks the API takes (≤ 1,000 rows, under the body cap),
// move the progress bar, and list every refused row by row, field and reason.
(function () {
  "use strict";
  var MAX_ROWS = 1000, MAX_BYTES = 56000, utf8 = new TextEncoder();  // the edge refuses bodies over 64 KiB
  function csv(text) {  // RFC 4180: quoted fields, doubled quotes, CRLF or LF
    var rows = [], row = [], cell = "", q = false;
    for (var i = 0; i < text.length; i++) {
      var c = text[i];
      if (q) { if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') q = false; else cell += c; }
      else if (c === '"') q = true;
      else if (c === ",") { row.push(cell); cell = ""; }
      else if (c === "\n" || c === "\r") { if (c === "\r" && text[i + 1] === "\n") i++; row.push(cell); rows.push(row); row = []; cell = ""; }
      else cell += c;
    }
    if (cell || row.length) { row.push(cell); rows.push(row); }
    rows = rows.filter(function (r) { return r.some(function (v) { return v.trim(); }); });
    var head = (rows.shift() || []).map(function (h) { return h.trim().replace(/^\ufeff/, ""); });
    return rows.map(function (r) { var o = {}; head.forEach(function (h, j) { o[h] = r[j] === undefined ? "" : r[j]; }); return o; });
  }
  function chunks(rows) {  // consecutive rows, each chunk within the row and size limits
    var out = [], cur = [], size = 2;
    rows.forEach(function (r) {
      var n = utf8.encode(JSON.stringify(r)).length + 1;
      if (cur.length && (cur.length >= MAX_ROWS || size + n > MAX_BYTES)) { out.push(cur); cur = []; size = 2; }
      cur.push(r); size += n;
    });
    if (cur.length) out.push(cur);
    return out;
  }
  function fill(tpl, values) { return tpl.replace(/%\((\w+)\)s/g, function (_, k) { return values[k]; }); }
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("import");
    if (!form) return;
    var bar = document.getElementById("import-progress"), status = document.getElementById("import-status");
    var refused = document.getElementById("import-refused"), body = document.getElementById("import-refused-rows");
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var file = form.file.files[0];
      if (!file) { status.textContent = form.dataset.unreadable; return; }
      var text = await file.text(), rows;
      try {
        rows = /\.json$/i.test(file.name) || /^\s*[\[{]/.test(text) ? JSON.parse(text) : csv(text);
        if (rows && !Array.isArray(rows)) rows = rows.rows;
        if (!Array.isArray(rows) || !rows.length) throw new Error("empty");
      } catch (e) { status.textContent = form.dataset.unreadable; return; }
      body.replaceChildren(); refused.hidden = true;
      var parts = chunks(rows), first = 1, total = {imported: 0, unchanged: 0, failed: 0};
      bar.max = rows.length; bar.value = 0;
      for (var i = 0; i < parts.length; i++) {
        var r = await fetch("/console/import/rows", {method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf},
          body: JSON.stringify({rows: parts[i], first_row: first, partial: form.partial.checked, dry_run: form.dry_run.checked})});
        var answer = {};
        try { answer = await r.json(); } catch (e) { answer = {error: r.status + " " + r.statusText}; }
        if (answer.error) { status.textContent = fill(form.dataset.failed, {reason: answer.error}); return; }
        total.imported += answer.imported || 0; total.unchanged += answer.unchanged || 0;
        (answer.failed || []).forEach(function (f) {
          var tr = document.createElement("tr");
          [String(f.row), f.field || "", f.reason || ""].forEach(function (v, j) {
            var td = document.createElement("td"), el = j === 1 ? document.createElement("code") : td;
            el.textContent = v; if (j === 1) td.appendChild(el); if (j === 0) td.className = "num";
            tr.appendChild(td);
          });
          tr.dataset.row = f.row; body.appendChild(tr); total.failed++;
        });
        first += parts[i].length; bar.value = first - 1;
        status.textContent = fill(form.dataset.summary, total);
      }
      refused.hidden = !total.failed;
    });
  });
})();
