/* The admin console: sign-in, hash routes (#/board, #/users, #/users/<id>, #/suspects, #/analytics, #/audit), theme. */

import { ApiProblem, currentSession, endSession, get, post, readClaims, restoreSession, startSession, whenSessionEnds } from "./api.js";
import { $, $$, announce, showError } from "./dom.js";
import { redrawAll } from "./charts.js";
import * as analytics from "./views/analytics.js";
import * as audit from "./views/audit.js";
import * as board from "./views/board.js";
import * as suspects from "./views/suspects.js";
import * as users from "./views/users.js";

const THEME_KEY = "scoreboard-admin-theme";
const NOT_ADMIN = "This token does not carry the admin role: the console shows nothing without it.";

let current = null; // the view shown: {name, module}

// ---- theme -----------------------------------------------------------------------------------

const systemDark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

function theme() {
  return document.documentElement.dataset.theme === "dark" ? "dark" : "light";
}

function applyTheme(value) {
  document.documentElement.dataset.theme = value;
  const toggle = $("#theme-toggle");
  toggle.textContent = value === "dark" ? "Switch to light theme" : "Switch to dark theme";
  redrawAll();
}

function initTheme() {
  applyTheme(theme());
  $("#theme-toggle").addEventListener("click", () => {
    const next = theme() === "dark" ? "light" : "dark";
    const system = systemDark && systemDark.matches ? "dark" : "light";
    try {
      // Saved only when it differs from the system's; otherwise the page keeps following the system.
      if (next === system) localStorage.removeItem(THEME_KEY);
      else localStorage.setItem(THEME_KEY, next);
    } catch (_) {
      /* storage blocked: this page load only */
    }
    applyTheme(next);
  });
  if (systemDark) {
    systemDark.addEventListener("change", (event) => {
      let saved = null;
      try {
        saved = localStorage.getItem(THEME_KEY);
      } catch (_) {
        /* follow the system */
      }
      if (!saved) applyTheme(event.matches ? "dark" : "light");
    });
  }
}

// ---- routes ----------------------------------------------------------------------------------

const VIEWS = {
  board: { module: board, title: "Live board" },
  users: { module: { show: (_id, params) => users.showSearch(params), hide: users.hide }, title: "Users", nav: "users" },
  user: { module: { show: (id) => users.showUser(id), hide: users.hide }, title: "User", nav: "users" },
  suspects: { module: suspects, title: "Suspects" },
  analytics: { module: analytics, title: "Analytics" },
  audit: { module: { show: (_id, params) => audit.show(params), hide: audit.hide }, title: "Audit log" },
};

/** ``#/users/alice?x=1`` -> {name: "user", id: "alice", params}. */
function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(search);
  let name = parts[0] || "board";
  let id = null;
  if (name === "users" && parts[1]) {
    name = "user";
    id = decodeURIComponent(parts.slice(1).join("/"));
  }
  if (!VIEWS[name]) name = "board";
  return { name, id, params };
}

function route() {
  if (!currentSession()) return;
  const { name, id, params } = parseHash();
  const view = VIEWS[name];
  const previous = current ? current.name : null;
  if (current) current.module.hide();
  current = { name, module: view.module };
  for (const section of $$("#view > section")) section.hidden = section.dataset.view !== name;
  const nav = view.nav || name;
  for (const link of $$(".sidenav a")) {
    if (link.dataset.view === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${view.title} · Scoreboard admin`;
  view.module.show(id, params);
  // Keyboard and screen-reader users land on a new view's heading; within one view (a search, a filter)
  // focus stays where it is.
  if (previous !== name || id) {
    const heading = $(`#view > section[data-view="${name}"] h1`);
    if (heading) heading.focus();
  }
}

// ---- signing in and out ----------------------------------------------------------------------

function showSignedIn(session) {
  $("#signin").hidden = true;
  $("#console").hidden = false;
  $("#who").hidden = false;
  $("#who-id").textContent = session.sub || "an admin";
  $("#sign-out").hidden = false;
  if (!window.location.hash || window.location.hash === "#") window.location.replace("#/board");
  route();
}

function showSignedOut(message, note) {
  if (current) current.module.hide();
  current = null;
  $("#console").hidden = true;
  $("#who").hidden = true;
  $("#sign-out").hidden = true;
  $("#signin").hidden = false;
  // Nothing a signed-in view showed stays in the page.
  for (const tbody of $$("#console tbody")) tbody.replaceChildren();
  for (const list of $$("#console ul.cards, #console ol")) list.replaceChildren();
  analytics.clear();
  showError($("#signin-error"), message || "");
  $("#signin-note").textContent = note || "";
  document.title = "Scoreboard admin";
}

/** Keep ``token`` only if the admin API accepts it; otherwise say why and keep nothing. */
async function adopt(token, viaPassword) {
  const roles = readClaims(token).roles;
  try {
    await get("/api/admin/audit?limit=1", { token });
  } catch (problem) {
    if (viaPassword && problem.status === 403) {
      // The console made this token and will not use it: revoke it rather than leave it live.
      post("/api/auth/logout", undefined, { token }).catch(() => {});
    }
    if (problem.status === 403) throw new ApiProblem(403, "forbidden", NOT_ADMIN);
    if (problem.status === 401) throw new ApiProblem(401, problem.code, `The service refused the token: ${problem.message}`);
    throw problem;
  }
  if (Array.isArray(roles) && !roles.includes("admin")) throw new ApiProblem(403, "forbidden", NOT_ADMIN);
  return startSession(token, viaPassword);
}

async function signInWithPassword(event) {
  event.preventDefault();
  const username = $("#username");
  const password = $("#password");
  for (const field of [username, password]) field.removeAttribute("aria-invalid");
  const empty = [username, password].find((field) => !field.value);
  if (empty) {
    empty.setAttribute("aria-invalid", "true");
    showError($("#signin-error"), "Enter a username and password.");
    empty.focus();
    return;
  }
  showError($("#signin-error"), "");
  try {
    const answer = await post("/api/auth/login", { username: username.value, password: password.value });
    const session = await adopt(answer.accessToken, true);
    password.value = "";
    showSignedIn(session);
    announce(`Signed in as ${session.sub}.`);
  } catch (problem) {
    password.value = "";
    showSignedOut(problem.message);
    password.focus();
  }
}

async function signInWithToken(event) {
  event.preventDefault();
  const field = $("#token");
  const token = field.value.trim();
  field.removeAttribute("aria-invalid");
  if (!token) {
    field.setAttribute("aria-invalid", "true");
    showError($("#signin-error"), "Paste an admin token.");
    field.focus();
    return;
  }
  showError($("#signin-error"), "");
  try {
    const session = await adopt(token, false);
    field.value = "";
    showSignedIn(session);
    announce(`Signed in as ${session.sub}.`);
  } catch (problem) {
    field.value = "";
    showSignedOut(problem.message);
    field.focus();
  }
}

async function signOut() {
  const session = currentSession();
  endSession();
  if (session && session.viaPassword) {
    // A token this console obtained is revoked; a pasted one belongs to whoever minted it, so it is only forgotten.
    await post("/api/auth/logout", undefined, { token: session.token }).catch(() => {});
  }
  leave({ note: "Signed out." });
}

const LEAVING_KEY = "scoreboard-admin-left";

/**
 * Leave the signed-in console by loading the page afresh: nothing a view held (rows, charts, a user's
 * ledger in memory) survives into the sign-in forms. What to say there travels in sessionStorage.
 */
function leave(said) {
  if (current) current.module.hide();
  current = null;
  $("#console").hidden = true;
  try {
    sessionStorage.setItem(LEAVING_KEY, JSON.stringify(said));
  } catch (_) {
    /* storage blocked: the fresh page says nothing */
  }
  window.location.replace("/admin");
}

/** What the page that left asked this load to say, once. */
function takeLeavingWords() {
  try {
    const said = JSON.parse(sessionStorage.getItem(LEAVING_KEY) || "null");
    sessionStorage.removeItem(LEAVING_KEY);
    return said && typeof said === "object" ? said : null;
  } catch (_) {
    return null;
  }
}

async function start() {
  initTheme();
  for (const module of [board, users, suspects, analytics, audit]) module.init();
  $("#password-form").addEventListener("submit", signInWithPassword);
  $("#token-form").addEventListener("submit", signInWithToken);
  $("#sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  whenSessionEnds((message) => {
    endSession();
    leave({ error: `Your session ended: ${message} Sign in again.` });
  });
  const kept = restoreSession();
  if (kept) {
    try {
      showSignedIn(await adopt(kept.token, kept.viaPassword));
      return;
    } catch (problem) {
      endSession();
      showSignedOut(problem.message);
      return;
    }
  }
  const said = takeLeavingWords();
  showSignedOut(said && said.error, said && said.note);
  if (said) $("#username").focus();
}

start();
