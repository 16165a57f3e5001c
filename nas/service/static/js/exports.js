/* The Exports page: every export, whichever door made it (the page's own jobs and
   `nas export` alike), newest first, paged from GET /exports: status (and phase while it
   runs), its search and candidate, formats, size, time taken and its files, downloaded with
   the token. Refreshed while shown. */

import { api } from "./api.js";
import { card, fill, fmtBytes, h, showError, statusBadge } from "./dom.js";
import { exportFiles, exportProgress, openCandidate, seconds } from "./panel.js";
import { mount, poll } from "./view.js";

const PAGE_SIZE = 25;

export async function renderExports(view) {
  let offset = 0;
  let shown = "";
  const body = h("tbody");
  const empty = h("p", { class: "muted", hidden: true },
    "No exports yet. Open a candidate of a search to export it, or run `nas export SEARCH CANDIDATE`.");
  const pager = h("div", { class: "pager" });
  let refresh = () => {};
  const turn = (to) => { offset = Math.max(0, to); refresh().catch((err) => showError(err, "exports")); };
  mount(card("Exports", null,
    h("div", { class: "table-wrap" }, h("table", { class: "table exports" },
      h("thead", {}, h("tr", {}, ["ID", "Status", "Search", "Candidate", "Formats", "Size", "Took", "Created", "Files"]
        .map((t) => h("th", { class: ["Size", "Took"].includes(t) ? "num" : null }, t)))),
      body)),
    empty, pager));
  poll(view, "exports", refresh = async () => {
    const page = await api(`/exports?limit=${PAGE_SIZE}&offset=${offset}`);
    if (view.dead) return false;
    const seen = JSON.stringify(page);
    if (seen === shown) return true; // unchanged: keep the rows (and any focus or hover) as they are
    shown = seen;
    fill(body, page.items.map(exportRow));
    empty.hidden = page.total > 0;
    const last = Math.min(page.total, offset + page.items.length);
    fill(pager, page.total > PAGE_SIZE && [
      h("button", { type: "button", disabled: offset === 0, onclick: () => turn(offset - PAGE_SIZE) }, "Newer"),
      h("span", { class: "muted small" }, `${offset + 1}–${last} of ${page.total}`),
      h("button", { type: "button", disabled: last >= page.total, onclick: () => turn(offset + PAGE_SIZE) }, "Older"),
    ]);
  });
}

function exportRow(e) {
  const bytes = e.files.reduce((sum, f) => sum + (f.bytes || 0), 0);
  return h("tr", { "data-export": e.id },
    h("td", {}, `#${e.id}`),
    h("td", {}, statusBadge(e.status),
      !e.finished && h("div", { class: "muted small export-phase" }, exportProgress(e)),
      e.status === "failed" && h("div", { class: "small message" }, e.message)),
    h("td", {}, h("a", { href: `#/searches/${e.search}`, class: "export-search" }, e.search_name,
      h("span", { class: "muted small" }, ` #${e.search}`))),
    h("td", {}, h("a", { href: `#/searches/${e.search}`, class: "candidate-link", onclick: (event) => {
      event.preventDefault();
      openExported(e).catch((err) => showError(err, `open-${e.search}`));
    } }, `candidate ${e.candidate}`)),
    h("td", { class: "small formats" }, e.formats.join(", ")),
    h("td", { class: "num" }, e.files.length ? fmtBytes(bytes) : "—"),
    h("td", { class: "num" }, (e.finished && seconds(e.seconds)) || "—"),
    h("td", { class: "muted small" }, (e.created_at || "").replace("T", " ").slice(0, 19)),
    h("td", { class: "files-cell" }, e.files.length ? exportFiles(e) : h("span", { class: "muted" }, "—")));
}

/** The candidate's panel over this page, as on its search's page (limits: the search's). */
async function openExported(e) {
  const info = await api(`/searches/${e.search}`);
  const limits = Object.entries(info.targets || {}).flatMap(([device, t]) =>
    Object.entries(t.limits || {}).map(([metric, limit]) => ({ metric: `${device}.${metric}`, limit })));
  openCandidate({ id: e.search, info, limits }, e.candidate);
}
