// The recipients table: search, filter by state, sort by a column, a page at a time.
(function () {
  "use strict";
  var PAGE_ROWS = 50;
  var FAILED = ["rejected", "skipped", "failed", "undelivered", "unknown", "expired", "cancelled"];
  var rows = JSON.parse(document.getElementById("rows").textContent);
  var body = document.querySelector("#recipients tbody");
  var heads = document.querySelectorAll("#recipients th");
  var search = document.getElementById("search");
  var stateSelect = document.getElementById("state");
  var shown = rows, page = 0, sortCol = 0, sortDir = 1;

  var states = {};
  rows.forEach(function (r) { states[r[3]] = (states[r[3]] || 0) + 1; });
  Object.keys(states).sort().forEach(function (s) {
    var o = document.createElement("option");
    o.value = s; o.textContent = s + " (" + states[s].toLocaleString("en") + ")";
    stateSelect.appendChild(o);
  });

  function compare(a, b) {
    var x = a[sortCol], y = b[sortCol];
    if (x === y) return a[0] - b[0];
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    var nx = Number(x), ny = Number(y);
    if (!isNaN(nx) && !isNaN(ny)) return (nx - ny) * sortDir;
    return String(x).localeCompare(String(y)) * sortDir;
  }

  function refilter() {
    var q = search.value.trim().toLowerCase(), st = stateSelect.value;
    shown = rows.filter(function (r) {
      if (st && r[3] !== st) return false;
      if (!q) return true;
      return r.some(function (v) { return v !== null && String(v).toLowerCase().indexOf(q) >= 0; });
    });
    shown.sort(compare);
    page = 0;
    draw();
  }

  function draw() {
    var pages = Math.max(1, Math.ceil(shown.length / PAGE_ROWS));
    page = Math.min(page, pages - 1);
    var frag = document.createDocumentFragment();
    shown.slice(page * PAGE_ROWS, (page + 1) * PAGE_ROWS).forEach(function (r) {
      var tr = document.createElement("tr");
      if (FAILED.indexOf(r[3]) >= 0) tr.className = "failed";
      r.forEach(function (v) {
        var td = document.createElement("td");
        td.textContent = v === null || v === undefined ? "" : String(v);
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    });
    body.replaceChildren(frag);
    document.getElementById("count").textContent =
      shown.length.toLocaleString("en") + " of " + rows.length.toLocaleString("en") + " rows";
    document.getElementById("page").textContent = "page " + (page + 1) + " of " + pages;
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }

  function sortBy(col) {
    sortDir = col === sortCol ? -sortDir : 1;
    sortCol = col;
    heads.forEach(function (h, i) {
      if (i === col) h.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else h.removeAttribute("aria-sort");
    });
    shown.sort(compare);
    draw();
  }

  heads.forEach(function (h, i) {
    h.addEventListener("click", function () { sortBy(i); });
    h.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(i); });
  });
  search.addEventListener("input", refilter);
  stateSelect.addEventListener("change", refilter);
  document.getElementById("prev").addEventListener("click", function () { page--; draw(); });
  document.getElementById("next").addEventListener("click", function () { page++; draw(); });
  heads[0].setAttribute("aria-sort", "ascending");
  refilter();
})();
