// The dashboard's entry point: token handling, hash router, page lifecycle.
import { api, ApiError, getToken, setMe, setToken, setUnauthorizedHandler } from "./api.js";
import { renderCampaign, renderCampaigns } from "./pages/campaigns.js";
import { renderDevice } from "./pages/device.js";
import { renderFleet } from "./pages/fleet.js";
import { renderNewCampaign } from "./pages/new-campaign.js";
import { renderPackages } from "./pages/packages.js";
import { renderProfiles } from "./pages/profiles.js";
import { problemBox } from "./ui.js";
import { fill, h } from "./util.js";

const main = document.getElementById("main");
const loginSection = document.getElementById("login");
const loginForm = document.getElementById("login-form");
const loginError = document.getElementById("login-error");
const who = document.getElementById("who");
const logout = document.getElementById("logout");

let cleanup = null;
let routeSeq = 0;

// Each page renders into a fresh view element: a page still loading when the route
// changes fills its own detached view, never the new page.
const ROUTES = [
  [/^\/?$/, () => { location.replace("#/fleet"); return null; }],
  [/^\/fleet$/, (view, _m, q) => renderFleet(view, q), "fleet"],
  [/^\/devices\/(.+)$/, (view, m) => renderDevice(view, decodeURIComponent(m[1])), "fleet"],
  [/^\/packages$/, (view) => renderPackages(view), "packages"],
  [/^\/profiles$/, (view, _m, q) => renderProfiles(view, q), "profiles"],
  [/^\/campaigns$/, (view, _m, q) => renderCampaigns(view, q), "campaigns"],
  [/^\/campaigns\/new$/, (view, _m, q) => renderNewCampaign(view, q), "new"],
  [/^\/campaigns\/([^/]+)$/, (view, m) => renderCampaign(view, decodeURIComponent(m[1])), "campaigns"],
];

/** Take a token given once in the URL (#token=… or ?token=…), then remove it from the bar. */
function takeTokenFromUrl() {
  const url = new URL(location.href);
  let token = url.searchParams.get("token");
  if (token) url.searchParams.delete("token");
  const hashMatch = /^#token=([^&]+)(?:&(.*))?$/.exec(url.hash);
  if (hashMatch) {
    try { token = decodeURIComponent(hashMatch[1]); } catch { token = null; }  // malformed %
    url.hash = hashMatch[2] ? `#${hashMatch[2]}` : "#/fleet";
  }
  if (token) {
    setToken(token);
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

function showLogin(message) {
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } cleanup = null; }
  main.replaceChildren();
  main.hidden = true;
  loginSection.hidden = false;
  loginError.textContent = message || "";
  who.textContent = "";
  logout.hidden = true;
  document.getElementById("token-input").focus();
}

async function signIn() {
  try {
    const me = await api("/me");
    setMe(me);
    who.textContent = `${me.name} (${me.role})`;
    logout.hidden = false;
    loginSection.hidden = true;
    main.hidden = false;
    return true;
  } catch (err) {
    setMe(null);
    if (err instanceof ApiError && err.status === 401) {
      setToken(null);
      showLogin(`The token was refused: ${err.message}`);
    } else {
      showLogin(`Cannot reach the API: ${err.message}`);
    }
    return false;
  }
}

async function route() {
  const seq = ++routeSeq;
  if (cleanup) { try { cleanup(); } catch { /* ignore */ } cleanup = null; }
  if (!getToken()) { showLogin(); return; }
  const [path, query] = (location.hash.replace(/^#/, "") || "/").split("?");
  const q = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("[data-nav]")) a.removeAttribute("aria-current");
  for (const [re, fn, nav] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    if (nav) document.querySelector(`[data-nav="${nav}"]`)?.setAttribute("aria-current", "page");
    const view = h("div", { class: "view" });
    main.replaceChildren(view);
    try {
      const result = await fn(view, m, q);
      if (seq !== routeSeq) { if (typeof result === "function") result(); return; }
      cleanup = typeof result === "function" ? result : null;
    } catch (err) {
      if (seq === routeSeq) fill(view, problemBox(err, "This page failed"));
    }
    return;
  }
  fill(main, h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, path), ". ",
    h("a", { href: "#/fleet" }, "Go to the fleet overview.")));
}

loginForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const value = document.getElementById("token-input").value.trim();
  if (!value) return;
  setToken(value);
  if (await signIn()) {
    document.getElementById("token-input").value = "";
    if (!location.hash || location.hash === "#") location.hash = "#/fleet";
    else route();
  }
});

logout.addEventListener("click", () => {
  setToken(null);
  setMe(null);
  showLogin("Signed out.");
});

setUnauthorizedHandler(() => {
  setToken(null);
  setMe(null);
  showLogin("Your token is no longer accepted; sign in again.");
});

window.addEventListener("hashchange", () => {
  if (/^#token=/.test(location.hash)) { takeTokenFromUrl(); signIn().then((ok) => ok && route()); return; }
  route();
});

takeTokenFromUrl();
if (getToken()) {
  signIn().then((ok) => { if (ok) route(); });
} else {
  showLogin();
}
