/* The candidate panel: one candidate's tags, its export box, quality, cost on the search's
   devices and on every other one, and its arch drawn as blocks. */

import { NETWORK_METRICS, api, downloadLink, familyOfSearch, spaceOfSearch } from "./api.js";
import { $, fill, fmt, fmtBytes, h, kvTable, showError } from "./dom.js";
import { fmtMetric, withInterval } from "./format.js";

const EXPORT_POLL_MS = 1000;

let panelView = null; // like a view: closing the panel stops its export poll

export function closePanel() {
  if (panelView) panelView.dead = true;
  panelView = null;
  $("#panel").hidden = true;
  document.body.classList.remove("panel-open");
}

/** Show candidate `number` of search `s` (its id, info and limits) in the panel. */
export async function openCandidate(s, number) {
  closePanel();
  const pv = { dead: false };
  panelView = pv;
  const panel = $("#panel");
  panel.hidden = false;
  document.body.classList.add("panel-open"); // on a wide screen the page makes room for it
  fill(panel, panelHead(`Candidate ${number}`), h("p", { class: "muted" }, "Loading…"));
  try {
    const [c, space, family] = await Promise.all(
      [api(`/searches/${s.id}/candidates/${number}`), spaceOfSearch(s.info), familyOfSearch(s.info)]);
    if (pv.dead) return;
    s.pickedRow = c; // its bounds: the scatter draws them as error bars on the picked point
    s.onPickedRow?.();
    fill(panel, candidateView(s, c, space, family, pv));
  } catch (err) {
    if (!pv.dead) panel.append(h("div", { class: "error-box" }, err.message));
  }
}

function panelHead(title) {
  return h("div", { class: "panel-head" }, h("h2", {}, title),
    h("button", { class: "close", type: "button", title: "Close (Esc)", onclick: closePanel }, "×"));
}

function candidateView(s, c, space, family, pv) {
  const { quality, network, devices } = groupMetrics(c, Object.keys(family?.quality_metrics || {}));
  return [
    panelHead(`Candidate ${c.candidate}`),
    h("div", { class: "tags" },
      h("span", { class: `tag ${c.feasible ? "ok" : "bad"}` }, c.feasible ? "feasible" : "infeasible"),
      qualityTag(c),
      h("span", { class: "tag" }, `generation ${c.generation}`),
      h("span", { class: "tag mono" }, c.arch_id)),
    h("h3", {}, "Export"),
    exportBox(s, c, pv),
    h("h3", {}, "Quality"),
    kvTable(qualityRows(c, quality)),
    h("h3", {}, "Cost"),
    h("div", { class: "device-cost" }, h("div", { class: "name" }, "network"),
      kvTable(Object.entries(network).map(([k, v]) => [k, fmt(v)]))),
    costOnDevices(s, c, devices),
    h("h3", {}, "Architecture"),
    drawArch(c.arch, space),
    h("details", {}, h("summary", {}, "arch as JSON"), h("pre", {}, JSON.stringify(c.arch))),
  ];
}

/** Whether the candidate's quality was measured on the supernet (by its search, or by a
    verification of the front) or is predicted: the scatter's filled dot or hollow ring. */
function qualityTag(c) {
  const measured = c.quality_source === "supernet" || Object.keys(c.measured || {}).length > 0;
  return h("span", { class: `tag quality ${measured ? "measured" : "predicted"}`, id: "quality-tag" },
    measured ? "quality measured on the supernet" : "quality predicted");
}

/** The stored quality (measured where the search measured it: `supernet` and `active`
    searches, else predicted) and, where it was predicted, what a verification measured (a
    predictor+verify front). */
function qualityRows(c, quality) {
  const measuredAll = c.quality_source === "supernet";
  const rows = [];
  for (const [metric, value] of Object.entries(quality)) {
    rows.push([`${metric} (${measuredAll ? "measured" : "predicted"})`, withInterval(c, metric, value, (v) => fmtMetric(metric, v))]);
    if (measuredAll) continue;
    const measured = c.measured?.[metric];
    rows.push([`${metric} measured`, measured === null || measured === undefined ? "not measured" : fmtMetric(metric, measured)]);
  }
  return rows;
}

/** Quality (the family's quality metrics the candidate has), the network's size, and each
    device's metrics from the flattened "device.metric" keys; the row's other keys (candidate,
    generation, arch, ...) are none of these. */
function groupMetrics(c, qualityMetrics) {
  const quality = {}, network = {}, devices = {};
  for (const [key, value] of Object.entries(c)) {
    const dot = key.lastIndexOf(".");
    if (dot >= 0) (devices[key.slice(0, dot)] ??= {})[key.slice(dot + 1)] = value;
    else if (NETWORK_METRICS.includes(key)) network[key] = value;
    else if (qualityMetrics.includes(key)) quality[key] = value;
  }
  return { quality, network, devices };
}

/** The search's devices with every stored metric (against its limit), then every other
    registered device as the candidate route costs it (`devices`: batch 1, default options). */
function costOnDevices(s, c, stored) {
  const all = c.devices || Object.fromEntries(Object.keys(stored).map((d) => [d, { target: true, costs: {} }]));
  const targets = Object.entries(all).filter(([, d]) => d.target);
  const others = Object.entries(all).filter(([, d]) => !d.target && !d.error);
  // devices whose model cannot cost this space are named once, not given rows of their own
  const uncosted = Object.entries(all).filter(([, d]) => !d.target && d.error);
  const setting = (d) => [d.batch > 1 && `batch ${d.batch}`, ...Object.values(d.options || {})].filter(Boolean).join(" · ");
  return [
    targets.map(([name, d]) => h("div", { class: "device-cost" },
      h("div", { class: "name" }, name, " ", h("span", { class: "tag" }, "target"), setting(d) && h("span", { class: "tag" }, setting(d))),
      kvTable(Object.entries({ ...d.costs, ...stored[name] }).map(([k, v]) => [k, limitText(s, c, `${name}.${k}`, v)])))),
    others.length > 0 && h("div", { class: "device-cost" },
      h("div", { class: "name" }, "other devices ", h("span", { class: "muted small" }, "(batch 1, default options)")),
      kvTable(others.map(([name, d]) => [name, Object.entries(d.costs || {}).map(([k, v]) => h("div", {}, `${k} ${fmt(v)}`))]))),
    uncosted.length > 0 && h("p", { class: "muted small uncosted" }, "Cannot cost this space: ",
      uncosted.map(([name, d], i) => [i ? ", " : "", h("span", { title: d.error }, name)])),
  ];
}

/** A stored metric with its interval (where it has one) and its limit: "1.93 (90%: 1.71–2.2)
    / 2"; a limit with confidence is met by the interval's upper end. */
function limitText(s, c, metric, value) {
  const limit = s.limits.find((l) => l.metric === metric || l.metric === `${metric}_high`);
  const text = withInterval(c, metric, value, fmt);
  return limit ? `${text} / ${fmt(limit.limit)}` : text;
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

/** The export dialog: the formats this search's family can be written in and the
    quantizations that apply (GET /searches/ID/export-formats), then the export's progress. */
function exportBox(s, c, pv) {
  const box = h("div", { class: "export-box" }, h("p", { class: "muted small" }, "Loading the export formats…"));
  api(`/searches/${s.id}/export-formats`)
    .then((offer) => { if (!pv.dead) fill(box, exportForm(s, c, offer, pv)); })
    .catch((err) => { if (!pv.dead) fill(box, h("div", { class: "error-box" }, err.message)); });
  return box;
}

function exportForm(s, c, offer, pv) {
  const formats = offer.formats.map((f) => h("label", {
    class: f.available ? "format" : "format unavailable",
    title: f.unavailable || `${f.file}${f.default ? " (in this search's default export)" : ""}`,
  }, h("input", {
    type: "checkbox", name: "export-format", value: f.name, disabled: !f.available,
    checked: f.name === "onnx" && f.available, // one quick file; the defaults are a click away
  }), f.label));
  const checkboxes = () => formats.map((label) => label.querySelector("input"));
  const useDefaults = h("button", { type: "button", class: "link small", onclick: () => {
    for (const box of checkboxes()) box.checked = !box.disabled && offer.default.includes(box.value);
  } }, "the search's defaults");
  const quantize = offer.quantize.length > 0 && h("label", { class: "export-quantize small" }, "Quantize",
    h("select", { id: "export-quantize" }, h("option", { value: "" }, "no"),
      offer.quantize.map((q) => h("option", { value: q }, `${q} (adds ONNX ${q}, its top-1 measured)`))));
  const status = h("div", { class: "export-status muted small" }, "The files, each checked in its runtime, and a model card.");
  const button = h("button", { class: "primary", type: "button", id: "export-button" }, "Export");
  button.addEventListener("click", () => {
    const chosen = checkboxes().filter((box) => box.checked).map((box) => box.value);
    const q = quantize ? quantize.querySelector("select").value : "";
    if (!chosen.length && !q) {
      status.className = "export-status error-box";
      status.textContent = "Pick at least one format.";
      return;
    }
    runExport(s, c.candidate, { formats: chosen.length ? chosen : ["onnx"], ...(q && { quantize: q }) }, button, status, pv);
  });
  return [
    h("div", { class: "formats" }, formats),
    quantize,
    h("div", { class: "export-actions" }, button, h("span", { class: "muted small" }, "or choose ", useDefaults)),
    status,
  ];
}

/** POST the export (it runs as a job, 202), then poll GET /exports/ID until it is finished,
    showing its phase and time taken: completed (links to its files), or not (its message). */
async function runExport(s, number, body, button, status, pv) {
  button.disabled = true;
  status.className = "export-status muted small";
  status.textContent = "Queuing the export…";
  try {
    const job = await api(`/searches/${s.id}/candidates/${number}/export`, { method: "POST", body });
    let info = await api(`/exports/${job.id}`); // GET adds each file's download url
    while (!pv.dead && !info.finished) {
      fill(status, h("span", { class: "export-phase" }, exportProgress(info)));
      await new Promise((resolve) => setTimeout(resolve, EXPORT_POLL_MS));
      info = await api(`/exports/${job.id}`);
    }
    if (pv.dead) return;
    if (info.status !== "completed") throw new Error(`Export #${info.id} ${info.status}: ${info.message || "no message"}`);
    fill(status, `Export #${info.id} completed in ${seconds(info.seconds)}. `,
      h("a", { href: "#/exports" }, "All exports"), exportFiles(info));
  } catch (err) {
    if (pv.dead) return;
    status.className = "export-status error-box";
    status.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

/** "Export #3: running · writing onnx · 12 s" */
export function exportProgress(info) {
  return [`Export #${info.id}: ${info.status}`, info.phase, seconds(info.seconds)].filter(Boolean).join(" · ");
}

export function seconds(value) {
  if (value === null || value === undefined) return "";
  return value < 60 ? `${value.toFixed(value < 10 ? 1 : 0)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

/** An export's files as links that download with the token (api.js `download`); a file
    deleted or replaced since the export is named, not linked. */
export function exportFiles(info) {
  return h("ul", { class: "files" }, (info.files || []).map((f) => h("li", {},
    f.available
      ? downloadLink({ href: f.url, download: f.name, "data-format": f.format }, f.name, (err) => showError(err, `download-${f.url}`))
      : h("span", { class: "gone", title: "deleted, moved or replaced since the export wrote it" }, f.name),
    h("span", { class: "muted small" }, f.bytes !== null && f.bytes !== undefined ? fmtBytes(f.bytes) : ""),
    f.sha256 && h("span", { class: "mono", title: `sha256 ${f.sha256}` }, f.sha256.slice(0, 12)))));
}
