/* The nas web page: the searches, a form that launches one, and a search's page (its front as
   an SVG scatter, limit filters, the front as a table, a candidate panel with export).

   A thin door like the CLI: every number comes from the HTTP API, nothing is computed here that
   the core already computes (the front, the --where filters, validation). Plain ES modules, no
   build step, nothing from a CDN, so `nas serve` works offline. This one routes between the
   views; each module imports what it needs:

     api.js     the fetch wrapper (token, ApiError) and the cached GETs (/spaces, /families)
     dom.js     element helpers, number formatting, the errors at the top of the page
     view.js    views (a route's lifetime) and polling
     list.js    the list of searches           form.js   the launch form (form-errors.js:
                                                its problems beside their fields)
     search.js  one search's page              plot.js   its scatter
     panel.js   the candidate panel and its export box
     exports.js every export, whichever door made it */

import { getToken, setToken } from "./api.js";
import { $, h } from "./dom.js";
import { renderExports } from "./exports.js";
import { renderForm } from "./form.js";
import { renderList } from "./list.js";
import { closePanel } from "./panel.js";
import { hideTooltip } from "./plot.js";
import { renderSearch } from "./search.js";
import { mount, newView } from "./view.js";

const ROUTES = [
  [/^#\/new$/, renderForm, "new"],
  [/^#\/new\/clone\/(\d+)$/, renderForm, "new"], // the form, from a search's config
  [/^#\/exports$/, renderExports, "exports"],
  [/^#\/searches\/(\d+)$/, renderSearch, null],
  [/^/, renderList, "list"],
];

function route() {
  closePanel();
  hideTooltip();
  const view = newView();
  const hash = location.hash || "#/";
  for (const [pattern, render, nav] of ROUTES) {
    const match = pattern.exec(hash);
    if (!match) continue;
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
    render(view, ...match.slice(1)).catch((err) => {
      if (!view.dead) mount(h("div", { class: "error-box" }, err.message));
    });
    return;
  }
}

function setupToken() {
  const input = $("#token");
  input.value = getToken();
  input.addEventListener("change", () => setToken(input.value.trim()));
}

setupToken();
window.addEventListener("hashchange", route);
document.addEventListener("keydown", (e) => { if (e.key === "Escape") closePanel(); });
route();
