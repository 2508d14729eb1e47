/* The demo page: sign in, complete actions through the real endpoints, drive the widget. */
(() => {
  "use strict";

  const SESSION_KEY = "scoreboard-demo-session";
  const THEME_KEY = "scoreboard-demo-theme";
  const $ = (id) => document.getElementById(id);
  const board = $("board");
  let session = readSession();

  /** The signed-in session kept for this tab, or null. */
  function readSession() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY));
    } catch (_) {
      return null;
    }
  }

  /** Call the service with JSON; resolve the body or reject with its error message. */
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (session) headers.Authorization = `Bearer ${session.accessToken}`;
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error((data.error && data.error.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  /** Show the form or the actions; after a sign-in or out, the widget reconnects with the new token. */
  function showSession({ reconnect = true } = {}) {
    $("login-form").hidden = Boolean(session);
    $("signed-in").hidden = !session;
    if (session) {
      $("who-name").textContent = session.displayName;
      $("who-id").textContent = session.userId;
      loadActions();
    }
    if (reconnect) board.reconnect();
  }

  /** List the catalog's actions as buttons. */
  async function loadActions() {
    const list = $("actions");
    list.textContent = "";
    let actions;
    try {
      actions = await api("GET", "/api/actions");
    } catch (error) {
      if (error.status === 401) return signOut("Your session expired; sign in again.");
      $("result").textContent = `Could not load the actions: ${error.message}`;
      return;
    }
    for (const action of actions) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "action";
      button.dataset.action = action.key;
      button.innerHTML = '<span class="label"></span><span class="points"></span>';
      button.querySelector(".label").textContent = action.description || action.key;
      button.querySelector(".points").textContent = `+${action.points}`;
      button.setAttribute("aria-label", `${action.description || action.key}, ${action.points} points`);
      button.addEventListener("click", () => complete(action, button));
      item.append(button);
      list.append(item);
    }
  }

  /** Record a completion (the demo's stand-in for the site backend), then claim it as the user. */
  async function complete(action, button) {
    button.disabled = true;
    const result = $("result");
    try {
      const completion = await api("POST", "/demo/complete", { action: action.key });
      const claim = await api("POST", "/api/action/do", { actionId: completion.actionId });
      result.textContent = `+${completion.points} points for “${action.description || action.key}”. Your score is now ${claim.newScore}.`;
      result.dataset.newScore = String(claim.newScore);
    } catch (error) {
      if (error.status === 401) return signOut("Your session expired; sign in again.");
      result.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }

  /** Forget the session and show the form again, with an optional reason. */
  function signOut(reason) {
    session = null;
    sessionStorage.removeItem(SESSION_KEY);
    $("result").textContent = "";
    showSession();
    const error = $("login-error");
    error.textContent = reason || "";
    error.hidden = !reason;
    $("username").focus();
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("login-error");
    error.hidden = true;
    try {
      session = null;
      session = await api("POST", "/api/auth/login", {
        username: $("username").value.trim(),
        password: $("password").value,
      });
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      $("password").value = "";
      showSession();
      $("actions-heading").setAttribute("tabindex", "-1");
      $("actions-heading").focus();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });

  $("sign-out").addEventListener("click", () => signOut());

  /** Apply the light or dark theme to the page and the widget. */
  function setTheme(theme) {
    document.documentElement.dataset.theme = theme;
    board.setAttribute("theme", theme);
    const toggle = $("theme-toggle");
    toggle.setAttribute("aria-pressed", String(theme === "dark"));
    localStorage.setItem(THEME_KEY, theme);
  }

  $("theme-toggle").addEventListener("click", () => {
    setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
  });

  const preferred = localStorage.getItem(THEME_KEY) ||
    (window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  setTheme(preferred);

  // Setting the provider (re)connects the widget, so the first showing needs no reconnect of its own.
  board.tokenProvider = () => (session ? session.accessToken : null);
  showSession({ reconnect: false });
})();
