// Draws the /reports charts with uPlot (vendored, loaded before this module as a global) from the
// page's <script type="application/json" id="report-data"> block: no inline script (CSP). The tables
// on the page hold the same figures; the charts are an aid, marked role="img" with a label.
const COLOURS = ["#1d70b8", "#d4351c", "#00703c", "#f47738", "#4c2c92", "#505a5f", "#28a197", "#912b88"];
const data = JSON.parse(document.getElementById("report-data").textContent);

function legend(el, series) {
  const list = document.createElement("ul");
  list.className = "tt-legend govuk-body-s";
  series.forEach((s, k) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "tt-legend__swatch";
    swatch.style.backgroundColor = COLOURS[k % COLOURS.length];
    item.append(swatch, document.createTextNode(s.label));
    list.append(item);
  });
  el.append(list);
}

function draw(el, chart) {
  const n = chart.labels.length;
  if (!n || !chart.series.length) return;
  const width = Math.max(320, el.clientWidth || 640);
  const count = chart.series.length;
  const w = 0.8 / count;
  const series = chart.series.map((s, k) => ({
    label: s.label,
    stroke: COLOURS[k % COLOURS.length],
    fill: COLOURS[k % COLOURS.length],
    // grouped bars: series k's bar in slot i spans [i - 0.4 + k * w, i - 0.4 + (k + 1) * w] in x units
    paths: uPlot.paths.bars({
      disp: {
        x0: { unit: 1, values: () => chart.labels.map((_, i) => i - 0.4 + k * w) },
        size: { unit: 1, values: () => [w] },
      },
    }),
    points: { show: false },
  }));
  const opts = {
    width,
    height: 280,
    legend: { show: false },
    cursor: { show: false },
    scales: { x: { time: false, range: [-0.6, n - 0.4] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
    axes: [
      // one word a line, so long outcome names ("rejected insufficient justification") never overlap
      { splits: () => chart.labels.map((_, i) => i), size: 70,
        values: (u, splits) => splits.map((i) => (chart.labels[i] ?? "").replace(/ /g, "\n")) },
      { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
    ],
    series: [{}, ...series],
  };
  const x = chart.labels.map((_, i) => i);
  new uPlot(opts, [x, ...chart.series.map((s) => s.values)], el);
  legend(el, chart.series);
}

for (const el of document.querySelectorAll("[data-chart]")) {
  const chart = data[el.dataset.chart];
  if (chart) draw(el, chart);
}
