/* The scatter of a search: every candidate's two axis metrics (GET /points) with the front
   on top (GET /pareto), round ticks, a dashed line at each limit field's value, a tooltip.
   An SVG drawn afresh on each change; clicking a point calls the search's `pick`. */

import { $, fill, fmt, h } from "./dom.js";

const PLOT = { width: 760, height: 420, left: 70, right: 18, top: 14, bottom: 48 };

/** About `count` round tick values covering [lo, hi]. */
function ticks(lo, hi, count = 6) {
  const step0 = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function extent(values) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!Number.isFinite(lo)) return [0, 1];
  if (lo === hi) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
  const pad = (hi - lo) * 0.06;
  return [lo - pad, hi + pad];
}

/** The points to draw: every candidate with both values, and the front on top. */
function plotData(s) {
  const { points, front, x, y } = s;
  const all = [];
  if (points && points.metrics[x] && points.metrics[y]) {
    points.trial.forEach((trial, i) => {
      const px = points.metrics[x][i], py = points.metrics[y][i];
      if (px !== null && py !== null) all.push({ trial, x: px, y: py, kind: points.feasible[i] ? "feasible" : "infeasible" });
    });
  }
  const onFront = (front?.front || []).map((row) => ({ trial: row.candidate, x: row[x], y: row[y], kind: "front" }))
    .filter((p) => typeof p.x === "number" && typeof p.y === "number");
  return { all, onFront };
}

export function drawPlot(s) {
  if (!s.points || !s.front) return;
  hideTooltip(); // its circle is about to be replaced, and would never send mouseleave
  const { all, onFront } = plotData(s);
  const P = PLOT;
  const svg = h("svg:svg", { class: "plot", viewBox: `0 0 ${P.width} ${P.height}`, role: "img", "aria-label": `${s.y} against ${s.x}` });
  const everything = [...all, ...onFront];
  if (!everything.length) {
    svg.append(h("svg:text", { x: P.width / 2, y: P.height / 2, "text-anchor": "middle", class: "empty" },
      s.info.candidates ? "No candidate has both values" : "No candidates yet: the first generation is being evaluated"));
    fill(s.dom.plot, svg);
    s.dom.count.textContent = "";
    return;
  }
  const [x0, x1] = extent(everything.map((p) => p.x));
  const [y0, y1] = extent(everything.map((p) => p.y));
  const sx = (v) => P.left + ((v - x0) / (x1 - x0)) * (P.width - P.left - P.right);
  const sy = (v) => P.height - P.bottom - ((v - y0) / (y1 - y0)) * (P.height - P.top - P.bottom);
  svg.append(axes(s, { x0, x1, y0, y1, sx, sy }), limitLines(s, { x0, x1, y0, y1, sx, sy }));
  // grey under blue under red: the front stays visible where points overlap
  const order = { infeasible: 0, feasible: 1, front: 2 };
  for (const p of everything.sort((a, b) => order[a.kind] - order[b.kind])) {
    const circle = h("svg:circle", {
      cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: p.kind === "front" ? 6 : 4,
      class: `${p.kind}${p.trial === s.picked ? " picked" : ""}`, "data-candidate": p.trial,
    });
    circle.addEventListener("mouseenter", (e) => showTooltip(e, s, p));
    circle.addEventListener("mousemove", moveTooltip);
    circle.addEventListener("mouseleave", hideTooltip);
    circle.addEventListener("click", () => s.pick(p.trial));
    svg.append(circle);
  }
  fill(s.dom.plot, svg);
  const feasible = all.filter((p) => p.kind === "feasible").length;
  fill(s.dom.count, h("strong", { id: "front-count" }, `${onFront.length}`), ` on the front · ${feasible} feasible · ${all.length - feasible} infeasible`);
}

function axes(s, { x0, x1, y0, y1, sx, sy }) {
  const P = PLOT;
  const g = h("svg:g", {});
  const grid = h("svg:g", { class: "grid" });
  const labels = h("svg:g", {});
  for (const t of ticks(x0, x1)) {
    grid.append(h("svg:line", { x1: sx(t), x2: sx(t), y1: P.top, y2: P.height - P.bottom }));
    labels.append(h("svg:text", { x: sx(t), y: P.height - P.bottom + 16, "text-anchor": "middle" }, fmt(t)));
  }
  for (const t of ticks(y0, y1)) {
    grid.append(h("svg:line", { x1: P.left, x2: P.width - P.right, y1: sy(t), y2: sy(t) }));
    labels.append(h("svg:text", { x: P.left - 8, y: sy(t) + 4, "text-anchor": "end" }, fmt(t)));
  }
  const box = h("svg:g", { class: "axis" },
    h("svg:line", { x1: P.left, x2: P.width - P.right, y1: P.height - P.bottom, y2: P.height - P.bottom }),
    h("svg:line", { x1: P.left, x2: P.left, y1: P.top, y2: P.height - P.bottom }));
  const goal = (m) => ({ maximize: " ↑ better", minimize: " ↓ better" })[(s.info.objectives || []).find((o) => o.metric === m)?.goal] || "";
  const xTitle = h("svg:text", { class: "title", x: (P.left + P.width - P.right) / 2, y: P.height - 8, "text-anchor": "middle" }, s.x + goal(s.x).replace("↓", "←"));
  const yMid = (P.top + P.height - P.bottom) / 2;
  const yTitle = h("svg:text", { class: "title", x: 14, y: yMid, "text-anchor": "middle", transform: `rotate(-90 14 ${yMid})` }, s.y + goal(s.y));
  g.append(grid, box, labels, xTitle, yTitle);
  return g;
}

/** A dashed line at the limit field's value where an axis is a limited metric. */
function limitLines(s, { x0, x1, y0, y1, sx, sy }) {
  const P = PLOT;
  const g = h("svg:g", { class: "limits" });
  for (const input of s.dom.filters.querySelectorAll("input[data-metric]")) {
    const value = Number(input.value);
    if (input.value.trim() === "" || !Number.isFinite(value)) continue;
    if (input.dataset.metric === s.x && value > x0 && value < x1) {
      g.append(h("svg:line", { x1: sx(value), x2: sx(value), y1: P.top, y2: P.height - P.bottom }),
        h("svg:text", { x: sx(value) - 4, y: P.top + 10, "text-anchor": "end" }, `limit ${fmt(value)}`));
    }
    if (input.dataset.metric === s.y && value > y0 && value < y1) {
      g.append(h("svg:line", { x1: P.left, x2: P.width - P.right, y1: sy(value), y2: sy(value) }),
        h("svg:text", { x: P.width - P.right - 4, y: sy(value) - 4, "text-anchor": "end" }, `limit ${fmt(value)}`));
    }
  }
  return g;
}

function showTooltip(event, s, p) {
  const tip = $("#tooltip");
  fill(tip,
    h("div", {}, h("b", {}, `Candidate ${p.trial}`), h("span", { class: "k" }, ` · ${p.kind === "front" ? "Pareto front" : p.kind}`)),
    h("div", {}, h("span", { class: "k" }, `${s.x} `), fmt(p.x)),
    h("div", {}, h("span", { class: "k" }, `${s.y} `), fmt(p.y)),
    h("div", { class: "k" }, "click for details"));
  tip.hidden = false;
  moveTooltip(event);
}

function moveTooltip(event) {
  const tip = $("#tooltip");
  const left = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = `${left}px`;
  tip.style.top = `${event.clientY + 14}px`;
}

export function hideTooltip() { $("#tooltip").hidden = true; }
