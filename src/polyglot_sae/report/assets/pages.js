// Shared by every page; only the index has the data block it works on. The table is built with
// createElement/textContent only, so the data (tokens from corpora) are never parsed as HTML.
"use strict";
(function () {
  const block = document.getElementById("feature-data");
  if (!block) return;
  const data = JSON.parse(block.textContent);
  const rows = document.getElementById("rows");
  const filter = document.getElementById("filter");
  const significant = document.getElementById("significant");
  const status = document.getElementById("status");
  const headers = Array.from(document.querySelectorAll("th[data-key]"));
  const keys = new Set(headers.map((th) => th.dataset.key));
  const state = { sort: "rank", desc: false };

  const fmt = (x) => {
    if (x === null || x === undefined) return "\u2013";
    if (typeof x === "string" || Number.isInteger(x)) return String(x);
    return x !== 0 && Math.abs(x) < 1e-3 ? x.toExponential(2) : x.toPrecision(4);
  };
  const pct = (x) => (x === null ? "\u2013" : (100 * x).toPrecision(3) + "%");
  const cell = (tr, text, cls) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    tr.appendChild(td);
  };
  const tokenCell = (f) => {
    const frag = document.createDocumentFragment();
    data.langs.forEach((lang, i) => {
      const span = frag.appendChild(document.createElement("span"));
      span.className = "tl";
      span.appendChild(document.createElement("b")).textContent = lang;
      span.appendChild(document.createTextNode(" " + f.t[i].join(" \u00b7 ")));
    });
    return frag;
  };

  for (const f of data.features) {
    const tr = document.createElement("tr");
    const a = document.createElement("a");
    a.href = "features/" + encodeURIComponent(String(f.id)) + ".html";
    a.textContent = String(f.id);
    cell(tr, a);
    cell(tr, f.dead ? "dead" : fmt(f.rank), "num");
    for (const k of data.stats) cell(tr, fmt(f[k]), typeof f[k] === "string" ? "" : "num");
    f.d.forEach((x) => cell(tr, pct(x), "num"));
    cell(tr, tokenCell(f));
    f.row = tr;
    f.tok = f.t.flat().join(" ").toLowerCase();
    f.text = String(f.id) + " " + f.tok;
  }

  const value = (f, key) => (key === "tok" ? f.tok : /^d[0-9]+$/.test(key) ? f.d[+key.slice(1)] : f[key]);
  const compare = (a, b) => {
    const x = value(a, state.sort), y = value(b, state.sort);
    if (x === null || x === undefined) return y === null || y === undefined ? a.id - b.id : 1;
    if (y === null || y === undefined) return -1;  // missing values last either way
    const c = x < y ? -1 : x > y ? 1 : 0;
    return (state.desc ? -c : c) || a.id - b.id;
  };

  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    state.sort = keys.has(h.get("sort")) ? h.get("sort") : "rank";
    state.desc = h.get("desc") === "1";
    filter.value = h.get("filter") || "";
    if (significant) significant.checked = h.get("sig") === "1";
  }
  function writeHash() {
    const h = new URLSearchParams();
    if (state.sort !== "rank" || state.desc) h.set("sort", state.sort);
    if (state.desc) h.set("desc", "1");
    if (filter.value) h.set("filter", filter.value);
    if (significant && significant.checked) h.set("sig", "1");
    try { history.replaceState(null, "", "#" + h.toString()); } catch (e) { /* file:// quirks */ }
  }
  function render() {
    const needle = filter.value.trim().toLowerCase();
    const onlySig = significant && significant.checked;
    const sorted = data.features.slice().sort(compare);
    const frag = document.createDocumentFragment();
    let shown = 0;
    for (const f of sorted) {
      const hide = (needle && !f.text.includes(needle))
        || (onlySig && !(f.q !== null && f.q < data.q_threshold));
      f.row.hidden = Boolean(hide);
      if (!hide) shown += 1;
      frag.appendChild(f.row);
    }
    rows.replaceChildren(frag);
    status.textContent = shown + " of " + sorted.length + " features";
    for (const th of headers) {
      const sort = th.dataset.key !== state.sort ? "none" : state.desc ? "descending" : "ascending";
      th.setAttribute("aria-sort", sort);
    }
  }

  for (const th of headers) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.key;
      state.desc = key === state.sort ? !state.desc : false;
      state.sort = key;
      writeHash();
      render();
    });
  }
  filter.addEventListener("input", () => { writeHash(); render(); });
  if (significant) significant.addEventListener("change", () => { writeHash(); render(); });
  window.addEventListener("hashchange", () => { readHash(); render(); });
  readHash();
  render();
  // Time from navigation start to a rendered table, for load-time checks.
  document.documentElement.dataset.readyMs = performance.now().toFixed(1);
})();
