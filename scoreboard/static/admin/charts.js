/* Charts drawn with the vendored uPlot, each beside a text alternative (a summary and the data as a table). */

import uPlot from "/static/vendor/uplot/uPlot.esm.js";

import { el, num, when } from "./dom.js";

const live = new Map(); // container -> {plot, draw}

function colour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#4338ca";
}

function axes() {
  const stroke = colour("--muted");
  const grid = { stroke: colour("--chart-grid"), width: 1 };
  return [
    { stroke, grid, ticks: grid },
    { stroke, grid, ticks: grid, size: 56 },
  ];
}

/**
 * Draw (or redraw) a time chart in ``container``: ``xs`` in seconds since the epoch, ``series`` of
 * ``{label, values, colour, kind: "line" | "step" | "bars"}``.
 */
export function timeChart(container, xs, series) {
  const previous = live.get(container);
  if (previous) previous.plot.destroy();
  container.replaceChildren();
  const draw = () => {
    const width = Math.max(260, container.clientWidth || 600);
    const options = {
      width,
      height: 220,
      // Axis labels in UTC, like every time the console shows (the service's periods are UTC by default).
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      legend: { show: series.length > 1 },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), Math.max(1, max * 1.1)] } },
      axes: axes(),
      series: [
        { label: "time (UTC)", value: (_u, v) => (v == null ? "–" : when(new Date(v * 1000).toISOString())) },
        ...series.map((s) => ({
          label: s.label,
          stroke: colour(s.colour || "--chart-1"),
          width: 2,
          fill: s.kind === "bars" ? colour(s.colour || "--chart-1") : undefined,
          paths:
            s.kind === "bars"
              ? uPlot.paths.bars({ size: [0.8, 40] })
              : s.kind === "step"
                ? uPlot.paths.stepped({ align: 1 })
                : undefined,
          points: { show: s.kind === "step" && xs.length < 60 },
        })),
      ],
    };
    return new uPlot(options, [xs, ...series.map((s) => s.values)], container);
  };
  const state = { plot: draw(), draw };
  live.set(container, state);
  if (!container._observed && typeof ResizeObserver === "function") {
    container._observed = true;
    let lastWidth = container.clientWidth;
    new ResizeObserver(() => {
      const current = live.get(container);
      if (!current || container.clientWidth === lastWidth || !container.clientWidth) return;
      lastWidth = container.clientWidth;
      current.plot.setSize({ width: Math.max(260, container.clientWidth), height: 220 });
    }).observe(container);
  }
}

/** Redraw every chart on the page (their colours follow the theme). */
export function redrawAll() {
  for (const [container, state] of live) {
    if (!container.isConnected) {
      state.plot.destroy();
      live.delete(container);
      continue;
    }
    const data = state.plot.data;
    state.plot.destroy();
    container.replaceChildren();
    state.plot = state.draw();
    state.plot.setData(data);
  }
}

/** Forget a chart whose container is about to go. */
export function dropChart(container) {
  const state = live.get(container);
  if (state) state.plot.destroy();
  live.delete(container);
}

/**
 * The chart's text alternative in ``caption``: ``summary`` in words, then the data as a table inside a
 * ``<details>`` (``headers`` and ``rows`` of cells).
 */
export function describeChart(caption, summary, headers, rows) {
  const table = el(
    "table",
    { className: "data compact" },
    el("thead", {}, el("tr", {}, headers.map((h, i) => el("th", { scope: "col", className: i ? "num" : "" }, h)))),
    el(
      "tbody",
      {},
      rows.map((cells) => el("tr", {}, cells.map((c, i) => el("td", { className: i ? "num" : "" }, i ? num(c) : c)))),
    ),
  );
  caption.replaceChildren(el("p", {}, summary), el("details", {}, el("summary", {}, "The data as a table"), table));
}
