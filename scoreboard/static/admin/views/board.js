/* The live board: GET /api/admin/board, fetched again on each public board message and on a slow interval. */

import { get, query } from "../api.js";
import { $, el, fillRows, num, segmented, showError, statusBadge } from "../dom.js";
import { BoardSocket } from "../live.js";

// Hidden, banned and held users' changes are not broadcast: a slow poll catches them.
const BACKSTOP_MS = 15000;
const STATE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };

let period = "all";
let timer = null;
let inFlight = null;
let again = false;
let active = false;
let socket = null;
let periods = null;

function row(entry) {
  const status = entry.status || "active";
  const name = el("a", { href: `#/users/${encodeURIComponent(entry.userId)}` }, entry.displayName || entry.userId);
  return el(
    "tr",
    { dataset: { userId: entry.userId, status } },
    el("td", { className: "num" }, num(entry.rank)),
    el("th", { scope: "row" }, name),
    el("td", { className: "id" }, entry.userId),
    el("td", { className: "num" }, num(entry.score)),
    el("td", {}, statusBadge(status)),
  );
}

/** Fetch the admin board once (a request arriving meanwhile is folded into one more fetch). */
async function refresh() {
  if (inFlight) {
    again = true;
    return inFlight;
  }
  inFlight = (async () => {
    try {
      const top = await get(`/api/admin/board${query({ period: period === "all" ? "" : period })}`);
      if (!active) return;
      const tbody = $("#board-table tbody");
      // A live update must not take keyboard focus away: the focused player's new link gets it back.
      const focused = tbody.contains(document.activeElement) ? document.activeElement.closest("tr") : null;
      fillRows(tbody, top.map(row), "Nobody has points on this board yet.");
      if (focused) {
        const again = tbody.querySelector(`tr[data-user-id="${CSS.escape(focused.dataset.userId)}"] a`);
        if (again) again.focus();
      }
      $("#board-table").dataset.period = period;
      $("#board-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
      showError($("#board-error"), "");
    } catch (problem) {
      if (active) showError($("#board-error"), problem.message);
    }
  })();
  await inFlight;
  inFlight = null;
  if (again && active) {
    again = false;
    await refresh();
  }
}

function setState(state) {
  const pill = $("#board-state");
  pill.dataset.state = state;
  pill.textContent = STATE_TEXT[state] || state;
}

export function init() {
  periods = segmented($("#view-board .segs"), "period", (value) => {
    period = value;
    refresh();
    if (socket) socket.start(period);
  });
}

export function show() {
  active = true;
  period = periods.get();
  socket = socket || new BoardSocket({ onBoard: () => refresh(), onState: setState });
  socket.start(period);
  refresh();
  clearInterval(timer);
  timer = setInterval(() => document.visibilityState === "visible" && refresh(), BACKSTOP_MS);
}

export function hide() {
  active = false;
  clearInterval(timer);
  timer = null;
  if (socket) socket.stop();
}

export const refreshBoard = refresh;
