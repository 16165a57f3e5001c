/* The HTTP API: one fetch wrapper (token, errors as ApiError) and the cached GETs of what
   never changes while the server runs (the spaces, the model families). */

const TOKEN_KEY = "nas.token";

/* The metrics of the network itself, the same on every device and named without one
   (nas.config.NETWORK_METRICS). No route lists them: GET /hardware lists them among each
   device's metrics, GET /families lists quality only. Kept here until the API serves them. */
export const NETWORK_METRICS = ["macs", "params"];

export class ApiError extends Error {
  /** `problems`: a search config's, each {field, message} (every one the server found). */
  constructor(status, detail, problems = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.problems = problems;
  }
}

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

/** Keep the token in this browser (an empty one: none). */
export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** fetch a JSON route. The token (if any) goes with every request: mutating routes need it,
    and so do reads on a server started with private reads. Errors become ApiError with the
    server's own message, which names the field or id. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const text = typeof body === "string";
  if (body !== undefined) headers["Content-Type"] = text ? "application/yaml" : "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined || text ? body : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, `${method} ${path}: the server cannot be reached (${err.message})`);
  }
  const answer = await response.text();
  let data = null;
  try { data = answer ? JSON.parse(answer) : null; } catch { data = null; }
  if (response.ok) return data;
  let detail = (data && data.detail) || answer || response.statusText;
  if (Array.isArray(detail)) { // FastAPI's own errors, for a bad query parameter
    detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
  }
  if (response.status === 401) {
    detail = `Not authorised (401): ${detail}. Enter the server's token in the "API token" field at the top right.`;
  }
  throw new ApiError(response.status, String(detail), data?.problems || null);
}

/** A GET whose answer never changes: asked once, kept; asked again after a failure. */
function cached(path, shape) {
  let promise = null;
  return () => {
    promise ??= api(path).then(shape);
    return promise.catch((err) => { promise = null; throw err; });
  };
}

/** GET /spaces by name: how to draw each space's archs, and its model family. */
export const spaces = cached("/spaces", (r) => Object.fromEntries(r.items.map((s) => [s.name, s])));

/** GET /families as a list: each family's kind, file name and quality metrics with their
    goals (the first is the primary one). */
export const families = cached("/families", (r) => r.items);

/** The model family of a space (null when the server names none). */
export async function familyOfSpace(spaceName) {
  const [spaceInfo, familyList] = await Promise.all([spaces(), families()]);
  const kind = spaceInfo[spaceName]?.family;
  return familyList.find((f) => f.kind === kind) || null;
}
