/* The demo page: sign in, complete actions through the real endpoints, drive the widget. */
(() => {
  "use strict";

  const SESSION_KEY = "scoreboard-demo-session";
  // Completions recorded but not claimed yet, per user: claimed after a reload or the next sign-in.
  const PENDING_KEY = "scoreboard-demo-pending:";
  const THEME_KEY = "scoreboard-demo-theme";
  // The board shown (period and "Around me"), kept for the tab so a reload shows the same board.
  const BOARD_KEY = "scoreboard-demo-board";
  const PERIODS = ["all", "day", "week", "month"];
  // Waits before retrying after a network failure or a 5xx without Retry-After: 1 s, 2 s, 4 s... up to 30 s.
  const BACKOFF_MAX_S = 30;
  const $ = (id) => document.getElementById(id);
  const board = $("board");
  const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

  let session = readJson(sessionStorage, SESSION_KEY);
  // Bumped at every sign-in and sign-out: work started for an earlier session stops at its next step.
  let epoch = 0;
  // Clicks waiting to be recorded and claimed, in order: {key, label, points, actionId?}.
  let queue = [];
  let runner = null; // the epoch whose queue runner is going, or null
  let signingIn = false;
  let signingOut = false;

  /** A JSON value from ``storage``, or null. */
  function readJson(storage, key) {
    try {
      return JSON.parse(storage.getItem(key));
    } catch (_) {
      return null;
    }
  }

  /** A failed call: ``status`` (0 when the server was not reached), the error's ``code``, ``retryAfter`` in seconds. */
  class ApiFailure extends Error {
    constructor(status, code, message, { retryAfter = null, problems = [] } = {}) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
      this.problems = problems;
    }
  }

  /** Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), else the body's ``retryAfter``. */
  function retryAfter(response, error) {
    const header = response.headers.get("Retry-After");
    let seconds = header === null || header.trim() === "" ? NaN : Number(header);
    if (header && !Number.isFinite(seconds)) {
      const at = Date.parse(header);
      if (Number.isFinite(at)) seconds = (at - Date.now()) / 1000;
    }
    if (!Number.isFinite(seconds)) seconds = Number(error.retryAfter);
    return Number.isFinite(seconds) ? Math.max(0, seconds) : null;
  }

  /** Call the service with JSON (and ``token``, by default the session's); resolve the body or reject with an ApiFailure. */
  async function api(method, path, body, token = session && session.accessToken) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (_) {
      throw new ApiFailure(0, "network", "The server could not be reached.");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiFailure(response.status, error.code || `http_${response.status}`, error.message || `HTTP ${response.status}`, {
        retryAfter: retryAfter(response, error),
        problems: Array.isArray(error.problems) ? error.problems : [],
      });
    }
    return data;
  }

  /** "3 s" or "2 min" for a wait in seconds. */
  function duration(seconds) {
    const s = Math.max(1, Math.ceil(seconds));
    return s < 120 ? `${s} s` : `${Math.ceil(s / 60)} min`;
  }

  /** Resolve after ``seconds``. */
  function sleep(seconds) {
    return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  }

  // ---- signing in and out ------------------------------------------------------------------

  /** Show (or with "" hide) the sign-in error, and mark the fields it is about. */
  function showLoginError(message, fields = []) {
    const error = $("login-error");
    error.textContent = message;
    error.hidden = !message;
    for (const input of [$("username"), $("password")]) {
      if (fields.includes(input)) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  }

  /** What to say when the server refused a sign-in, and which fields it is about. */
  function loginFailure(failure) {
    const fieldsNamed = failure.problems
      .map((p) => String(p.field || ""))
      .map((field) => (field === "username" ? $("username") : field === "password" ? $("password") : null))
      .filter(Boolean);
    switch (failure.status) {
      case 400: {
        // The page checks for empty fields first; the server's own checks (length) are the rest.
        const tooLong = failure.problems.some((p) => /at most/i.test(String(p.problem || "")));
        const fields = fieldsNamed.length ? fieldsNamed : [$("username"), $("password")];
        return tooLong
          ? ["That username or password is too long.", fields]
          : ["Enter a username and password.", fields];
      }
      case 401:
        return ["Wrong username or password.", [$("username"), $("password")]];
      case 429:
        return [`Too many sign-in attempts. Try again in ${duration(failure.retryAfter || 60)}.`, []];
      case 0:
        return ["The server could not be reached. Check your connection and try again.", []];
      default:
        return [`Could not sign in: ${failure.message}`, []];
    }
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (signingIn) return;
    const usernameInput = $("username");
    const passwordInput = $("password");
    const username = usernameInput.value.trim();
    const password = passwordInput.value;
    $("login-note").textContent = "";
    const missing = [username ? null : usernameInput, password ? null : passwordInput].filter(Boolean);
    if (missing.length) {
      showLoginError("Enter a username and password.", missing);
      missing[0].focus();
      return;
    }
    showLoginError("");
    signingIn = true;
    $("login-form").setAttribute("aria-busy", "true");
    try {
      startSession(await api("POST", "/api/auth/login", { username, password }, null));
    } catch (failure) {
      const [message, fields] = loginFailure(failure);
      showLoginError(message, fields);
      if (fields.length) fields[0].focus();
    } finally {
      signingIn = false;
      $("login-form").removeAttribute("aria-busy");
    }
  });

  /** Keep a new session, show the actions and move focus to them; claim what this user left pending. */
  function startSession(started) {
    session = started;
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    $("password").value = "";
    epoch += 1;
    queue = readPending(session.userId);
    showSession();
    $("actions-heading").setAttribute("tabindex", "-1");
    $("actions-heading").focus();
    runQueue();
  }

  /**
   * Sign out: revoke the token on the server (``POST /api/auth/logout``), then forget it here.
   *
   * ``reason`` (a refused token) skips the revocation: the server no longer takes that token anyway.
   */
  async function signOut(reason = "") {
    if (!session || signingOut) return;
    const ending = session;
    epoch += 1; // queued work for this session stops; what was recorded stays pending for the next sign-in
    queue = [];
    hideWait();
    let note = "Signed out.";
    if (!reason) {
      signingOut = true;
      $("sign-out").setAttribute("aria-disabled", "true");
      try {
        await api("POST", "/api/auth/logout", undefined, ending.accessToken);
      } catch (failure) {
        // 401: the token was refused already (expired or revoked), which is all signing out asks of it.
        if (failure.status !== 401) note = `Signed out on this page, but the server could not revoke the session (${failure.message}).`;
      } finally {
        signingOut = false;
        $("sign-out").removeAttribute("aria-disabled");
      }
    }
    const waiting = readPending(ending.userId).length;
    if (waiting) {
      note += ` ${waiting === 1 ? "One completion waits" : `${waiting} completions wait`} to be claimed when you sign in again.`;
    }
    session = null;
    sessionStorage.removeItem(SESSION_KEY);
    $("result").textContent = "";
    delete $("result").dataset.newScore;
    showSession();
    showLoginError(reason);
    $("login-note").textContent = reason ? "" : note;
    $("username").focus();
  }

  $("sign-out").addEventListener("click", () => signOut());

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

  // ---- actions: record, then claim, each click in turn -----------------------------------------

  /** List the catalog's actions as buttons. */
  async function loadActions() {
    const list = $("actions");
    list.textContent = "";
    let actions;
    try {
      actions = await api("GET", "/api/actions");
    } catch (failure) {
      if (failure.status === 401) return signOut("Your session expired; sign in again.");
      $("result").textContent = `Could not load the actions: ${failure.message}`;
      return;
    }
    for (const action of actions) {
      const label = action.description || action.key;
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "action";
      button.dataset.action = action.key;
      button.innerHTML = '<span class="label"></span><span class="points"></span>';
      button.querySelector(".label").textContent = label;
      button.querySelector(".points").textContent = `+${action.points}`;
      button.setAttribute("aria-label", `${label}, ${action.points} points`);
      // The button is never disabled: a disabled button loses keyboard focus. Each press queues one completion.
      button.addEventListener("click", () => {
        queue.push({ key: action.key, label, points: action.points });
        runQueue();
      });
      item.append(button);
      list.append(item);
    }
  }

  /** The recorded, unclaimed completions kept for ``userId``. */
  function readPending(userId) {
    const jobs = readJson(sessionStorage, PENDING_KEY + userId);
    return Array.isArray(jobs) ? jobs.filter((job) => job && job.actionId) : [];
  }

  /** Keep the recorded, unclaimed ``jobs`` of ``userId`` (only they exist on the server). */
  function savePending(userId, jobs) {
    const recorded = jobs.filter((job) => job.actionId);
    if (recorded.length) sessionStorage.setItem(PENDING_KEY + userId, JSON.stringify(recorded));
    else sessionStorage.removeItem(PENDING_KEY + userId);
  }

  /**
   * Work through the queue one completion at a time: record it (``POST /demo/complete``), then claim it
   * (``POST /api/action/do``). A 429 from the rate limit waits for its ``Retry-After`` and tries the same
   * step again, so every recorded completion is claimed in the end.
   */
  async function runQueue() {
    if (!session || runner === epoch) return;
    const mine = (runner = epoch);
    const jobs = queue;
    const { userId, accessToken } = session;
    let failures = 0;
    try {
      while (mine === epoch && jobs.length) {
        const job = jobs[0];
        const step = job.actionId ? "claim" : "record";
        try {
          if (step === "record") {
            const completion = await api("POST", "/demo/complete", { action: job.key }, accessToken);
            job.actionId = completion.actionId;
            job.points = completion.points;
            savePending(userId, jobs); // from now on it exists: it must be claimed, after a reload if need be
            if (mine !== epoch) return;
          }
          const claim = await api("POST", "/api/action/do", { actionId: job.actionId }, accessToken);
          jobs.shift();
          savePending(userId, jobs);
          failures = 0;
          if (mine === epoch) showClaimed(job, claim.newScore, jobs.length);
        } catch (failure) {
          if (mine !== epoch) return;
          const wait = await handleFailure(job, step, failure, jobs, userId, ++failures);
          if (wait === null) {
            failures = 0;
            continue;
          }
          showWait(wait);
          await sleep(wait);
          if (mine !== epoch) return;
          hideWait();
        }
      }
    } finally {
      if (runner === mine) runner = null;
    }
  }

  /** Say what a failed step means; answer the seconds to wait before trying it again, or null once it is dropped. */
  async function handleFailure(job, step, failure, jobs, userId, failures) {
    const result = $("result");
    const drop = (message) => {
      jobs.shift();
      savePending(userId, jobs);
      result.textContent = message;
      return null;
    };
    if (failure.status === 401) {
      await signOut("Your session expired; sign in again.");
      return null;
    }
    if (failure.status === 429 && failure.code === "action_cooldown") {
      return drop(`“${job.label}” can be completed again in ${duration(failure.retryAfter || 1)}.`);
    }
    if (failure.status === 429 && failure.code === "action_daily_cap") {
      return drop(`You have completed “${job.label}” as often as it counts today.`);
    }
    if (failure.status === 429) {
      // The per-user rate limit: the completion stays queued (recorded or not) and goes once the limit allows.
      const wait = failure.retryAfter ?? 1;
      const waiting = jobs.length;
      result.textContent =
        waiting > 1
          ? `Too fast: your points will be claimed in ${duration(wait)} (${waiting} waiting).`
          : `Too fast: your point will be claimed in ${duration(wait)}.`;
      return wait;
    }
    if (failure.status === 0 || failure.status >= 500) {
      // Unreachable or failing for now: try again, backing off, for as long as the page is open.
      const wait = failure.retryAfter ?? Math.min(BACKOFF_MAX_S, 2 ** (failures - 1));
      result.textContent = `Could not reach the scoreboard (${failure.message}); trying again in ${duration(wait)}.`;
      return wait;
    }
    if (step === "claim" && failure.status === 409) {
      // An earlier try went through but its answer was lost: it is claimed.
      return drop(`+${job.points} points for “${job.label}” were claimed already.`);
    }
    return drop(`Could not ${step === "claim" ? "claim" : "record"} “${job.label}”: ${failure.message}`);
  }

  /** Say what a claim earned. */
  function showClaimed(job, newScore, waiting) {
    const result = $("result");
    const more = waiting ? ` (${waiting} more waiting)` : "";
    result.textContent = `+${job.points} points for “${job.label}”. Your score is now ${newScore}.${more}`;
    result.dataset.newScore = String(newScore);
  }

  /** A bar that empties over the wait (decoration: the status line says the same in words). */
  function showWait(seconds) {
    const wait = $("wait");
    const bar = wait.querySelector(".wait-bar");
    wait.hidden = false;
    if (bar.animate && !window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
      bar.getAnimations().forEach((a) => a.cancel());
      bar.animate([{ transform: "scaleX(1)" }, { transform: "scaleX(0)" }], { duration: seconds * 1000, easing: "linear" });
    }
  }

  function hideWait() {
    $("wait").hidden = true;
  }

  // ---- theme ---------------------------------------------------------------------------------

  /** Apply ``theme`` to the page and the widget; the button says what pressing it does. */
  function applyTheme(theme) {
    document.documentElement.dataset.theme = theme;
    board.setAttribute("theme", theme);
    const next = theme === "dark" ? "light" : "dark";
    const toggle = $("theme-toggle");
    toggle.querySelector(".theme-label").textContent = `Switch to ${next} theme`;
    toggle.querySelector(".theme-icon").textContent = next === "dark" ? "☾" : "☀";
    toggle.dataset.theme = theme;
  }

  /** The theme the visitor chose on this page, or null to follow the system. */
  function savedTheme() {
    try {
      const theme = localStorage.getItem(THEME_KEY);
      return theme === "dark" || theme === "light" ? theme : null;
    } catch (_) {
      return null;
    }
  }

  const systemTheme = () => (systemDark.matches ? "dark" : "light");

  $("theme-toggle").addEventListener("click", () => {
    const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    applyTheme(theme);
    // Only a choice that differs from the system's is kept; choosing the system's theme follows it again.
    try {
      if (theme === systemTheme()) localStorage.removeItem(THEME_KEY);
      else localStorage.setItem(THEME_KEY, theme);
    } catch (_) {
      /* storage blocked: the choice lasts for this page */
    }
  });

  // Following the system: a change of its colour scheme changes the page too.
  systemDark.addEventListener("change", () => {
    if (!savedTheme()) applyTheme(systemTheme());
  });

  applyTheme(savedTheme() || systemTheme());

  // ---- which board: the period switcher and "Around me" --------------------------------------

  let shownBoard = null; // {period, around}

  /** Show the board of ``period`` (around the viewer with ``around``); the buttons say which is shown. */
  function showBoard({ period, around }) {
    shownBoard = { period, around };
    // Only a change is set: the widget reconnects when its period changes.
    if ((board.getAttribute("period") || "all") !== period) board.setAttribute("period", period);
    if ((board.getAttribute("mode") === "around") !== around) {
      if (around) board.setAttribute("mode", "around");
      else board.removeAttribute("mode");
    }
    for (const button of document.querySelectorAll(".period-switch [data-period]")) {
      button.setAttribute("aria-pressed", String(button.dataset.period === period));
    }
    $("around-toggle").setAttribute("aria-pressed", String(around));
    try {
      sessionStorage.setItem(BOARD_KEY, JSON.stringify({ period, around }));
    } catch (_) {
      /* storage blocked: the choice lasts for this page */
    }
  }

  /** The board chosen earlier in this tab, else the all-time top list. */
  function savedBoard() {
    const saved = readJson(sessionStorage, BOARD_KEY) || {};
    return { period: PERIODS.includes(saved.period) ? saved.period : "all", around: saved.around === true };
  }

  for (const button of document.querySelectorAll(".period-switch [data-period]")) {
    button.addEventListener("click", () => showBoard({ ...shownBoard, period: button.dataset.period }));
  }
  $("around-toggle").addEventListener("click", () => showBoard({ ...shownBoard, around: !shownBoard.around }));

  // Before the token provider below: the widget then opens its first socket on the chosen board.
  showBoard(savedBoard());

  // Setting the provider (re)connects the widget, so the first showing needs no reconnect of its own.
  board.tokenProvider = () => (session ? session.accessToken : null);
  showSession({ reconnect: false });
  if (session) {
    queue = readPending(session.userId);
    runQueue();
  }
})();
