// Small inline-SVG charts: horizontal bars and a stacked area chart over time.
import { colorOf, h, JOB_STATES, legend, s } from "./util.js";

/** Horizontal bar chart of [label, count] pairs, largest first. */
export function barChart(pairs, { label = "chart", unit = "devices" } = {}) {
  const data = [...pairs].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
  if (!data.length) return h("p", { class: "muted" }, "No data yet.");
  const rowH = 24, labelW = 140, width = 560, barW = width - labelW - 60;
  const max = Math.max(...data.map((d) => d[1]), 1);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${data.length * rowH + 4}`,
    role: "img", "aria-label": label });
  svg.appendChild(s("title", {}, `${label}: ` + data.map(([k, v]) => `${k} ${v}`).join(", ")));
  data.forEach(([key, value], i) => {
    const y = i * rowH + 2;
    const w = Math.max(1, (barW * value) / max);
    svg.appendChild(s("text", { x: labelW - 6, y: y + 15, "text-anchor": "end" },
      String(key).length > 20 ? String(key).slice(0, 19) + "…" : String(key)));
    svg.appendChild(s("rect", { x: labelW, y: y + 3, width: w, height: rowH - 8, rx: 3,
      fill: colorOf(null, i) }, s("title", {}, `${key}: ${value} ${unit}`)));
    svg.appendChild(s("text", { x: labelW + w + 6, y: y + 15 }, String(value)));
  });
  return svg;
}

/** Stacked areas of job-state counts over time; points = [{at, by_state}]. */
export function timelineChart(points, { label = "Job states over time" } = {}) {
  const pts = (points || []).filter((p) => p && p.at);
  if (!pts.length) return h("p", { class: "muted" }, "No events yet.");
  const seen = new Set();
  for (const p of pts) for (const [k, v] of Object.entries(p.by_state || {})) if (v) seen.add(k);
  const states = JOB_STATES.filter((st) => seen.has(st))
    .concat([...seen].filter((st) => !JOB_STATES.includes(st)));
  const width = 640, height = 220, left = 40, right = 10, top = 10, bottom = 28;
  const times = pts.map((p) => new Date(p.at).getTime());
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const totals = pts.map((p) => states.reduce((a, st) => a + (p.by_state?.[st] || 0), 0));
  const ymax = Math.max(1, ...totals);
  const x = (t) => left + (t1 === t0 ? (width - left - right) / 2 : ((t - t0) / (t1 - t0)) * (width - left - right));
  const y = (v) => top + (1 - v / ymax) * (height - top - bottom);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": label, "data-points": pts.length });
  const last = pts[pts.length - 1].by_state || {};
  svg.appendChild(s("title", {}, `${label}; latest: ` + states.map((st) => `${st} ${last[st] || 0}`).join(", ")));
  // axes
  svg.appendChild(s("line", { x1: left, y1: y(0), x2: width - right, y2: y(0), stroke: "#b9c0cd" }));
  svg.appendChild(s("line", { x1: left, y1: top, x2: left, y2: y(0), stroke: "#b9c0cd" }));
  for (const v of [0, Math.round(ymax / 2), ymax]) {
    svg.appendChild(s("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end" }, String(v)));
  }
  const fmt = (t) => new Date(t).toLocaleTimeString(undefined, { hour12: false });
  svg.appendChild(s("text", { x: left, y: height - 8 }, fmt(t0)));
  svg.appendChild(s("text", { x: width - right, y: height - 8, "text-anchor": "end" }, fmt(t1)));
  // stacked areas, bottom to top in state order
  const base = pts.map(() => 0);
  states.forEach((st, i) => {
    const upper = pts.map((p, j) => base[j] + (p.by_state?.[st] || 0));
    let d;
    if (pts.length === 1) {
      const cx = x(times[0]);
      d = `M${cx - 4},${y(base[0])} L${cx - 4},${y(upper[0])} L${cx + 4},${y(upper[0])} L${cx + 4},${y(base[0])} Z`;
    } else {
      const topLine = pts.map((_, j) => `${x(times[j]).toFixed(1)},${y(upper[j]).toFixed(1)}`);
      const bottomLine = pts.map((_, j) => `${x(times[j]).toFixed(1)},${y(base[j]).toFixed(1)}`).reverse();
      d = `M${topLine.join(" L")} L${bottomLine.join(" L")} Z`;
    }
    svg.appendChild(s("path", { d, fill: colorOf(st, i), "fill-opacity": 0.85, stroke: "none",
      "data-state": st }, s("title", {}, `${st}: ${last[st] || 0} now`)));
    upper.forEach((v, j) => { base[j] = v; });
  });
  return h("figure", { class: "timeline" }, svg, legend(states));
}
