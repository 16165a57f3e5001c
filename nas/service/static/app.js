/* The nas web page: the searches, a form that launches one, and a search's page (its front as
   an SVG scatter, limit filters, the front as a table, a candidate panel with export).

   A thin door like the CLI: every number comes from the HTTP API, nothing is computed here that
   the core already computes (the front, the --where filters, validation). Plain ES module, no
   build step, nothing from a CDN, so `nas serve` works offline. */

const SVG_NS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "nas.token";
const POLL_MS = 2000; // the list and a running search refresh this often
const EXPORT_POLL_MS = 1000;
const LIST_LIMIT = 500; // the newest searches listed (the most GET /searches pages)
const UNFINISHED = ["running", "cancelling"]; // a search in these states is still changing
// keys of a candidate row that are not metrics (see nas.pareto.CandidateRow.to_dict)
const NOT_METRICS = new Set(["candidate", "generation", "arch_id", "feasible", "top1_measured", "arch", "measured", "devices"]);
const NETWORK_METRICS = ["macs", "params"];

// ----- DOM helpers ---------------------------------------------------------------------------

/** h("div", {class: "x", onclick: f}, child, "text"): an element; "svg:" makes an SVG one.
    Attributes that are null, undefined or false are left out; children may be arrays. */
function h(tag, attrs = {}, ...children) {
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
function fill(el, ...children) {
  el.replaceChildren(...nodes(children));
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);

/** Attributes that make a row act like a link: click, or Enter when focused. */
function clickable(action) {
  return { tabindex: 0, onclick: action, onkeydown: (e) => { if (e.key === "Enter") action(); } };
}

function card(title, actions, ...body) {
  return h("section", { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, title), h("div", {}, actions)), body);
}

// ----- formatting ----------------------------------------------------------------------------

/** A number as people read it: 4 significant digits, large counts with k/M/G. */
function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  const abs = Math.abs(value);
  for (const [unit, suffix] of [[1e9, "G"], [1e6, "M"], [1e4, "k"]]) {
    if (abs >= unit) return `${+(value / unit).toPrecision(3)}${suffix}`;
  }
  return String(+value.toPrecision(4));
}

function fmtBytes(bytes) {
  const [unit, suffix] = [[2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]].find(([u]) => bytes >= u) || [1, "B"];
  return `${+(bytes / unit).toFixed(unit === 1 ? 0 : 1)} ${suffix}`;
}

function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}

/** "2/3" -> a bar and its text. */
function progress(generations, large = false) {
  const [done, total] = String(generations || "0/0").split("/").map(Number);
  const pct = total ? Math.min(100, (100 * done) / total) : 0;
  return h("span", { class: "progress" },
    h("span", { class: large ? "bar large" : "bar" }, h("span", { style: `width:${pct}%` })),
    h("span", { class: "muted small" }, `${done}/${total} generations`));
}

function bestText(best) {
  const parts = Object.entries(best || {}).map(([k, v]) => `${k} ${fmt(v)}`);
  return parts.length ? parts.join(" · ") : "—";
}

// ----- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

/** fetch a JSON route. The token (if any) goes with every request: mutating routes need it,
    and so do reads on a server started with private reads. Errors become ApiError with the
    server's own message, which names the field or id. */
async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, `${method} ${path}: the server cannot be reached (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (response.ok) return data;
  let detail = (data && data.detail) || text || response.statusText;
  if (Array.isArray(detail)) { // FastAPI's own errors, for a bad query parameter
    detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
  }
  if (response.status === 401) {
    detail = `Not authorised (401): ${detail}. Enter the server's token in the "API token" field at the top right.`;
  }
  throw new ApiError(response.status, String(detail));
}

let spacesCache = null; // GET /spaces: how to draw each space's archs; it never changes
async function spaces() {
  spacesCache ??= api("/spaces").then((r) => Object.fromEntries(r.items.map((s) => [s.name, s])));
  return spacesCache.catch((err) => { spacesCache = null; throw err; });
}

// ----- errors shown in the page (never swallowed) --------------------------------------------

const errorEntries = new Map(); // key -> element: a poll that keeps failing shows one entry

function showError(err, key = String(err)) {
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

function clearError(key) {
  errorEntries.get(key)?.remove();
  errorEntries.delete(key);
}

// ----- views and polling ---------------------------------------------------------------------

/* A view is what one route shows. Navigating away marks it dead, which stops its polls and
   makes late responses for it be ignored. */
let current = null;

function newView() {
  if (current) current.dead = true;
  current = { dead: false };
  return current;
}

/** Run `fn` now and every `ms` while the view lives, one call at a time; `fn` returning false
    stops it. A failure is shown (under `key`) and the poll goes on. */
function poll(view, key, fn, ms = POLL_MS) {
  const tick = async () => {
    if (view.dead) return;
    let again = true;
    try {
      again = (await fn()) !== false;
      clearError(key);
    } catch (err) {
      if (!view.dead) showError(err, key);
    }
    if (again && !view.dead) setTimeout(tick, ms);
  };
  tick();
}

function mount(...children) {
  fill($("#view"), children);
}

const ROUTES = [
  [/^#\/new$/, renderForm, "new"],
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

// ----- the list of searches ------------------------------------------------------------------

async function renderList(view) {
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

// ----- the launch form -----------------------------------------------------------------------

async function renderForm(view) {
  const [hardware, files, spaceInfo] = await Promise.all([api("/hardware"), api("/supernets"), spaces()]);
  if (view.dead) return;
  const devices = hardware.items;
  const form = h("form", { class: "form", id: "launch", novalidate: true },
    modelSection(files),
    algorithmSection(),
    devicesSection(devices),
    h("section", { class: "card span2 section", "data-field": "objectives" },
      h("h2", {}, "Objectives"),
      h("p", { class: "muted small" }, "None ticked: the model's quality and every device's latency."),
      h("div", { class: "objectives", id: "objectives" })),
    h("div", { class: "span2" },
      h("div", { class: "error-box", id: "form-error", hidden: true }),
      h("div", { class: "form-actions" },
        h("button", { class: "primary", type: "submit", id: "launch-button" }, "Launch search"),
        h("span", { class: "muted small", id: "form-state" }))));
  const refreshObjectives = () => renderObjectives(form, devices, qualityOf(form, files, spaceInfo));
  form.addEventListener("change", (e) => {
    if (e.target.name === "device") toggleDevice(e.target);
    if (e.target.name === "device" || e.target.name === "supernet") refreshObjectives();
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); submitForm(form); });
  mount(h("div", { class: "card-head" }, h("h1", {}, "New search")), form);
  refreshObjectives();
}

/** A labelled input with its slot for an error; `name` is the config field the server names. */
function field(label, name, input, hint) {
  return h("div", { class: "field", "data-field": name },
    h("label", { for: input.id }, label), input, hint && h("span", { class: "hint" }, hint));
}

function modelSection(files) {
  const options = (rows) => rows.map((r) => h("option", { value: r.path }, r.space || ""));
  return h("section", { class: "card" }, h("h2", {}, "Model"),
    field("Name", "name", h("input", { id: "f-name", name: "name", value: "search" })),
    field("Supernet", "supernet",
      h("input", { id: "f-supernet", name: "supernet", list: "supernet-paths", placeholder: "runs/mnist-supernet/supernet.pt", spellcheck: "false" }),
      "A checkpoint path (or its run folder) on the server."),
    h("datalist", { id: "supernet-paths" }, options(files.supernets)),
    field("Predictor", "predictor",
      h("input", { id: "f-predictor", name: "predictor", list: "predictor-paths", placeholder: "optional: runs/mnist-supernet/predictor.pt", spellcheck: "false" })),
    h("datalist", { id: "predictor-paths" }, options(files.predictors)),
    field("Evaluation", "evaluation",
      h("select", { id: "f-evaluation", name: "evaluation" },
        ["predictor", "supernet", "predictor+verify"].map((v) => h("option", { value: v }, v))),
      "predictor+verify: search with the predictor, then measure the front with the supernet."));
}

function algorithmSection() {
  const number = (name, value, extra = {}) =>
    h("input", { id: `f-${name}`, name, type: "number", value, step: 1, ...extra });
  return h("section", { class: "card" }, h("h2", {}, "Algorithm"),
    field("Sampler", "algorithm.sampler",
      h("select", { id: "f-sampler", name: "sampler" },
        h("option", { value: "nsga2" }, "nsga2 (NSGA-II)"), h("option", { value: "random" }, "random (baseline)"))),
    h("div", { class: "fields3" },
      field("Population", "algorithm.population", number("population", 48)),
      field("Generations", "algorithm.generations", number("generations", 20)),
      field("Seed", "algorithm.seed", number("seed", 0)),
      field("Ray workers", "workers", number("workers", 0))),
    h("p", { class: "muted small" }, "Candidates evaluated: population × generations. Workers 0: in the server's search process."));
}

function devicesSection(devices) {
  return h("section", { class: "card span2 section", "data-field": "targets" },
    h("h2", {}, "Devices and limits"),
    h("p", { class: "muted small" }, "Tick the devices to search for. A limit is an upper bound on that metric; leave it empty for none."),
    h("div", { class: "devices" }, devices.map(deviceBox)));
}

/** One device: a tick box, then (when ticked) a limit field per metric it reports, batch and
    its options, as GET /hardware describes them. */
function deviceBox(hw) {
  const id = (m) => `f-${hw.name}-${m}`;
  const limit = (metric) => field(metric, `targets.${hw.name}.${metric}`,
    h("input", { id: id(metric), type: "number", step: "any", "data-device": hw.name, "data-limit": metric, placeholder: "no limit" }));
  const option = ([name, choices]) => field(name, `targets.${hw.name}.${name}`,
    h("select", { id: id(name), "data-device": hw.name, "data-option": name },
      h("option", { value: "" }, "default"), choices.map((c) => h("option", { value: c }, c))));
  return h("div", { class: "device", "data-field": `targets.${hw.name}` },
    h("label", {},
      h("input", { type: "checkbox", name: "device", value: hw.name }),
      h("strong", {}, hw.name), h("span", { class: "kind" }, hw.kind)),
    h("div", { class: "desc" }, hw.description),
    h("div", { class: "device-settings", hidden: true },
      hw.metrics.map(limit),
      field("batch", `targets.${hw.name}.batch`,
        h("input", { id: id("batch"), type: "number", step: 1, "data-device": hw.name, "data-batch": "1", placeholder: "1" })),
      Object.entries(hw.options || {}).map(option)));
}

function toggleDevice(box) {
  const device = box.closest(".device");
  device.classList.toggle("on", box.checked);
  $(".device-settings", device).hidden = !box.checked;
}

/** The quality metrics of the supernet named in the form: a classifier's top1 or a GAN's fid
    and consistency. Known from GET /supernets when the server has used that file; otherwise
    guessed from the file name (GAN runs save gan.pt). The server checks the objectives. */
function qualityOf(form, files, spaceInfo) {
  const path = form.elements.supernet.value.trim();
  const known = files.supernets.find((s) => s.path === path);
  const genes = known && spaceInfo[known.space] ? spaceInfo[known.space].genes : null;
  const gan = genes ? "ch" in genes : /(^|\/)gan\.pt$/.test(path);
  return gan ? { fid: "minimize", consistency: "minimize" } : { top1: "maximize" };
}

/** One row per metric an objective may name: quality, the network's size, each ticked device's
    metrics. Ticks and goals already chosen are kept when the list is rebuilt. */
function renderObjectives(form, devices, quality) {
  const box = $("#objectives", form);
  const chosen = new Map([...box.querySelectorAll(".objective")]
    .map((row) => [row.dataset.metric, { on: $("input", row).checked, goal: $("select", row).value }]));
  const metrics = { ...quality };
  for (const m of NETWORK_METRICS) metrics[m] = "minimize";
  for (const hw of devices) {
    if (!form.querySelector(`input[name=device][value="${hw.name}"]`).checked) continue;
    for (const m of hw.metrics) if (!NETWORK_METRICS.includes(m)) metrics[`${hw.name}.${m}`] = "minimize";
  }
  fill(box, Object.entries(metrics).map(([metric, goal]) => {
    const before = chosen.get(metric);
    const select = h("select", { "aria-label": `goal of ${metric}` },
      ["minimize", "maximize"].map((g) => h("option", { value: g, selected: (before?.goal ?? goal) === g }, g)));
    return h("label", { class: "objective", "data-metric": metric },
      h("input", { type: "checkbox", checked: before?.on }), h("code", {}, metric), select);
  }));
}

/** The form as a search config (the format of experiments/search_*.yaml). Empty fields are left
    out, so the server's defaults apply; values are not checked here: the server says what is
    wrong, field by field. */
function formConfig(form) {
  const value = (name) => form.elements[name].value.trim();
  const number = (text) => (text === "" ? undefined : Number(text));
  const config = {
    name: value("name") || undefined,
    supernet: value("supernet"),
    predictor: value("predictor") || undefined,
    evaluation: value("evaluation"),
    workers: number(value("workers")),
    algorithm: {
      sampler: value("sampler"),
      population: number(value("population")),
      generations: number(value("generations")),
      seed: number(value("seed")),
    },
    targets: {},
  };
  for (const box of form.querySelectorAll("input[name=device]:checked")) {
    const target = {};
    for (const input of box.closest(".device").querySelectorAll("[data-device]")) {
      const text = input.value.trim();
      if (text === "") continue;
      const key = input.dataset.limit || input.dataset.option || "batch";
      target[key] = input.dataset.option ? text : Number(text);
    }
    config.targets[box.value] = target;
  }
  const objectives = [...form.querySelectorAll(".objective")].filter((row) => $("input", row).checked)
    .map((row) => ({ metric: row.dataset.metric, goal: $("select", row).value }));
  if (objectives.length) config.objectives = objectives;
  return config;
}

async function submitForm(form) {
  const button = $("#launch-button", form);
  clearFieldErrors(form);
  button.disabled = true;
  $("#form-state", form).textContent = "Validating and recording the search…";
  try {
    const created = await api("/searches", { method: "POST", body: formConfig(form) });
    location.hash = `#/searches/${created.id}`;
  } catch (err) {
    showFormError(form, err);
  } finally {
    button.disabled = false;
    $("#form-state", form).textContent = "";
  }
}

/** The server's message, one problem a line. nas/config.py writes "invalid search config
    <source>: FIELD: message", or a header line then "  FIELD: message" per problem. A line
    that names no field comes back with field null. */
function parseFieldErrors(detail) {
  const text = detail.replace(/^invalid search config [^:\n]*:\s*/, "");
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const match = /^([A-Za-z_][\w-]*(?:\.[\w-]+)*):\s*(.*)$/.exec(line);
    return match ? { field: match[1], message: match[2] } : { field: null, message: line };
  });
}

/** The element for a config field: the field itself, or the nearest enclosing one that the
    form has ("targets.stm32f746.foo_kb" -> the stm32f746 box; "objectives.0.metric" -> the
    objectives section). */
function findField(form, path) {
  const parts = path.split(".");
  for (let n = parts.length; n > 0; n--) {
    const el = form.querySelector(`[data-field="${CSS.escape(parts.slice(0, n).join("."))}"]`);
    if (el) return el;
  }
  return null;
}

function showFormError(form, err) {
  const general = $("#form-error", form);
  const unplaced = [];
  let first = null;
  const problems = err.status === 422 || err.status === 400 ? parseFieldErrors(err.detail) : [];
  for (const { field: name, message } of problems) {
    const el = name && findField(form, name);
    if (!el) { unplaced.push(name ? `${name}: ${message}` : message); continue; }
    el.classList.add("invalid");
    // a containing box gets the full path, so the user sees which of its settings is meant
    const shown = el.dataset.field === name ? message : `${name.slice(el.dataset.field.length + 1)}: ${message}`;
    el.append(h("p", { class: "field-error" }, shown));
    first ??= el;
  }
  if (!problems.length) unplaced.push(err.message);
  general.hidden = unplaced.length === 0;
  general.textContent = unplaced.join("\n");
  (first || general).scrollIntoView({ block: "center", behavior: "smooth" });
  $("input, select", first || form)?.focus({ preventScroll: true });
}

function clearFieldErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
  $("#form-error", form).hidden = true;
}

// ----- one search ----------------------------------------------------------------------------

async function renderSearch(view, idText) {
  const id = Number(idText);
  const s = {
    id, view, info: null, metrics: [], limits: [], x: null, y: null,
    points: null, front: null, picked: null, stamp: null, seq: { points: 0, front: 0 },
  };
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
    return UNFINISHED.includes(info.status);
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
    csv: h("a", { class: "button", href: `/searches/${s.id}/pareto?format=csv`, download: `search-${s.id}-front.csv` }, "Front as CSV"),
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
      if (what === "resume") return route(); // polling stopped when it failed; start it again
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
    choices of the axes. Read from one stored candidate, so it is the search's own list. */
async function loadMetricNames(s) {
  const page = await api(`/searches/${s.id}/candidates?limit=1`);
  const row = page.items[0];
  if (!row) return;
  s.metricsLoaded = true;
  const names = Object.keys(row).filter((k) => !NOT_METRICS.has(k) && (typeof row[k] === "number" || row[k] === null));
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

function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
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

// ----- the scatter ---------------------------------------------------------------------------

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

function drawPlot(s) {
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
    circle.addEventListener("click", () => openCandidate(s, p.trial));
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

function hideTooltip() { $("#tooltip").hidden = true; }

// ----- the front as a table ------------------------------------------------------------------

function renderFrontTable(s) {
  const objectives = s.front.objectives || s.info.objectives || [];
  const names = objectives.map((o) => o.metric);
  const limited = s.limits.map((l) => l.metric).filter((m) => !names.includes(m));
  const arrow = { maximize: " ↑", minimize: " ↓" };
  const rows = s.front.front.map((row) => h("tr", {
    class: `clickable${row.candidate === s.picked ? " selected" : ""}`, "data-candidate": row.candidate,
    ...clickable(() => openCandidate(s, row.candidate)),
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

// ----- the candidate panel -------------------------------------------------------------------

let panelView = null; // like a view: closing the panel stops its export poll

function closePanel() {
  if (panelView) panelView.dead = true;
  panelView = null;
  $("#panel").hidden = true;
}

async function openCandidate(s, number) {
  closePanel();
  const pv = { dead: false };
  panelView = pv;
  s.picked = number;
  drawPlot(s);
  if (s.front) renderFrontTable(s);
  const panel = $("#panel");
  panel.hidden = false;
  fill(panel, panelHead(`Candidate ${number}`), h("p", { class: "muted" }, "Loading…"));
  try {
    const [c, spaceInfo] = await Promise.all([api(`/searches/${s.id}/candidates/${number}`), spaces()]);
    if (pv.dead) return;
    fill(panel, candidateView(s, c, spaceInfo[s.info.space], pv));
  } catch (err) {
    if (!pv.dead) panel.append(h("div", { class: "error-box" }, err.message));
  }
}

function panelHead(title) {
  return h("div", { class: "panel-head" }, h("h2", {}, title),
    h("button", { class: "close", type: "button", title: "Close (Esc)", onclick: closePanel }, "×"));
}

function candidateView(s, c, space, pv) {
  const { quality, network, devices } = groupMetrics(c);
  return [
    panelHead(`Candidate ${c.candidate}`),
    h("div", { class: "tags" },
      h("span", { class: `tag ${c.feasible ? "ok" : "bad"}` }, c.feasible ? "feasible" : "infeasible"),
      h("span", { class: "tag" }, `generation ${c.generation}`),
      h("span", { class: "tag mono" }, c.arch_id)),
    h("h3", {}, "Export"),
    exportBox(s, c, pv),
    h("h3", {}, "Quality"),
    kvTable(qualityRows(s, c, quality)),
    h("h3", {}, "Cost"),
    h("div", { class: "device-cost" }, h("div", { class: "name" }, "network"),
      kvTable(Object.entries(network).map(([k, v]) => [k, fmt(v)]))),
    costOnDevices(s, c, devices),
    h("h3", {}, "Architecture"),
    drawArch(c.arch, space),
    h("details", {}, h("summary", {}, "arch as JSON"), h("pre", {}, JSON.stringify(c.arch))),
  ];
}

/** The stored quality (measured in a `supernet` search, else predicted) and, where the search
    did not measure every candidate, what was measured (a predictor+verify front). */
function qualityRows(s, c, quality) {
  const measuredAll = s.info.evaluation === "supernet";
  const rows = [];
  for (const [metric, value] of Object.entries(quality)) {
    rows.push([`${metric} (${measuredAll ? "measured" : "predicted"})`, fmt(value)]);
    if (measuredAll) continue;
    const measured = c.measured?.[metric] ?? (metric === "top1" ? c.top1_measured : null);
    rows.push([`${metric} measured`, measured === null || measured === undefined ? "not measured" : fmt(measured)]);
  }
  return rows;
}

/** Quality (no device: top1, or fid and consistency), the network's size, and each device's
    metrics from the flattened "device.metric" keys. */
function groupMetrics(c) {
  const quality = {}, network = {}, devices = {};
  for (const [key, value] of Object.entries(c)) {
    if (NOT_METRICS.has(key)) continue;
    const dot = key.lastIndexOf(".");
    if (dot >= 0) (devices[key.slice(0, dot)] ??= {})[key.slice(dot + 1)] = value;
    else if (NETWORK_METRICS.includes(key)) network[key] = value;
    else quality[key] = value;
  }
  return { quality, network, devices };
}

/** The search's devices with every stored metric (against its limit), then every other
    registered device as the candidate route costs it (`devices`: batch 1, default options). */
function costOnDevices(s, c, stored) {
  const all = c.devices || Object.fromEntries(Object.keys(stored).map((d) => [d, { target: true, costs: {} }]));
  const targets = Object.entries(all).filter(([, d]) => d.target);
  const others = Object.entries(all).filter(([, d]) => !d.target);
  const setting = (d) => [d.batch > 1 && `batch ${d.batch}`, ...Object.values(d.options || {})].filter(Boolean).join(" · ");
  return [
    targets.map(([name, d]) => h("div", { class: "device-cost" },
      h("div", { class: "name" }, name, " ", h("span", { class: "tag" }, "target"), setting(d) && h("span", { class: "tag" }, setting(d))),
      kvTable(Object.entries({ ...d.costs, ...stored[name] }).map(([k, v]) => [k, limitText(s, `${name}.${k}`, v)])))),
    others.length > 0 && h("div", { class: "device-cost" },
      h("div", { class: "name" }, "other devices ", h("span", { class: "muted small" }, "(batch 1, default options)")),
      kvTable(others.map(([name, d]) => [name, d.error
        ? h("span", { class: "muted", title: d.error }, "cannot cost this space")
        : Object.entries(d.costs || {}).map(([k, v]) => h("div", {}, `${k} ${fmt(v)}`))]))),
  ];
}

function limitText(s, metric, value) {
  const limit = s.limits.find((l) => l.metric === metric);
  return limit ? `${fmt(value)} / ${fmt(limit.limit)}` : fmt(value);
}

function kvTable(rows) {
  return h("table", { class: "kv" }, rows.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, v))));
}

/** The arch as blocks per stage. MBConv: stage s holds max(d choices of s) block slots, of
    which the first d[s] run (kernel k, expand e); GAN generators: one block per modulated
    conv, grouped by resolution, with its channel ratio and width; layers above `res` do not
    run. Layouts come from GET /spaces (the space's describe()). */
function drawArch(arch, space) {
  if (Array.isArray(arch.ks) && Array.isArray(arch.d)) return drawMBConv(arch, space);
  if (Array.isArray(arch.ch)) return drawGan(arch, space);
  return h("pre", {}, JSON.stringify(arch, null, 1));
}

function drawMBConv(arch, space) {
  const choices = space?.genes?.d?.choices;
  const slots = arch.d.map((_, i) => (choices ? Math.max(...choices[i]) : arch.ks.length / arch.d.length));
  let start = 0;
  const stages = arch.d.map((depth, i) => {
    const blocks = [];
    for (let j = 0; j < slots[i]; j++) {
      const b = start + j;
      blocks.push(j < depth
        ? h("div", { class: `block e${arch.e[b]}`, title: `block ${b}: kernel ${arch.ks[b]}, expand ${arch.e[b]}` }, `k${arch.ks[b]}`, h("br"), `e${arch.e[b]}`)
        : h("div", { class: "block off", title: `block ${b}: skipped (depth ${depth})` }, "—", h("br"), "skip"));
    }
    start += slots[i];
    return h("div", { class: "stage" },
      h("div", { class: "stage-label" }, `Stage ${i + 1}`, h("small", {}, `depth ${depth}/${slots[i]}`)),
      h("div", { class: "blocks" }, blocks));
  });
  return h("div", { class: "arch" },
    h("div", { class: "arch-meta" },
      h("span", { class: "tag" }, `resolution ${arch.r}×${arch.r}`),
      arch.w !== undefined && h("span", { class: "tag" }, `width ×${arch.w}`),
      h("span", { class: "tag" }, `${arch.d.reduce((a, b) => a + b, 0)} blocks`)),
    stages);
}

function drawGan(arch, space) {
  const layers = space?.layers || arch.ch.map((_, i) => `${i}.conv${i}`);
  const groups = new Map(); // resolution -> its layers
  layers.forEach((name, i) => {
    const res = Number(name.split(".")[0]);
    if (!groups.has(res)) groups.set(res, []);
    groups.get(res).push({ name, ratio: arch.ch[i] });
  });
  const stages = [...groups].map(([res, group]) => {
    const active = !arch.res || res <= arch.res;
    const full = space?.widths?.[res];
    return h("div", { class: "stage" },
      h("div", { class: "stage-label" }, `${res}×${res}`, h("small", {}, active ? "runs" : "not run")),
      h("div", { class: "blocks" }, group.map(({ name, ratio }) => h("div", {
        class: `block ${active ? `r${Math.round(ratio * 100)}` : "off"}`, title: `${name}: channel ratio ${ratio}`,
      }, name.split(".")[1], h("br"), full ? `${Math.max(1, Math.round(full * ratio))} ch` : `×${ratio}`))));
  });
  return h("div", { class: "arch" },
    h("div", { class: "arch-meta" }, h("span", { class: "tag" }, `output ${arch.res}×${arch.res}`)), stages);
}

// ----- export --------------------------------------------------------------------------------

function exportBox(s, c, pv) {
  const status = h("div", { class: "export-status muted small" }, "An ONNX model and its model card.");
  const button = h("button", { class: "primary", type: "button", id: "export-button" }, "Export ONNX");
  button.addEventListener("click", () => runExport(s, c.candidate, button, status, pv));
  return h("div", {}, button, status);
}

/** POST the export (it runs as a job, 202), then poll GET /exports/ID until it is completed
    (links to its files) or failed (its message). */
async function runExport(s, number, button, status, pv) {
  button.disabled = true;
  status.className = "export-status muted small";
  status.textContent = "Queuing the export…";
  try {
    const job = await api(`/searches/${s.id}/candidates/${number}/export`, { method: "POST", body: { formats: ["onnx"] } });
    status.textContent = `Export #${job.id}: ${job.status}…`;
    let info = await api(`/exports/${job.id}`); // GET adds each file's download url
    while (!pv.dead && !["completed", "failed"].includes(info.status)) {
      status.textContent = `Export #${info.id}: ${info.status}…`;
      await new Promise((resolve) => setTimeout(resolve, EXPORT_POLL_MS));
      info = await api(`/exports/${job.id}`);
    }
    if (pv.dead) return;
    if (info.status === "failed") throw new Error(`Export #${info.id} failed: ${info.message || "no message"}`);
    fill(status, `Export #${info.id} completed.`, exportFiles(info));
  } catch (err) {
    if (pv.dead) return;
    status.className = "export-status error-box";
    status.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

function exportFiles(info) {
  return h("ul", { class: "files" }, (info.files || []).map((f) => h("li", {},
    h("a", { href: f.url || `/exports/${info.id}/files/${encodeURIComponent(f.name)}`, download: f.name, "data-format": f.format || "" }, f.name),
    h("span", { class: "muted small" }, f.bytes !== undefined ? fmtBytes(f.bytes) : ""),
    f.sha256 && h("span", { class: "mono", title: `sha256 ${f.sha256}` }, f.sha256.slice(0, 12)))));
}

// ----- start ---------------------------------------------------------------------------------

function setupToken() {
  const input = $("#token");
  input.value = localStorage.getItem(TOKEN_KEY) || "";
  input.addEventListener("change", () => {
    const value = input.value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  });
}

setupToken();
window.addEventListener("hashchange", route);
document.addEventListener("keydown", (e) => { if (e.key === "Escape") closePanel(); });
route();
