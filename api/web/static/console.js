// Starts GOV.UK Frontend's components once the page has loaded (a module script: deferred).
// The class GOV.UK Frontend keys its styles on is set here, not in an inline script (CSP).
import { initAll } from "/static/vendor/govuk-frontend/govuk-frontend.min.js";

document.body.classList.add("js-enabled", "govuk-frontend-supported");
initAll();
document.body.addEventListener("htmx:afterSwap", (event) => initAll({ scope: event.target }));
