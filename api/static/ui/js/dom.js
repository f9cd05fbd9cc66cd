// Small DOM helpers. Text from the API (file names, labels, row ids) only ever goes in as text
// nodes, never as HTML.

/** h("div.card#x", {attrs}, ...children): an element; children may be strings, nodes or lists. */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...rest] = spec.split(/(?=[.#])/);
  const el = document.createElement(tag || "div");
  for (const part of rest) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs instanceof Node || typeof attrs === "string" || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** The tab's title: the page first, so a row of tabs tells them apart. */
export function title(text) {
  document.title = text ? `${text} · DVRL data valuation` : "DVRL data valuation";
  const announce = document.getElementById("announce");
  if (announce && announce.textContent !== (text || "")) announce.textContent = text || "";
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Replace an element's children (lists flattened, null and false skipped). */
export function fill(el, ...children) {
  return append(clear(el), children);
}

export const fmt = {
  number(x, digits = 3) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en");
    return Number(x).toFixed(digits).replace(/\.?0+$/, (m) => (m.startsWith(".") ? "" : m));
  },
  fixed: (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits)),
  percent: (x, digits = 0) =>
    (x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)}%`),
  count: (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en")),
  duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  },
  ago(stamp) {
    if (!stamp) return "–";
    const seconds = (Date.now() - new Date(stamp).getTime()) / 1000;
    if (seconds < 45) return "just now";
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return new Date(stamp).toLocaleDateString("en", { day: "numeric", month: "short" });
  },
  when: (stamp) => (stamp ? new Date(stamp).toLocaleString("en") : "–"),
  shortId: (id) => id.slice(0, 8),
};

// the trust check's scores: AUC and accuracy as they are, errors negated (higher is better
// everywhere)
const METRICS = { auc: "AUC", accuracy: "accuracy", log_loss: "−log-loss", mse: "−MSE",
  mae: "−MAE", rmspe: "−RMSPE" };
// the evaluations' scores (removal curves, weighted training): each in its own orientation
const SCORES = { auc: "AUC", accuracy: "accuracy", log_loss: "log-loss", mse: "MSE", mae: "MAE",
  rmspe: "RMSPE" };
const HIGHER_IS_BETTER = new Set(["auc", "accuracy"]);
const MODELS = { lightgbm: "LightGBM", logistic_regression: "logistic regression",
  linear_regression: "linear regression", mlp: "MLP" };

export const names = {
  metric: (m) => METRICS[m] || m,
  score: (m) => SCORES[m] || m,
  better: (m) => (HIGHER_IS_BETTER.has(m) ? "higher is better" : "lower is better"),
  model: (m) => MODELS[m] || m,
};

export const ACTIVE = new Set(["QUEUED", "RUNNING", "CANCELLING"]);
// states with time left to tell (a job being cancelled is stopping, whatever its estimate)
export const GOING_ON = new Set(["QUEUED", "RUNNING"]);

export function stateBadge(state) {
  return h(`span.badge.state-${state.toLowerCase()}`, { dataset: { state } }, state.toLowerCase());
}

/** The progress bar of a job: iteration / total while training, full when done. */
export function progressBar(job) {
  const p = job.progress || {};
  let share = 0;
  if (job.state === "SUCCEEDED") share = 1;
  else if (p.total) share = (p.iteration || 0) / p.total;
  const bar = h("div.progress", { role: "progressbar", "aria-label": "progress",
    "aria-valuemin": "0",
    "aria-valuemax": "100", "aria-valuenow": String(Math.round(100 * share)) });
  const fill = h(`div.progress-fill.state-${job.state.toLowerCase()}`);
  fill.style.width = `${(100 * share).toFixed(1)}%`;
  bar.append(fill);
  return bar;
}

export function problemBox(error) {
  const box = h("div.alert", { role: "alert" },
    h("strong", error.title || "Error"), " ", error.message || error.detail || "");
  if (error.errors && error.errors.length) {
    box.append(h("ul", error.errors.map((e) => h("li", h("code", e.field), ": ", e.message))));
  }
  return box;
}
