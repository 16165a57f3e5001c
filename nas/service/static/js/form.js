/* The form that launches a search, or a search config pasted as YAML. Its choices come from
   the API: the devices and their metrics (GET /hardware; with a space chosen, only those
   that can cost it), the trained files used before and the server's working folder (GET
   /supernets), the spaces (GET /spaces), the quality metrics of each model family (GET
   /families). A clone (#/new/clone/ID) starts from that search's config (GET /searches/ID).
   Values are not checked here: the server checks the config and names every problem at
   once, each shown beside its field (form-errors.js). */

import { NETWORK_METRICS, api, families, spaces } from "./api.js";
import { $, clearError, fill, h, showError } from "./dom.js";
import { clearProblems, showProblems } from "./form-errors.js";
import { mount } from "./view.js";

export async function renderForm(view, cloneId) {
  const [hardware, files, familyList, spaceInfo, cloned] = await Promise.all([
    api("/hardware"), api("/supernets"), families(), spaces(),
    cloneId ? api(`/searches/${cloneId}`) : null]);
  if (view.dead) return;
  const devices = hardware.items;
  const where = files.working_folder;
  const form = h("form", { class: "form", id: "launch", novalidate: true },
    modelSection(files, Object.keys(spaceInfo), where),
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
  form.extra = {}; // a clone's fields the form has no input for (crossover_prob, ...): kept
  form.files = files;
  const yaml = yamlPane(where);
  const refreshObjectives = () => renderObjectives(form, devices, qualityOf(form, files, familyList));
  form.addEventListener("change", (e) => {
    if (e.target.name === "device") toggleDevice(e.target);
    if (e.target.id === "f-known") pickKnown(form, files, e.target.value);
    if (e.target.id === "f-evaluation") showEvaluationFields(form);
    if (["f-known", "f-supernet", "f-space"].includes(e.target.id)) {
      filterDevices(form).then(() => clearError("devices"), (err) => showError(err, "devices"));
    }
    if (["device", "supernet", "known"].includes(e.target.name)) refreshObjectives();
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); launch(form, formConfig(form)); });
  const tabs = modeTabs(form, yaml);
  mount(h("div", { class: "card-head" },
    h("h1", {}, cloned ? `New search, from #${cloned.id} ${cloned.name}` : "New search"), tabs), form, yaml);
  if (cloned) prefill(form, cloned.config || {}, refreshObjectives);
  else refreshObjectives();
  showEvaluationFields(form);
  await filterDevices(form);
}

// ----- the fields -----------------------------------------------------------------------------

/** A labelled input with its slot for an error; `name` is the config field the server names. */
function field(label, name, input, hint) {
  return h("div", { class: "field", "data-field": name },
    h("label", { for: input.id }, label), input, hint && h("span", { class: "hint" }, hint));
}

function modelSection(files, spaceNames, where) {
  const options = (rows) => rows.map((r) => h("option", { value: r.path }, r.space || ""));
  const relative = `A relative path is read from the server's working folder, ${where}.`;
  return h("section", { class: "card" }, h("h2", {}, "Model"),
    field("Name", "name", h("input", { id: "f-name", name: "name", value: "search" })),
    files.supernets.length > 0 && field("Known supernets", "known",
      h("select", { id: "f-known", name: "known" },
        h("option", { value: "" }, "pick one that searches used…"),
        files.supernets.map((r) => h("option", { value: r.path }, `${r.space} · ${r.path}`))),
      "Fills in the path, its space and its predictor."),
    field("Supernet", "supernet",
      h("input", { id: "f-supernet", name: "supernet", list: "supernet-paths", placeholder: "runs/mnist-supernet/supernet.pt", spellcheck: "false" }),
      `A checkpoint file, or its run folder, on the server. ${relative}`),
    h("datalist", { id: "supernet-paths" }, options(files.supernets)),
    field("Predictor", "predictor",
      h("input", { id: "f-predictor", name: "predictor", list: "predictor-paths", placeholder: "runs/mnist-supernet/predictor.pt", spellcheck: "false" }),
      "Needed by the evaluations predictor and predictor+verify."),
    h("datalist", { id: "predictor-paths" }, options(files.predictors)),
    field("Space", "space",
      h("select", { id: "f-space", name: "space" },
        h("option", { value: "" }, "the supernet's own"), spaceNames.map((n) => h("option", { value: n }, n))),
      "Checked against the supernet's; it also limits the devices below to those that can cost it."),
    field("Evaluation", "evaluation",
      h("select", { id: "f-evaluation", name: "evaluation" },
        EVALUATIONS.map((v) => h("option", { value: v }, v))),
      "predictor+verify: search with the predictor, then measure the front with the supernet. "
      + "active: measure a budget of subnets on the supernet, chosen by a predictor it refits each round."),
    activeFields());
}

const EVALUATIONS = ["predictor", "supernet", "predictor+verify", "active"];
// nas.config.MIN_ACTIVE_BUDGET: only a hint here; the server checks the budget
const MIN_ACTIVE_BUDGET = 30;

/** `evaluation: active`'s fields (shown only with it): the measurement budget, and the
    initial sample and batch per round (left empty: the server's defaults, active_plan). */
function activeFields() {
  const number = (id, name, extra = {}) => h("input", { id, name, type: "number", step: 1, min: 1, ...extra });
  return h("div", { class: "active-fields", id: "active-fields", "data-field": "active", hidden: true },
    field("Budget", "budget", number("f-budget", "budget", { min: MIN_ACTIVE_BUDGET, required: true, placeholder: "300" }),
      `Subnets measured on the supernet, each once (at least ${MIN_ACTIVE_BUDGET}).`),
    h("div", { class: "fields2" },
      field("Initial sample", "active.initial", number("f-active-initial", "active_initial", { placeholder: "5%, at least 20" }),
        "Measured before the first fit."),
      field("Batch per round", "active.batch", number("f-active-batch", "active_batch", { placeholder: "the population" }),
        "Measured after each refit.")),
    field("Successive halving", "active.halving",
      number("f-active-halving", "active_halving", { step: "any", min: 0, max: 1, placeholder: "off" }),
      "A fraction, e.g. 0.25: each subnet of a later round is measured on that part of the "
      + "validation images first, and on the rest only if it could still join the front."));
}

/** The fields that go with the evaluation chosen: the budget and rounds of an active search,
    which fits its own predictor (so the predictor field is hidden, and left out of it). */
function showEvaluationFields(form) {
  const active = form.elements.evaluation.value === "active";
  $("#active-fields", form).hidden = !active;
  $("#algorithm-note", form).textContent = ALGORITHM_NOTES[active ? "active" : "search"];
  form.elements.predictor.closest(".field").hidden = active;
}

const ALGORITHM_NOTES = {
  search: "Candidates evaluated: population × generations. Workers 0: in the server's search process.",
  active: "Measurements: the budget, in rounds. Each round, NSGA-II (population × generations) "
    + "searches a predictor refit to what was measured. Workers 0: in the server's search process.",
};

function algorithmSection() {
  const number = (name, value, extra = {}) =>
    h("input", { id: `f-${name}`, name, type: "number", value, step: 1, ...extra });
  return h("section", { class: "card" }, h("h2", {}, "Algorithm"),
    field("Sampler", "algorithm.sampler",
      h("select", { id: "f-sampler", name: "sampler" },
        h("option", { value: "nsga2" }, "nsga2 (NSGA-II)"),
        h("option", { value: "nsga3" }, "nsga3 (NSGA-III: 3+ objectives)"),
        h("option", { value: "gp" }, "gp (Gaussian process: evaluation supernet)"),
        h("option", { value: "motpe" }, "motpe (multi-objective TPE: evaluation supernet)"),
        h("option", { value: "auto" }, "auto (gp for a small supernet search, else nsga2)"),
        h("option", { value: "random" }, "random (baseline)"))),
    h("div", { class: "fields3" },
      field("Population", "algorithm.population", number("population", 48)),
      field("Generations", "algorithm.generations", number("generations", 20)),
      field("Seed", "algorithm.seed", number("seed", 0)),
      field("Ray workers", "workers", number("workers", 0))),
    h("p", { class: "muted small", id: "algorithm-note" }, ALGORITHM_NOTES.search));
}

function devicesSection(devices) {
  return h("section", { class: "card span2 section", "data-field": "targets" },
    h("h2", {}, "Devices and limits"),
    h("p", { class: "muted small" }, "Tick the devices to search for. A limit is an upper bound on that metric; leave it empty for none."),
    h("p", { class: "muted small", id: "devices-hidden", hidden: true }),
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
  return h("div", { class: "device", "data-field": `targets.${hw.name}`, "data-name": hw.name },
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

/** A known supernet picked: its path, its space and the predictor fitted on it. */
function pickKnown(form, files, path) {
  const known = files.supernets.find((s) => s.path === path);
  if (!known) return;
  form.elements.supernet.value = known.path;
  form.elements.space.value = known.space || "";
  const predictor = files.predictors.filter((p) => p.supernet_id === known.id).pop();
  if (predictor) form.elements.predictor.value = predictor.path;
}

/** The space whose devices are offered: the one chosen, else that of a known supernet file. */
function chosenSpace(form) {
  const path = form.elements.supernet.value.trim();
  return form.elements.space.value || form.files?.supernets.find((s) => s.path === path)?.space || "";
}

const costErrors = new Map(); // space -> {device: why it cannot cost it}: GET /hardware?space=

/** Hide the devices that cannot cost the chosen space (GET /hardware?space=, the check a
    launch makes); a ticked one stays, and the launch names its problem. */
async function filterDevices(form) {
  const space = chosenSpace(form);
  if (space && !costErrors.has(space)) {
    const answer = await api(`/hardware?${new URLSearchParams({ space })}`);
    costErrors.set(space, Object.fromEntries(answer.items.filter((d) => d.cost_error).map((d) => [d.name, d.cost_error])));
  }
  if (space !== chosenSpace(form)) return; // changed meanwhile: that call filters
  const cannot = space ? costErrors.get(space) : {};
  for (const box of form.querySelectorAll(".device")) {
    box.hidden = box.dataset.name in cannot && !$("input[name=device]", box).checked;
  }
  const note = $("#devices-hidden", form);
  const names = Object.keys(cannot);
  note.hidden = Boolean(space) && names.length === 0;
  note.title = Object.values(cannot).join("\n");
  note.textContent = space
    ? `Not offered, as they cannot cost ${space}: ${names.join(", ")}.`
    : "Every device is offered: pick a space, or a known supernet, to see only those that can cost it.";
}

/** The quality metrics of the supernet named in the form, with their goals, as GET /families
    gives them: a file the server has used (GET /supernets names its family), else a path
    whose file name is a family's (a GAN run saves gan.pt), else the first family's primary
    metric only. The server fills default objectives and checks the ones chosen. */
function qualityOf(form, files, familyList) {
  const path = form.elements.supernet.value.trim();
  const known = files.supernets.find((s) => s.path === path);
  const fileName = path.split(/[\\/]/).pop();
  const family = familyList.find((f) => known && f.kind === known.family)
    || familyList.find((f) => f.file_name === fileName);
  if (family) return { ...family.quality_metrics };
  return Object.fromEntries(Object.entries(familyList[0]?.quality_metrics || {}).slice(0, 1));
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
  for (const o of form.wanted || []) metrics[o.metric] ??= o.goal; // a clone's, even if unknown here
  fill(box, Object.entries(metrics).map(([metric, goal]) => {
    const before = chosen.get(metric);
    const select = h("select", { "aria-label": `goal of ${metric}` },
      ["minimize", "maximize"].map((g) => h("option", { value: g, selected: (before?.goal ?? goal) === g }, g)));
    return h("label", { class: "objective", "data-metric": metric },
      h("input", { type: "checkbox", checked: before?.on }), h("code", {}, metric), select);
  }));
}

// ----- a clone's config into the form, the form as a config ------------------------------------

/** Fill the form with a stored search's config (GET /searches/ID's `config`). */
function prefill(form, config, refreshObjectives) {
  const set = (name, value) => { if (value !== undefined && value !== null) form.elements[name].value = value; };
  const { algorithm = {}, targets = {}, objectives = [], ...top } = config;
  for (const name of ["name", "supernet", "predictor", "space", "evaluation", "workers", "budget"]) set(name, top[name]);
  set("active_initial", top.active?.initial);
  set("active_batch", top.active?.batch);
  set("active_halving", top.active?.halving);
  // an active option the form has no field for (one added later): kept, as form.extra is
  form.extraActive = Object.fromEntries(Object.entries(top.active || {})
    .filter(([k, v]) => !["initial", "batch", "halving"].includes(k) && v !== null));
  showEvaluationFields(form);
  if (form.elements.known) form.elements.known.value = top.supernet || ""; // "" unless known
  for (const name of ["sampler", "population", "generations", "seed"]) set(name, algorithm[name]);
  const shown = new Set(["name", "supernet", "predictor", "space", "evaluation", "workers", "budget", "active", "algorithm", "targets", "objectives"]);
  form.extra = Object.fromEntries(Object.entries(top).filter(([k, v]) => !shown.has(k) && v !== null));
  form.extraAlgorithm = Object.fromEntries(Object.entries(algorithm)
    .filter(([k, v]) => !["sampler", "population", "generations", "seed"].includes(k) && v !== null));
  // a limit's confidence has no field of its own: a clone keeps it (formConfig writes it back)
  form.confidence = Object.fromEntries(Object.entries(targets).map(([d, t]) => [d, t.confidence || {}]));
  for (const [device, target] of Object.entries(targets)) {
    const box = form.querySelector(`input[name=device][value="${CSS.escape(device)}"]`);
    if (!box) continue; // no longer registered: the launch names it
    box.checked = true;
    toggleDevice(box);
    const values = { ...target.limits, ...target.options, batch: target.batch };
    for (const input of box.closest(".device").querySelectorAll("[data-device]")) {
      const key = input.dataset.limit || input.dataset.option || "batch";
      if (values[key] !== undefined) input.value = values[key];
    }
  }
  form.wanted = objectives;
  refreshObjectives();
  for (const o of objectives) {
    const row = form.querySelector(`.objective[data-metric="${CSS.escape(o.metric)}"]`);
    $("input", row).checked = true;
    $("select", row).value = o.goal;
  }
}

/** The form as a search config (the format of experiments/search_*.yaml). Empty fields are left
    out, so the server's defaults apply; values are not checked here: the server says what is
    wrong, field by field. */
function formConfig(form) {
  const value = (name) => form.elements[name].value.trim();
  const number = (text) => (text === "" ? undefined : Number(text));
  const active = value("evaluation") === "active"; // its fields count only with it
  const rounds = {
    ...form.extraActive,
    initial: number(value("active_initial")),
    batch: number(value("active_batch")),
    halving: number(value("active_halving")),
  };
  const config = {
    ...form.extra,
    name: value("name") || undefined,
    supernet: value("supernet"),
    predictor: (!active && value("predictor")) || undefined, // active fits its own
    space: value("space") || undefined,
    evaluation: value("evaluation"),
    budget: active ? number(value("budget")) : undefined,
    active: active && Object.values(rounds).some((v) => v !== undefined) ? rounds : undefined,
    workers: number(value("workers")),
    algorithm: {
      ...form.extraAlgorithm,
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
      const confidence = input.dataset.limit && form.confidence?.[box.value]?.[key];
      if (confidence) target[key] = { max: Number(text), confidence };
    }
    config.targets[box.value] = target;
  }
  const objectives = [...form.querySelectorAll(".objective")].filter((row) => $("input", row).checked)
    .map((row) => ({ metric: row.dataset.metric, goal: $("select", row).value }));
  // a clone's objectives keep their order (the first is the plot's y axis, the best's key)
  const rank = (o) => { const i = (form.wanted || []).findIndex((w) => w.metric === o.metric); return i < 0 ? Infinity : i; };
  objectives.sort((a, b) => rank(a) - rank(b));
  if (objectives.length) config.objectives = objectives;
  return config;
}

// ----- the YAML pane ----------------------------------------------------------------------------

function yamlPane(where) {
  const pane = h("section", { class: "card yaml-pane", id: "yaml-pane", hidden: true },
    h("h2", {}, "Search config"),
    h("p", { class: "muted small" },
      "Paste a config as ", h("code", {}, "nas search launch"), " reads it (YAML or JSON; see experiments/search_*.yaml). ",
      `A relative path is read from the server's working folder, ${where}.`),
    h("div", { class: "field", "data-field": "" },
      h("textarea", { id: "f-yaml", rows: 18, spellcheck: "false", "aria-label": "search config as YAML",
        placeholder: "supernet: runs/mnist-supernet\npredictor: runs/mnist-supernet\ntargets:\n  stm32f746: {peak_sram_kb: 320}" })),
    h("div", { class: "error-box", id: "yaml-error", hidden: true }),
    h("div", { class: "form-actions" },
      h("button", { class: "primary", type: "button", id: "yaml-launch" }, "Launch search"),
      h("button", { type: "button", id: "yaml-check" }, "Check"),
      h("span", { class: "muted small", id: "yaml-state" })));
  $("#yaml-launch", pane).addEventListener("click", () => launch(pane, $("#f-yaml", pane).value));
  $("#yaml-check", pane).addEventListener("click", () => launch(pane, $("#f-yaml", pane).value, true));
  return pane;
}

/** "Form" and "Paste YAML": the same config either way; the YAML box starts from the form's
    config (as JSON, which YAML reads). */
function modeTabs(form, pane) {
  const tab = (id, label, yaml) => h("button", { type: "button", id, class: "tab", "aria-pressed": String(!yaml),
    onclick: () => {
      form.hidden = yaml;
      pane.hidden = !yaml;
      for (const b of document.querySelectorAll(".mode-tabs .tab")) b.setAttribute("aria-pressed", String(b.id === id));
      const text = $("#f-yaml", pane);
      if (yaml && !text.value.trim()) text.value = JSON.stringify(formConfig(form), null, 2);
    } }, label);
  return h("div", { class: "mode-tabs", role: "group", "aria-label": "how to give the config" },
    tab("mode-form", "Form", false), tab("mode-yaml", "Paste YAML", true));
}

// ----- launching ------------------------------------------------------------------------------

/** POST the config (an object, or YAML text) to /searches, or to /searches/check for a dry
    run; every problem the server names is shown beside its field. */
async function launch(root, config, dryRun = false) {
  const state = $("#form-state, #yaml-state", root);
  const buttons = root.querySelectorAll("button");
  clearProblems(root);
  for (const b of buttons) b.disabled = true;
  state.textContent = dryRun ? "Checking the config…" : "Checking and recording the search…";
  try {
    const answer = await api(dryRun ? "/searches/check" : "/searches", { method: "POST", body: config });
    if (dryRun) state.textContent = "The config is valid: nothing was launched.";
    else location.hash = `#/searches/${answer.id}`;
  } catch (err) {
    state.textContent = "";
    showProblems(root, err);
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}
