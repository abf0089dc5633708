// Data for the console's scripts (map.js, timeline.js), from one of:
//   "#block-id"            a <script type="application/json" id="block-id"> on the page (no inline script: CSP);
//   "/same/origin/url"     that URL's JSON (same origin only, sent with the session cookie);
//   "/same/origin/url#key" the member `key` of that URL's JSON: several scripts on a page share ONE fetch
//                          (the promise is kept per URL for the page's life), e.g. a breach's map and timeline.

const pending = new Map();

function fetchJson(url) {
  if (!pending.has(url.href)) {
    pending.set(url.href, fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => {
        if (!response.ok) throw new Error(`data ${url.pathname}: HTTP ${response.status}`);
        return response.json();
      }));
  }
  return pending.get(url.href);
}

export async function loadJson(source) {
  if (source.startsWith("#")) {
    const block = document.querySelector(source);
    return block ? JSON.parse(block.textContent) : null;
  }
  const url = new URL(source, window.location.href);
  if (url.origin !== window.location.origin) throw new Error(`data must be same-origin: ${source}`);
  const key = decodeURIComponent(url.hash.slice(1));
  url.hash = "";
  const data = await fetchJson(url);
  return key ? (data ? data[key] : null) : data;
}
