// Evidence maps for any console page (a breach's fixes, an approved extract, a wearer's zones).
// Markup: <div data-tt-map="#json-block-id" data-tiles="https://tiles/{z}/{x}/{y}.png"> reads GeoJSON
// from <script type="application/json" id="json-block-id">; data-tt-map="/same/origin/url.json" fetches it.
// No inline script (CSP). Features are drawn by properties.role:
//   "zone": the zone as its true geometry: a Point with properties.radius_m is a circle of that many metres;
//           polygons as given;
//   "fix" (or anything else with a Point or MultiPoint): a dot coloured by properties.state (IN / OUT /
//           UNCERTAIN, else grey), with its accuracy circle (properties.accuracy_m metres) when given. A
//           MultiPoint's properties n, ts and accuracy_m may be arrays, one value per point (columnar: cheap
//           for a week of fixes). ts is UTC (RFC 3339) and is shown in London time.
// Without data-tiles (TAGTRAIL_TILE_URL unset) the map has no background: no request leaves the site.
// Leaflet (vendored, classic script, window.L) must be loaded before this module runs (defer; modules run after).

const COLOURS = { IN: "#00703c", OUT: "#d4351c", UNCERTAIN: "#f47738" };
const ZONE_COLOUR = "#1d70b8";

async function loadData(source) {
  if (source.startsWith("#")) {
    const block = document.querySelector(source);
    return block ? JSON.parse(block.textContent) : null;
  }
  const url = new URL(source, window.location.href);
  if (url.origin !== window.location.origin) throw new Error(`map data must be same-origin: ${source}`);
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`map data ${source}: HTTP ${response.status}`);
  return response.json();
}

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

function drawPoint(L, layer, [lon, lat], state, n, ts, accuracy) {
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
  points.forEach((xy, i) => drawPoint(L, layer, xy, p.state, at(p.n, i), at(p.ts, i), at(p.accuracy_m, i)));
}

export function drawMap(element, data) {
  const L = window.L;
  const map = L.map(element, { attributionControl: Boolean(element.dataset.tiles) });
  map.setView([54.0, -2.0], 5); // a view first: layers join a map only once it has one (circles need it for bounds)
  if (element.dataset.tiles) L.tileLayer(element.dataset.tiles, { maxZoom: 19 }).addTo(map);
  const layer = L.featureGroup().addTo(map);
  for (const feature of (data && data.features) || []) {
    if (!feature.geometry) continue;
    const role = (feature.properties || {}).role;
    if (role === "zone") drawZone(L, feature, layer);
    else if (feature.geometry.type === "Point" || feature.geometry.type === "MultiPoint") drawFix(L, feature, layer);
  }
  const bounds = layer.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds.pad(0.1), { maxZoom: 18, animate: false });
  element.dataset.ttMapReady = "true";
  return map;
}

for (const element of document.querySelectorAll("[data-tt-map]")) {
  loadData(element.dataset.ttMap)
    .then((data) => drawMap(element, data))
    .catch((error) => { element.dataset.ttMapError = String(error); console.error(error); });
}
