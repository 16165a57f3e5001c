/* The form that launches a search. Its choices come from the API: the devices and their
   metrics (GET /hardware), the trained files used before (GET /supernets), the quality
   metrics of each model family (GET /families). Values are not checked here: the server
   validates the config and names each bad field, shown beside it. */

import { NETWORK_METRICS, api, families } from "./api.js";
import { $, fill, h } from "./dom.js";
import { mount } from "./view.js";

export async function renderForm(view) {
  const [hardware, files, familyList] = await Promise.all([api("/hardware"), api("/supernets"), families()]);
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
  const refreshObjectives = () => renderObjectives(form, devices, qualityOf(form, files, familyList));
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
