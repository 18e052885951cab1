// featcomp report page: draws everything from the JSON embedded in this file (script#featcomp-report).
// No network, no build step; the graph layout is dagre (inlined above this script).
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const MODE_COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac"];
const SAVING_RAMP = [[0, "#edf8e9"], [0.33, "#a1d99b"], [0.66, "#41ab5d"], [1, "#00441b"]];
const GROWS = "#f4a582";  // a site whose coded bytes exceed int8 (tiny maps, where side information dominates)
const FUSE = new Set(["Relu", "Clip", "BatchNormalization", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid",
  "HardSwish", "Tanh", "Elu", "Selu", "Softplus", "Mish", "Gelu", "Identity", "Dropout"]);
const OP_COLOURS = { layer: "#335588", activation: "#702921", pool: "#335533", norm: "#335544", tensor: "#59423b",
  other: "#4a4a4a" };
const OP_KIND = { Conv: "layer", ConvTranspose: "layer", Gemm: "layer", MatMul: "layer",
  MaxPool: "pool", AveragePool: "pool", GlobalAveragePool: "pool", GlobalMaxPool: "pool", LpPool: "pool",
  BatchNormalization: "norm", Add: "tensor", Sum: "tensor", Mul: "tensor", Concat: "tensor", Reshape: "tensor",
  Flatten: "tensor", Squeeze: "tensor", Unsqueeze: "tensor", Transpose: "tensor", Split: "tensor", Slice: "tensor",
  Pad: "tensor", Resize: "tensor", Softmax: "activation" };

// ------------------------------------------------------------------------------------------ data

/** JSON.parse that keeps Python's NaN / Infinity tokens (json.dumps allow_nan) as numbers. */
function parseJson(id) {
  const el = document.getElementById(id);
  if (!el) return null;
  const text = el.textContent.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g,
    (m) => (m[0] === '"' ? m : '"\u0000' + m + '"'));
  return JSON.parse(text, (k, v) => (typeof v === "string" && v[0] === "\u0000" ? Number(v.slice(1)) : v));
}

/** Python's f"{x:.{digits}f}": round half to even on the exact binary value; nan / inf spelled as Python does. */
function fixed(x, digits) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  const exact = Math.abs(x).toFixed(Math.min(100, digits + 40));
  const tail = exact.slice(exact.indexOf(".") + 1 + digits);
  if (/^50*$/.test(tail)) {  // an exact tie: toFixed rounds it up, Python to the even neighbour
    const down = (Math.sign(x) * Number(exact.slice(0, exact.indexOf(".") + 1 + digits))).toFixed(digits);
    const last = Number(down[down.length - 1]);
    if (last % 2 === 0) return down === "-0" ? "-0" : down;
  }
  return x.toFixed(digits);
}
const pct = (x, digits) => (Number.isFinite(x) ? fixed(100 * x, digits) + "%" : fixed(x, digits) + "%");
const kB = (b) => (b >= 1e6 ? fixed(b / 1e6, 2) + " MB" : fixed(b / 1e3, 1) + " kB");

/** One table cell, the same text as featcomp.reporting.render.cell for that column style. */
function cell(site, col) {
  const v = site[col.key];
  switch (col.style) {
    case "shape": return v.join("x");
    case "mode": return v + (v === "dct" ? "/" + (site.details || {}).group : "");
    case "int": return String(v);
    case "pct": return pct(v, 0);
    case "f0": case "f1": case "f2": return fixed(v, Number(col.style[1]));
    default: return String(v);
  }
}

function el(tag, attrs, parent, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function lerpColour(stops, t) {
  t = Math.max(0, Math.min(1, t));
  for (let i = 1; i < stops.length; i++) {
    if (t <= stops[i][0]) {
      const [t0, c0] = stops[i - 1], [t1, c1] = stops[i];
      const f = (t - t0) / (t1 - t0 || 1);
      const a = [1, 3, 5].map((j) => parseInt(c0.slice(j, j + 2), 16));
      const b = [1, 3, 5].map((j) => parseInt(c1.slice(j, j + 2), 16));
      return "rgb(" + a.map((x, j) => Math.round(x + f * (b[j] - x))).join(",") + ")";
    }
  }
  return stops[stops.length - 1][1];
}
/** Saving colour: log2 of the ratio vs int8, 1x (pale) to 8x (dark green); below 1x it costs bytes. */
const savingColour = (ratio) => (ratio < 1 ? GROWS : lerpColour(SAVING_RAMP, Math.log2(ratio) / 3));
const darkText = (ratio) => ratio < 1 || Math.log2(ratio) / 3 < 0.5;

// ------------------------------------------------------------------------------------------ model

/** Every site in network order: measured ones from report.sites, excluded ones (graph.sites only) as no-data. */
function siteList(R) {
  const measured = new Map(R.sites.map((s) => [s.name, s]));
  const consumers = {};
  if (R.graph) R.graph.nodes.forEach((n) => n.inputs.forEach((t) => { consumers[t] = (consumers[t] || 0) + 1; }));
  const order = R.graph && R.graph.sites.length ? R.graph.sites : R.sites;
  const out = order.map((g) => {
    const s = measured.get(g.name);
    if (s) {
      const touches = 1 + s.consumers.length;
      return { name: s.name, site: s, before: s.int8_bytes * touches,
        after: s.coded_bytes_mean * touches + s.side_bytes, modeKey: s.codec + ":" + s.mode };
    }
    const values = g.shape.reduce((a, b) => a * b, 1);
    return { name: g.name, site: null, shape: g.shape, before: values * (1 + (consumers[g.name] || 0)), after: null };
  });
  // a measured site the graph does not list (should not happen) still gets its bar, at the end
  const listed = new Set(out.map((e) => e.name));
  R.sites.filter((s) => !listed.has(s.name)).forEach((s) => out.push(...siteList({ ...R, graph: null, sites: [s] })));
  return out;
}

// ------------------------------------------------------------------------------------------ tooltip

const tip = document.getElementById("tooltip");
function showTip(evt, html) {
  tip.innerHTML = html;
  tip.hidden = false;
  const x = evt.clientX + 14, y = evt.clientY + 14;
  const w = tip.offsetWidth, h = tip.offsetHeight;
  tip.style.left = Math.min(x, window.innerWidth - w - 8) + "px";
  tip.style.top = (y + h > window.innerHeight ? evt.clientY - h - 10 : y) + "px";
}
const hideTip = () => { tip.hidden = true; };
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const row = (k, v) => `<div><span class="k">${esc(k)}</span>${esc(v)}</div>`;

function siteTip(entry) {
  const s = entry.site;
  if (!s) {
    return `<b>${esc(entry.name)}</b>` + row("shape", entry.shape.join("x")) +
      row("stored", "not compressed (excluded): no measurement") + row("int8 traffic", kB(entry.before));
  }
  return `<b>${esc(s.name)}</b>` + row("shape", s.shape.join("x")) +
    row("stored", `${s.codec} · ${cell(s, { key: "mode", style: "mode" })}`) +
    row("traffic", `${kB(entry.before)} → ${kB(entry.after)}`) +
    row("bits/value", fixed(s.bits_per_value, 2)) + row("ratio", `${fixed(s.ratio_vs_int8, 2)}× int8`) +
    row("SQNR", `${fixed(s.sqnr_db, 1)} dB`) + row("zeros", pct(s.zero_fraction, 0));
}

// ------------------------------------------------------------------------------------------ header + summary

function header(R) {
  document.getElementById("model-name").textContent = R.model;
  const meta = R.meta || {};
  document.getElementById("meta").textContent = [R.schema, meta.featcomp ? "featcomp " + meta.featcomp : null,
    "batch 1"].filter(Boolean).join(" · ");
}

function summary(R, sites) {
  const t = R.totals, acc = R.accuracy || {}, meta = R.meta || {};
  const box = document.getElementById("summary");
  const tile = (label, value, sub, key, small) => {
    const d = el("div", { class: "tile" }, box);
    if (key) d.dataset.key = key;
    el("div", { class: "label" }, d, label);
    el("div", { class: "value" + (small ? " small" : "") }, d, value);
    if (sub) el("div", { class: "sub", title: sub }, d, sub);
  };
  const coded = t.coded_bytes + t.side_bytes;
  tile("vs int8", fixed(t.ratio_vs_int8, 2) + "×", `${fixed(t.int8_bytes / 1e6, 3)} → ${fixed(coded / 1e6, 3)} MB feature maps`,
    "ratio_vs_int8");
  tile("vs fp32", fixed(t.ratio_vs_fp32, 2) + "×", `${fixed(t.fp32_bytes / 1e6, 3)} MB fp32`, "ratio_vs_fp32");
  tile("bits / value", fixed(t.bits_per_value, 2), `payload ${fixed(t.payload_bits_per_value, 2)} · entropy ` +
    `${fixed(t.entropy_bits_per_value, 2)} · side ${kB(t.side_bytes)}`, "bits_per_value");
  tile("traffic saved", pct(t.traffic_saving_vs_int8, 1), `${fixed(t.total_traffic_int8 / 1e6, 2)} → ` +
    `${fixed(t.total_traffic_compressed / 1e6, 2)} MB / inference vs int8`, "traffic_saving_vs_int8");
  if ("top1" in acc) tile("top-1", pct(acc.top1, 1), "top1_reference" in acc ?
    `uncompressed ${pct(acc.top1_reference, 1)}` : "", "top1");
  if ("top1_agreement" in acc) tile("top-1 agreement", pct(acc.top1_agreement, 1),
    `with the original, on ${acc.samples !== undefined ? acc.samples : R.samples} inputs`, "top1_agreement");
  const excluded = sites.filter((e) => !e.site).length;
  tile("codec", R.codec, `${t.sites} sites compressed` + (excluded ? `, ${excluded} not` : ""), null, true);
  tile("data", `${R.samples} samples`, meta.data ? String(meta.data) : "measured per inference", null, true);
}

// ------------------------------------------------------------------------------------------ bars

function legend(id, items) {
  const box = document.getElementById(id);
  for (const [colour, label, extra] of items) {
    const span = el("span", {}, box);
    const sw = el("i", { style: `background:${colour}` }, span);
    if (extra) sw.className = extra;
    span.appendChild(document.createTextNode(label));
  }
}

function modeColours(R) {
  const keys = [...new Set(R.sites.map((s) => s.codec + ":" + s.mode))];
  return new Map(keys.map((k, i) => [k, MODE_COLOURS[i % MODE_COLOURS.length]]));
}

function bars(R, sites, colours, select) {
  const box = document.getElementById("bars");
  const codecs = new Set(R.sites.map((s) => s.codec));
  legend("bars-legend", [["var(--before)", "int8 before"],
    ...[...colours].map(([k, c]) => [c, (codecs.size > 1 ? k.replace(":", " ") : k.split(":")[1]) + " after"]),
    ...(sites.some((e) => !e.site) ? [["", "not compressed: no data", "nodata-swatch"]] : [])]);
  const W = Math.max(640, box.clientWidth), H = 300, m = { l: 52, r: 8, t: 10, b: 96 };
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" }, box);
  const defs = el("svg:defs", {}, svg);
  const hatch = el("svg:pattern", { id: "hatch", width: 5, height: 5, patternUnits: "userSpaceOnUse",
    patternTransform: "rotate(45)" }, defs);
  el("svg:rect", { width: 5, height: 5, fill: "#fff" }, hatch);
  el("svg:line", { x1: 0, y1: 0, x2: 0, y2: 5, stroke: "#98a2b3", "stroke-width": 2 }, hatch);
  const top = Math.max(1, ...sites.map((e) => Math.max(e.before, e.after || 0)));
  const step = niceStep(top / 5);
  const ymax = Math.ceil(top / step) * step;
  const y = (v) => m.t + (H - m.t - m.b) * (1 - v / ymax);
  const axis = el("svg:g", { class: "axis" }, svg);
  for (let v = 0; v <= ymax + 1e-9; v += step) {
    el("svg:line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), class: "gridline" }, axis);
    el("svg:text", { x: m.l - 6, y: y(v) + 3.5, "text-anchor": "end" }, axis, v >= 1e6 ? fixed(v / 1e6, 1) + " MB" :
      fixed(v / 1e3, 0) + " kB");
  }
  const slot = (W - m.l - m.r) / Math.max(1, sites.length);
  sites.forEach((e, i) => {
    const x = m.l + i * slot;
    const g = el("svg:g", { class: "bar-slot", "data-site": e.name }, svg);
    el("svg:rect", { class: "hover-band", x, y: m.t, width: slot, height: H - m.t - m.b }, g);
    const bw = Math.min(56, Math.max(2, slot * 0.78)), aw = Math.min(32, Math.max(1.5, slot * 0.46));
    if (e.site) {
      el("svg:rect", { class: "bar-before", x: x + (slot - bw) / 2, y: y(e.before), width: bw,
        height: y(0) - y(e.before), fill: "var(--before)" }, g);
      el("svg:rect", { class: "bar-after", x: x + (slot - aw) / 2, y: y(e.after), width: aw,
        height: Math.max(0.5, y(0) - y(e.after)), fill: colours.get(e.modeKey), "data-site": e.name }, g);
    } else {
      el("svg:rect", { class: "bar-nodata", x: x + (slot - bw) / 2, y: y(e.before), width: bw,
        height: y(0) - y(e.before), fill: "url(#hatch)", stroke: "#98a2b3", "stroke-dasharray": "3 2",
        "data-site": e.name }, g);
    }
    if (slot >= 9) {
      const label = e.name.length > 22 ? "…" + e.name.slice(-21) : e.name;
      el("svg:text", { x: x + slot / 2 + 3, y: H - m.b + 8, transform: `rotate(-55 ${x + slot / 2 + 3} ${H - m.b + 8})`,
        "text-anchor": "end", class: "axis-label", fill: e.site ? "#667085" : "#98a2b3",
        "font-size": Math.min(10.5, slot * 0.95) }, g, label);
    }
    g.addEventListener("mousemove", (evt) => showTip(evt, siteTip(e)));
    g.addEventListener("mouseleave", hideTip);
    g.addEventListener("click", () => select(e.name, "bars"));
  });
  el("svg:line", { x1: m.l, x2: W - m.r, y1: y(0), y2: y(0), stroke: "#98a2b3" }, svg);
}

function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  for (const f of [1, 2, 2.5, 5, 10]) if (raw <= f * p) return f * p;
  return 10 * p;
}

// ------------------------------------------------------------------------------------------ table

function table(R, sites, columns, colours, select) {
  const tableEl = document.getElementById("sites-table");
  const thead = el("thead", {}, tableEl), tbody = el("tbody", {}, tableEl);
  const hr = el("tr", {}, thead);
  const left = new Set(["text", "shape", "mode"]);
  const rows = sites.map((e, i) => {
    const tr = el("tr", { id: "row-" + i, "data-site": e.name, class: e.site ? "" : "excluded" });
    columns.forEach((c, j) => {
      const td = el("td", { class: (left.has(c.style) ? "left" : "") + (c.narrow ? "" : " wide-only") }, tr);
      if (e.site) {
        if (j === 0) el("span", { class: "swatch", style: `background:${colours.get(e.modeKey)}` }, td);
        td.appendChild(document.createTextNode(cell(e.site, c)));
      } else {
        td.textContent = c.key === "name" ? e.name : c.key === "shape" ? e.shape.join("x") :
          c.key === "mode" ? "not compressed" : "—";
      }
    });
    tr.addEventListener("click", () => select(e.name, "table"));
    return { tr, e, index: i };
  });
  rows.forEach((r) => tbody.appendChild(r.tr));
  const toggle = document.getElementById("wide-toggle");
  const apply = () => tableEl.classList.toggle("narrow", !toggle.checked);
  toggle.addEventListener("change", apply);
  apply();
  let sortKey = null, desc = false;
  columns.forEach((c) => {
    const th = el("th", { class: (left.has(c.style) ? "left" : "") + (c.narrow ? "" : " wide-only"),
      title: "sort by " + c.name }, hr, c.name);
    th.addEventListener("click", () => {
      desc = sortKey === c.key ? !desc : !left.has(c.style);
      sortKey = c.key;
      hr.querySelectorAll("th").forEach((h) => h.classList.remove("sorted", "desc"));
      th.classList.add("sorted");
      if (desc) th.classList.add("desc");
      const val = (r) => (r.e.site ? (c.style === "shape" ? r.e.site.values : r.e.site[c.key]) : null);
      rows.sort((a, b) => {
        const va = val(a), vb = val(b);
        if (va === null || vb === null) return (va === null) - (vb === null) || a.index - b.index;
        const d = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
        return (desc ? -d : d) || a.index - b.index;
      });
      rows.forEach((r) => tbody.appendChild(r.tr));
    });
  });
}

// ------------------------------------------------------------------------------------------ graph

function graph(R, sites, select) {
  const box = document.getElementById("graph");
  const G = R.graph;
  if (!G || typeof dagre === "undefined") {
    el("p", { class: "hint", style: "padding:10px 14px" }, box, "This report has no graph (written by an older featcomp).");
    return;
  }
  const ramp = el("span", {}, document.getElementById("graph-legend"));
  el("span", { class: "ramp", style: `background:linear-gradient(90deg,${SAVING_RAMP.map((s) => s[1]).join(",")})` }, ramp);
  ramp.appendChild(document.createTextNode(" 1× → 8× smaller than int8"));
  legend("graph-legend", [[GROWS, "larger (side info)"]]);
  if (sites.some((e) => !e.site)) legend("graph-legend", [["", "not compressed", "nodata-swatch"]]);

  const entries = new Map(sites.map((e) => [e.name, e]));
  const producer = {}, consumers = {};
  G.nodes.forEach((n, i) => {
    n.outputs.forEach((t) => { producer[t] = i; });
    n.inputs.forEach((t) => { (consumers[t] = consumers[t] || []).push(i); });
  });
  // fuse single-input epilogue ops into the node before them, as a deployment does (and Netron shows)
  const parent = G.nodes.map((_, i) => i);
  const root = (i) => (parent[i] === i ? i : (parent[i] = root(parent[i])));
  G.nodes.forEach((n, j) => {
    if (!FUSE.has(n.op) || n.inputs.length !== 1) return;
    const t = n.inputs[0], p = producer[t];
    if (p === undefined || (consumers[t] || []).length !== 1 || entries.has(t)) return;
    parent[j] = root(p);
  });
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "TB", nodesep: 14, ranksep: 14, edgesep: 8, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  const members = {};
  G.nodes.forEach((n, i) => { (members[root(i)] = members[root(i)] || []).push(n); });
  for (const [r, list] of Object.entries(members)) {
    g.setNode("n" + r, { kind: "layer", list, width: 128, height: 34 });
  }
  const edge = (a, b) => { if (a !== b && !g.hasEdge(a, b)) g.setEdge(a, b); };
  const nodeOf = (t) => (producer[t] !== undefined ? "n" + root(producer[t]) : null);
  G.inputs.forEach((t) => g.setNode("in:" + t, { kind: "io", label: t, width: 96, height: 22 }));
  const tensors = new Set([...Object.keys(producer), ...G.inputs]);
  for (const t of tensors) {
    const from = producer[t] !== undefined ? nodeOf(t) : "in:" + t;
    if (!g.hasNode(from)) continue;
    const to = [...new Set((consumers[t] || []).map((c) => "n" + root(c)))].filter((c) => c !== from);
    if (entries.has(t)) {
      g.setNode("s:" + t, { kind: "site", entry: entries.get(t), width: 64, height: 18 });
      edge(from, "s:" + t);
      to.forEach((c) => edge("s:" + t, c));
    } else {
      to.forEach((c) => edge(from, c));
    }
  }
  G.outputs.forEach((t) => {
    g.setNode("out:" + t, { kind: "io", label: t, width: 96, height: 22 });
    if (nodeOf(t)) edge(nodeOf(t), "out:" + t);
  });
  dagre.layout(g);
  const W = g.graph().width, H = g.graph().height;
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "graph-svg" }, box);
  const defs = el("svg:defs", {}, svg);
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6,
    markerHeight: 6, orient: "auto-start-reverse" }, defs);
  el("svg:path", { d: "M0,1 L10,5 L0,9 z", fill: "#98a2b3" }, marker);
  const edges = el("svg:g", {}, svg);
  g.edges().forEach((ed) => {
    el("svg:path", { class: "edge", d: basis(g.edge(ed).points), "marker-end": "url(#arrow)" }, edges);
  });
  g.nodes().forEach((id) => {
    const n = g.node(id);
    const x = n.x - n.width / 2, y = n.y - n.height / 2;
    if (n.kind === "layer") {
      const ops = n.list.map((m) => m.op);
      const head = OP_COLOURS[OP_KIND[ops[0]] || (FUSE.has(ops[0]) ? "activation" : "other")];
      const grp = el("svg:g", { class: "node layer" }, svg);
      el("svg:rect", { class: "body", x, y, width: n.width, height: n.height, rx: 4 }, grp);
      el("svg:path", { d: `M${x},${y + 16} v-12 a4,4 0 0 1 4,-4 h${n.width - 8} a4,4 0 0 1 4,4 v12 z`, fill: head }, grp);
      el("svg:text", { x: x + 6, y: y + 11.5 }, grp, ops.join(" · "));
      const name = n.list[n.list.length - 1].name;
      el("svg:text", { x: x + 6, y: y + 28, class: "sub" }, grp, name.length > 24 ? "…" + name.slice(-23) : name);
      grp.addEventListener("mousemove", (evt) => showTip(evt, `<b>${esc(n.list.map((m) => m.name).join(" + "))}</b>` +
        row("ops", ops.join(" → "))));
      grp.addEventListener("mouseleave", hideTip);
    } else if (n.kind === "io") {
      const grp = el("svg:g", { class: "node io" }, svg);
      el("svg:rect", { x, y, width: n.width, height: n.height, rx: 11 }, grp);
      el("svg:text", { x: n.x, y: n.y + 3.5, "text-anchor": "middle" }, grp, n.label.length > 14 ? n.label.slice(0, 13) + "…" : n.label);
    } else {
      const e = n.entry, s = e.site;
      const grp = el("svg:g", { class: "node site" + (s ? "" : " excluded"), "data-site": e.name }, svg);
      el("svg:rect", { x, y, width: n.width, height: n.height, rx: 9,
        fill: s ? savingColour(s.ratio_vs_int8) : "url(#hatch-graph)" }, grp);
      el("svg:text", { x: n.x, y: n.y + 3.5, "text-anchor": "middle",
        fill: !s ? "#667085" : darkText(s.ratio_vs_int8) ? "#1d2330" : "#fff" }, grp,
        s ? fixed(s.ratio_vs_int8, 2) + "×" : "no data");
      grp.addEventListener("mousemove", (evt) => showTip(evt, siteTip(e)));
      grp.addEventListener("mouseleave", hideTip);
      grp.addEventListener("click", () => select(e.name, "graph"));
    }
  });
  const hatch = el("svg:pattern", { id: "hatch-graph", width: 5, height: 5, patternUnits: "userSpaceOnUse",
    patternTransform: "rotate(45)" }, defs);
  el("svg:rect", { width: 5, height: 5, fill: "#fff" }, hatch);
  el("svg:line", { x1: 0, y1: 0, x2: 0, y2: 5, stroke: "#c0c6d0", "stroke-width": 2 }, hatch);
}

/** d3's curveBasis through dagre's edge points (the smooth edges Netron draws). */
function basis(points) {
  let d = "", state = 0, x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  const bez = (x, y) => {
    d += `C${(2 * x0 + x1) / 3},${(2 * y0 + y1) / 3} ${(x0 + 2 * x1) / 3},${(y0 + 2 * y1) / 3} ` +
      `${(x0 + 4 * x1 + x) / 6},${(y0 + 4 * y1 + y) / 6}`;
  };
  for (const { x, y } of points) {
    if (state === 0) { d += `M${x},${y}`; state = 1; }
    else if (state === 1) { state = 2; }
    else { if (state === 2) { d += `L${(5 * x0 + x1) / 6},${(5 * y0 + y1) / 6}`; state = 3; } bez(x, y); }
    x0 = x1; x1 = x; y0 = y1; y1 = y;
  }
  if (state === 3) bez(x1, y1);
  if (state >= 2) d += `L${x1},${y1}`;
  return d;
}

// ------------------------------------------------------------------------------------------ curve + input

function curve(R, S) {
  if (!S || !S.points || !S.points.length) return;
  document.getElementById("curve-card").hidden = false;
  document.getElementById("curve-hint").textContent =
    `${S.model}: ${S.images} labelled images, batch 1; bits/value are real coded bytes + side information`;
  const box = document.getElementById("curve");
  const codecs = [...new Set(S.points.map((p) => p.codec))];
  const ref = S.points[0].top1_reference;
  for (const [key, label] of [["top1", "top-1"], ["agreement", "top-1 agreement with uncompressed"]]) {
    const W = 460, H = 250, m = { l: 44, r: 12, t: 22, b: 34 };
    const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, "data-curve": key }, box);
    const xs = S.points.map((p) => p.bits_per_value).concat([R.totals.bits_per_value]);
    const ys = S.points.map((p) => 100 * p[key]).concat(key === "top1" ? [100 * ref] : [100]);
    const x0 = 0, x1 = Math.max(...xs) * 1.08;
    const y0 = Math.max(0, Math.floor(Math.min(...ys) / 5) * 5 - 5), y1 = Math.min(100, Math.ceil(Math.max(...ys) / 5) * 5 + 2);
    const X = (v) => m.l + (W - m.l - m.r) * (v - x0) / (x1 - x0), Y = (v) => m.t + (H - m.t - m.b) * (1 - (v - y0) / (y1 - y0));
    const axis = el("svg:g", { class: "axis" }, svg);
    for (let v = 0; v <= x1; v += niceStep(x1 / 6)) {
      el("svg:line", { x1: X(v), x2: X(v), y1: m.t, y2: H - m.b, class: "gridline" }, axis);
      el("svg:text", { x: X(v), y: H - m.b + 13, "text-anchor": "middle" }, axis, fixed(v, v % 1 ? 1 : 0));
    }
    for (let v = y0; v <= y1; v += niceStep((y1 - y0) / 5)) {
      el("svg:line", { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v), class: "gridline" }, axis);
      el("svg:text", { x: m.l - 5, y: Y(v) + 3.5, "text-anchor": "end" }, axis, fixed(v, v % 1 ? 1 : 0) + "%");
    }
    el("svg:text", { x: (m.l + W - m.r) / 2, y: H - 4, "text-anchor": "middle" }, axis, "bits per value");
    el("svg:text", { x: m.l, y: 13, "font-weight": 600, "font-size": 11.5, fill: "#344054" }, svg, label);
    if (key === "top1") {
      el("svg:line", { x1: m.l, x2: W - m.r, y1: Y(100 * ref), y2: Y(100 * ref), stroke: "#667085",
        "stroke-dasharray": "4 3" }, svg);
      el("svg:text", { x: W - m.r - 2, y: Y(100 * ref) - 4, "text-anchor": "end", fill: "#667085", "font-size": 10.5 },
        svg, `uncompressed ${fixed(100 * ref, 1)}%`);
    }
    const here = X(R.totals.bits_per_value);
    el("svg:line", { x1: here, x2: here, y1: m.t, y2: H - m.b, stroke: "#2563eb", "stroke-dasharray": "2 3" }, svg);
    const flip = here > W - m.r - 70;  // label on the left of the line near the right edge
    el("svg:text", { x: flip ? here - 4 : here + 4, y: m.t + 10, fill: "#2563eb", "font-size": 10.5,
      "text-anchor": flip ? "end" : "start" }, svg, "this model");
    codecs.forEach((c, i) => {
      const pts = S.points.filter((p) => p.codec === c).sort((a, b) => a.bits_per_value - b.bits_per_value);
      const colour = MODE_COLOURS[i % MODE_COLOURS.length];
      el("svg:path", { class: "line", stroke: colour,
        d: pts.map((p, j) => `${j ? "L" : "M"}${X(p.bits_per_value)},${Y(100 * p[key])}`).join("") }, svg);
      pts.forEach((p) => {
        const dot = el("svg:circle", { cx: X(p.bits_per_value), cy: Y(100 * p[key]), r: 3.5, fill: colour,
          stroke: "#fff", "stroke-width": 1 }, svg);
        dot.addEventListener("mousemove", (evt) => showTip(evt, `<b>${esc(c)}</b>` +
          row("output SNR", fixed(p.output_snr_db, 1) + " dB") + row("bits/value", fixed(p.bits_per_value, 2)) +
          row("ratio", fixed(p.ratio_vs_int8, 2) + "× int8") + row("top-1", pct(p.top1, 1)) +
          row("agreement", pct(p.agreement, 1))));
        dot.addEventListener("mouseleave", hideTip);
      });
      el("svg:text", { x: W - m.r - 2, y: H - m.b - 8 - 14 * i, "text-anchor": "end", fill: colour,
        "font-size": 11, "font-weight": 600 }, svg, c);
    });
  }
}

function inputBytes(R) {
  const j = R.totals.input_jpeg;
  if (!j) return;
  document.getElementById("input-card").hidden = false;
  document.getElementById("input-hint").textContent =
    `${j.width}x${j.height}, real file bytes, mean of ${j.images} images`;
  const box = document.getElementById("input-bytes");
  const items = [["raw 8-bit", j.raw, "#98a2b3"], [`standard JPEG q${j.quality}`, j.standard, "#4e79a7"],
    ["learned JPEG", j.learned, "#41ab5d"]];
  const top = Math.max(...items.map((it) => it[1]));
  for (const [label, bytes, colour] of items) {
    const r = el("div", { class: "hbar-row", "data-key": label }, box);
    el("div", {}, r, label);
    const track = el("div", { class: "track" }, r);
    el("div", { class: "fill", style: `width:${(100 * bytes / top).toFixed(2)}%;background:${colour}` }, track);
    el("div", { class: "num" }, r, `${fixed(bytes / 1e3, 1)} kB`);
  }
}

/** The "deployed" section a bundle adds (featcomp report --bundle): drawn generically, only the keys it has. */
function deployed(R) {
  const D = R.deployed;
  if (!D || typeof D !== "object") return;
  document.getElementById("deployed-card").hidden = false;
  const box = document.getElementById("deployed");
  const show = (key, v) => {
    if (typeof v === "number") {
      if (/bytes/.test(key)) return kB(v);
      return Number.isInteger(v) ? String(v) : fixed(v, Math.abs(v) >= 100 ? 1 : 3);
    }
    return v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v);
  };
  const label = (key) => key.replace(/_/g, " ");
  const scalars = Object.entries(D).filter(([, v]) => v === null || typeof v !== "object");
  if (scalars.length) {
    const dl = el("div", { class: "kv" }, box);
    for (const [k, v] of scalars) {
      const item = el("div", { "data-key": k }, dl);
      el("span", { class: "k" }, item, label(k));
      el("b", {}, item, show(k, v));
    }
  }
  for (const [k, v] of Object.entries(D)) {
    if (!v || typeof v !== "object") continue;
    const rows = Array.isArray(v) ? v.filter((r) => r && typeof r === "object") :
      Object.entries(v).map(([name, r]) => (r && typeof r === "object" ? { name, ...r } : { name, value: r }));
    if (!rows.length) continue;
    el("h3", {}, box, label(k));
    const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    const t = el("table", { class: "deployed-table", "data-key": k }, el("div", { class: "table-scroll" }, box));
    const hr = el("tr", {}, el("thead", {}, t));
    cols.forEach((c) => el("th", { class: typeof rows[0][c] === "number" ? "" : "left" }, hr, label(c)));
    const body = el("tbody", {}, t);
    rows.forEach((r) => {
      const tr = el("tr", {}, body);
      cols.forEach((c) => el("td", { class: typeof r[c] === "number" ? "" : "left" }, tr, c in r ? show(c, r[c]) : "—"));
    });
  }
}

// ------------------------------------------------------------------------------------------ main

function main() {
  const R = parseJson("featcomp-report");
  const columns = parseJson("featcomp-columns");
  const S = parseJson("featcomp-sweep");
  const sites = siteList(R);
  const colours = modeColours(R);
  header(R);
  summary(R, sites);
  const select = (name, from) => {
    document.querySelectorAll(".selected").forEach((n) => n.classList.remove("selected"));
    document.querySelectorAll(`[data-site="${CSS.escape(name)}"]`).forEach((n) => {
      n.classList.add("selected");
      if (n.tagName === "TR" && from !== "table") {
        n.classList.remove("flash");
        void n.getBoundingClientRect();
        n.classList.add("flash");
        n.scrollIntoView({ block: "center", behavior: "smooth" });
      }
      if (n.classList.contains("site") && from !== "graph") {  // scroll the graph panel only, not the page
        const box = document.getElementById("graph"), r = n.getBoundingClientRect(), b = box.getBoundingClientRect();
        box.scrollTop += r.top - b.top - box.clientHeight / 2;
        box.scrollLeft += r.left - b.left - box.clientWidth / 2;
      }
    });
  };
  bars(R, sites, colours, select);
  curve(R, S);
  inputBytes(R);
  deployed(R);
  table(R, sites, columns, colours, select);
  graph(R, sites, select);
  document.getElementById("footer").textContent = `Drawn from the ${R.schema} JSON embedded in this page ` +
    `(script#featcomp-report). Traffic: each site written once and read by each consumer, batch 1; ` +
    `coded bytes are real bitstream bytes, side information counted once per inference. Graph layout: dagre.`;
  document.body.dataset.rendered = "ok";
}

try {
  main();
} catch (err) {
  const box = el("div", { class: "error" }, null, "featcomp report: this page could not be drawn: " + err.message);
  document.body.prepend(box);
  console.error(err);
}
