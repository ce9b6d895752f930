// The all-features browser (report/explorer.py). Data: window.EXPLORER_DATA, columnar. Only the
// rows in view are in the DOM; every string goes through textContent.
"use strict";
// Errors are also written on <body data-errors>, so a headless check can see them.
window.addEventListener("error", (e) => {
  document.body.dataset.errors = (document.body.dataset.errors || "") + e.message + "\n";
});
(function () {
  const D = window.EXPLORER_DATA;
  if (!D) return;
  const ROW = 22, PAD = 30, COLOURS = {concept: "#2ca02c", context: "#8c564b", shared_string: "#ff7f0e",
    length: "#9467bd", weak: "#999999", low_support: "#cccccc"};
  const n = D.id.length, $ = (id) => document.getElementById(id);
  const num = Object.fromEntries(D.numeric.map((c) => [c.key, c.values]));
  const lab = Object.fromEntries(D.labels.map((c) => [c.key, c.values]));
  const lower = D.words.map((col) => col.map((w) => w.toLowerCase()));
  const state = {classes: new Set(D.classes), q: "", min: {}, max: {}, sort: "rank", desc: false,
    x: num.rho ? "rho" : D.numeric[0].key, y: num.r_word ? "r_word" : D.numeric[1 % D.numeric.length].key,
    brush: null};
  let visible = [];

  // --- state <-> hash ---------------------------------------------------------------------
  const fromHash = () => {
    const h = new URLSearchParams(location.hash.slice(1));
    if (h.has("class")) state.classes = new Set(h.get("class").split(",").filter((c) => D.classes.includes(c)));
    state.q = h.get("q") || "";
    for (const [k, v] of h) {
      const [bound, key] = k.split(".");
      if ((bound === "min" || bound === "max") && num[key] && v !== "") state[bound][key] = Number(v);
    }
    if (h.has("sort") && (num[h.get("sort")] || h.get("sort") === "id")) state.sort = h.get("sort");
    state.desc = h.get("desc") === "1";
    if (num[h.get("x")]) state.x = h.get("x");
    if (num[h.get("y")]) state.y = h.get("y");
  };
  const toHash = () => {
    const h = new URLSearchParams();
    if (state.classes.size !== D.classes.length) h.set("class", [...state.classes].join(","));
    if (state.q) h.set("q", state.q);
    for (const b of ["min", "max"]) for (const [k, v] of Object.entries(state[b])) h.set(b + "." + k, v);
    h.set("sort", state.sort);
    if (state.desc) h.set("desc", "1");
    h.set("x", state.x); h.set("y", state.y);
    history.replaceState(null, "", "#" + h.toString());
  };

  // --- filtering and sorting -------------------------------------------------------------
  const passes = (i) => {
    if (!state.classes.has(D.classes[D.cls[i]])) return false;
    const q = state.q.trim().toLowerCase();
    if (q && String(D.id[i]) !== q && !lower.some((col) => col[i].includes(q))) return false;
    for (const [k, v] of Object.entries(state.min)) if (!(num[k][i] !== null && num[k][i] >= v)) return false;
    for (const [k, v] of Object.entries(state.max)) if (!(num[k][i] !== null && num[k][i] <= v)) return false;
    const b = state.brush;
    if (b) {
      const x = num[b.x][i], y = num[b.y][i];
      if (x === null || y === null || x < b.x0 || x > b.x1 || y < b.y0 || y > b.y1) return false;
    }
    return true;
  };
  const apply = () => {
    visible = [];
    for (let i = 0; i < n; i++) if (passes(i)) visible.push(i);
    const key = state.sort === "id" ? D.id : num[state.sort], sign = state.desc ? -1 : 1;
    visible.sort((a, b) => {
      const u = key[a], v = key[b];
      if (u === v) return D.id[a] - D.id[b];
      if (u === null) return 1;
      if (v === null) return -1;
      return sign * (u < v ? -1 : 1);
    });
    $("status").textContent = `${visible.length.toLocaleString("en")} of ${n.toLocaleString("en")} features`;
    renderRows(); drawScatter(); toHash();
  };

  // --- the table: only the rows in view ----------------------------------------------------
  const columns = [{key: "id", label: "feature"}, {key: "class", label: "class"},
    ...D.numeric.map((c) => ({key: c.key, label: c.label, tip: c.tip, numeric: true})),
    ...D.labels.map((c) => ({key: c.key, label: c.label})),
    ...D.langs.map((l, i) => ({key: "w" + i, label: l + " words"}))];
  const fmt = (x) => (x === null || x === undefined ? "\u2013" : Number.isInteger(x) ? String(x) : x.toPrecision(3));
  const value = (c, i) => {
    if (c.key === "class") return D.classes[D.cls[i]];
    if (c.numeric) return fmt(num[c.key][i]);
    if (lab[c.key]) return lab[c.key][i] === null ? "\u2013" : lab[c.key][i];
    return D.words[Number(c.key.slice(1))][i];
  };
  const renderRows = () => {
    const view = $("viewport"), first = Math.floor(view.scrollTop / ROW);
    const last = Math.min(visible.length, first + Math.ceil(view.clientHeight / ROW) + 2);
    const body = $("rows");
    body.textContent = "";
    // spacer rows stand for the rows out of view, so the scrollbar spans them all
    const spacer = (rows) => {
      const tr = document.createElement("tr");
      tr.className = "spacer";
      tr.style.height = `${rows * ROW}px`;
      body.appendChild(tr);
    };
    spacer(first);
    for (let r = first; r < last; r++) {
      const i = visible[r], tr = document.createElement("tr");
      tr.dataset.id = D.id[i];
      for (const c of columns) {
        const td = document.createElement("td");
        if (c.key === "id" && D.page[i]) {
          const a = document.createElement("a");
          a.href = `features/${D.id[i]}.html`;
          a.textContent = D.id[i];
          td.appendChild(a);
        } else td.textContent = c.key === "id" ? String(D.id[i]) : value(c, i);
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    spacer(visible.length - last);
  };
  const header = () => {
    const tr = $("header");
    for (const c of columns) {
      const th = document.createElement("th"), btn = document.createElement("button");
      btn.type = "button"; btn.textContent = c.label;
      if (c.tip) th.title = c.tip;
      if (c.numeric || c.key === "id") btn.addEventListener("click", () => {
        state.desc = state.sort === c.key ? !state.desc : false;
        state.sort = c.key; apply();
      });
      th.appendChild(btn); tr.appendChild(th);
    }
  };

  // --- controls ---------------------------------------------------------------------------
  const controls = () => {
    const box = $("classes");
    for (const c of D.classes) {
      const label = document.createElement("label"), input = document.createElement("input");
      input.type = "checkbox"; input.checked = state.classes.has(c); input.dataset.cls = c;
      input.addEventListener("change", () => {
        if (input.checked) state.classes.add(c); else state.classes.delete(c);
        apply();
      });
      label.appendChild(input); label.append(` ${c}`); box.appendChild(label);
    }
    const search = $("search");
    search.value = state.q;
    search.addEventListener("input", () => { state.q = search.value; apply(); });
    const ranges = $("ranges");
    for (const c of D.numeric) {
      const row = document.createElement("div");
      row.append(c.label + " ");
      for (const b of ["min", "max"]) {
        const input = document.createElement("input");
        input.type = "number"; input.step = "any"; input.placeholder = b; input.dataset.range = b + "." + c.key;
        if (state[b][c.key] !== undefined) input.value = state[b][c.key];
        input.addEventListener("input", () => {
          if (input.value === "") delete state[b][c.key]; else state[b][c.key] = Number(input.value);
          apply();
        });
        row.appendChild(input);
      }
      ranges.appendChild(row);
    }
    for (const axis of ["x", "y"]) {
      const sel = $(axis + "-axis");
      for (const c of D.numeric) {
        const o = document.createElement("option");
        o.value = c.key; o.textContent = c.label; o.selected = state[axis] === c.key; sel.appendChild(o);
      }
      sel.addEventListener("change", () => { state[axis] = sel.value; state.brush = null; apply(); });
    }
    $("viewport").addEventListener("scroll", renderRows);
  };

  // --- the scatter, with a brush ----------------------------------------------------------
  const canvas = $("scatter"), ctx = canvas.getContext("2d");
  const extent = (key) => {
    let lo = Infinity, hi = -Infinity;
    for (const v of num[key]) if (v !== null) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return lo > hi ? [0, 1] : lo === hi ? [lo - 1, hi + 1] : [lo, hi];
  };
  const scale = () => {
    const [x0, x1] = extent(state.x), [y0, y1] = extent(state.y), w = canvas.width - 2 * PAD, h = canvas.height - 2 * PAD;
    return {px: (x) => PAD + ((x - x0) / (x1 - x0)) * w, py: (y) => canvas.height - PAD - ((y - y0) / (y1 - y0)) * h,
      ix: (p) => x0 + ((p - PAD) / w) * (x1 - x0), iy: (p) => y0 + ((canvas.height - PAD - p) / h) * (y1 - y0)};
  };
  const drawScatter = (drag) => {
    const s = scale(), X = num[state.x], Y = num[state.y];
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#888"; ctx.strokeRect(PAD, PAD, canvas.width - 2 * PAD, canvas.height - 2 * PAD);
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
    ctx.fillText(state.x, canvas.width / 2 - 20, canvas.height - 8); ctx.fillText(state.y, 4, 14);
    const [x0, x1] = extent(state.x), [y0, y1] = extent(state.y);
    ctx.fillText(fmt(x0), PAD, canvas.height - PAD + 12); ctx.fillText(fmt(x1), canvas.width - PAD - 24, canvas.height - PAD + 12);
    ctx.fillText(fmt(y0), 2, canvas.height - PAD); ctx.fillText(fmt(y1), 2, PAD + 4);
    for (const i of visible) {
      if (X[i] === null || Y[i] === null) continue;
      const cls = D.classes[D.cls[i]];
      ctx.fillStyle = COLOURS[cls] || (cls.startsWith("lang_specific") ? "#1f77b4" : "#000");
      ctx.fillRect(s.px(X[i]) - 1.5, s.py(Y[i]) - 1.5, 3, 3);
    }
    if (drag) { ctx.strokeStyle = "#000"; ctx.strokeRect(drag[0], drag[1], drag[2] - drag[0], drag[3] - drag[1]); }
  };
  let start = null;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  canvas.addEventListener("mousedown", (e) => { start = at(e); });
  canvas.addEventListener("mousemove", (e) => { if (start) drawScatter([...start, ...at(e)]); });
  canvas.addEventListener("mouseup", (e) => {
    if (!start) return;
    const end = at(e), s = scale();
    if (Math.abs(end[0] - start[0]) > 3 && Math.abs(end[1] - start[1]) > 3) {
      const xs = [s.ix(start[0]), s.ix(end[0])].sort((a, b) => a - b), ys = [s.iy(start[1]), s.iy(end[1])].sort((a, b) => a - b);
      state.brush = {x: state.x, y: state.y, x0: xs[0], x1: xs[1], y0: ys[0], y1: ys[1]};
    }
    start = null; apply();
  });
  canvas.addEventListener("dblclick", () => { state.brush = null; apply(); });

  fromHash(); header(); controls(); apply();
  document.body.dataset.renderMs = String(Math.round(performance.now()));
})();
