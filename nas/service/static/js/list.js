/* The list of searches: the newest ones, refreshed while the list is shown. */

import { api } from "./api.js";
import { bestText, card, clickable, fill, h, progress, statusBadge } from "./dom.js";
import { mount, poll } from "./view.js";

const LIST_LIMIT = 500; // the newest searches listed (the most GET /searches pages)

export async function renderList(view) {
  const body = h("tbody");
  const empty = h("p", { class: "muted", hidden: true }, "No searches yet. ", h("a", { href: "#/new" }, "Launch one"), ".");
  mount(card("Searches", h("a", { class: "button primary", href: "#/new" }, "New search"),
    h("div", { class: "table-wrap" }, h("table", { class: "table searches" },
      h("thead", {}, h("tr", {}, ["ID", "Name", "Status", "Progress", "Feasible / candidates", "Best", "Created"]
        .map((t) => h("th", { class: t.startsWith("Feasible") ? "num" : null }, t)))),
      body)),
    empty));
  poll(view, "searches", async () => {
    let page = await api(`/searches?limit=${LIST_LIMIT}`); // oldest first: ask for the newest
    if (page.total > page.items.length) page = await api(`/searches?limit=${LIST_LIMIT}&offset=${page.total - LIST_LIMIT}`);
    if (view.dead) return false;
    fill(body, page.items.slice().reverse().map(searchRow));
    empty.hidden = page.items.length > 0;
  });
}

function searchRow(s) {
  const open = () => { location.hash = `#/searches/${s.id}`; };
  return h("tr", { class: "clickable", "data-search": s.id, ...clickable(open) },
    h("td", {}, h("a", { href: `#/searches/${s.id}` }, `#${s.id}`)),
    h("td", {}, s.name),
    h("td", {}, statusBadge(s.status)),
    h("td", {}, progress(s.generations)),
    h("td", { class: "num" }, `${s.feasible} / ${s.candidates}`),
    h("td", { class: "small best" }, bestText(s.best)),
    h("td", { class: "muted small" }, (s.created_at || "").replace("T", " ").slice(0, 19)));
}
