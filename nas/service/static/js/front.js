/* The front as a table, one page at a time. GET /searches/ID/pareto sorts and cuts the front
   on the server (sort, order, offset, limit; its answer counts the whole front in `total`),
   so a front of thousands of rows costs one page of rows here. A column header sorts by its
   column (again: the other way); the arch id cell shows the whole id on hover and copies it. */

import { api } from "./api.js";
import { clickable, fill, fmt, h, showError } from "./dom.js";
import { fmtMetric, isPercent } from "./format.js";

/** A cell as the CLI's table prints it: top1 as 97.50%, the rest to 4 significant digits
    (their units are in the column's metric name). */
const fmtCell = (metric, value) => (isPercent(metric) ? fmtMetric(metric, value) : fmt(value));

export const PAGE_SIZES = [10, 25, 50, 100];

/** What the table shows: the server's order (null: the front's own, best quality first), the
    page's first row and size, and the page last received. */
export function tableState() {
  return { sort: null, order: null, offset: 0, size: 50, page: null, seq: 0, loading: 0 };
}

/** Ask for the page the table's state names, under the search's current `where` conditions
    (`s.where()`), and draw it. A response that arrives after a newer request is dropped. */
export async function refreshTable(s) {
  const t = s.table;
  const seq = ++t.seq;
  const query = new URLSearchParams(s.where().map((w) => ["where", w]));
  if (t.sort) query.set("sort", t.sort);
  if (t.order) query.set("order", t.order);
  query.set("offset", t.offset);
  query.set("limit", t.size);
  setLoading(s, +1);
  try {
    const page = await api(`/searches/${s.id}/pareto?${query}`);
    if (seq !== t.seq || s.view.dead) return;
    if (!page.front.length && page.total && t.offset) { // the front shrank below this page
      t.offset = lastPageStart(page.total, t.size);
      await refreshTable(s);
      return;
    }
    t.page = page;
    renderFrontTable(s);
  } finally {
    setLoading(s, -1);
  }
}

/** No rows to ask for (no candidate stored yet): an empty page, drawn at once. */
export function emptyTable(s) {
  s.table.seq++; // a request still on its way is out of date
  s.table.page = { front: [], total: 0, offset: 0, sort: s.table.sort, order: s.table.order };
  renderFrontTable(s);
}

function setLoading(s, change) {
  s.table.loading += change;
  s.dom.table.classList.toggle("loading", s.table.loading > 0);
}

const lastPageStart = (total, size) => Math.max(0, Math.floor((total - 1) / size) * size);

/** A user's change of sort or page: ask for it, and show a failure at the top of the page. */
function change(s, update) {
  update(s.table);
  refreshTable(s).then(() => { /* drawn */ }, (err) => showError(err, `table-${s.id}`));
}

/** A row's value of a metric or of a bound ("device.latency_ms_high": the column of a limit
    with confidence), which a row keeps under `bounds`. */
function rowValue(row, name) {
  if (row[name] !== undefined) return row[name];
  const [, metric, end] = name.match(/^(.*)_(low|high)$/) || [];
  return metric ? row.bounds?.[metric]?.[end] : undefined;
}

export function renderFrontTable(s) {
  const page = s.table.page;
  if (!page) return;
  const objectives = s.front?.objectives || s.info.objectives || [];
  const names = objectives.map((o) => o.metric);
  const limited = s.limits.map((l) => l.metric).filter((m) => !names.includes(m));
  const arrow = { maximize: " ↑", minimize: " ↓" };
  const header = (key, label, numeric = false) => {
    const sorted = page.sort === key;
    const next = sorted && page.order === "asc" ? "desc" : sorted ? "asc" : null; // null: best first
    return h("th", { class: numeric ? "num" : null, "aria-sort": sorted ? `${page.order}ending` : null },
      h("button", {
        type: "button", class: `sort${sorted ? " sorted" : ""}`, "data-sort": key,
        title: `Sort the front by ${label}`,
        onclick: () => change(s, (t) => { t.sort = key; t.order = next; t.offset = 0; }),
      }, label, h("span", { class: "sort-mark" }, sorted ? (page.order === "asc" ? "▲" : "▼") : "")));
  };
  const rows = page.front.map((row) => h("tr", {
    class: `clickable${row.candidate === s.picked ? " selected" : ""}`, "data-candidate": row.candidate,
    ...clickable(() => s.pick(row.candidate)),
  },
  h("td", {}, row.candidate), h("td", { class: "num" }, row.generation),
  names.map((m) => h("td", { class: "num" }, fmtCell(m, row[m]))),
  limited.map((m) => h("td", { class: "num muted" }, fmtCell(m, rowValue(row, m)))),
  archIdCell(row.arch_id)));
  fill(s.dom.table,
    page.total > 0 && pager(s, page),
    h("div", { class: "table-wrap tall" }, rows.length
      ? h("table", { class: "table front-table" },
        h("thead", {}, h("tr", {}, header("candidate", "Candidate"), header("generation", "Gen", true),
          objectives.map((o) => header(o.metric, o.metric + (arrow[o.goal] || ""), true)),
          limited.map((m) => header(m, m, true)), header("arch_id", "Arch id"))),
        h("tbody", {}, rows))
      : h("p", { class: "muted empty-front" }, s.state?.table || "No feasible candidate under these limits.")));
}

/** "Rows 51–100 of 580", the page buttons and the page size. */
function pager(s, page) {
  const t = s.table;
  const { total, offset } = page;
  const last = lastPageStart(total, t.size);
  const go = (start) => () => change(s, (state) => { state.offset = start; });
  const shown = total ? `Rows ${offset + 1}–${offset + page.front.length} of ${total}` : "No rows";
  return h("div", { class: "pager" },
    h("span", { class: "muted small", id: "front-rows" }, shown),
    h("span", { class: "loading-note small", role: "status" }, h("i", { class: "spinner" }), "Loading…"),
    h("span", { class: "grow" }),
    h("label", { class: "small muted" }, "Rows per page ",
      h("select", { id: "front-page-size", onchange: (e) => change(s, (state) => { state.size = Number(e.target.value); state.offset = 0; }) },
        PAGE_SIZES.map((n) => h("option", { value: n, selected: n === t.size }, n)))),
    h("button", { type: "button", title: "First page", disabled: offset === 0, onclick: go(0) }, "«"),
    h("button", { type: "button", id: "front-prev", disabled: offset === 0, onclick: go(Math.max(0, offset - t.size)) }, "‹ Previous"),
    h("button", { type: "button", id: "front-next", disabled: offset + t.size >= total, onclick: go(offset + t.size) }, "Next ›"),
    h("button", { type: "button", title: "Last page", disabled: offset >= last, onclick: go(last) }, "»"));
}

/** The whole id, on hover too, selected whole by a click; its button copies it. */
function archIdCell(archId) {
  const text = h("span", { class: "mono arch-id", title: archId }, archId);
  const button = h("button", {
    type: "button", class: "copy", title: "Copy the arch id", "aria-label": `Copy arch id ${archId}`,
    onclick: (e) => { e.stopPropagation(); copy(archId, text, button); },
    onkeydown: (e) => e.stopPropagation(), // Enter on the button is not Enter on the row
  }, "Copy");
  return h("td", { class: "arch-cell" }, text, button);
}

async function copy(value, text, button) {
  try {
    await navigator.clipboard.writeText(value); // only where the page is a secure context
    button.textContent = "Copied";
  } catch {
    getSelection().selectAllChildren(text); // then Ctrl+C copies it
    button.textContent = "Selected";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}
