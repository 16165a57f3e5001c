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

function authHeaders(headers = {}) {
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/** The ApiError of a failed response, with the server's own message. */
function failure(response, text) {
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  let detail = (data && data.detail) || text || response.statusText;
  if (Array.isArray(detail)) { // FastAPI's own errors, for a bad query parameter
    detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
  }
  if (response.status === 401) {
    detail = `Not authorised (401): ${detail}. Enter the server's token in the "API token" field at the top right.`;
  }
  return new ApiError(response.status, String(detail), data?.problems || null);
}

/** fetch a JSON route. The token (if any) goes with every request: mutating routes need it,
    and so do reads on a server started with private reads. Errors become ApiError with the
    server's own message, which names the field or id. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = authHeaders({ Accept: "application/json" });
  const text = typeof body === "string"; // a pasted YAML config
  if (body !== undefined) headers["Content-Type"] = text ? "application/yaml" : "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined || text ? body : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, `${method} ${path}: the server cannot be reached (${err.message})`);
  }
  const answer = await response.text();
  if (!response.ok) throw failure(response, answer);
  try { return answer ? JSON.parse(answer) : null; } catch { return null; }
}

/** Save the file at `path` as `filename`. Fetched with the token in its Authorization header
    (a server with private reads answers a plain link 401, which the browser reports as a
    cancelled download), into a Blob saved through an object URL on a temporary <a download>.
    The token never goes into a URL, where logs would keep it. */
export async function download(path, filename) {
  let response;
  try {
    response = await fetch(path, { headers: authHeaders() });
  } catch (err) {
    throw new ApiError(0, `GET ${path}: the server cannot be reached (${err.message})`);
  }
  if (!response.ok) throw failure(response, await response.text());
  const url = URL.createObjectURL(await response.blob());
  const save = document.createElement("a");
  save.href = url;
  save.download = filename;
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the browser has taken the bytes by then
}

/** A link that downloads through `download`: its href stays the file's own route (shown on
    hover, and what "save link as" takes where reads are public); a click fetches with the
    token. `onError` is told of a failure (a 401, a file deleted since: 410). */
export function downloadLink(attrs, text, onError) {
  const link = document.createElement("a");
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined && value !== null) link.setAttribute(key, value);
  link.textContent = text;
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    link.classList.add("downloading");
    try {
      await download(link.getAttribute("href"), link.getAttribute("download") || "");
    } catch (err) {
      onError(err);
    } finally {
      link.classList.remove("downloading");
    }
  });
  return link;
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

/** The space of a search (`info`: GET /searches/{id}): the description the search carries,
    since a space defined as data is in no listing; else the preset of that name. */
export async function spaceOfSearch(info) {
  return info.space_info || (await spaces())[info.space] || null;
}

/** The model family of a search's space (null when the server names none). */
export async function familyOfSearch(info) {
  const [space, familyList] = await Promise.all([spaceOfSearch(info), families()]);
  return familyList.find((f) => f.kind === space?.family) || null;
}
