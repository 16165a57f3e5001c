/* A launch's problems on the page: each beside the field it names, the rest (and, for a
   pasted config, all of them) in the box under the form. The server names every problem at
   once, each as {field, message} (ApiError.problems); an older message without them is
   split into its lines. */

import { $, h } from "./dom.js";

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
function findField(root, path) {
  const parts = path.split(".");
  for (let n = parts.length; n > 0; n--) {
    const el = root.querySelector(`[data-field="${CSS.escape(parts.slice(0, n).join("."))}"]`);
    if (el && !el.closest("[hidden]")) return el;
  }
  return null;
}

/** Show every problem of a failed launch in `root` (the form, or the YAML pane). */
export function showProblems(root, err) {
  const box = $(".error-box", root);
  const placeable = root.id === "launch"; // a pasted config has no field of its own to mark
  // a 400 is a body that is not a config at all (a YAML syntax error): its message whole
  const problems = err.problems || (err.status === 422 ? parseFieldErrors(err.detail) : []);
  const unplaced = [];
  let first = null;
  for (const { field: name, message } of problems) {
    const el = placeable && name && findField(root, name);
    if (!el) { unplaced.push(name ? [name, message] : [null, message]); continue; }
    el.classList.add("invalid");
    // a containing box gets the full path, so the user sees which of its settings is meant
    const shown = el.dataset.field === name ? message : `${name.slice(el.dataset.field.length + 1)}: ${message}`;
    el.append(h("p", { class: "field-error" }, shown));
    first ??= el;
  }
  if (!problems.length) unplaced.push([null, err.message]);
  const count = problems.length;
  const head = count > 1 && (placeable
    ? `${count} problems, each shown beside its field${unplaced.length ? "; and these:" : "."}`
    : `${count} problems:`);
  box.hidden = unplaced.length === 0 && !head;
  box.replaceChildren(...[head && h("p", { class: "problems-head" }, head),
    unplaced.length > 0 && h("ul", { class: "problems" }, unplaced.map(([name, message]) =>
      h("li", {}, name && h("code", {}, name), name && ": ", message)))].filter(Boolean));
  const target = first || box;
  target.scrollIntoView({ block: "center", behavior: "smooth" });
  $("input, select, textarea", first || root)?.focus({ preventScroll: true });
}

export function clearProblems(root) {
  for (const el of root.querySelectorAll(".field-error")) el.remove();
  for (const el of root.querySelectorAll(".invalid")) el.classList.remove("invalid");
  const box = $(".error-box", root);
  box.hidden = true;
  box.replaceChildren();
}
