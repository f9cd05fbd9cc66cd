// Small SVG charts drawn here (no plotting library, nothing to download): line charts with
// optional bands, stacked histograms and horizontal bars. Each returns a <div class="plot">
// holding the SVG and its legend; every mark carries a <title> that the browser shows on hover.

import { h, fmt } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 600; // the SVG's own units: a chart in a half-width card is drawn at about 1:1
const MARGIN = { top: 14, right: 18, bottom: 46, left: 72 };

export const COLORS = {
  ours: "#4338ca",
  alert: "#e11d48",
  random: "#94a3b8",
  optimal: "#059669",
  high: "#d97706",
  muted: "#cbd5e1",
};

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Round tick values covering [min, max]: steps of 1, 2 or 5 times a power of ten. */
export function niceTicks(min, max, count = 5) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 0.5;
    min -= pad;
    max += pad;
  }
  const rough = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const ratio = rough / magnitude;
  const step = magnitude * (ratio >= 7.5 ? 10 : ratio >= 3.5 ? 5 : ratio >= 1.5 ? 2 : 1);
  const ticks = [];
  for (let v = Math.floor(min / step) * step; v <= max + step * 0.999; v += step) {
    ticks.push(Number(v.toFixed(10)));
    if (v >= max) break;
  }
  return ticks;
}

/** Labels for ticks: as many decimals as their step needs (0.25 -> 2, 20 -> 0). */
export function tickFormat(ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  const decimals = Math.min(8, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  return (v) => (Math.abs(v) >= 10000 ? Math.round(v).toLocaleString("en")
    : v.toFixed(decimals));
}

function scale([d0, d1], [r0, r1]) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

/** The plot area with grid lines, tick labels and axis titles. */
function frame({ width = WIDTH, height, xTicks, yTicks, x, y, xFormat, yFormat, xLabel, yLabel,
  label }) {
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": label || "", class: "chart-svg" });
  const bottom = height - MARGIN.bottom;
  const grid = svg("g", { class: "grid" });
  for (const t of yTicks) {
    grid.append(svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(t), y2: y(t) }));
    root.append(svg("text", { x: MARGIN.left - 8, y: y(t), class: "tick", "text-anchor": "end",
      "dominant-baseline": "middle" }, yFormat(t)));
  }
  for (const t of xTicks) {
    root.append(svg("text", { x: x(t), y: bottom + 17, class: "tick", "text-anchor": "middle" },
      xFormat(t)));
  }
  root.prepend(grid);
  root.append(svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: bottom, y2: bottom,
    class: "axis" }));
  if (xLabel) {
    root.append(svg("text", { x: (MARGIN.left + width - MARGIN.right) / 2, y: height - 6,
      class: "axis-title", "text-anchor": "middle" }, xLabel));
  }
  if (yLabel) {
    root.append(svg("text", { x: -(MARGIN.top + bottom) / 2, y: 14, class: "axis-title",
      "text-anchor": "middle", transform: "rotate(-90)" }, yLabel));
  }
  return root;
}

function legend(items) {
  return h("div.legend", items.map((item) =>
    h("span.legend-item", h(`i.swatch${item.dash ? ".dashed" : ""}${item.band ? ".band" : ""}`,
      { style: null, dataset: { color: item.color } }), item.name)));
}

/** Colour the legend swatches after they are in the DOM (CSSOM, allowed by the page's CSP). */
function paint(root) {
  for (const swatch of root.querySelectorAll(".swatch[data-color]")) {
    swatch.style.setProperty("--swatch", swatch.dataset.color);
  }
  return root;
}

function extent(values, pad = 0) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (lo === Infinity) return [0, 1];
  const span = hi - lo || Math.abs(hi) || 1;
  return [lo - pad * span, hi + pad * span];
}

/**
 * series: [{name, points: [[x, y], ...], color, dash, dots}];
 * bands: [{name, upper: [[x, y]], lower: [[x, y]], color}] (shaded between the two).
 */
export function lineChart({ series, bands = [], xLabel, yLabel, label, height = 280,
  width = WIDTH, xFormat, yFormat, xDomain, yDomain }) {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = [...series.flatMap((s) => s.points.map((p) => p[1])),
    ...bands.flatMap((b) => [...b.upper, ...b.lower].map((p) => p[1]))];
  const xTicks = niceTicks(...(xDomain || extent(xs)), 6);
  const yTicks = niceTicks(...(yDomain || extent(ys, 0.05)), 5);
  xFormat = xFormat || tickFormat(xTicks);
  yFormat = yFormat || tickFormat(yTicks);
  const x = scale([xTicks[0], xTicks.at(-1)], [MARGIN.left, width - MARGIN.right]);
  const y = scale([yTicks[0], yTicks.at(-1)], [height - MARGIN.bottom, MARGIN.top]);
  const root = frame({ width, height, xTicks, yTicks, x, y, xFormat, yFormat, xLabel, yLabel,
    label });
  const path = (points) => points.filter((p) => p[1] !== null && Number.isFinite(p[1]))
    .map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
  for (const band of bands) {
    const outline = [...band.upper, ...[...band.lower].reverse()];
    root.append(svg("path", { d: `${path(outline)}Z`, fill: band.color, "fill-opacity": 0.16,
      stroke: "none", class: "band" }, svg("title", {}, band.name)));
  }
  for (const s of series) {
    root.append(svg("path", { d: path(s.points), fill: "none", stroke: s.color,
      "stroke-width": s.width || 2.2, "stroke-dasharray": s.dash ? "6 4" : null,
      "stroke-linejoin": "round", "stroke-linecap": "round", class: "line",
      "data-series": s.name }));
    if (s.dots !== false && s.points.length <= 40) {
      for (const [px, py] of s.points) {
        if (py === null || !Number.isFinite(py)) continue;
        root.append(svg("circle", { cx: x(px), cy: y(py), r: 3, fill: s.color, class: "dot" },
          svg("title", {}, `${s.name}: ${xFormat(px)} → ${yFormat(py)}`)));
      }
    }
  }
  return paint(h("div.plot", root, legend([...series, ...bands.map((b) => ({ ...b, band: true }))])));
}

/**
 * A stacked histogram: groups [{name, values, color}] share the bins; ``marker`` draws a
 * dashed vertical line (e.g. where the flagged rows end).
 */
export function histogram({ groups, bins = 30, xLabel, yLabel = "rows", label, height = 280,
  marker, xFormat }) {
  const all = groups.flatMap((g) => g.values);
  let [lo, hi] = extent(all);
  if (lo === hi) { lo -= 0.5; hi += 0.5; }
  const width = (hi - lo) / bins;
  const index = (v) => Math.min(bins - 1, Math.max(0, Math.floor((v - lo) / width)));
  const counts = groups.map((g) => {
    const c = new Array(bins).fill(0);
    for (const v of g.values) if (Number.isFinite(v)) c[index(v)] += 1;
    return c;
  });
  const totals = counts[0].map((_, i) => counts.reduce((sum, c) => sum + c[i], 0));
  const xTicks = niceTicks(lo, hi, 6).filter((t) => t >= lo - 1e-12 && t <= hi + 1e-12);
  const yTicks = niceTicks(0, Math.max(...totals, 1), 4);
  xFormat = xFormat || tickFormat(niceTicks(lo, hi, 6));
  const x = scale([lo, hi], [MARGIN.left, WIDTH - MARGIN.right]);
  const y = scale([0, yTicks.at(-1)], [height - MARGIN.bottom, MARGIN.top]);
  const root = frame({ height, xTicks, yTicks, x, y, xFormat, yFormat: fmt.count, xLabel, yLabel,
    label });
  const bars = svg("g", { class: "bars" });
  for (let i = 0; i < bins; i += 1) {
    let base = 0;
    const x0 = x(lo + i * width) + 0.6;
    const x1 = x(lo + (i + 1) * width) - 0.6;
    groups.forEach((g, k) => {
      const n = counts[k][i];
      if (!n) return;
      bars.append(svg("rect", { x: x0, width: Math.max(0.5, x1 - x0), y: y(base + n),
        height: y(base) - y(base + n), fill: g.color, rx: 1.5, class: "bar" },
      svg("title", {}, `${g.name}: ${n} rows with values ${xFormat(lo + i * width)} – ` +
        `${xFormat(lo + (i + 1) * width)}`)));
      base += n;
    });
  }
  root.append(bars);
  if (marker && Number.isFinite(marker.at)) {
    const mx = x(Math.min(hi, Math.max(lo, marker.at)));
    root.append(svg("line", { x1: mx, x2: mx, y1: MARGIN.top, y2: height - MARGIN.bottom,
      class: "marker" }));
    root.append(svg("text", { x: mx + 5, y: MARGIN.top + 10, class: "marker-label" },
      marker.label));
  }
  return paint(h("div.plot", root, legend(groups)));
}

/** Horizontal bars: items [{name, value, color}], axis from zero. */
export function bars({ items, label, valueFormat = fmt.fixed, xLabel }) {
  const rowHeight = 34;
  const height = MARGIN.top + items.length * rowHeight + MARGIN.bottom;
  const values = items.map((i) => i.value);
  const xTicks = niceTicks(Math.min(0, ...values), Math.max(0, ...values), 5);
  const left = 150;
  const x = scale([xTicks[0], xTicks.at(-1)], [left, WIDTH - MARGIN.right - 40]);
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
    "aria-label": label || "", class: "chart-svg" });
  const bottom = height - MARGIN.bottom;
  const tick = tickFormat(xTicks);
  for (const t of xTicks) {
    root.append(svg("line", { x1: x(t), x2: x(t), y1: MARGIN.top, y2: bottom, class: "gridline" }));
    root.append(svg("text", { x: x(t), y: bottom + 17, class: "tick", "text-anchor": "middle" },
      tick(t)));
  }
  items.forEach((item, i) => {
    const top = MARGIN.top + i * rowHeight + 6;
    const x0 = x(Math.min(0, item.value));
    const x1 = x(Math.max(0, item.value));
    root.append(svg("text", { x: left - 10, y: top + 11, class: "bar-label",
      "text-anchor": "end", "dominant-baseline": "middle" }, item.name));
    root.append(svg("rect", { x: x0, y: top, width: Math.max(1, x1 - x0), height: 22, rx: 4,
      fill: item.color, class: "bar" }, svg("title", {}, `${item.name}: ${valueFormat(item.value)}`)));
    root.append(svg("text", { x: x1 + 6, y: top + 11, class: "bar-value",
      "dominant-baseline": "middle" }, valueFormat(item.value)));
  });
  if (xLabel) {
    root.append(svg("text", { x: (left + WIDTH - MARGIN.right) / 2, y: height - 6,
      class: "axis-title", "text-anchor": "middle" }, xLabel));
  }
  return h("div.plot", root);
}
