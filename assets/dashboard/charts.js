// The metrics section: one card per category with its numbers, a latency histogram and the mix of outcomes (plain SVG).

import { h, ms } from "./dom.js";

const CLASS_COLOURS = { "2xx": "#15803d", "4xx": "#b45309", "5xx": "#b91c1c", "503-busy": "#7c3aed", "client-disconnect": "#9ca3af" };

function label(bound) {
  if (bound === null) return "∞";
  return bound >= 1000 ? `${bound / 1000}s` : `${bound}ms`;
}

export function histogram(counts, bounds, width = 300, height = 90) {
  const max = Math.max(1, ...counts);
  const slot = width / counts.length;
  const bars = counts.map((count, i) => {
    const tall = (count / max) * (height - 22);
    return h("g", {},
      h("rect", { className: "hbar", x: (i * slot + 1).toFixed(1), y: (height - 14 - tall).toFixed(1), width: (slot - 2).toFixed(1), height: tall.toFixed(1) },
        h("title", {}, `≤ ${label(bounds[i])}: ${count}`)),
      i % 3 === 0 ? h("text", { x: (i * slot).toFixed(1), y: height - 2 }, label(bounds[i])) : null);
  });
  return h("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "latency histogram" }, bars);
}

export function outcomes(classes, width = 300, height = 12) {
  const total = Object.values(classes).reduce((a, b) => a + b, 0) || 1;
  let x = 0;
  const parts = Object.entries(classes).filter(([, n]) => n > 0).map(([name, n]) => {
    const w = (n / total) * width;
    const rect = h("rect", { x: x.toFixed(1), y: 0, width: w.toFixed(1), height, fill: CLASS_COLOURS[name] || "#999" }, h("title", {}, `${name}: ${n}`));
    x += w;
    return rect;
  });
  return h("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "outcomes" },
    h("rect", { x: 0, y: 0, width, height, fill: "#e5e7eb" }), parts);
}

function numbers(m) {
  const row = (name, value) => h("tr", {}, h("th", {}, name), h("td", { className: "num" }, value));
  const l = m.latency_ms;
  const w = m.slot_wait_ms;
  return h("table", {},
    row("Requests", m.total),
    row("Error rate", `${(m.error_rate * 100).toFixed(1)} %`),
    row("Per minute", m.throughput_per_min.toFixed(2)),
    row("Latency p50 / p95", `${ms(l.p50)} / ${ms(l.p95)}`),
    row("Latency p99 / max", `${ms(l.p99)} / ${ms(l.max)}`),
    row("Slot wait p50 / p95", `${ms(w.p50)} / ${ms(w.p95)}`));
}

export function metricCards(snapshot) {
  // The five request kinds users care about; the dashboard's own page loads are left out.
  const names = ["asr", "tts", "llm", "models", "admin"].filter((name) => (snapshot.categories[name] || {}).total > 0);
  if (names.length === 0) return [h("p", { className: "muted" }, snapshot.enabled ? "No requests yet." : "Metrics are off.")];
  return names.map((name) => {
    const m = snapshot.categories[name];
    const legend = Object.entries(m.classes).filter(([, n]) => n > 0)
      .map(([cls, n]) => h("span", { className: `s${cls}` }, `${cls} ${n}`));
    return h("div", { className: "card", id: `metrics-${name}` }, h("h3", {}, name),
      outcomes(m.classes), h("div", { className: "legend" }, legend),
      histogram(m.latency_histogram, snapshot.histogram_buckets_ms), numbers(m));
  });
}
