/* One search's page: its header (status, progress, actions), the scatter with its axis
   choices, the limit fields that re-filter the front, and the front as a table. It polls
   GET /searches/ID until the search is finished, and redraws when something was stored. */

import { NETWORK_METRICS, api, downloadLink, familyOfSpace } from "./api.js";
import { $, bestText, clearError, clickable, debounce, fill, fmt, h, progress, showError, statusBadge } from "./dom.js";
import { openCandidate } from "./panel.js";
import { drawPlot } from "./plot.js";
import { mount, poll } from "./view.js";

export async function renderSearch(view, idText) {
  const id = Number(idText);
  const s = {
    id, view, info: null, metrics: [], limits: [], x: null, y: null,
    points: null, front: null, picked: null, stamp: null, seq: { points: 0, front: 0 },
  };
  s.pick = (number) => pick(s, number); // what a click on a point or a row of the front does
  s.dom = searchSkeleton(s);
  mount(s.dom.root);
  poll(view, `search-${id}`, async () => {
    const info = await api(`/searches/${id}`);
    if (view.dead) return false;
    const first = !s.info;
    s.info = info;
    if (first) { setupPlot(s); renderHeader(s); }
    // redraw only when something was stored: a generation, or the search stopped
    const stamp = `${info.generations}|${info.status}|${info.candidates}`;
    if (stamp !== s.stamp) {
      s.stamp = stamp;
      await refreshData(s);
    }
    renderHeader(s); // after the data, so a status shown is one the plot already reflects
    return !info.finished; // every summary says whether its search can still change
  });
}

function searchSkeleton(s) {
  const dom = {
    head: h("section", { class: "card", id: "search-head" }, h("p", { class: "muted" }, "Loading…")),
    tools: h("div", { class: "plot-tools" }),
    plot: h("div", { class: "plot-box" }),
    filters: h("div", { class: "filters" }),
    count: h("div", { class: "count-line muted" }),
    table: h("div", { class: "table-wrap tall" }), // a large front scrolls inside its card
    // fetched with the token (private reads), never a plain link
    csv: downloadLink({ class: "button", href: `/searches/${s.id}/pareto?format=csv`, download: `search-${s.id}-front.csv` },
      "Front as CSV", (err) => showError(err, `csv-${s.id}`)),
  };
  dom.root = h("div", {}, dom.head,
    h("section", { class: "card" },
      h("div", { class: "row" },
        h("div", { class: "grow" }, dom.tools, dom.plot),
        h("div", { class: "filters-wrap" }, dom.filters, dom.count))),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Pareto front"), h("span", { class: "muted small" }, "Click a row for the candidate")),
      dom.table));
  return dom;
}

function renderHeader(s) {
  const info = s.info;
  const running = info.status === "running";
  const action = async (what) => {
    try {
      const answer = await api(`/searches/${s.id}/${what}`, { method: "POST" });
      clearError(`action-${s.id}`);
      // polling stopped when it failed: route to this page again, which starts it again
      if (what === "resume") return window.dispatchEvent(new HashChangeEvent("hashchange"));
      s.info.status = answer.status; // "cancelling" at once, not after the next data refresh
      renderHeader(s);
    } catch (err) { showError(err, `action-${s.id}`); }
  };
  const stat = (label, value) => h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
  fill(s.dom.head,
    h("div", { class: "search-head" },
      h("h1", {}, `#${s.id} ${info.name}`),
      h("span", { id: "search-status" }, statusBadge(info.status)),
      progress(info.generations, true),
      h("span", { class: "grow" }),
      running && h("button", { type: "button", onclick: () => action("cancel") }, "Cancel"),
      info.status === "failed" && h("button", { type: "button", onclick: () => action("resume") }, "Resume"),
      s.dom.csv),
    h("div", { class: "stats" },
      stat("Space", info.space),
      stat("Evaluation", info.evaluation),
      stat("Candidates", `${info.feasible} feasible / ${info.candidates}`),
      stat("Devices", Object.keys(info.targets || {}).join(", ") || "—"),
      stat("Best", bestText(info.best))),
    info.message && h("div", { class: "message" }, info.message));
}

/** The axis selects and one limit field per limited metric, built once per search. */
function setupPlot(s) {
  const info = s.info;
  const objectives = (info.objectives || []).map((o) => o.metric);
  for (const [device, target] of Object.entries(info.targets || {})) {
    for (const [metric, limit] of Object.entries(target.limits || {})) s.limits.push({ metric: `${device}.${metric}`, limit });
  }
  s.metrics = [...new Set([...objectives, ...s.limits.map((l) => l.metric)])];
  s.y = objectives[0] || null; // quality, by default up the y axis, against the first cost
  s.x = objectives[1] || objectives[0] || null;
  renderAxisTools(s);
  renderFilters(s);
}

function renderAxisTools(s) {
  const select = (axis) => h("select", { id: `axis-${axis}`, onchange: (e) => { s[axis] = e.target.value; refreshPoints(s); } },
    s.metrics.map((m) => h("option", { value: m, selected: m === s[axis] }, m)));
  fill(s.dom.tools,
    h("label", {}, "x", select("x")), h("label", {}, "y", select("y")),
    h("div", { class: "legend" },
      h("span", {}, h("i", { class: "swatch infeasible" }), "infeasible"),
      h("span", {}, h("i", { class: "swatch feasible" }), "feasible"),
      h("span", {}, h("i", { class: "swatch front" }), "Pareto front")));
}

/** Every metric the candidates report (quality, macs, params, each device's metrics): the
    choices of the axes. Read from one stored candidate, so it is the search's own list; its
    other keys (candidate, generation, ...) are told apart by the family's quality metrics
    (GET /families), the network's metrics and the "device.metric" names. */
async function loadMetricNames(s) {
  const [page, family] = await Promise.all([api(`/searches/${s.id}/candidates?limit=1`), familyOfSpace(s.info.space)]);
  const row = page.items[0];
  if (!row) return;
  s.metricsLoaded = true;
  const quality = Object.keys(family?.quality_metrics || {});
  const isMetric = (k) => quality.includes(k) || NETWORK_METRICS.includes(k) || k.includes(".");
  const names = Object.keys(row).filter((k) => isMetric(k) && (typeof row[k] === "number" || row[k] === null));
  s.metrics = [...new Set([...s.metrics, ...names])];
  renderAxisTools(s);
}

function renderFilters(s) {
  const fields = s.limits.map(({ metric, limit }) => {
    const input = h("input", { type: "number", step: "any", value: limit, "data-metric": metric, id: `where-${metric}` });
    input.addEventListener("input", debounce(() => refreshFront(s), 350));
    return h("div", { class: "filter" },
      h("label", { for: input.id }, metric),
      h("div", { class: "input-line" }, h("span", { class: "muted" }, "≤"), input),
      h("div", { class: "hint" }, `search limit ${fmt(limit)}`));
  });
  fill(s.dom.filters,
    h("h2", {}, "Limits"),
    h("p", { class: "muted small" }, fields.length
      ? "Tighten a limit to re-filter the front (as nas pareto --where)."
      : "This search sets no limits."),
    fields,
    h("p", { class: "field-error", id: "where-error", hidden: true }),
    fields.length > 0 && h("button", { type: "button", onclick: () => resetFilters(s) }, "Reset"));
}

function resetFilters(s) {
  for (const input of s.dom.filters.querySelectorAll("input[data-metric]")) {
    input.value = s.limits.find((l) => l.metric === input.dataset.metric).limit;
  }
  refreshFront(s);
}

/** The --where conditions of the limit fields ("stm32f746.peak_sram_kb<=8"); empty: none. */
function whereConditions(s) {
  return [...s.dom.filters.querySelectorAll("input[data-metric]")]
    .filter((input) => input.value.trim() !== "")
    .map((input) => `${input.dataset.metric}<=${input.value.trim()}`);
}

async function refreshData(s) {
  if (!s.metricsLoaded) await loadMetricNames(s);
  await Promise.all([refreshPoints(s), refreshFront(s)]);
}

/** All candidates' values of the two axis metrics (for the grey and blue points). Responses
    that arrive after a newer request are dropped, so a quick change of axis cannot mix them. */
async function refreshPoints(s) {
  if (!s.x || !s.y) return;
  const seq = ++s.seq.points;
  const query = new URLSearchParams([["metric", s.x], ["metric", s.y]]);
  try {
    const points = await api(`/searches/${s.id}/points?${query}`);
    if (seq !== s.seq.points || s.view.dead) return;
    s.points = points;
    clearError(`points-${s.id}`);
    drawPlot(s);
  } catch (err) { showError(err, `points-${s.id}`); }
}

/** The front under the limit fields' conditions, from GET /pareto: the server filters it. */
async function refreshFront(s) {
  const seq = ++s.seq.front;
  if (!s.info.candidates) { // nothing stored yet (and GET /pareto answers 500 for that)
    s.front = { front: [], objectives: s.info.objectives };
    drawPlot(s);
    renderFrontTable(s);
    return;
  }
  const query = new URLSearchParams(whereConditions(s).map((w) => ["where", w]));
  const error = $("#where-error", s.dom.filters);
  try {
    const front = await api(`/searches/${s.id}/pareto?${query}`);
    if (seq !== s.seq.front || s.view.dead) return;
    s.front = front;
    query.set("format", "csv"); // the CSV is the front shown, limits included
    s.dom.csv.href = `/searches/${s.id}/pareto?${query}`;
    error.hidden = true;
    drawPlot(s);
    renderFrontTable(s);
  } catch (err) {
    if (seq !== s.seq.front) return;
    error.textContent = err.message; // a bad condition is shown beside the limits
    error.hidden = false;
  }
}

// ----- the front as a table ------------------------------------------------------------------

function renderFrontTable(s) {
  const objectives = s.front.objectives || s.info.objectives || [];
  const names = objectives.map((o) => o.metric);
  const limited = s.limits.map((l) => l.metric).filter((m) => !names.includes(m));
  const arrow = { maximize: " ↑", minimize: " ↓" };
  const rows = s.front.front.map((row) => h("tr", {
    class: `clickable${row.candidate === s.picked ? " selected" : ""}`, "data-candidate": row.candidate,
    ...clickable(() => s.pick(row.candidate)),
  },
  h("td", {}, row.candidate), h("td", { class: "num" }, row.generation),
  names.map((m) => h("td", { class: "num" }, fmt(row[m]))),
  limited.map((m) => h("td", { class: "num muted" }, fmt(row[m]))),
  h("td", { class: "mono muted" }, row.arch_id)));
  fill(s.dom.table, rows.length
    ? h("table", { class: "table front-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Candidate"), h("th", { class: "num" }, "Gen"),
        objectives.map((o) => h("th", { class: "num" }, o.metric + (arrow[o.goal] || ""))),
        limited.map((m) => h("th", { class: "num" }, m)), h("th", {}, "Arch id"))),
      h("tbody", {}, rows))
    : h("p", { class: "muted" }, "No feasible candidate under these limits."));
}

/** Mark a candidate in the plot and the table, and show it in the panel. */
function pick(s, number) {
  s.picked = number;
  drawPlot(s);
  if (s.front) renderFrontTable(s);
  openCandidate(s, number);
}
