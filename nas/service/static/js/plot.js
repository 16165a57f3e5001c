/* The scatter of a search on a canvas: every candidate (GET /points, column by column, kept
   per metric so an axis change redraws without a request) with the front (GET /pareto) on top,
   round ticks with the CLI's units, a dashed line at each limit field's value, a colour scale
   for a third metric, and the candidates beyond a tightened limit field dimmed and counted.
   A candidate whose quality was measured on the supernet (GET /points `measured`) is a filled
   dot; one whose quality is predicted, a hollow ring.
   One canvas holds the points (redrawn when what they show changes); an overlay canvas above
   it holds the hover ring, the keyboard cursor and the picked point (plotpick.js), so the
   page keeps a few dozen elements at 100,000 candidates. */

import { api } from "./api.js";
import { fill, h, showError, clearError } from "./dom.js";
import { fmtMetric, fmtTick, metricTitle } from "./format.js";
import { attachPointer, drawOverlay, hideTooltip, hitGrid } from "./plotpick.js";

export { hideTooltip };

const HEIGHT = 420;
const PAD = { left: 74, right: 18, top: 16, bottom: 46 };
const COLOURS = { infeasible: "#c3c8d0", dimmed: "#cfdcf3", feasible: "#3b82f6", front: "#dc2626", limit: "#d97706" };
// viridis, sampled: a colour scale readable in grey and by most colour-blind readers
const RAMP = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
const BINS = 24;
const binColours = Array.from({ length: BINS }, (_, b) => rampColour(b / (BINS - 1)));

function rampColour(t) {
  const at = t * (RAMP.length - 1), i = Math.min(RAMP.length - 2, Math.floor(at)), f = at - i;
  const rgb = (hex) => [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));
  const [a, b] = [rgb(RAMP[i]), rgb(RAMP[i + 1])];
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(",")})`;
}

/** About `count` round tick values covering [lo, hi], and their step. */
export function ticks(lo, hi, count = 6) {
  const step0 = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return { values: out, step };
}

// ----- the data: columns by metric, the front as a mask --------------------------------------

function plotState(s) {
  s.plot ||= { n: 0, trial: null, feasible: null, measured: null, index: new Map(), columns: new Map(), colour: undefined, paints: 0 };
  return s.plot;
}

/** Fetch the columns of `metrics` the page lacks (all of them when `fresh`: new candidates
    were stored). A response with another number of candidates than those kept replaces
    them all, so columns never mix two moments of a running search. */
async function ensureColumns(s, metrics, fresh = false) {
  const p = plotState(s);
  if (fresh) p.columns.clear();
  const missing = [...new Set(metrics.filter((m) => m && !p.columns.has(m)))];
  if (!missing.length) return false;
  const query = new URLSearchParams(missing.map((m) => ["metric", m]));
  const points = await api(`/searches/${s.id}/points?${query}`);
  if (points.trial.length !== p.n || !p.trial) {
    p.n = points.trial.length;
    p.trial = Int32Array.from(points.trial);
    p.feasible = Uint8Array.from(points.feasible, Number);
    p.index = new Map(points.trial.map((t, i) => [t, i]));
    p.columns.clear();
    p.cursor = -1; // an index into the old candidates
  }
  // every answer has them: a verification marks the front measured without a new candidate
  p.measured = new Uint8Array(p.n);
  for (const i of points.measured || []) p.measured[i] = 1;
  for (const m of missing) {
    const values = points.metrics[m] || [];
    p.columns.set(m, Float64Array.from(values, (v) => (v === null ? NaN : v)));
  }
  return true;
}

/** What search.js calls when the candidates changed (`fresh`) or an axis did: load the
    columns shown, draw, then load the limit fields' columns (for dimming and counts). */
export async function loadPoints(s, fresh = false) {
  if (!s.x || !s.y) return;
  const p = plotState(s);
  const seq = (p.seq = (p.seq || 0) + 1); // a newer request wins: quick changes cannot mix
  try {
    // afresh, the two axes first: the scatter shows sooner, its colours follow
    await ensureColumns(s, fresh ? [s.x, s.y] : [s.x, s.y, colourMetric(s)], fresh);
    if (seq !== p.seq || s.view.dead) return;
    clearError(`points-${s.id}`);
    drawPlot(s);
    const more = [colourMetric(s), ...s.limits.map((l) => l.metric), ...(s.info.objectives || []).map((o) => o.metric)];
    if ((await ensureColumns(s, more)) && seq === p.seq && !s.view.dead) drawPlot(s); // counts with every limit
  } catch (err) { showError(err, `points-${s.id}`); }
}

/** The colour metric: the select's choice, else the third objective when there is one. */
function colourMetric(s) {
  const p = plotState(s);
  if (p.colour === undefined) p.colour = (s.info?.objectives || [])[2]?.metric || "";
  return p.colour;
}

/** The limit fields' values now: [{metric, value}] for each field holding a number. */
function limitValues(s) {
  return [...(s.dom.filters?.querySelectorAll("input[data-metric]") || [])]
    .filter((input) => input.value.trim() !== "" && Number.isFinite(Number(input.value)))
    .map((input) => ({ metric: input.dataset.metric, value: Number(input.value) }));
}

/** The overlay again (the picked candidate's row arrived, with its bounds): not the points. */
export function redrawOverlay(s) {
  const p = plotState(s);
  if (p.view && p.dom) drawOverlay(s, p);
}

/** Called on each change of a limit field: dim and count at once (the front follows when the
    server answers). */
export async function limitsChanged(s) {
  try {
    await ensureColumns(s, s.limits.map((l) => l.metric)); // loaded already, unless the first paint was just now
  } catch (err) { return showError(err, `points-${s.id}`); }
  drawPlot(s);
}

// ----- drawing -------------------------------------------------------------------------------

/** Each candidate's layer: 0 infeasible, 1 dimmed (feasible, beyond a tightened limit field),
    2 feasible, 3 front; and the counts the page shows. */
function classify(s, p) {
  const layer = new Uint8Array(p.n);
  const limits = limitValues(s).filter((l) => p.columns.has(l.metric))
    .map((l) => ({ column: p.columns.get(l.metric), value: l.value }));
  for (let i = 0; i < p.n; i++) {
    if (!p.feasible[i]) continue;
    let within = 1;
    for (const l of limits) if (!(l.column[i] <= l.value)) { within = 0; break; }
    layer[i] = within ? 2 : 1;
  }
  let front = 0;
  for (const row of s.front?.front || []) {
    const i = p.index.get(row.candidate);
    if (i !== undefined) { layer[i] = 3; front++; }
  }
  return { layer, front };
}

function extent(column, n) {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) { const v = column[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!Number.isFinite(lo)) return [0, 1];
  if (lo === hi) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

/** The plot's DOM, built once per search: the two canvases, the legend, the cursor's text. */
function plotDom(s) {
  const p = plotState(s);
  if (p.dom && s.dom.plot.contains(p.dom.box)) return p.dom;
  const base = h("canvas", { class: "plot-canvas" }); // grid, ticks and titles
  const dotsCanvas = h("canvas", { class: "plot-canvas" }); // the points and limit lines
  const overlay = h("canvas", {
    class: "plot-overlay", tabindex: 0, role: "img",
    "aria-describedby": `plot-cursor-${s.id}`,
  });
  const box = h("div", { class: "plot-stage" }, base, dotsCanvas, overlay);
  const legend = h("div", { class: "plot-legend" });
  const cursorText = h("p", { class: "plot-cursor-text muted small", id: `plot-cursor-${s.id}`, "aria-live": "polite" },
    "Focus the plot: arrow keys move between points (Shift: front only), Enter opens one.");
  p.dom = { box, base, dots: dotsCanvas, overlay, legend, cursorText };
  fill(s.dom.plot, box, legend, cursorText);
  attachPointer(s, p);
  new ResizeObserver(() => { if (p.width !== box.clientWidth) drawPlot(s); }).observe(box);
  return p.dom;
}

export function drawPlot(s) {
  const p = plotState(s);
  if (!p.trial || !p.columns.has(s.x) || !p.columns.has(s.y)) return;
  if (!p.n) {
    p.dom = null;
    fill(s.dom.plot, h("p", { class: "plot-empty muted" }, s.info.candidates
      ? "No candidate has both values" : "No candidates yet: the first generation is being evaluated"));
    fill(s.dom.count, "");
    return;
  }
  const dom = plotDom(s);
  const xs = p.columns.get(s.x), ys = p.columns.get(s.y);
  const cs = p.columns.get(colourMetric(s)) || null, colour = cs ? colourMetric(s) : "";
  const { layer, front } = classify(s, p);
  const width = dom.box.clientWidth || 760;
  p.width = width;
  const ratio = window.devicePixelRatio || 1;
  for (const canvas of [dom.base, dom.dots, dom.overlay]) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(HEIGHT * ratio);
    canvas.style.height = `${HEIGHT}px`;
  }
  const [x0, x1] = extent(xs, p.n), [y0, y1] = extent(ys, p.n);
  const [c0, c1] = cs ? extent(cs, p.n) : [0, 1];
  const sx = (v) => PAD.left + ((v - x0) / (x1 - x0)) * (width - PAD.left - PAD.right);
  const sy = (v) => HEIGHT - PAD.bottom - ((v - y0) / (y1 - y0)) * (HEIGHT - PAD.top - PAD.bottom);
  const ctx = dom.base.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, HEIGHT);
  drawAxes(s, ctx, { width, x0, x1, y0, y1, sx, sy });
  const points = dom.dots.getContext("2d");
  // screen positions, kept for hit-testing and the keyboard cursor; NaN: not drawn
  const px = new Float32Array(p.n), py = new Float32Array(p.n);
  const bin = new Uint8Array(p.n);
  let drawn = 0, within = 0, feasible = 0, measuredCount = 0;
  for (let i = 0; i < p.n; i++) {
    const x = xs[i], y = ys[i];
    measuredCount += p.measured[i];
    if (layer[i] >= 1) feasible++;
    if (layer[i] >= 2) within++;
    if (Number.isNaN(x) || Number.isNaN(y)) { px[i] = py[i] = NaN; continue; }
    px[i] = sx(x); py[i] = sy(y); drawn++;
    if (cs) bin[i] = Number.isNaN(cs[i]) ? 0 : Math.min(BINS - 1, Math.floor(((cs[i] - c0) / (c1 - c0)) * BINS));
  }
  // grey under pale under blue (or the colour scale): pixels stamped into one image, as 100,000
  // arcs take most of a second to fill; then the front on top as arcs, with their outline.
  // Measured quality: a filled dot; predicted: a hollow ring (fewer pixels to stamp).
  const image = points.createImageData(dom.dots.width, dom.dots.height);
  const stamp = stamper(image, ratio);
  const cloud = [packed(COLOURS.infeasible), packed(COLOURS.dimmed), packed(COLOURS.feasible)];
  const binPacked = binColours.map(packed);
  const measured = p.measured;
  for (let l = 0; l <= 2; l++) {
    const [disc, ring] = l === 2 ? [DOTS.feasible, RINGS.feasible] : [DOTS.cloud, RINGS.cloud];
    for (let i = 0; i < p.n; i++) {
      if (layer[i] !== l || Number.isNaN(px[i])) continue;
      stamp(px[i], py[i], measured[i] ? disc : ring, l === 2 && cs ? binPacked[bin[i]] : cloud[l]);
    }
  }
  points.putImageData(image, 0, 0);
  points.setTransform(ratio, 0, 0, ratio, 0, 0);
  const frontRadius = front > 300 ? 3.5 : 5; // a large front would hide the cloud below it
  for (let i = 0; i < p.n; i++) {
    if (layer[i] !== 3 || Number.isNaN(px[i])) continue;
    const tint = cs ? binColours[bin[i]] : COLOURS.front;
    points.beginPath();
    points.arc(px[i], py[i], frontRadius, 0, 2 * Math.PI);
    if (measured[i]) {
      points.fillStyle = tint;
      points.fill();
      points.lineWidth = 1.2;
      points.strokeStyle = cs ? "#111827" : "#ffffff";
      points.stroke();
    } else { // a ring in the front's colour; red gets a white halo that parts it from the
      // cloud (a dark one under the colour scale's rings darkens a large front to a blot)
      if (!cs) {
        points.lineWidth = 4;
        points.strokeStyle = "#ffffff";
        points.stroke();
      }
      points.lineWidth = cs ? 2.2 : 2;
      points.strokeStyle = tint;
      points.stroke();
    }
  }
  drawLimitLines(s, points, { width, x0, x1, y0, y1, sx, sy });
  const area = { left: PAD.left, top: PAD.top, right: width - PAD.right, bottom: HEIGHT - PAD.bottom };
  p.view = { px, py, sx, sy, area, layer, width, height: HEIGHT, grid: hitGrid(px, py, width, HEIGHT) };
  drawOverlay(s, p);
  renderLegend(s, p, { colour, c0, c1, measured: measuredCount, predicted: p.n - measuredCount });
  const counts = { drawn, within, feasible, front: s.front ? front : null, dimmed: feasible - within, measured: measuredCount };
  renderCounts(s, counts);
  dom.overlay.setAttribute("aria-label", `Scatter of ${metricTitle(s.y)} against ${metricTitle(s.x)}, ${drawn} candidates`);
  Object.assign(dom.box.dataset, { x: s.x, y: s.y, colour, painted: String(++p.paints) });
  performance.mark("nas-plot-painted");
}

/** "#rrggbb" or "rgb(r,g,b)" as one pixel of an ImageData's Uint32Array (little-endian). */
function packed(colour) {
  const [r, g, b] = colour.startsWith("#")
    ? [1, 3, 5].map((k) => parseInt(colour.slice(k, k + 2), 16))
    : colour.match(/\d+/g).map(Number);
  return (0xff000000 | (b << 16) | (g << 8) | r) >>> 0;
}

// a point's shape: radius and, for a ring, its line width (CSS px; 0: a filled disc)
const DOTS = { cloud: { r: 2.2, line: 0 }, feasible: { r: 2.6, line: 0 } };
const RINGS = { cloud: { r: 2.7, line: 1 }, feasible: { r: 3.2, line: 1.1 } }; // round at 1 px a CSS px

/** stamp(x, y, shape, pixel): a disc or ring (a DOTS or RINGS shape) at (x, y) written into
    `image`; each shape's pixel offsets are worked out once. */
function stamper(image, ratio) {
  const pixels = new Uint32Array(image.data.buffer), w = image.width, hgt = image.height;
  const shapes = new Map();
  const offsetsOf = ({ r, line }) => {
    const outer = r * ratio, inner = line ? Math.max(0, outer - Math.max(1, line * ratio)) : -1, out = [];
    for (let dy = -Math.ceil(outer); dy <= Math.ceil(outer); dy++) {
      for (let dx = -Math.ceil(outer); dx <= Math.ceil(outer); dx++) {
        const d2 = dx * dx + dy * dy;
        if (d2 <= outer * outer && d2 > inner * inner) out.push(dx, dy);
      }
    }
    return Int32Array.from(out);
  };
  return (x, y, shape, pixel) => {
    let offsets = shapes.get(shape);
    if (!offsets) shapes.set(shape, (offsets = offsetsOf(shape)));
    const cx = Math.round(x * ratio), cy = Math.round(y * ratio);
    for (let k = 0; k < offsets.length; k += 2) {
      const X = cx + offsets[k], Y = cy + offsets[k + 1];
      if (X >= 0 && X < w && Y >= 0 && Y < hgt) pixels[Y * w + X] = pixel;
    }
  };
}

function drawAxes(s, ctx, { width, x0, x1, y0, y1, sx, sy }) {
  const bottom = HEIGHT - PAD.bottom, right = width - PAD.right;
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  const xt = ticks(x0, x1, 8), yt = ticks(y0, y1, 5);
  ctx.strokeStyle = "#edf0f3";
  ctx.beginPath();
  for (const t of xt.values) { ctx.moveTo(sx(t), PAD.top); ctx.lineTo(sx(t), bottom); }
  for (const t of yt.values) { ctx.moveTo(PAD.left, sy(t)); ctx.lineTo(right, sy(t)); }
  ctx.stroke();
  ctx.strokeStyle = "#9aa3af";
  ctx.beginPath();
  ctx.moveTo(PAD.left, PAD.top); ctx.lineTo(PAD.left, bottom); ctx.lineTo(right, bottom);
  ctx.stroke();
  ctx.fillStyle = "#5b6472";
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of xt.values) ctx.fillText(fmtTick(s.x, t, xt.step), sx(t), bottom + 6);
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of yt.values) ctx.fillText(fmtTick(s.y, t, yt.step), PAD.left - 8, sy(t));
  const goal = (m) => (s.info.objectives || []).find((o) => o.metric === m)?.goal;
  const arrow = { maximize: "better ↑", minimize: "better ↓" };
  ctx.fillStyle = "#1f2937";
  ctx.font = "600 12px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  const xGoal = goal(s.x) ? `  (${arrow[goal(s.x)].replace("↑", "→").replace("↓", "←")})` : "";
  ctx.fillText(metricTitle(s.x) + xGoal, (PAD.left + right) / 2, HEIGHT - 4);
  ctx.save();
  ctx.translate(16, (PAD.top + bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(metricTitle(s.y) + (goal(s.y) ? `  (${arrow[goal(s.y)]})` : ""), 0, 0);
  ctx.restore();
}

/** A dashed line at each limit field's value on an axis of its metric. */
function drawLimitLines(s, ctx, { width, x0, x1, y0, y1, sx, sy }) {
  ctx.save();
  ctx.strokeStyle = ctx.fillStyle = COLOURS.limit;
  ctx.setLineDash([5, 4]);
  ctx.lineWidth = 1.5;
  ctx.font = "11px system-ui, sans-serif";
  for (const { metric, value } of limitValues(s)) {
    const text = `limit ${fmtMetric(metric, value)}`;
    if (metric === s.x && value > x0 && value < x1) {
      ctx.beginPath(); ctx.moveTo(sx(value), PAD.top); ctx.lineTo(sx(value), HEIGHT - PAD.bottom); ctx.stroke();
      ctx.textAlign = "right"; ctx.textBaseline = "top";
      ctx.fillText(text, sx(value) - 4, PAD.top + 2);
    }
    if (metric === s.y && value > y0 && value < y1) {
      ctx.beginPath(); ctx.moveTo(PAD.left, sy(value)); ctx.lineTo(width - PAD.right, sy(value)); ctx.stroke();
      ctx.textAlign = "right"; ctx.textBaseline = "bottom";
      ctx.fillText(text, width - PAD.right - 4, sy(value) - 3);
    }
  }
  ctx.restore();
}

// ----- the tools, the legend and the counts --------------------------------------------------

/** The x, y and colour selects (search.js calls this when its metrics are known). */
export function renderPlotTools(s) {
  const p = plotState(s);
  const options = (chosen, none) => [none && h("option", { value: "", selected: !chosen }, none),
    s.metrics.map((m) => h("option", { value: m, selected: m === chosen }, m))];
  const axis = (name) => h("select", {
    id: `axis-${name}`, onchange: (e) => { s[name] = e.target.value; loadPoints(s); },
  }, options(s[name]));
  const colour = h("select", {
    id: "axis-colour", onchange: (e) => { p.colour = e.target.value; loadPoints(s); },
  }, options(colourMetric(s), "none"));
  fill(s.dom.tools, h("label", {}, "x", axis("x")), h("label", {}, "y", axis("y")),
    h("label", {}, "colour", colour));
}

function renderLegend(s, p, { colour, c0, c1, measured, predicted }) {
  const objectives = s.info.objectives || [];
  const swatch = (cls, text) => h("span", {}, h("i", { class: `swatch ${cls}` }), text);
  const frontText = objectives.length > 2
    ? `front: non-dominated on all ${objectives.length} objectives (${objectives.map((o) => o.metric).join(", ")}), so some lie inside this 2-D view`
    : "front: non-dominated on both objectives";
  fill(p.dom.legend,
    swatch("infeasible", "infeasible"),
    swatch("dimmed", "beyond a tightened limit"),
    colour ? h("span", { class: "scale" }, h("span", { class: "k" }, `${metricTitle(colour)}:`),
      fmtMetric(colour, c0), h("i", { class: "ramp", style: `background:linear-gradient(90deg,${RAMP.join(",")})` }),
      fmtMetric(colour, c1))
      : swatch("feasible", "feasible"),
    swatch(colour ? "front scaled" : "front", frontText),
    h("span", {}, h("i", { class: "swatch limit" }), "limit"),
    // only the kinds present: a search measured throughout has no predicted point
    measured > 0 && swatch("measured", `quality measured on the supernet (${measured.toLocaleString("en-US")})`),
    predicted > 0 && swatch("predicted", `quality predicted (${predicted.toLocaleString("en-US")})`));
}

/** The counts line, with the same counts as data- attributes (what tests and tools read). */
function renderCounts(s, c) {
  const n = (v) => v.toLocaleString("en-US");
  const tightened = c.dimmed > 0;
  fill(s.dom.count,
    h("strong", { id: "front-count" }, c.front === null ? "…" : n(c.front)), " on the front · ",
    h("strong", {}, n(c.within)), tightened ? ` within these limits (of ${n(c.feasible)} feasible)` : " feasible",
    ` · ${n(c.drawn)} candidates shown`);
  Object.assign(s.dom.count.dataset, {
    frontCount: c.front ?? "", feasibleCount: c.within, dimmedCount: c.dimmed, shownCount: c.drawn, measuredCount: c.measured,
  });
}
