// The REST API client: bearer token in localStorage, problem+json errors as ApiError.

const KEY = "fotakit.token";
export const BASE = "/api/v1";

export function getToken() {
  try { return localStorage.getItem(KEY); } catch { return null; }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(KEY, token); else localStorage.removeItem(KEY);
  } catch { /* storage disabled: the token lives for this page only */ }
  memoryToken = token || null;
}

let memoryToken = null;
function token() { return getToken() ?? memoryToken; }

/** An error answer of the API (an RFC 9457 problem, or a network failure: status 0). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

async function problemOf(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") return { status: res.status, ...body };
  } catch { /* not JSON */ }
  return { status: res.status, title: res.statusText || `HTTP ${res.status}`, detail: text.slice(0, 300) };
}

/** Call the API; returns parsed JSON (or null for 204). Throws ApiError. */
export async function api(path, { method = "GET", body, query, raw = false, signal } = {}) {
  let url = BASE + path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== null && v !== undefined && v !== "") qs.set(k, String(v));
    }
    const q = qs.toString();
    if (q) url += (url.includes("?") ? "&" : "?") + q;
  }
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let payload;
  if (body !== undefined) {
    if (raw) { payload = body; headers["Content-Type"] = "application/octet-stream"; }
    else { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body: payload, signal });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, { title: "Network error", detail: `The server did not answer (${err}).` });
  }
  if (!res.ok) {
    const problem = await problemOf(res);
    if (res.status === 401) onUnauthorized(problem);
    throw new ApiError(res.status, problem);
  }
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

/** Upload bytes with progress (XMLHttpRequest: fetch has no upload progress). */
export function upload(path, file, onProgress, query = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) params.set(k, v);
  const search = params.toString() ? `?${params}` : "";
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", BASE + path + search);
    const t = token();
    if (t) xhr.setRequestHeader("Authorization", `Bearer ${t}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onerror = () => reject(new ApiError(0, {
      title: "Upload failed", detail: "The connection broke off (the server may have refused a too large body).",
    }));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve({ status: xhr.status, body });
      else {
        if (xhr.status === 401) onUnauthorized(body || {});
        reject(new ApiError(xhr.status, body && typeof body === "object"
          ? { status: xhr.status, ...body }
          : { status: xhr.status, title: `HTTP ${xhr.status}`, detail: xhr.responseText.slice(0, 300) }));
      }
    };
    xhr.send(file);
  });
}

/** The URL of the SSE stream with the token as a query parameter (EventSource has no headers). */
export function streamUrl(filters = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) qs.set(k, v);
  const t = token();
  if (t) qs.set("access_token", t);
  return `${BASE}/events/stream?${qs}`;
}

const ROLES = ["viewer", "operator", "admin"];
export let me = null;
export function setMe(value) { me = value; }
/** True when the signed-in token's role is at least `role`. */
export function can(role) {
  return me !== null && ROLES.indexOf(me.role) >= ROLES.indexOf(role);
}
