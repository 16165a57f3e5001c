/* Reaching the scatter's points: a spatial grid of the drawn points for hover and click
   (a few cells searched, never every point), the tooltip, and a keyboard cursor (arrow keys
   move to the nearest point in that direction, Shift+arrow to the nearest front point, Enter
   opens it) whose values are read out by an aria-live line. All of it is drawn on the
   overlay canvas, so a hover redraws a ring, not 100,000 points. */

import { $, fill, h } from "./dom.js";
import { fmtMetric } from "./format.js";

const CELL = 12; // px: a hover looks in the 3x3 cells around the pointer
const HOVER_PX = 8;
const LAYER_NAMES = ["infeasible", "beyond a tightened limit", "feasible", "Pareto front"];

/** The drawn points (px, py; NaN: not drawn) bucketed by screen cell. */
export function hitGrid(px, py, width, height) {
  const cols = Math.ceil(width / CELL) + 1, rows = Math.ceil(height / CELL) + 1;
  const cellOf = new Int32Array(px.length), start = new Int32Array(cols * rows + 1);
  for (let i = 0; i < px.length; i++) {
    if (Number.isNaN(px[i])) { cellOf[i] = -1; continue; }
    const c = Math.max(0, Math.min(cols - 1, Math.floor(px[i] / CELL)));
    const r = Math.max(0, Math.min(rows - 1, Math.floor(py[i] / CELL)));
    cellOf[i] = r * cols + c;
    start[cellOf[i] + 1]++;
  }
  for (let k = 0; k < cols * rows; k++) start[k + 1] += start[k];
  const items = new Int32Array(start[cols * rows]), next = start.slice(0, cols * rows);
  for (let i = 0; i < px.length; i++) if (cellOf[i] >= 0) items[next[cellOf[i]]++] = i;
  return { cols, rows, start, items };
}

/** The point under (x, y), or -1: the nearest within HOVER_PX, a front point first. */
function pointAt(view, x, y) {
  const { cols, rows, start, items } = view.grid;
  const c0 = Math.floor(x / CELL), r0 = Math.floor(y / CELL);
  let best = -1, bestScore = Infinity;
  for (let r = Math.max(0, r0 - 1); r <= Math.min(rows - 1, r0 + 1); r++) {
    for (let c = Math.max(0, c0 - 1); c <= Math.min(cols - 1, c0 + 1); c++) {
      const cell = r * cols + c;
      for (let k = start[cell]; k < start[cell + 1]; k++) {
        const i = items[k];
        const d = Math.hypot(view.px[i] - x, view.py[i] - y);
        const score = d - view.layer[i] * 2; // what is drawn on top wins a near tie
        if (d <= HOVER_PX && score < bestScore) { best = i; bestScore = score; }
      }
    }
  }
  return best;
}

/** The nearest drawn point from `from` in a direction (dx, dy), or -1; `front`: front only.
    Points within a 60-degree cone of the direction count; distance off its axis costs twice. */
function nearestInDirection(view, from, dx, dy, front) {
  const { px, py, layer } = view;
  let best = -1, bestScore = Infinity;
  for (let i = 0; i < px.length; i++) {
    if (i === from || Number.isNaN(px[i]) || (front && layer[i] !== 3)) continue;
    const vx = px[i] - px[from], vy = py[i] - py[from];
    const along = vx * dx + vy * dy, across = Math.abs(vx * dy - vy * dx);
    if (along <= 0 || across > along * 1.8) continue;
    const score = along + 2 * across;
    if (score < bestScore) { best = i; bestScore = score; }
  }
  return best;
}

/** Where the cursor starts: the front point highest on the plot, else any point drawn. */
function startPoint(view) {
  let best = -1;
  for (let i = 0; i < view.px.length; i++) {
    if (Number.isNaN(view.px[i])) continue;
    const better = best < 0 || (view.layer[i] === 3) > (view.layer[best] === 3)
      || ((view.layer[i] === 3) === (view.layer[best] === 3) && view.py[i] < view.py[best]);
    if (better) best = i;
  }
  return best;
}

/** Rings on the overlay: the picked candidate, the hovered point, the keyboard cursor. */
export function drawOverlay(s, p) {
  const { overlay } = p.dom;
  const ctx = overlay.getContext("2d");
  const ratio = overlay.width / p.view.width;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, p.view.width, p.view.height);
  const ring = (i, r, colour, width) => {
    if (i === undefined || i < 0 || Number.isNaN(p.view.px[i])) return;
    ctx.beginPath();
    ctx.arc(p.view.px[i], p.view.py[i], r, 0, 2 * Math.PI);
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.stroke();
  };
  errorBars(s, p, ctx);
  ring(p.index.get(s.picked), 8, "#f59e0b", 3);
  ring(p.hover, 7, "#111827", 2);
  if (p.cursor >= 0 && document.activeElement === overlay) {
    ring(p.cursor, 10, "#111827", 2);
    ring(p.cursor, 12, "#ffffff", 2);
  }
}

/** The picked candidate's prediction intervals on the plotted axes, as error bars: horizontal
    for the x metric, vertical for the y metric, each where the candidate row has its bounds. */
function errorBars(s, p, ctx) {
  const i = p.index.get(s.picked), c = s.pickedRow;
  p.dom.overlay.dataset.errorBars = ""; // which axes have bars (what a test reads)
  if (i === undefined || Number.isNaN(p.view.px[i]) || c?.candidate !== s.picked) return;
  const { sx, sy, area } = p.view, x = p.view.px[i], y = p.view.py[i];
  const cap = 5;
  ctx.save();
  ctx.beginPath(); // an interval wider than the axes ends at their edge, without its cap
  ctx.rect(area.left, area.top, area.right - area.left, area.bottom - area.top);
  ctx.clip();
  ctx.strokeStyle = "#b45309";
  ctx.lineWidth = 2;
  const bar = (x0, y0, x1, y1, dx, dy) => {
    ctx.beginPath();
    ctx.moveTo(x0, y0); ctx.lineTo(x1, y1);
    for (const [ex, ey] of [[x0, y0], [x1, y1]]) { ctx.moveTo(ex - dx, ey - dy); ctx.lineTo(ex + dx, ey + dy); }
    ctx.stroke();
  };
  const bx = c.bounds?.[s.x], by = c.bounds?.[s.y];
  if (bx) bar(sx(bx.low), y, sx(bx.high), y, 0, cap);
  if (by) bar(x, sy(by.low), x, sy(by.high), cap, 0);
  ctx.restore();
  p.dom.overlay.dataset.errorBars = [bx && "x", by && "y"].filter(Boolean).join(",");
}

/** A candidate's values as text: its number, its layer, whether its quality was measured,
    the axes' and colour's metrics. */
function pointText(s, p, i) {
  const metrics = [...new Set([s.x, s.y, p.colour].filter(Boolean))];
  return {
    title: `Candidate ${p.trial[i]}`,
    kind: LAYER_NAMES[p.view.layer[i]],
    quality: p.measured?.[i] ? "quality measured" : "quality predicted",
    values: metrics.map((m) => [m, fmtMetric(m, p.columns.get(m)?.[i])]),
  };
}

function showTooltip(s, p, i, clientX, clientY) {
  const tip = $("#tooltip");
  const text = pointText(s, p, i);
  fill(tip,
    h("div", {}, h("b", {}, text.title), h("span", { class: "k" }, ` · ${text.kind} · ${text.quality}`)),
    text.values.map(([m, v]) => h("div", {}, h("span", { class: "k" }, `${m} `), v)),
    h("div", { class: "k" }, "click for details"));
  tip.hidden = false;
  tip.style.left = `${Math.min(clientX + 14, window.innerWidth - tip.offsetWidth - 8)}px`;
  tip.style.top = `${clientY + 14}px`;
}

export function hideTooltip() { $("#tooltip").hidden = true; }

function announce(s, p) {
  const i = p.cursor;
  const text = pointText(s, p, i);
  p.dom.cursorText.textContent = `${text.title} (${text.kind}): `
    + `${text.values.map(([m, v]) => `${m} ${v}`).join(" · ")}; ${text.quality}. Enter opens it.`;
}

/** Mouse and keyboard on the overlay canvas (once per plot element). */
export function attachPointer(s, p) {
  const { overlay } = p.dom;
  p.cursor = -1;
  const local = (e) => { const r = overlay.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  overlay.addEventListener("mousemove", (e) => {
    if (!p.view) return;
    const i = pointAt(p.view, ...local(e));
    if (i !== p.hover) { p.hover = i; drawOverlay(s, p); }
    overlay.style.cursor = i >= 0 ? "pointer" : "default";
    if (i >= 0) showTooltip(s, p, i, e.clientX, e.clientY);
    else hideTooltip();
  });
  overlay.addEventListener("mouseleave", () => { p.hover = -1; hideTooltip(); drawOverlay(s, p); });
  overlay.addEventListener("click", (e) => {
    hideTooltip(); // the panel opens where the pointer is: a tooltip left would stick
    const i = p.view ? pointAt(p.view, ...local(e)) : -1;
    if (i < 0) return;
    p.cursor = i;
    s.pick(p.trial[i]);
  });
  overlay.addEventListener("focus", () => {
    if (p.view && (p.cursor < 0 || p.cursor >= p.n)) p.cursor = startPoint(p.view);
    if (p.cursor >= 0) announce(s, p);
    drawOverlay(s, p);
  });
  overlay.addEventListener("blur", () => drawOverlay(s, p));
  const directions = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  overlay.addEventListener("keydown", (e) => {
    if (!p.view || p.cursor < 0) return;
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      hideTooltip();
      s.pick(p.trial[p.cursor]);
      return;
    }
    const dir = directions[e.key];
    if (!dir) return;
    e.preventDefault(); // the page does not scroll while the cursor moves
    const next = nearestInDirection(p.view, p.cursor, ...dir, e.shiftKey);
    if (next >= 0) p.cursor = next;
    announce(s, p);
    drawOverlay(s, p);
  });
}
