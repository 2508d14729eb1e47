/*
 * <live-scoreboard>: the live top-10 board of the scoreboard service.
 *
 * Dependency-free and build-free: include this file with a <script> tag and use the element.
 *
 *   <script src="https://scores.example.com/static/live-scoreboard.js" defer></script>
 *   <live-scoreboard heading="Top players" rows="10"></live-scoreboard>
 *   <live-scoreboard period="week" mode="around"></live-scoreboard>
 *
 * Attributes: server, token, token-provider, heading (or title), rows, viewer, theme, period, mode.
 * Properties: token, tokenProvider, top, around, me, version, state; methods reconnect(), resync().
 * Events (bubbling, composed): scoreboard-state, scoreboard-update, scoreboard-me, scoreboard-error.
 * With a token, every (re)connection first trades it for a single-use socket ticket
 * (POST /api/socket-ticket), so the token itself never appears in a socket URL; a signed-in
 * viewer's widget then asks for its own standing ({"type":"watch"}) and shows "you: #12 of 345".
 * No inline script or style: it runs under a strict Content-Security-Policy.
 * See docs/widget.md for the full reference.
 */
(() => {
  "use strict";

  if (typeof window === "undefined" || !window.customElements || customElements.get("live-scoreboard")) {
    return;
  }

  // Where this file was served from: the default server, so an embed needs no extra attribute.
  const SCRIPT_ORIGIN = (() => {
    try {
      return new URL(document.currentScript.src).origin;
    } catch (_) {
      return window.location.origin;
    }
  })();

  const RECONNECT_BASE_MS = 1000;
  const RECONNECT_MAX_MS = 30000;
  // Without a snapshot this long after the socket opens, fetch the board over HTTP instead.
  const SNAPSHOT_GRACE_MS = 4000;
  // Screen readers get at most one board announcement in this window; later changes coalesce.
  const ANNOUNCE_INTERVAL_MS = 4000;
  const TREND_VISIBLE_MS = 4000;
  // Close codes a server uses to refuse a token (policy violation and the 44xx application range).
  const AUTH_CLOSE_CODES = new Set([1008, 4401, 4403]);
  // The server closed the socket because its token ended ("token expired", "token revoked"): the widget
  // asks for a fresh token and connects again at once, and never uses the ended token again.
  const TOKEN_ENDED = 4001;
  const DEFAULT_ROWS = 10;
  const MAX_ROWS = 100;
  // The boards a widget can show (the `period` attribute), and the label each gets beside the heading.
  const PERIOD_LABELS = { all: "", day: "Today", week: "This week", month: "This month" };

  const STATE_LABELS = {
    idle: "Idle",
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    offline: "Offline",
    unauthorized: "Sign-in needed",
  };

  // The dark palette, applied by theme="dark" or by the system's dark mode unless theme="light".
  const DARK = `
    --_bg: var(--sb-bg, #0f172a);
    --_fg: var(--sb-fg, #e2e8f0);
    --_muted: var(--sb-muted, #94a3b8);
    --_border: var(--sb-border, #1e293b);
    --_row-border: var(--sb-row-border, #1a2436);
    --_accent: var(--sb-accent, #818cf8);
    --_accent-fg: var(--sb-accent-fg, #0f172a);
    --_me-bg: var(--sb-me-bg, rgb(129 140 248 / 0.16));
    --_flash: var(--sb-flash, rgb(245 180 0 / 0.22));
    --_up: var(--sb-up, #34d399);
    --_down: var(--sb-down, #f87171);
    --_medal-fg: var(--sb-medal-fg, #0f172a);
    --_shadow: var(--sb-shadow, 0 1px 2px rgb(0 0 0 / 0.4), 0 12px 32px -8px rgb(0 0 0 / 0.6));
    --_avatar-l: 26%;
    --_avatar-fg-l: 84%;
    --_skeleton: var(--sb-skeleton, #1e293b);
    color-scheme: dark;
  `;

  const STYLE = `
    :host {
      --_font: var(--sb-font, "Inter", ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif);
      --_bg: var(--sb-bg, #ffffff);
      --_fg: var(--sb-fg, #0f172a);
      --_muted: var(--sb-muted, #64748b);
      --_border: var(--sb-border, #e2e8f0);
      --_row-border: var(--sb-row-border, #f1f5f9);
      --_header-bg: var(--sb-header-bg, transparent);
      --_accent: var(--sb-accent, #4f46e5);
      --_accent-fg: var(--sb-accent-fg, #ffffff);
      --_me-bg: var(--sb-me-bg, #eef2ff);
      --_flash: var(--sb-flash, #fef3c7);
      --_up: var(--sb-up, #059669);
      --_down: var(--sb-down, #dc2626);
      --_live: var(--sb-live, #10b981);
      --_warn: var(--sb-warn, #f59e0b);
      --_error: var(--sb-error, #ef4444);
      --_gold: var(--sb-gold, #f5b400);
      --_silver: var(--sb-silver, #a3acb9);
      --_bronze: var(--sb-bronze, #cd7f45);
      --_medal-fg: var(--sb-medal-fg, #ffffff);
      --_radius: var(--sb-radius, 16px);
      --_shadow: var(--sb-shadow, 0 1px 2px rgb(15 23 42 / 0.06), 0 12px 32px -8px rgb(15 23 42 / 0.14));
      --_avatar-l: 92%;
      --_avatar-fg-l: 30%;
      --_skeleton: var(--sb-skeleton, #eef2f7);
      display: block;
      container-type: inline-size;
      color-scheme: light;
      font-family: var(--_font);
      color: var(--_fg);
    }
    :host([hidden]) { display: none; }
    :host([theme="dark"]) { ${DARK} }
    @media (prefers-color-scheme: dark) {
      :host(:not([theme="light"])) { ${DARK} }
    }
    * { box-sizing: border-box; }
    .card {
      background: var(--_bg);
      border: 1px solid var(--_border);
      border-radius: var(--_radius);
      box-shadow: var(--_shadow);
      overflow: hidden;
    }
    header {
      display: flex;
      align-items: center;
      gap: 12px;
      padding: 18px 20px 14px;
      background: var(--_header-bg);
    }
    h2 {
      flex: 1 1 auto;
      min-width: 0;
      margin: 0;
      font-size: 1.0625rem;
      font-weight: 700;
      letter-spacing: -0.01em;
      line-height: 1.3;
      overflow: hidden;
      text-overflow: ellipsis;
      white-space: nowrap;
    }
    .period-label {
      display: inline-block;
      margin-left: 8px;
      padding: 2px 8px;
      border-radius: 999px;
      background: var(--_me-bg);
      color: var(--_accent);
      font-size: 0.6875rem;
      font-weight: 700;
      letter-spacing: 0.02em;
      text-transform: uppercase;
      vertical-align: 2px;
    }
    .period-label[hidden] { display: none; }
    .you-line {
      margin: 0;
      padding: 8px 20px 10px;
      border-top: 1px solid var(--_border);
      font-size: 0.8125rem;
      font-weight: 600;
      color: var(--_muted);
      font-variant-numeric: tabular-nums;
    }
    .you-line[hidden] { display: none; }
    .card[data-mode="around"] col.c-rank { width: 5.5rem; }
    .status {
      flex: 0 0 auto;
      display: inline-flex;
      align-items: center;
      gap: 7px;
      padding: 4px 10px 4px 9px;
      border-radius: 999px;
      border: 1px solid var(--_border);
      font-size: 0.75rem;
      font-weight: 600;
      line-height: 1.2;
      color: var(--_muted);
      white-space: nowrap;
    }
    .dot {
      position: relative;
      width: 8px;
      height: 8px;
      border-radius: 50%;
      background: var(--_muted);
    }
    .status[data-state="live"] { color: var(--_up); }
    .status[data-state="live"] .dot { background: var(--_live); }
    .status[data-state="live"] .dot::after {
      content: "";
      position: absolute;
      inset: -3px;
      border-radius: 50%;
      border: 2px solid var(--_live);
      opacity: 0;
      animation: ping 2.4s cubic-bezier(0, 0, 0.2, 1) infinite;
    }
    .status[data-state="reconnecting"], .status[data-state="connecting"] { color: var(--_warn); }
    .status[data-state="reconnecting"] .dot, .status[data-state="connecting"] .dot {
      background: var(--_warn);
      animation: blink 1.2s ease-in-out infinite;
    }
    .status[data-state="offline"] .dot, .status[data-state="unauthorized"] .dot { background: var(--_error); }
    .status[data-state="offline"], .status[data-state="unauthorized"] { color: var(--_error); }
    @keyframes ping { 0% { transform: scale(0.6); opacity: 0.7; } 80%, 100% { transform: scale(1.6); opacity: 0; } }
    @keyframes blink { 50% { opacity: 0.35; } }
    .retry {
      flex: 0 0 auto;
      font: inherit;
      font-size: 0.75rem;
      font-weight: 600;
      padding: 4px 10px;
      border-radius: 999px;
      border: 1px solid var(--_accent);
      background: transparent;
      color: var(--_accent);
      cursor: pointer;
    }
    .retry:hover { background: var(--_me-bg); }
    .retry:focus-visible { outline: 2px solid var(--_accent); outline-offset: 2px; }
    .retry[hidden] { display: none; }
    .notice {
      margin: 0;
      padding: 0 20px 12px;
      font-size: 0.8125rem;
      color: var(--_muted);
    }
    .notice[hidden] { display: none; }
    table {
      width: 100%;
      border-collapse: collapse;
      table-layout: fixed;
      font-size: 0.9375rem;
      transition: opacity 0.3s ease;
    }
    .card[data-stale] table { opacity: 0.55; }
    col.c-rank { width: 4rem; }
    col.c-score { width: 7.5rem; }
    thead th {
      padding: 8px 20px;
      font-size: 0.6875rem;
      font-weight: 600;
      text-transform: uppercase;
      letter-spacing: 0.06em;
      color: var(--_muted);
      text-align: left;
      border-top: 1px solid var(--_border);
      border-bottom: 1px solid var(--_border);
    }
    thead th.score { text-align: right; }
    tbody tr { position: relative; background: var(--_bg); }
    tbody tr + tr td, tbody tr + tr th { border-top: 1px solid var(--_row-border); }
    tbody td, tbody th { padding: 11px 20px; vertical-align: middle; }
    tbody th { font-weight: 500; text-align: left; }
    tbody tr.me { background: var(--_me-bg); }
    tbody tr.me td:first-child { box-shadow: inset 3px 0 0 var(--_accent); }
    tbody tr.me .name { font-weight: 700; }
    .rank { font-variant-numeric: tabular-nums; }
    .badge {
      display: inline-grid;
      place-items: center;
      min-width: 28px;
      height: 28px;
      padding: 0 6px;
      border-radius: 999px;
      font-size: 0.8125rem;
      font-weight: 700;
      color: var(--_muted);
    }
    .badge[data-medal="1"] { background: var(--_gold); color: var(--_medal-fg); }
    .badge[data-medal="2"] { background: var(--_silver); color: var(--_medal-fg); }
    .badge[data-medal="3"] { background: var(--_bronze); color: var(--_medal-fg); }
    .player-cell { display: flex; align-items: center; gap: 12px; min-width: 0; }
    .avatar {
      flex: 0 0 auto;
      display: grid;
      place-items: center;
      width: 32px;
      height: 32px;
      border-radius: 50%;
      font-size: 0.8125rem;
      font-weight: 700;
      background: hsl(var(--h, 230) 70% var(--_avatar-l));
      color: hsl(var(--h, 230) 50% var(--_avatar-fg-l));
    }
    .name { min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
    .you {
      flex: 0 0 auto;
      padding: 2px 8px;
      border-radius: 999px;
      background: var(--_accent);
      color: var(--_accent-fg);
      font-size: 0.6875rem;
      font-weight: 700;
      letter-spacing: 0.02em;
      text-transform: uppercase;
    }
    .trend {
      flex: 0 0 auto;
      font-size: 0.75rem;
      font-weight: 700;
      opacity: 0;
      transition: opacity 0.3s ease;
    }
    .trend[data-dir="up"] { color: var(--_up); opacity: 1; }
    .trend[data-dir="down"] { color: var(--_down); opacity: 1; }
    td.score {
      text-align: right;
      font-weight: 700;
      font-variant-numeric: tabular-nums;
      white-space: nowrap;
    }
    .score-wrap { position: relative; display: inline-block; padding: 2px 6px; margin: -2px -6px; border-radius: 6px; }
    .delta {
      position: absolute;
      right: 100%;
      top: 50%;
      margin-right: 6px;
      transform: translateY(-50%);
      font-size: 0.75rem;
      font-weight: 700;
      color: var(--_up);
      opacity: 0;
      pointer-events: none;
    }
    .ticker { display: none; }
    .counting .value { visibility: hidden; }
    .counting .ticker { display: block; position: absolute; top: 2px; right: 6px; }
    .empty, .skeleton td { color: var(--_muted); }
    .empty td { padding: 28px 20px; text-align: center; font-size: 0.875rem; }
    .skeleton .bar {
      display: block;
      height: 12px;
      border-radius: 6px;
      background: var(--_skeleton);
      animation: blink 1.6s ease-in-out infinite;
    }
    .sr-only {
      position: absolute;
      width: 1px;
      height: 1px;
      padding: 0;
      margin: -1px;
      overflow: hidden;
      clip: rect(0 0 0 0);
      white-space: nowrap;
      border: 0;
    }
    @container (max-width: 380px) {
      header { padding: 14px 14px 10px; flex-wrap: wrap; }
      thead th, tbody td, tbody th { padding-left: 12px; padding-right: 12px; }
      col.c-rank { width: 3.25rem; }
      .card[data-mode="around"] col.c-rank { width: 4.5rem; }
      col.c-score { width: 6rem; }
      .you-line { padding-left: 12px; padding-right: 12px; }
      .avatar { display: none; }
      table { font-size: 0.875rem; }
    }
    .card:not([data-state="connecting"]):not([data-state="reconnecting"]) .skeleton .bar { animation: none; }
    @media (prefers-reduced-motion: reduce) {
      .status .dot, .status .dot::after, .skeleton .bar { animation: none !important; }
    }
  `;

  // The styles go in as one constructed style sheet, shared by every widget on the page: a page's
  // Content-Security-Policy governs <style> elements (they would need 'unsafe-inline' or a hash) but not
  // these. Browsers without constructed sheets get a <style> element instead.
  let sharedSheet = null;

  /** Give a shadow root the widget's styles. */
  function adoptStyles(root) {
    if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function" && "replaceSync" in CSSStyleSheet.prototype) {
      try {
        if (!sharedSheet) {
          sharedSheet = new CSSStyleSheet();
          sharedSheet.replaceSync(STYLE);
        }
        root.adoptedStyleSheets = [...root.adoptedStyleSheets, sharedSheet];
        return;
      } catch (_) {
        /* fall back to a <style> element */
      }
    }
    const style = document.createElement("style");
    style.textContent = STYLE;
    root.prepend(style);
  }

  const TEMPLATE = `
    <section class="card" part="card" aria-labelledby="title">
      <header part="header">
        <h2 id="title" part="title"><span class="heading-text"></span> <span class="period-label" part="period" hidden></span></h2>
        <span class="status" part="status" id="status" data-state="idle">
          <span class="dot" aria-hidden="true"></span><span class="label"></span>
        </span>
        <button type="button" class="retry" part="retry" hidden>Retry now</button>
      </header>
      <p class="notice" part="notice" hidden></p>
      <table part="table" aria-labelledby="title" aria-describedby="status">
        <colgroup><col class="c-rank"><col class="c-player"><col class="c-score"></colgroup>
        <thead>
          <tr><th scope="col">Rank</th><th scope="col">Player</th><th scope="col" class="score">Score</th></tr>
        </thead>
        <tbody></tbody>
      </table>
      <p class="you-line" part="you-line" hidden></p>
      <div class="sr-only" role="status" aria-live="polite" aria-atomic="true" part="announcer"></div>
    </section>
  `;

  /** "1st", "2nd", "3rd", "4th"... for announcements. */
  const ordinal = (() => {
    const rules = new Intl.PluralRules("en", { type: "ordinal" });
    const suffixes = { one: "st", two: "nd", few: "rd", other: "th" };
    return (n) => `${n}${suffixes[rules.select(n)]}`;
  })();

  /** A stable hue for a user id, so each player keeps the same avatar colour everywhere. */
  function hueFor(text) {
    let hash = 0;
    for (let i = 0; i < text.length; i += 1) hash = (hash * 31 + text.charCodeAt(i)) | 0;
    return Math.abs(hash) % 360;
  }

  /** One or two initials from a display name. */
  function initials(name) {
    const words = String(name).trim().split(/\s+/).filter(Boolean);
    if (!words.length) return "?";
    const first = Array.from(words[0])[0] || "";
    const last = words.length > 1 ? Array.from(words[words.length - 1])[0] || "" : "";
    return (first + last).toUpperCase();
  }

  /** Board rows as the widget keeps them, from a top list or a neighbourhood as the server sent it. */
  function normalise(entries) {
    return entries
      .filter((e) => e && e.userId != null)
      .map((e, i) => ({
        rank: Number.isFinite(e.rank) ? e.rank : i + 1,
        userId: String(e.userId),
        displayName: e.displayName != null && e.displayName !== "" ? String(e.displayName) : String(e.userId),
        score: Number(e.score) || 0,
      }));
  }

  /** The ``sub`` and ``exp`` claims of a JWT, read without verifying it (the server verifies). */
  function readClaims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
      const json = decodeURIComponent(
        Array.from(atob(padded), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
      );
      const claims = JSON.parse(json);
      return claims && typeof claims === "object" ? claims : {};
    } catch (_) {
      return {};
    }
  }

  /** Resolve a dotted global name such as "app.auth.getToken" to a function, or null. */
  function globalFunction(path) {
    if (!path) return null;
    let value = window;
    for (const key of path.split(".")) {
      if (value == null) return null;
      value = value[key];
    }
    return typeof value === "function" ? value : null;
  }

  /**
   * Whether the document's DOMContentLoaded is still to come. Deferred scripts (this one, usually) run
   * while readyState is already "interactive", so the navigation's timing tells: its
   * domContentLoadedEventStart stays 0 until the event fires.
   */
  function beforeContentLoaded() {
    if (document.readyState === "loading") return true;
    if (document.readyState !== "interactive") return false;
    const navigation = performance.getEntriesByType ? performance.getEntriesByType("navigation")[0] : null;
    return Boolean(navigation) && navigation.domContentLoadedEventStart === 0;
  }

  /** Whether the user asked the system for less motion. */
  function reducedMotion() {
    return window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  }

  /**
   * Speaks board changes through one polite live region, at most once per interval.
   *
   * Changes that arrive within the interval are merged: the next announcement compares the
   * board with the one last announced, so nothing important is lost and nothing floods.
   */
  class Announcer {
    /** Bind to the live region and the function that words a change. */
    constructor(region, describe) {
      this.region = region;
      this.describe = describe;
      this.baseline = null;
      this.current = null;
      this.connection = null;
      this.lastAt = -Infinity;
      this.timer = null;
    }

    /** Take a board as known without announcing it (the first snapshot; the table itself is readable). */
    reset(board) {
      this.baseline = board;
      this.current = board;
    }

    /** Note a new board; it is announced now or at the end of the current interval. */
    board(board) {
      if (!this.baseline) {
        this.reset(board);
        return;
      }
      this.current = board;
      this.schedule();
    }

    /** Note a connection change worth saying ("Connection lost", "Reconnected"). */
    connectionChanged(text) {
      this.connection = text;
      this.schedule();
    }

    /** Arrange the next flush, leaving at least the interval since the last one. */
    schedule() {
      if (this.timer) return;
      // A short minimum lets a burst of near-simultaneous messages become one sentence.
      const wait = Math.max(150, this.lastAt + ANNOUNCE_INTERVAL_MS - performance.now());
      this.timer = setTimeout(() => this.flush(), wait);
    }

    /** Say what changed since the last announcement, if anything. */
    flush() {
      this.timer = null;
      const parts = [];
      if (this.connection) parts.push(this.connection);
      const change = this.describe(this.baseline, this.current);
      if (change) parts.push(change);
      this.connection = null;
      this.baseline = this.current;
      if (!parts.length) return;
      this.lastAt = performance.now();
      this.region.textContent = parts.join(" ");
    }

    /** Stop any pending announcement. */
    cancel() {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  class LiveScoreboard extends HTMLElement {
    /** The attributes whose changes the element reacts to. */
    static get observedAttributes() {
      return ["server", "token", "token-provider", "heading", "title", "rows", "viewer", "period", "mode"];
    }

    /** Build the shadow DOM; connecting waits until the element is in a document. */
    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this.shadowRoot.innerHTML = TEMPLATE;
      adoptStyles(this.shadowRoot);
      const $ = (selector) => this.shadowRoot.querySelector(selector);
      this._els = {
        card: $(".card"),
        title: $("h2 .heading-text"),
        periodLabel: $(".period-label"),
        youLine: $(".you-line"),
        status: $(".status"),
        statusLabel: $(".status .label"),
        retry: $(".retry"),
        notice: $(".notice"),
        table: $("table"),
        body: $("tbody"),
        live: $('[role="status"]'),
      };
      this._top = [];
      this._version = -1;
      this._hasBoard = false;
      // mode="around": the viewer's neighbourhood shown instead of the top list (null: show the top list),
      // undefined until the first answer for this viewer, so the top list does not flash before it.
      this._around = undefined;
      this._aroundRank = null; // the rank and score of the last neighbourhood fetched
      this._aroundScore = null;
      this._aroundFetch = 0; // the newest neighbourhood request; older answers are dropped
      this._me = null; // the viewer's standing from the last "me" message: {rank, score, total}
      this._meDuringFetch = false; // a "me" came while the neighbourhood was being fetched
      this._standingOf = null; // the viewer whose standing and neighbourhood these are
      this._rowsShown = false; // rows (not the placeholder) are on screen
      this._state = "idle";
      this._attempt = 0;
      this._generation = 0;
      this._ws = null;
      this._retryTimer = null;
      this._countdownTimer = null;
      this._snapshotTimer = null;
      this._retryAt = 0;
      this._tokenProvider = null;
      this._token = null;
      this._endedToken = null; // the token whose socket the server ended (4001): never used again
      this._stopped = true;
      this._suspended = false; // closed by pagehide; pageshow (back/forward cache) connects again
      this._rowEls = new Map();
      this._trendTimers = new Map();
      this._announcer = new Announcer(this._els.live, (a, b) => this._describeChange(a, b));
      this._onOnline = () => this.reconnect();
      this._onOffline = () => this._setState("offline");
      this._onVisible = () => {
        if (document.visibilityState === "visible" && this._retryTimer) this.reconnect();
      };
      // Leaving the page (or entering the back/forward cache): close the socket ourselves, with a normal
      // close, instead of leaving it to be cut mid-stream; a page restored from the cache connects again.
      this._onPageHide = () => {
        if (this._stopped) return;
        this._suspended = true;
        this._teardown("page hidden");
      };
      this._onPageShow = () => {
        if (!this._suspended) return;
        this._suspended = false;
        this.reconnect();
      };
      this._onParsed = () => {
        clearTimeout(this._startTimer);
        this._startTimer = setTimeout(() => this._connect(), 0);
      };
      this._els.retry.addEventListener("click", () => this.reconnect());
    }

    /** Start showing and connecting once in the page. */
    connectedCallback() {
      this._updateHeading();
      this._els.card.dataset.mode = this._mode();
      this._renderRows();
      window.addEventListener("online", this._onOnline);
      window.addEventListener("offline", this._onOffline);
      document.addEventListener("visibilitychange", this._onVisible);
      window.addEventListener("pagehide", this._onPageHide);
      window.addEventListener("pageshow", this._onPageShow);
      // Properties set on the element before this script defined it shadow the accessors: re-apply them
      // (still stopped, so this does not connect twice).
      for (const name of ["token", "tokenProvider"]) {
        if (Object.prototype.hasOwnProperty.call(this, name)) {
          const value = this[name];
          delete this[name];
          this[name] = value;
        }
      }
      this._stopped = false;
      this._suspended = false;
      // Connect once the page's own scripts have run, so a page script can hand over its token provider
      // first and the widget opens one socket, not a token-less one it closes straight away. Before
      // DOMContentLoaded that is after it (the page's deferred scripts run before it, though not
      // necessarily in the same task as this one); later, the next task. Handing over a provider or token
      // earlier connects at once and cancels this start.
      clearTimeout(this._startTimer);
      if (beforeContentLoaded()) {
        document.addEventListener("DOMContentLoaded", this._onParsed, { once: true });
      } else {
        this._onParsed();
      }
    }

    /** Close the socket and every timer when taken out of the page. */
    disconnectedCallback() {
      this._stopped = true;
      window.removeEventListener("online", this._onOnline);
      window.removeEventListener("offline", this._onOffline);
      document.removeEventListener("visibilitychange", this._onVisible);
      window.removeEventListener("pagehide", this._onPageHide);
      window.removeEventListener("pageshow", this._onPageShow);
      this._teardown("element removed");
      clearInterval(this._countdownTimer);
      this._announcer.cancel();
    }

    /** React to attribute changes: connection settings reconnect, display settings re-render. */
    attributeChangedCallback(name, oldValue, newValue) {
      if (oldValue === newValue) return;
      if (name === "heading" || name === "title") {
        this._updateHeading();
      } else if (name === "rows" || name === "viewer") {
        if (this._hasBoard) this._renderRows();
      } else if (name === "mode") {
        this._els.card.dataset.mode = this._mode();
        this._around = this._aroundWanted() ? undefined : null;
        if (this._around === undefined && this._hasBoard) {
          this._fetchAround(); // the top list stays until the neighbourhood's answer replaces it
        } else if (this._hasBoard) {
          this._renderRows();
          this._announcer.reset(this._shownRows());
        }
      } else if (name === "period") {
        // Another board: what is shown belongs to the old one, and versions are per board.
        this._updateHeading();
        this._clearBoard();
        this._setMe(null);
        if (this.isConnected && !this._stopped) this.reconnect();
      } else if (this.isConnected && !this._stopped) {
        this.reconnect();
      }
    }

    /** The access token used for the socket and the HTTP re-sync. */
    get token() {
      return this.getAttribute("token");
    }

    set token(value) {
      if (value == null || value === "") this.removeAttribute("token");
      else this.setAttribute("token", value);
    }

    /** A function returning a token (or a promise of one), asked before every connection. */
    get tokenProvider() {
      return this._tokenProvider;
    }

    set tokenProvider(fn) {
      this._tokenProvider = typeof fn === "function" ? fn : null;
      if (this.isConnected && !this._stopped) this.reconnect();
    }

    /** The rows shown, as the server sent them. */
    get top() {
      return this._top.map((entry) => ({ ...entry }));
    }

    /** With mode="around", the viewer's neighbourhood shown (from ``GET /api/scores/me``), else null. */
    get around() {
      return Array.isArray(this._around) ? this._around.map((entry) => ({ ...entry })) : null;
    }

    /** The signed-in viewer's standing from the last ``me`` message (``{rank, score, total}``), or null. */
    get me() {
      return this._me ? { rank: this._me.rank, score: this._me.score, total: this._me.total } : null;
    }

    /** The version of the board shown (-1 before the first one). */
    get version() {
      return this._version;
    }

    /** The connection state: idle, connecting, live, reconnecting, offline or unauthorized. */
    get state() {
      return this._state;
    }

    /** Drop the current connection (if any) and connect again now, with a fresh token. */
    reconnect() {
      if (this._stopped) return;
      this._suspended = false;
      this._attempt = 0;
      this._teardown();
      this._connect();
    }

    /** Fetch the board over HTTP (``GET /api/score/top``) and show it if it is newer. */
    async resync() {
      // An answer that comes back after a reconnect (another token, or none) belongs to the old viewer.
      const generation = this._generation;
      const token = await this._currentToken();
      let response;
      try {
        const period = this._period();
        const query = period === "all" ? "" : `?period=${encodeURIComponent(period)}`;
        response = await fetch(this._httpUrl(`/api/score/top${query}`), {
          headers: token ? { Authorization: `Bearer ${token}` } : {},
          cache: "no-store",
        });
      } catch (_) {
        return { ok: false, status: 0 };
      }
      if (!response.ok) return { ok: false, status: response.status };
      const top = await response.json().catch(() => null);
      if (generation !== this._generation) return { ok: false, status: 0 };
      const version = Number(response.headers.get("X-Board-Version"));
      if (Array.isArray(top)) {
        // A version the page cannot read (a cross-origin response without exposed headers) only
        // fills an empty widget, so it can never replace a newer board.
        if (Number.isFinite(version)) this._apply(version, top, "resync");
        else if (!this._hasBoard) this._apply(0, top, "resync");
      }
      return { ok: true, status: response.status };
    }

    // ---- connection ----------------------------------------------------------------------

    /** The base URL of the service: the ``server`` attribute, else where this script came from. */
    _base() {
      const server = (this.getAttribute("server") || "").trim();
      return new URL(server || SCRIPT_ORIGIN, window.location.href);
    }

    /** An absolute HTTP URL on the service. */
    _httpUrl(path) {
      const base = this._base();
      return new URL(base.pathname.replace(/\/+$/, "") + path, base).href;
    }

    /** The socket URL, with a socket ticket as a query parameter (browsers cannot set socket headers). */
    _socketUrl(ticket) {
      const url = new URL(this._httpUrl("/ws/scoreboard"));
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const period = this._period();
      if (period !== "all") url.searchParams.set("period", period);
      if (ticket) url.searchParams.set("ticket", ticket);
      return url.href;
    }

    /**
     * Trade ``token`` for a single-use socket ticket (``POST /api/socket-ticket``), so the token itself never
     * sits in a socket URL. Resolves ``{ticket}``, ``{refused: true}`` (the token was refused) or ``{}`` (the
     * server could not be reached or answered otherwise: try again later).
     */
    async _socketTicket(token) {
      let response;
      try {
        response = await fetch(this._httpUrl("/api/socket-ticket"), {
          method: "POST",
          headers: { Authorization: `Bearer ${token}` },
          cache: "no-store",
        });
      } catch (_) {
        return {};
      }
      if (response.status === 401 || response.status === 403) return { refused: true };
      if (!response.ok) return {};
      const body = await response.json().catch(() => null);
      return body && typeof body.ticket === "string" && body.ticket ? { ticket: body.ticket } : {};
    }

    /** The token to use now: from the provider (property or attribute), else the attribute. */
    async _currentToken() {
      const provider = this._tokenProvider || globalFunction(this.getAttribute("token-provider"));
      let token = this.getAttribute("token");
      if (provider) {
        try {
          token = await provider();
        } catch (error) {
          this._emit("scoreboard-error", { reason: "token-provider", message: String(error) });
          token = null;
        }
      }
      this._token = token ? String(token) : null;
      return this._token;
    }

    /** The user id whose row is highlighted: the ``viewer`` attribute, else the token's subject. */
    _viewerId() {
      const viewer = this.getAttribute("viewer");
      if (viewer) return viewer;
      return this._viewerIdFor(this._token);
    }

    /** The subject of ``token`` (whose standing the server sends), or null. */
    _viewerIdFor(token) {
      const sub = token ? readClaims(token).sub : null;
      return sub == null ? null : String(sub);
    }

    /** Open a socket; every callback checks it still belongs to the newest attempt. */
    async _connect() {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
      const generation = ++this._generation;
      if (navigator.onLine === false) {
        this._setState("offline");
        return;
      }
      this._setState(this._hasBoard ? "reconnecting" : "connecting");
      const token = await this._currentToken();
      if (generation !== this._generation || this._stopped) return;
      const viewer = this._viewerIdFor(token);
      if (viewer !== this._standingOf) {
        // Another viewer (or none): the standing and neighbourhood shown were somebody else's.
        this._standingOf = viewer;
        this._setMe(null);
        this._around = this._aroundWanted() ? undefined : null;
        this._aroundFetch += 1;
      }
      if (this._hasBoard) this._renderRows(); // the viewer may have changed with the token
      if (token && token === this._endedToken) {
        // The provider has no fresh token yet: the ended one would only be refused. Wait for another.
        this._unauthorized("The session has ended. Sign in again to see the live board.");
        return;
      }
      let ticket = null;
      if (token) {
        const traded = await this._socketTicket(token);
        if (generation !== this._generation || this._stopped) return;
        if (traded.refused) {
          this._unauthorized("The server refused the token.");
          return;
        }
        if (!traded.ticket) {
          this._failedToConnect();
          return;
        }
        ticket = traded.ticket;
      }

      let ws;
      try {
        ws = new WebSocket(this._socketUrl(ticket));
      } catch (error) {
        this._emit("scoreboard-error", { reason: "socket", message: String(error) });
        this._scheduleRetry();
        return;
      }
      this._ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        clearTimeout(this._snapshotTimer);
        // The server sends a snapshot first; if it does not come, re-sync over HTTP.
        this._snapshotTimer = setTimeout(() => {
          if (this._ws === ws) this.resync().then((r) => r.ok && this._markLive());
        }, SNAPSHOT_GRACE_MS);
      };
      ws.onmessage = (event) => {
        if (this._ws === ws) this._onMessage(event.data, ws);
      };
      ws.onclose = (event) => {
        if (this._ws !== ws) return;
        this._ws = null;
        clearTimeout(this._snapshotTimer);
        this._onClose(event, opened);
      };
    }

    /** Decide what a closed socket means: an ended or refused token, unreachable server, or a dropped link. */
    async _onClose(event, opened) {
      if (this._stopped) return;
      if (event.code === TOKEN_ENDED) {
        // The token expired or was revoked: ask the provider for a fresh one and connect again at once.
        this._endedToken = this._token;
        this._lostConnection();
        this._connect();
        return;
      }
      if (AUTH_CLOSE_CODES.has(event.code)) {
        this._unauthorized(event.reason || "The server refused the token.");
        return;
      }
      if (!opened) {
        await this._failedToConnect();
        return;
      }
      this._lostConnection();
      this._scheduleRetry();
    }

    /** A connection failed before it opened: find out why over HTTP, then retry (unless the token was refused). */
    async _failedToConnect() {
      const generation = this._generation;
      this._lostConnection();
      // A refused handshake looks like a dropped connection; the HTTP answer tells them apart,
      // and when the server is up it re-syncs the board in the meantime.
      const probe = await this.resync();
      if (generation !== this._generation || this._stopped) return;
      if (probe.status === 401 || probe.status === 403) {
        this._unauthorized("The server refused the token.");
        return;
      }
      this._scheduleRetry();
    }

    /** Show that the token was refused; retry only where a provider can supply a new one. */
    _unauthorized(message) {
      // Signed out: the board was for the signed-in viewer, so it goes too.
      if (!this._token) {
        this._clearBoard();
        this._setMe(null);
      }
      this._setState("unauthorized", { message });
      this._emit("scoreboard-error", { reason: "unauthorized", message });
      // A provider may hand out a fresh token next time; with none at all, the page calls reconnect()
      // once it has one (after a sign-in), so there is nothing to retry meanwhile.
      const provider = this._tokenProvider || globalFunction(this.getAttribute("token-provider"));
      if (provider && this._token) this._scheduleRetry("unauthorized");
    }

    /** Forget the board shown; the next one is taken whatever its version. */
    _clearBoard() {
      this._top = [];
      this._version = -1;
      this._hasBoard = false;
      this._around = this._aroundWanted() ? undefined : null;
      this._aroundRank = this._aroundScore = null;
      this._aroundFetch += 1;
      this._rowEls.clear();
      this._announcer.reset(null);
      this._els.card.removeAttribute("data-stale");
      this._renderRows();
    }

    /** Tell screen readers once (not at every retry) that the live link dropped. */
    _lostConnection() {
      if (this._state === "live") this._announcer.connectionChanged("Connection lost; reconnecting.");
      if (this._hasBoard) this._els.card.toggleAttribute("data-stale", true);
    }

    /** Wait with exponential backoff and jitter, then connect again. */
    _scheduleRetry(state = "reconnecting") {
      clearTimeout(this._retryTimer);
      const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** this._attempt);
      // Equal jitter: at least half the ceiling, so a dead server is not hammered, and spread
      // over the other half, so many browsers dropped at once do not return in lockstep.
      const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
      this._attempt += 1;
      this._retryAt = performance.now() + delay;
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        this._connect();
      }, delay);
      this._setState(state, { attempt: this._attempt, delay });
    }

    /** Close the socket (normally, 1000) and cancel retries without changing what is shown. */
    _teardown(reason = "client reconnecting") {
      this._generation += 1;
      document.removeEventListener("DOMContentLoaded", this._onParsed);
      clearTimeout(this._startTimer);
      clearTimeout(this._retryTimer);
      clearTimeout(this._snapshotTimer);
      this._retryTimer = null;
      if (this._ws) {
        const ws = this._ws;
        this._ws = null;
        ws.onopen = ws.onmessage = ws.onclose = null;
        try {
          ws.close(1000, reason);
        } catch (_) {
          /* already closed */
        }
      }
    }

    /**
     * Handle one socket message: ``snapshot`` re-syncs, ``update`` moves the board on, ``me`` is the viewer's
     * standing, ``error`` a refused request. Board messages of another board than the one asked for are ignored.
     */
    _onMessage(data, ws) {
      let message;
      try {
        message = JSON.parse(data);
      } catch (_) {
        return;
      }
      if (!message || typeof message !== "object") return;
      if (message.type === "error") {
        this._emit("scoreboard-error", { reason: String(message.code || "error"), message: String(message.message || "") });
        return;
      }
      if ((message.period || "all") !== this._period()) return;
      if (message.type === "me") {
        this._onMe(message);
        return;
      }
      if (!Array.isArray(message.top) || !Number.isFinite(message.version)) return;
      if (message.type === "snapshot") {
        clearTimeout(this._snapshotTimer);
        this._apply(message.version, message.top, "snapshot");
        this._markLive();
        // A signed-in viewer (the socket was opened with a ticket) asks for its own standing, once per socket.
        if (this._token && ws && !ws._watching) {
          ws._watching = true;
          try {
            ws.send('{"type":"watch"}');
          } catch (_) {
            /* closing: the next socket asks again */
          }
        }
        if (this._aroundWanted()) this._fetchAround();
      } else {
        this._apply(message.version, message.top, message.type || "update");
      }
    }

    /** The link is up and the board is current. */
    _markLive() {
      const wasReconnecting = this._state === "reconnecting" || this._state === "offline";
      this._attempt = 0;
      this._els.card.removeAttribute("data-stale");
      if (wasReconnecting && this._hasBoard) this._announcer.connectionChanged("Reconnected.");
      this._setState("live");
    }

    /** Show a board unless it is older than the one shown; returns whether it was applied. */
    _apply(version, top, source) {
      // Versions only grow: anything older is a late or replayed message. An equal version is the
      // same board (a re-sync of what is shown), so it is skipped too.
      if (version < this._version || (version === this._version && this._hasBoard)) return false;
      const previous = this._shownRows();
      this._version = version;
      this._top = normalise(top);
      this._hasBoard = true;
      // With mode="around" the viewer's neighbourhood is shown instead, once its answer is in.
      if (this._showingTop()) this._showRows(previous);
      this._emit("scoreboard-update", { version, top: this.top, source });
      return true;
    }

    /** Render what is shown now (the top list or the neighbourhood) and tell the announcer about it. */
    _showRows(previous) {
      const first = !this._rowsShown;
      this._renderRows(first ? null : previous);
      if (!this._rowsShown) return; // still the placeholder
      const rows = this._shownRows();
      if (first) this._announcer.reset(rows);
      else this._announcer.board(rows);
    }

    /** The rows to show: the viewer's neighbourhood with mode="around" (once fetched), else the top list. */
    _shownRows() {
      return Array.isArray(this._around) && this._aroundWanted() ? this._around : this._top;
    }

    /** Whether the top list is what is shown (not the neighbourhood, nor the wait for its first answer). */
    _showingTop() {
      return !this._aroundWanted() || this._around === null;
    }

    /** The board kind shown: the ``period`` attribute (all, day, week, month), else all time. */
    _period() {
      const period = (this.getAttribute("period") || "all").trim().toLowerCase();
      return Object.prototype.hasOwnProperty.call(PERIOD_LABELS, period) ? period : "all";
    }

    /** ``around`` (the viewer's neighbourhood) or ``top``. */
    _mode() {
      return (this.getAttribute("mode") || "").trim().toLowerCase() === "around" ? "around" : "top";
    }

    /** Whether the neighbourhood is wanted: mode="around" for a signed-in viewer (without one, the top list). */
    _aroundWanted() {
      return this._mode() === "around" && Boolean(this._token);
    }

    /**
     * Fetch the viewer's neighbourhood (``GET /api/scores/me?period=&radius=``) and show it. A viewer without a
     * rank sees the top list; a failed request keeps what is shown (the top list before a first answer).
     */
    async _fetchAround() {
      const id = ++this._aroundFetch;
      const token = this._token;
      if (!token) return;
      this._meDuringFetch = false;
      const period = encodeURIComponent(this._period());
      const radius = Math.max(0, Math.floor((this._rowLimit() - 1) / 2));
      let body = null;
      try {
        const response = await fetch(this._httpUrl(`/api/scores/me?period=${period}&radius=${radius}`), {
          headers: { Authorization: `Bearer ${token}` },
          cache: "no-store",
        });
        if (response.ok) body = await response.json().catch(() => null);
      } catch (_) {
        body = null;
      }
      if (id !== this._aroundFetch || token !== this._token || this._stopped || !this._aroundWanted()) return;
      const previous = this._shownRows();
      if (body && Array.isArray(body.around)) {
        this._around = body.around.length ? normalise(body.around) : null;
        this._aroundRank = Number.isFinite(body.rank) ? body.rank : null;
        this._aroundScore = Number.isFinite(body.score) ? body.score : null;
      } else if (this._around === undefined) {
        this._around = null;
      } else {
        return;
      }
      if (this._hasBoard) this._showRows(previous);
      // A "me" that came while this was in flight may already say more than this answer.
      const me = this._me;
      if (this._meDuringFetch && me && (me.rank !== this._aroundRank || me.score !== this._aroundScore)) {
        this._fetchAround();
      }
    }

    /** A ``me`` message: the viewer's standing; with mode="around", a new rank or score refetches the neighbourhood. */
    _onMe(message) {
      const me = {
        rank: Number.isFinite(message.rank) ? message.rank : null,
        score: Number.isFinite(message.score) ? message.score : null,
        total: Number.isFinite(message.total) ? message.total : 0,
      };
      this._setMe(me);
      this._emit("scoreboard-me", { ...me, period: this._period() });
      if (!this._aroundWanted()) return;
      this._meDuringFetch = true;
      if (this._around !== undefined && (me.rank !== this._aroundRank || me.score !== this._aroundScore)) {
        this._fetchAround();
      }
    }

    /** Keep the viewer's standing (null: none) and show it as "you: #1,234 of 50,000". */
    _setMe(me) {
      this._me = me;
      const line = this._els.youLine;
      if (!me) {
        line.hidden = true;
        line.textContent = "";
        return;
      }
      line.textContent =
        me.rank == null ? "you: not ranked yet" : `you: #${this._format(me.rank)} of ${this._format(me.total)}`;
      line.hidden = false;
    }

    /** Record and show the connection state. */
    _setState(state, extra = {}) {
      const changed = state !== this._state;
      this._state = state;
      const { status, statusLabel, retry, notice } = this._els;
      status.dataset.state = state;
      this._els.card.dataset.state = state;
      clearInterval(this._countdownTimer);
      this._countdownTimer = null;
      if (state === "reconnecting" && extra.delay) {
        const tick = () => {
          const left = Math.ceil((this._retryAt - performance.now()) / 1000);
          statusLabel.textContent = left > 0 ? `Reconnecting in ${left} s` : STATE_LABELS.reconnecting;
        };
        tick();
        this._countdownTimer = setInterval(tick, 1000);
      } else {
        statusLabel.textContent = STATE_LABELS[state] || state;
      }
      retry.hidden = !(state === "reconnecting" && this._retryTimer) && state !== "offline";
      if (state === "unauthorized") {
        notice.textContent = this._token
          ? "Your session has expired or was refused. Sign in again to see the live board."
          : "Sign in to see the live board.";
        notice.hidden = false;
      } else {
        notice.hidden = true;
      }
      this._els.table.setAttribute("aria-busy", String(state === "connecting" && !this._hasBoard));
      if (changed || extra.attempt) this._emit("scoreboard-state", { state, ...extra });
    }

    // ---- rendering -------------------------------------------------------------------------

    /** The heading text: ``heading``, else ``title``, else a default; beside it the period ("This week"). */
    _updateHeading() {
      this._els.title.textContent = this.getAttribute("heading") || this.getAttribute("title") || "Top players";
      const label = PERIOD_LABELS[this._period()];
      this._els.periodLabel.textContent = label;
      this._els.periodLabel.hidden = !label;
    }

    /** How many rows to show. */
    _rowLimit() {
      const rows = parseInt(this.getAttribute("rows"), 10);
      return Number.isFinite(rows) && rows > 0 ? Math.min(rows, MAX_ROWS) : DEFAULT_ROWS;
    }

    /** Render the board, keyed by user id, animating moves and score rises against ``previous``. */
    _renderRows(previous = null) {
      const body = this._els.body;
      if (!this._hasBoard || (this._aroundWanted() && this._around === undefined)) {
        this._renderPlaceholder(body);
        return;
      }
      this._rowsShown = true;
      const entries = this._shownRows().slice(0, this._rowLimit());
      const viewer = this._viewerId();
      const animate = previous && !reducedMotion();
      const before = new Map();
      if (animate) for (const [id, tr] of this._rowEls) before.set(id, tr.getBoundingClientRect().top);
      const old = new Map((previous || []).slice(0, this._rowLimit()).map((e) => [e.userId, e]));

      for (const child of Array.from(body.children)) if (!child.dataset.userId) child.remove();
      const keep = new Set();
      entries.forEach((entry, index) => {
        let tr = this._rowEls.get(entry.userId);
        if (!tr) {
          tr = this._createRow(entry.userId);
          this._rowEls.set(entry.userId, tr);
        }
        this._fillRow(tr, entry, entry.userId === viewer, previous ? old.get(entry.userId) || null : undefined);
        if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
        keep.add(entry.userId);
      });
      for (const [id, tr] of this._rowEls) {
        if (!keep.has(id)) {
          tr.remove();
          this._rowEls.delete(id);
        }
      }
      if (!entries.length) {
        const tr = document.createElement("tr");
        tr.className = "empty";
        const td = document.createElement("td");
        td.colSpan = 3;
        const when = { all: "", day: " today", week: " this week", month: " this month" }[this._period()];
        td.textContent = `No scores yet${when}. Complete an action to lead the board.`;
        tr.append(td);
        body.append(tr);
      }
      if (animate) this._playMoves(before);
    }

    /** Grey placeholder rows while the first board loads; hidden from assistive technology. */
    _renderPlaceholder(body) {
      this._rowsShown = false;
      body.textContent = "";
      const count = Math.min(this._rowLimit(), 5);
      for (let i = 0; i < count; i += 1) {
        const tr = document.createElement("tr");
        tr.className = "skeleton";
        tr.setAttribute("aria-hidden", "true");
        tr.innerHTML = `<td><span class="bar"></span></td><td><span class="bar"></span></td><td><span class="bar"></span></td>`;
        // Sized through the CSSOM: style="" attributes are inline styles, which a strict policy refuses.
        const [rank, name, score] = tr.querySelectorAll(".bar");
        rank.style.width = "20px";
        name.style.width = `${60 - i * 6}%`;
        score.style.width = "48px";
        score.style.marginLeft = "auto";
        body.append(tr);
      }
    }

    /** The cells of one player's row; filled and updated in place by ``_fillRow``. */
    _createRow(userId) {
      const tr = document.createElement("tr");
      tr.dataset.userId = userId;
      tr.setAttribute("part", "row");
      tr.innerHTML = `
        <td class="rank" part="rank"><span class="badge"></span></td>
        <th scope="row" part="player"><span class="player-cell">
          <span class="avatar" aria-hidden="true"></span>
          <span class="name" part="name"></span>
          <span class="you" aria-hidden="true" hidden>You</span><span class="sr-only you-sr" hidden> (you)</span>
          <span class="trend" aria-hidden="true"></span>
        </span></th>
        <td class="score" part="score"><span class="score-wrap"><span class="delta" aria-hidden="true"></span><span class="value"></span><span class="ticker" aria-hidden="true"></span></span></td>`;
      tr.style.setProperty("--h", String(hueFor(userId)));
      return tr;
    }

    /** Fill one row; ``before`` is the player's previous entry (null: new on the board, undefined: first render). */
    _fillRow(tr, entry, isViewer, before) {
      const badge = tr.querySelector(".badge");
      badge.textContent = this._format(entry.rank);
      if (entry.rank <= 3) badge.dataset.medal = String(entry.rank);
      else delete badge.dataset.medal;
      tr.querySelector(".name").textContent = entry.displayName;
      tr.querySelector(".name").title = entry.displayName;
      tr.querySelector(".avatar").textContent = initials(entry.displayName);
      tr.classList.toggle("me", isViewer);
      tr.setAttribute("part", isViewer ? "row me" : "row");
      if (isViewer) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
      tr.querySelector(".you").hidden = !isViewer;
      tr.querySelector(".you-sr").hidden = !isViewer;
      tr.dataset.rank = String(entry.rank);
      tr.dataset.score = String(entry.score);

      const value = tr.querySelector(".value");
      const from = before ? before.score : entry.score;
      if (before !== undefined && entry.score > from) this._playRise(tr, from, entry.score);
      else value.textContent = this._format(entry.score);

      if (before === null) this._showTrend(tr, entry.userId, "up", "new");
      else if (before && before.rank !== entry.rank) {
        const moved = before.rank - entry.rank;
        this._showTrend(tr, entry.userId, moved > 0 ? "up" : "down", `${moved > 0 ? "▲" : "▼"}${Math.abs(moved)}`);
      }
    }

    /** Show a rank-change marker next to a name for a few seconds. */
    _showTrend(tr, userId, dir, text) {
      const trend = tr.querySelector(".trend");
      trend.textContent = text === "new" ? "▲ new" : text;
      trend.dataset.dir = dir;
      clearTimeout(this._trendTimers.get(userId));
      this._trendTimers.set(
        userId,
        setTimeout(() => {
          delete trend.dataset.dir;
          this._trendTimers.delete(userId);
        }, TREND_VISIBLE_MS),
      );
    }

    /** Count the score up, flash it and float a "+N" beside it. */
    _playRise(tr, from, to) {
      const value = tr.querySelector(".value");
      const ticker = tr.querySelector(".ticker");
      const wrap = tr.querySelector(".score-wrap");
      const delta = tr.querySelector(".delta");
      // The real number is written at once, for assistive technology and anything reading the
      // table; the count-up runs in an aria-hidden copy drawn over it.
      value.textContent = this._format(to);
      delta.textContent = `+${this._format(to - from)}`;
      if (reducedMotion() || !wrap.animate) return;
      const start = performance.now();
      const duration = 700;
      const run = (tr._riseRun = (tr._riseRun || 0) + 1);
      wrap.classList.add("counting");
      const step = (now) => {
        if (tr._riseRun !== run) return;
        const t = Math.min(1, (now - start) / duration);
        const eased = 1 - (1 - t) ** 3;
        ticker.textContent = this._format(Math.round(from + (to - from) * eased));
        if (t < 1) requestAnimationFrame(step);
        else wrap.classList.remove("counting");
      };
      step(start);
      const flash = getComputedStyle(wrap).getPropertyValue("--_flash").trim() || "#fef3c7";
      wrap.animate(
        [{ backgroundColor: flash }, { backgroundColor: flash, offset: 0.4 }, { backgroundColor: "transparent" }],
        { duration: 1600, easing: "ease-out" },
      );
      delta.animate(
        [
          { opacity: 0, transform: "translate(0, -30%)" },
          { opacity: 1, transform: "translate(0, -80%)", offset: 0.2 },
          { opacity: 1, transform: "translate(0, -80%)", offset: 0.7 },
          { opacity: 0, transform: "translate(0, -160%)" },
        ],
        { duration: 1800, easing: "ease-out" },
      );
    }

    /** FLIP: rows start where they were and glide to their new places; new rows fade in. */
    _playMoves(before) {
      for (const [id, tr] of this._rowEls) {
        if (!tr.animate) return;
        const top = before.get(id);
        if (top === undefined) {
          tr.animate([{ opacity: 0 }, { opacity: 1 }], { duration: 400, easing: "ease-out" });
          continue;
        }
        const dy = top - tr.getBoundingClientRect().top;
        if (Math.abs(dy) < 1) continue;
        tr.animate([{ transform: `translateY(${dy}px)` }, { transform: "translateY(0)" }], {
          duration: 550,
          easing: "cubic-bezier(0.2, 0.8, 0.2, 1)",
        });
      }
    }

    /** A score with the page's digit grouping. */
    _format(n) {
      if (!this._numberFormat) this._numberFormat = new Intl.NumberFormat(document.documentElement.lang || undefined);
      return this._numberFormat.format(n);
    }

    // ---- announcements ----------------------------------------------------------------------

    /** Word the change between two boards for a screen reader, most relevant first; "" if none. */
    _describeChange(before, after) {
      if (!before || !after) return "";
      const limit = this._rowLimit();
      const rankOf = (board) => new Map(board.slice(0, limit).map((e) => [e.userId, e]));
      const was = rankOf(before);
      const now = rankOf(after);
      const points = (n) => `${this._format(n)} ${n === 1 ? "point" : "points"}`;
      const sentences = [];

      const viewer = this._viewerId();
      if (viewer) {
        const a = was.get(viewer);
        const b = now.get(viewer);
        if (b && (!a || a.rank !== b.rank || a.score !== b.score)) {
          const verb = !a ? "entered the board at" : b.rank < a.rank ? "moved up to" : b.rank > a.rank ? "moved down to" : "are still";
          sentences.push(`You ${verb} ${ordinal(b.rank)} place with ${points(b.score)}.`);
        } else if (a && !b) {
          sentences.push("You dropped off the board.");
        }
      }

      const leaderBefore = before[0];
      const leader = after[0];
      const newLeader = Boolean(
        leader && leader.userId !== viewer && (!leaderBefore || leaderBefore.userId !== leader.userId),
      );
      if (newLeader) sentences.push(`${leader.displayName} takes 1st place with ${points(leader.score)}.`);

      // Players pushed down by someone else are implied; only new scores and newcomers are news.
      const others = after.slice(0, limit).filter((e) => {
        if (e.userId === viewer || (newLeader && e.userId === leader.userId)) return false;
        const old = was.get(e.userId);
        return !old || old.score !== e.score;
      });
      if (others.length === 1) {
        const e = others[0];
        const old = was.get(e.userId);
        if (!old) sentences.push(`${e.displayName} enters the board at ${ordinal(e.rank)} place with ${points(e.score)}.`);
        else if (old.rank !== e.rank) {
          sentences.push(`${e.displayName} moves ${e.rank < old.rank ? "up" : "down"} to ${ordinal(e.rank)} place with ${points(e.score)}.`);
        } else sentences.push(`${e.displayName} now has ${points(e.score)}.`);
      } else if (others.length > 1) {
        const lead = after[0];
        sentences.push(`${others.length} players scored. ${lead.displayName} leads with ${points(lead.score)}.`);
      }
      return sentences.join(" ");
    }

    /** Dispatch a bubbling, composed event from the element. */
    _emit(type, detail) {
      this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
    }
  }

  customElements.define("live-scoreboard", LiveScoreboard);
})();
