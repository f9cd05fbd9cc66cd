// The service's own HTTP API, as any client calls it: the API key (entered once per browser
// tab, kept in sessionStorage) goes out as a Bearer token; errors arrive as RFC 9457 problems.

const KEY = "dvrl.apiKey";

export const auth = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

/** A problem+json answer (or a network failure, status 0) as an Error. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || `HTTP ${status}`;
    this.type = problem.type || "";
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

function headers(extra = {}) {
  const all = { Accept: "application/json", ...extra };
  if (auth.key) all.Authorization = `Bearer ${auth.key}`;
  return all;
}

/** fetch() with the key; a 401 also tells the app to ask for a key ("dvrl:unauthorized"). */
export async function request(path, { method = "GET", json, body, raw = false, extra = {} } = {}) {
  if (json !== undefined) extra = { ...extra, "Content-Type": "application/json" };
  let response;
  try {
    response = await fetch(path, {
      method, headers: headers(extra), body: json === undefined ? body : JSON.stringify(json),
    });
  } catch (error) {
    throw new ApiError(0, { title: "The server does not answer", detail: String(error) });
  }
  if (!response.ok) {
    let problem;
    try { problem = await response.json(); } catch { problem = { title: response.statusText }; }
    const error = new ApiError(response.status, problem);
    if (response.status === 401) {
      window.dispatchEvent(new CustomEvent("dvrl:unauthorized", { detail: error }));
    }
    throw error;
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

export const api = {
  jobs: (params) => request(`/v1/jobs?${new URLSearchParams(params)}`),
  job: (id) => request(`/v1/jobs/${encodeURIComponent(id)}`),
  cancel: (id) => request(`/v1/jobs/${encodeURIComponent(id)}:cancel`, { method: "POST" }),
  remove: (id) => request(`/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }),
  curves: (id) => request(`/v1/jobs/${encodeURIComponent(id)}/curves`),
  values: (id, params) =>
    request(`/v1/jobs/${encodeURIComponent(id)}/values?${new URLSearchParams(params)}`),
  datasets: (params) => request(`/v1/datasets?${new URLSearchParams(params)}`),
  dataset: (id) => request(`/v1/datasets/${encodeURIComponent(id)}`),
  /** One job per ``key``: sent again with the same key (a double click, a retry after the
   * network failed) the API answers with the job the first request made. */
  createJob: (spec, key) => request("/v1/jobs", { method: "POST", json: spec,
    extra: { "Idempotency-Key": key } }),
  upload(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    return request("/v1/datasets", { method: "POST", body: form });
  },
};

/** A random idempotency key (crypto.randomUUID needs a secure context; this works on plain
 * http to another host too). */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `ui-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

const names = new Map();

/** A dataset's file name (cached); its id when it is gone. */
export async function datasetName(id) {
  if (!names.has(id)) {
    names.set(id, api.dataset(id).then((d) => d.filename, () => id.slice(0, 8)));
  }
  return names.get(id);
}

/** Values of every row in input order, a page of 10,000 at a time, up to ``limit`` rows. */
export async function allValues(id, limit) {
  const rows = [];
  let token = null;
  do {
    const params = { order: "row", page_size: String(Math.min(10000, limit - rows.length)) };
    if (token) params.page_token = token;
    const page = await api.values(id, params);
    rows.push(...page.items);
    token = page.next_page_token;
  } while (token && rows.length < limit);
  return { rows, complete: !token };
}

/** Download a results file with the key (a plain link could not send it). */
export async function download(id, format) {
  const response = await request(
    `/v1/jobs/${encodeURIComponent(id)}/values?format=${format}`, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = `values-${id}.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
