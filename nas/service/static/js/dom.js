/* DOM helpers and formatting: building elements, numbers as people read them, the errors
   shown at the top of the page. Nothing here knows the API. */

import { fmtMetric } from "./format.js";

const SVG_NS = "http://www.w3.org/2000/svg";

/** h("div", {class: "x", onclick: f}, child, "text"): an element; "svg:" makes an SVG one.
    Attributes that are null, undefined or false are left out; children may be arrays. */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS(SVG_NS, tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...nodes(children));
  return el;
}

/** Children as nodes: arrays flattened, null/undefined/false left out, the rest as text. */
function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : String(c)));
}

/** Replace an element's children (taking what h() takes). */
export function fill(el, ...children) {
  el.replaceChildren(...nodes(children));
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Attributes that make a row act like a link: click, or Enter when focused. */
export function clickable(action) {
  return { tabindex: 0, onclick: action, onkeydown: (e) => { if (e.key === "Enter") action(); } };
}

export function card(title, actions, ...body) {
  return h("section", { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, title), h("div", {}, actions)), body);
}

export function kvTable(rows) {
  return h("table", { class: "kv" }, rows.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, v))));
}

export function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

// ----- formatting ----------------------------------------------------------------------------

/** A number as people read it: 4 significant digits, large counts with k/M/G. */
export function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  const abs = Math.abs(value);
  for (const [unit, suffix] of [[1e9, "G"], [1e6, "M"], [1e4, "k"]]) {
    if (abs >= unit) return `${+(value / unit).toPrecision(3)}${suffix}`;
  }
  return String(+value.toPrecision(4));
}

export function fmtBytes(bytes) {
  const [unit, suffix] = [[2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]].find(([u]) => bytes >= u) || [1, "B"];
  return `${+(bytes / unit).toFixed(unit === 1 ? 0 : 1)} ${suffix}`;
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}

/** "2/3" -> a bar and its text. */
export function progress(generations, large = false) {
  const [done, total] = String(generations || "0/0").split("/").map(Number);
  const pct = total ? Math.min(100, (100 * done) / total) : 0;
  return h("span", { class: "progress" },
    h("span", { class: large ? "bar large" : "bar" }, h("span", { style: `width:${pct}%` })),
    h("span", { class: "muted small" }, `${done}/${total} generations`));
}

export function bestText(best) {
  const parts = Object.entries(best || {}).map(([k, v]) => `${k} ${fmtMetric(k, v)}`);
  return parts.length ? parts.join(" · ") : "—";
}

// ----- errors shown in the page (never swallowed) --------------------------------------------

const errorEntries = new Map(); // key -> element: a poll that keeps failing shows one entry

export function showError(err, key = String(err)) {
  const text = err instanceof Error ? err.message : String(err);
  let entry = errorEntries.get(key);
  if (!entry) {
    entry = h("div", { class: "error" }, h("span"),
      h("button", { type: "button", title: "Dismiss", onclick: () => clearError(key) }, "×"));
    errorEntries.set(key, entry);
    $("#errors").append(entry);
  }
  entry.firstChild.textContent = text;
}

export function clearError(key) {
  errorEntries.get(key)?.remove();
  errorEntries.delete(key);
}
