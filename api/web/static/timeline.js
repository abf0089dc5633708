// The evidence timeline (uPlot, vendored as window.uPlot): for each fix its state for the zone
// (0 OUT, 1 UNCERTAIN, 2 IN) and its battery %, against London time; the line breaks where fixes are
// further apart than the policy's gap (gap_s), so a gap shows as a gap. Data from a JSON block:
// <div data-tt-timeline="#block-id">, <script type="application/json" id="block-id">{t, state, battery,
// record, window, gap_s}</script>, or data-tt-timeline="/same/origin/url.json[#key]" (static/ttdata.js: one
// fetch shared with the map). The table of fixes on the page is the accessible alternative.

import { loadJson } from "./ttdata.js";

const STATE_LABELS = ["OUT", "UNCERTAIN", "IN"];

function withGaps(data) {
  const t = [], state = [], battery = [];
  for (let i = 0; i < data.t.length; i++) {
    if (i > 0 && data.t[i] - data.t[i - 1] > data.gap_s) {
      t.push((data.t[i] + data.t[i - 1]) / 2); state.push(null); battery.push(null);
    }
    t.push(data.t[i]); state.push(data.state[i]); battery.push(data.battery[i]);
  }
  return [t, state, battery];
}

function londonTime(seconds) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/London", hour: "2-digit", minute: "2-digit",
    day: "numeric", month: "short" }).format(new Date(seconds * 1000));
}

const CLOCK = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/London", hour: "2-digit", minute: "2-digit" });

// 24-hour London clock on the time axis ("19:25"), the date under the first tick, as the page writes times
function timeTicks(u, splits) {
  return splits.map((v, i) => (i === 0 ? `${CLOCK.format(new Date(v * 1000))}\n${londonTime(v).split(",")[0]}`
    : CLOCK.format(new Date(v * 1000))));
}

export function drawTimeline(element, data) {
  const uPlot = window.uPlot;
  const width = Math.max(320, element.clientWidth || 600);
  const opts = {
    width, height: 220, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Europe/London"),
    scales: { x: { time: true, range: () => data.window }, state: { range: [-0.2, 2.2] }, pct: { range: [0, 100] } },
    series: [
      { value: (u, v) => (v == null ? "" : londonTime(v)) },
      { label: "State", scale: "state", stroke: "#1d70b8", width: 2, paths: uPlot.paths.stepped({ align: 1 }),
        spanGaps: false, value: (u, v) => (v == null ? "" : STATE_LABELS[v]) },
      { label: "Battery %", scale: "pct", stroke: "#6f72af", width: 1, spanGaps: false },
    ],
    axes: [
      { values: timeTicks, size: 50 },
      { scale: "state", values: (u, splits) => splits.map((v) => STATE_LABELS[v] || ""), splits: () => [0, 1, 2],
        size: 90 },
      { scale: "pct", side: 1, values: (u, splits) => splits.map((v) => `${v}%`) },
    ],
  };
  const plot = new uPlot(opts, withGaps(data), element);
  element.dataset.ttTimelineReady = "true";
  return plot;
}

for (const element of document.querySelectorAll("[data-tt-timeline]")) {
  loadJson(element.dataset.ttTimeline)
    .then((data) => { if (data) drawTimeline(element, data); })
    .catch((error) => { element.dataset.ttTimelineError = String(error); console.error(error); });
}
