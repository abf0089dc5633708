// Evidence maps for any console page (a breach's fixes, an approved extract, a wearer's zones).
// Markup: <div data-tt-map="#json-block-id" data-tiles="https://tiles/{z}/{x}/{y}.png"> reads GeoJSON
// from <script type="application/json" id="json-block-id">; data-tt-map="/same/origin/url.json" fetches it, and
// data-tt-map="/same/origin/url.json#key" takes its member `key` (static/ttdata.js; one fetch per URL per page).
// No inline script (CSP). Features are drawn by properties.role:
//   "zone": the zone as its true geometry: a Point with properties.radius_m is a circle of that many metres;
//           polygons as given;
//   "fix" (or anything else with a Point or MultiPoint): a dot coloured by properties.state (IN / OUT /
//           UNCERTAIN), or, without a state, by properties.quality (decisive / uncertain: an extract's per-fix
//           quality), else grey, with its accuracy circle (properties.accuracy_m metres) when given. A
//           MultiPoint's properties n, ts and accuracy_m may be arrays, one value per point (columnar: cheap
//           for a week of fixes). ts is UTC (RFC 3339) and is shown in London time.
// Background: data-tiles (TAGTRAIL_TILE_URL, or the app's own /tiles/... from TAGTRAIL_TILE_FILE). Without it,
// the boundaries the admin loaded (local authorities, wards) and their names are drawn as a light context layer
// under the data, fetched from data-boundaries (default /console/boundaries.json; "none": no context) with the
// map's bbox. Either way no request leaves the site.
// Leaflet (vendored, classic script, window.L) must be loaded before this module runs (defer; modules run after).

import { loadJson } from "./ttdata.js";

const COLOURS = { IN: "#00703c", OUT: "#d4351c", UNCERTAIN: "#f47738", decisive: "#003078", uncertain: "#f47738" };
const ZONE_COLOUR = "#1d70b8";
const BOUNDARIES = "/console/boundaries.json";

function stateClass(state) {
  return `tt-fix tt-fix--${(state || "none").toLowerCase()}`;
}

function drawZone(L, feature, layer) {
  const props = feature.properties || {};
  const style = { color: ZONE_COLOUR, weight: 2, fillOpacity: 0.08, className: "tt-zone" };
  if (feature.geometry.type === "Point" && props.radius_m) {
    const [lon, lat] = feature.geometry.coordinates;
    return L.circle([lat, lon], { ...style, radius: props.radius_m }).bindTooltip(props.name || "zone").addTo(layer);
  }
  return L.geoJSON(feature, { style: () => style }).bindTooltip(props.name || "zone").addTo(layer);
}

const LONDON = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/London", day: "numeric", month: "short",
  year: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });

function at(value, i) {
  return Array.isArray(value) ? value[i] : value;
}

function drawPoint(L, layer, [lon, lat], state, n, ts, accuracy) { // state: IN/OUT/UNCERTAIN or a quality
  const colour = COLOURS[state] || "#505a5f";
  if (accuracy) {
    L.circle([lat, lon], { radius: accuracy, color: colour, weight: 1, opacity: 0.5, fillOpacity: 0.05,
      interactive: false, className: "tt-accuracy" }).addTo(layer);
  }
  const label = [n ? `Fix ${n}` : "Fix", ts ? LONDON.format(new Date(ts)) : null, state,
    accuracy ? `accuracy ${accuracy} m` : null].filter(Boolean).join(", ");
  L.circleMarker([lat, lon], { radius: 5, color: "#0b0c0c", weight: 1, fillColor: colour, fillOpacity: 0.9,
    className: stateClass(state) }).bindTooltip(label).addTo(layer);
}

function drawFix(L, feature, layer) {
  const p = feature.properties || {};
  const g = feature.geometry;
  const points = g.type === "MultiPoint" ? g.coordinates : [g.coordinates];
  const state = p.state || p.quality;
  points.forEach((xy, i) => drawPoint(L, layer, xy, state, at(p.n, i), at(p.ts, i), at(p.accuracy_m, i)));
}

function contextPanes(map) {
  map.createPane("tt-context").style.zIndex = 350; // under the data (overlayPane 400)
  map.createPane("tt-context-labels").style.zIndex = 360;
}

function drawBoundaries(L, map, group, data) {
  group.clearLayers();
  for (const feature of (data && data.features) || []) {
    const name = (feature.properties || {}).name;
    L.geoJSON(feature, { pane: "tt-context", interactive: false,
      style: () => ({ color: "#505a5f", weight: 1, opacity: 0.7, fill: false, className: "tt-boundary" }) }).addTo(group);
    const at = (feature.properties || {}).label_at;
    if (name && at) {
      const label = document.createElement("span");
      label.textContent = name; // text, never HTML: names come from a file
      L.marker([at[1], at[0]], { pane: "tt-context-labels", interactive: false, keyboard: false,
        icon: L.divIcon({ className: "tt-boundary-label", html: label, iconSize: null }) }).addTo(group);
    }
  }
}

function contextLayer(L, map, source) {
  const group = L.layerGroup().addTo(map);
  let loaded = null;
  const refresh = () => {
    const view = map.getBounds();
    if (loaded && loaded.contains(view)) return;
    const want = view.pad(0.5);
    const url = new URL(source, window.location.href);
    if (url.origin !== window.location.origin) return;
    url.searchParams.set("bbox", [want.getWest(), want.getSouth(), want.getEast(), want.getNorth()]
      .map((v) => v.toFixed(5)).join(","));
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => {
        loaded = want;
        drawBoundaries(L, map, group, data);
        map.getContainer().dataset.ttBoundaries = String(((data && data.features) || []).length);
      })
      .catch((error) => console.error(error));
  };
  map.on("moveend", refresh);
  refresh();
}

export function drawMap(element, data) {
  const L = window.L;
  const map = L.map(element, { attributionControl: Boolean(element.dataset.tiles) });
  map.setView([54.0, -2.0], 5); // a view first: layers join a map only once it has one (circles need it for bounds)
  if (element.dataset.tiles) L.tileLayer(element.dataset.tiles, { maxZoom: 19 }).addTo(map);
  else if (element.dataset.boundaries !== "none") contextPanes(map);
  const layer = L.featureGroup().addTo(map);
  for (const feature of (data && data.features) || []) {
    if (!feature.geometry) continue;
    const role = (feature.properties || {}).role;
    if (role === "zone") drawZone(L, feature, layer);
    else if (feature.geometry.type === "Point" || feature.geometry.type === "MultiPoint") drawFix(L, feature, layer);
  }
  const bounds = layer.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds.pad(0.1), { maxZoom: 18, animate: false });
  if (!element.dataset.tiles && element.dataset.boundaries !== "none") {
    contextLayer(L, map, element.dataset.boundaries || BOUNDARIES);
  }
  element.dataset.ttMapReady = "true";
  return map;
}

for (const element of document.querySelectorAll("[data-tt-map]")) {
  loadJson(element.dataset.ttMap)
    .then((data) => drawMap(element, data))
    .catch((error) => { element.dataset.ttMapError = String(error); console.error(error); });
}
