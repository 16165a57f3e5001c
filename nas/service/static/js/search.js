/* One search's page: its header (status, progress, actions), the scatter with its axis
   choices, the limit fields that re-filter the front, and the front as a table (front.js).
   It polls GET /searches/ID until the search is finished, and redraws when something was
   stored. While the points or the front load, the plot says so; a search with nothing to
   plot says why (no candidates yet, infeasible, failed, cancelled). */

import { NETWORK_METRICS, api, downloadLink, familyOfSearch } from "./api.js";
import { $, bestText, clearError, debounce, fill, fmt, h, progress, showError, statusBadge } from "./dom.js";
import { emptyTable, refreshTable, renderFrontTable, tableState } from "./front.js";
import { openCandidate } from "./panel.js";
import { drawPlot, limitsChanged, loadPoints, redrawOverlay, renderPlotTools } from "./plot.js";
import { mount, poll } from "./view.js";

export async function renderSearch(view, idText) {
  const id = Number(idText);
  const s = {
    id, view, info: null, metrics: [], limits: [], x: null, y: null,
    points: null, front: null, picked: null, stamp: null, seq: { points: 0, front: 0 },
    table: tableState(), state: null, loading: 0,
  };
  s.pick = (number) => pick(s, number); // what a click on a point or a row of the front does
  s.onPickedRow = () => redrawOverlay(s); // the picked candidate's error bars
  s.where = () => whereConditions(s);
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
      await plotLoading(s, refreshData(s));
    }
    renderHeader(s); // after the data, so a status shown is one the plot already reflects
    renderState(s);
    return !info.finished; // every summary says whether its search can still change
  });
}

function searchSkeleton(s) {
  const dom = {
    head: h("section", { class: "card", id: "search-head" }, h("p", { class: "muted" }, "Loading…")),
    tools: h("div", { class: "plot-tools" }),
    plot: h("div", { class: "plot-box" }),
    state: h("div", { class: "search-state", id: "search-state", hidden: true }),
    filters: h("div", { class: "filters" }),
    count: h("div", { class: "count-line muted" }),
    table: h("div", { class: "front-box" }, h("p", { class: "muted" }, "Loading the front…")), // then a page of it, and its pager
    // fetched with the token (private reads), never a plain link
    csv: downloadLink({ class: "button", href: `/searches/${s.id}/pareto?format=csv`, download: `search-${s.id}-front.csv` },
      "Front as CSV", (err) => showError(err, `csv-${s.id}`)),
  };
  dom.root = h("div", {}, dom.head,
    h("section", { class: "card" },
      h("div", { class: "row" },
        h("div", { class: "grow" }, dom.tools, dom.state,
          dom.stage = h("div", { class: "plot-area loading" }, dom.plot, // loading until the first data
            h("div", { class: "loading-note plot-loading", role: "status" }, h("i", { class: "spinner" }), "Loading candidates…"))),
        h("div", { class: "filters-wrap" }, dom.filters, dom.count))),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Pareto front"), h("span", { class: "muted small" }, "Click a row for the candidate")),
      dom.table));
  return dom;
}

/** Cancel asks first, in the header itself ("Cancel search? [Yes, cancel] [Keep running]");
    a cancelled or failed search can be resumed, and any search cloned into the form. */
function headerActions(s, action) {
  const status = s.info.status;
  const button = (id, label, onclick, cls) => h("button", { type: "button", id, class: cls, onclick }, label);
  const confirm = (on) => { s.confirmCancel = on; renderHeader(s); };
  const actions = [];
  if (status === "running" && s.confirmCancel) {
    actions.push(h("span", { class: "confirm", role: "group", "aria-label": "confirm cancel" },
      h("span", {}, "Cancel search? It stops after its current generation."),
      button("cancel-yes", "Yes, cancel", () => { s.confirmCancel = false; action("cancel"); }, "danger"),
      button("cancel-no", "Keep running", () => confirm(false))));
  } else if (status === "running") {
    actions.push(button("cancel-button", "Cancel", () => confirm(true)));
  }
  if (status === "cancelled" || status === "failed") {
    actions.push(button("resume-button", "Resume", () => action("resume"), "primary"));
  }
  actions.push(h("a", { class: "button", id: "clone-button", href: `#/new/clone/${s.id}`, title: "A new search, from this one's config" }, "Clone"));
  return actions;
}

/** After POST /resume: the row changes when the worker takes the search (it starts a process
    first); then this page is routed to again, which polls it again (polling stopped when the
    search finished). */
async function resumed(s) {
  const before = { status: s.info.status, message: s.info.message };
  s.info.status = "resuming";
  renderHeader(s);
  for (let waited = 0; waited < 120_000 && !s.view.dead; waited += 500) {
    await new Promise((done) => setTimeout(done, 500));
    const info = await api(`/searches/${s.id}`);
    if (info.status !== before.status || info.message !== before.message) break;
  }
  if (!s.view.dead) window.dispatchEvent(new HashChangeEvent("hashchange"));
}

function renderHeader(s) {
  const info = s.info;
  const action = async (what) => {
    try {
      const answer = await api(`/searches/${s.id}/${what}`, { method: "POST" });
      clearError(`action-${s.id}`);
      if (what === "resume") return await resumed(s);
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
      headerActions(s, action),
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
    for (const [metric, limit] of Object.entries(target.limits || {})) {
      // a limit with confidence checks the upper bound of the metric's interval (nas.config.Limit)
      const checked = target.confidence?.[metric] ? `${metric}_high` : metric;
      s.limits.push({ metric: `${device}.${checked}`, limit });
    }
  }
  s.metrics = [...new Set([...objectives, ...s.limits.map((l) => l.metric)])];
  s.y = objectives[0] || null; // quality, by default up the y axis, against the first cost
  s.x = objectives[1] || objectives[0] || null;
  renderPlotTools(s);
  renderFilters(s);
}

/** Every metric the candidates report (quality, macs, params, each device's metrics): the
    choices of the axes. Read from one stored candidate, so it is the search's own list; its
    other keys (candidate, generation, ...) are told apart by the family's quality metrics
    (GET /families), the network's metrics and the "device.metric" names. */
async function loadMetricNames(s) {
  const [page, family] = await Promise.all([api(`/searches/${s.id}/candidates?limit=1`), familyOfSearch(s.info)]);
  const row = page.items[0];
  if (!row) return;
  s.metricsLoaded = true;
  const quality = Object.keys(family?.quality_metrics || {});
  const isMetric = (k) => quality.includes(k) || NETWORK_METRICS.includes(k) || k.includes(".");
  const names = Object.keys(row).filter((k) => isMetric(k) && (typeof row[k] === "number" || row[k] === null));
  s.metrics = [...new Set([...s.metrics, ...names])];
  renderPlotTools(s);
}

function renderFilters(s) {
  const fields = s.limits.map(({ metric, limit }) => {
    const input = h("input", { type: "number", step: "any", value: limit, "data-metric": metric, id: `where-${metric}` });
    input.addEventListener("input", debounce(() => refilter(s), 350));
    input.addEventListener("input", () => limitsChanged(s)); // dims and counts at once
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
  refilter(s);
}

/** The front again under the limit fields, from the table's first page. */
function refilter(s) {
  s.table.offset = 0;
  plotLoading(s, refreshFront(s));
}

/** The plot's loading note, shown (after a short delay, by the style) while `work` runs. */
async function plotLoading(s, work) {
  s.loading++;
  s.dom.stage.classList.add("loading");
  try {
    return await work;
  } finally {
    if (--s.loading === 0) s.dom.stage.classList.remove("loading");
  }
}

/** What the search's state means for this page, where the plot and the front alone would
    not say it: `title` and `text` above the plot, `table` in place of an empty front. */
function stateOf(info) {
  const n = info.candidates;
  const stored = n === 1 ? "the 1 candidate stored" : `the ${n} candidates stored`;
  if (info.status === "infeasible") {
    return {
      kind: "infeasible", title: "No feasible candidate",
      text: n
        ? `The search ended without a candidate that meets every limit, so it has no Pareto front: the plot shows ${stored}, all infeasible.`
        : "The search ended before evaluating any candidate: no arch can meet its limits (the message above says which).",
      table: n ? "No feasible candidate: none of this search's candidates meets every limit."
        : "No feasible candidate: the search ended without evaluating any.",
    };
  }
  if (info.status === "failed") {
    return {
      kind: "failed", title: "The search failed",
      text: n ? `The plot and the front show ${stored} before it failed.` : "It failed before any candidate was stored.",
      table: n ? null : "No candidates: the search failed before its first generation was stored.",
    };
  }
  if (info.status === "cancelled") {
    return {
      kind: "cancelled", title: "The search was cancelled",
      text: n ? `The plot and the front show ${stored} before it was cancelled.` : "It was cancelled before any candidate was stored.",
      table: n ? null : "No candidates: the search was cancelled before its first generation was stored.",
    };
  }
  if (!n) {
    return {
      kind: "waiting", title: "No candidates yet",
      text: "The first generation is being evaluated; its candidates appear here when it is stored.",
      table: "No candidates yet: the first generation is being evaluated.",
    };
  }
  if (!info.feasible) return { kind: "none-feasible", table: "No feasible candidate yet: none of the candidates stored so far meets every limit." };
  return null;
}

/** The state's note above the plot, and the plot itself only when there is something to plot. */
function renderState(s) {
  const state = s.state;
  s.dom.state.hidden = !state?.title;
  s.dom.state.className = `search-state${state ? ` state-${state.kind}` : ""}`;
  if (state?.title) fill(s.dom.state, h("strong", {}, state.title), " ", h("span", {}, state.text));
  s.dom.stage.hidden = !s.info.candidates;
}

/** The --where conditions of the limit fields ("stm32f746.peak_sram_kb<=8"); empty: none. */
function whereConditions(s) {
  return [...s.dom.filters.querySelectorAll("input[data-metric]")]
    .filter((input) => input.value.trim() !== "")
    .map((input) => `${input.dataset.metric}<=${input.value.trim()}`);
}

async function refreshData(s) {
  s.state = stateOf(s.info); // before the table, whose empty text it names
  // the axis choices, the points and the front at once: the first paint waits for the points only
  await Promise.all([!s.metricsLoaded && loadMetricNames(s), refreshPoints(s), refreshFront(s)]);
}

/** All candidates' values of the metrics shown, afresh: something new was stored. */
async function refreshPoints(s) {
  await loadPoints(s, true);
}

/** The front under the limit fields' conditions, from GET /pareto: the server filters it
    (conditions equal to the search's own limits cost nothing: it keeps that front). The
    whole front for the plot, and the table's page beside it. */
async function refreshFront(s) {
  const seq = ++s.seq.front;
  if (!s.info.candidates) { // nothing stored yet (and GET /pareto answers 500 for that)
    s.front = { front: [], objectives: s.info.objectives };
    drawPlot(s);
    emptyTable(s);
    return;
  }
  const query = new URLSearchParams(whereConditions(s).map((w) => ["where", w]));
  const error = $("#where-error", s.dom.filters);
  try {
    const [front] = await Promise.all([api(`/searches/${s.id}/pareto?${query}`), refreshTable(s)]);
    if (seq !== s.seq.front || s.view.dead) return;
    s.front = front;
    query.set("format", "csv"); // the CSV is the front shown, limits included
    s.dom.csv.href = `/searches/${s.id}/pareto?${query}`;
    error.hidden = true;
    drawPlot(s);
  } catch (err) {
    if (seq !== s.seq.front) return;
    error.textContent = err.message; // a bad condition is shown beside the limits
    error.hidden = false;
  }
}

/** Mark a candidate in the plot and the table, and show it in the panel. */
function pick(s, number) {
  s.picked = number;
  drawPlot(s);
  renderFrontTable(s);
  openCandidate(s, number);
}
