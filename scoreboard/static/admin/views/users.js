/* Users: search (GET /api/admin/users?q=), and one user's page with their standings, ledger, chart, audit and acts. */

import { get, post, query } from "../api.js";
import { $, $$, announce, el, fillRows, num, showError, statusBadge, when } from "../dom.js";
import { describeChart, timeChart } from "../charts.js";

const LEDGER_PAGE = 50;
const HISTORY_PAGES = 5; // up to 500 changes on the chart
const PERIOD_NAMES = { all: "All time", day: "Today", week: "This week", month: "This month" };
const MIN_REASON = 3;

let userId = null;
let ledgerNext = null;
let generation = 0;

// ---- search ----------------------------------------------------------------------------------

async function search(q) {
  const results = $("#user-results");
  showError($("#user-search-error"), "");
  try {
    const found = await get(`/api/admin/users${query({ q, limit: 20 })}`);
    const users = found.users || [];
    $("#user-results-caption").textContent = `${users.length} ${users.length === 1 ? "user" : "users"} matching “${q}”`;
    fillRows(
      $("tbody", results),
      users.map((u) =>
        el(
          "tr",
          { dataset: { userId: u.userId, status: u.status } },
          el("th", { scope: "row" }, el("a", { href: `#/users/${encodeURIComponent(u.userId)}` }, u.displayName || u.userId)),
          el("td", { className: "id" }, u.userId),
          el("td", { className: "num" }, num(u.score)),
          el("td", {}, statusBadge(u.status)),
          el("td", {}, when(u.createdAt)),
        ),
      ),
      "Nobody matches.",
    );
    results.hidden = false;
    announce(`${users.length} ${users.length === 1 ? "user" : "users"} found.`);
  } catch (problem) {
    results.hidden = true;
    showError($("#user-search-error"), problem.message);
  }
}

// ---- one user ----------------------------------------------------------------------------------

function reasonText() {
  return $("#act-reason").value.trim();
}

/** Every act button is enabled only with a reason (and the adjustment only with a whole, non-zero delta). */
function updateActButtons() {
  const hasReason = reasonText().length >= MIN_REASON;
  const delta = Number($("#act-delta").value);
  for (const button of $$("#view-user button.act")) {
    const needsDelta = button.dataset.act === "adjust";
    button.disabled = !hasReason || (needsDelta && !(Number.isInteger(delta) && delta !== 0));
  }
}

function ledgerRow(entry) {
  const voidable = entry.status === "claimed" || entry.status === "pending";
  const action = entry.status === "adjustment" ? `adjustment: ${entry.reason || ""}` : entry.action || "–";
  const cells = [
    el("td", {}, when(entry.createdAt)),
    el("th", { scope: "row" }, action),
    el("td", { className: "num" }, (entry.points > 0 && entry.status === "adjustment" ? "+" : "") + num(entry.points)),
    el("td", {}, entry.status),
    el("td", {}, entry.claimedAt ? when(entry.claimedAt) : "–"),
    el("td", { className: "mono" }, entry.clientIp || "–"),
    el(
      "td",
      {},
      voidable
        ? el(
            "button",
            {
              type: "button",
              className: "act small",
              disabled: reasonText().length < MIN_REASON,
              dataset: { act: "void", actionId: entry.actionId },
              "aria-label": `Void ${entry.action || "completion"} recorded ${when(entry.createdAt)}`,
            },
            "Void",
          )
        : entry.status === "void" && entry.reason
          ? el("span", { className: "muted small" }, entry.reason)
          : "",
    ),
  ];
  return el("tr", { dataset: { actionId: entry.actionId, status: entry.status } }, cells);
}

async function loadLedger(reset) {
  const tbody = $("#ledger-table tbody");
  const mine = generation;
  const page = await get(
    `/api/admin/users/${encodeURIComponent(userId)}/ledger${query({ limit: LEDGER_PAGE, cursor: reset ? "" : ledgerNext })}`,
  );
  if (mine !== generation) return;
  const rows = (page.entries || []).map(ledgerRow);
  if (reset) fillRows(tbody, rows, "No ledger rows.");
  else tbody.append(...rows);
  ledgerNext = page.next || null;
  $("#ledger-more").hidden = !ledgerNext;
}

async function loadHistory() {
  const mine = generation;
  const entries = [];
  let cursor = "";
  for (let i = 0; i < HISTORY_PAGES; i += 1) {
    const page = await get(`/api/scores/${encodeURIComponent(userId)}/history${query({ limit: 100, cursor })}`);
    entries.push(...(page.entries || []));
    cursor = page.next;
    if (!cursor) break;
  }
  if (mine !== generation) return;
  const oldestFirst = entries.slice().reverse();
  const chart = $("#history-chart");
  const summary = $("#history-summary");
  if (!oldestFirst.length) {
    timeChart(chart, [], [{ label: "score", values: [], kind: "step" }]);
    summary.textContent = "No score changes yet.";
    return;
  }
  const xs = oldestFirst.map((e) => Date.parse(e.at) / 1000);
  const ys = oldestFirst.map((e) => e.score);
  timeChart(chart, xs, [{ label: "score", values: ys, kind: "step", colour: "--chart-1" }]);
  const first = oldestFirst[0];
  const last = oldestFirst[oldestFirst.length - 1];
  const peak = Math.max(...ys);
  describeChart(
    summary,
    `Score over time: ${oldestFirst.length} changes from ${when(first.at)} to ${when(last.at)}; ` +
      `now ${num(last.score)}, highest ${num(peak)}.`,
    ["When (UTC)", "Change", "Score after"],
    entries.map((e) => [`${when(e.at)} (${e.action})`, e.delta, e.score]),
  );
}

async function loadAudit() {
  const mine = generation;
  const entries = await get(`/api/admin/audit${query({ target: userId, limit: 100 })}`);
  if (mine !== generation) return;
  fillRows(
    $("#user-audit tbody"),
    entries.map((a) =>
      el("tr", {}, el("td", {}, when(a.at)), el("th", { scope: "row" }, a.act), el("td", {}, a.actor), el("td", {}, a.reason)),
    ),
    "No admin acts about this user.",
  );
}

async function loadSummary() {
  const mine = generation;
  const found = await get(`/api/admin/users/${encodeURIComponent(userId)}`);
  if (mine !== generation) return;
  const user = found.user;
  $("#user-heading").textContent = `${user.displayName} (${user.userId})`;
  const badge = $("#user-status");
  badge.dataset.status = user.status;
  badge.textContent = user.status;
  $("#user-score").textContent = num(found.score);
  $("#user-created").textContent = when(user.createdAt);
  const standings = found.standings || null;
  fillRows(
    $("#user-standings tbody"),
    standings
      ? ["all", "day", "week", "month"]
          .filter((kind) => standings[kind])
          .map((kind) => {
            const s = standings[kind];
            const rank = s.rankUnknown
              ? "unknown for now (the board is being rebuilt)"
              : s.rank === null || s.rank === undefined
                ? "not on the board"
                : `#${num(s.rank)}${s.held ? " (as if ranked: held)" : ""}`;
            return el(
              "tr",
              {},
              el("th", { scope: "row" }, PERIOD_NAMES[kind] + (kind === "all" ? "" : ` (${String(s.period).split(":")[1] || ""})`)),
              el("td", { className: "num" }, rank),
              el("td", { className: "num" }, num(s.score)),
              el("td", { className: "num" }, num(s.total)),
            );
          })
      : [],
    "No ranks.",
  );
  return found;
}

/** Load (or reload) everything on the user's page; each part fails on its own. */
async function loadUser() {
  showError($("#user-error"), "");
  const parts = await Promise.allSettled([loadSummary(), loadLedger(true), loadHistory(), loadAudit()]);
  const failed = parts.filter((p) => p.status === "rejected").map((p) => p.reason.message);
  if (failed.length) showError($("#user-error"), [...new Set(failed)].join(" "));
}

const ACTS = {
  hidden: { verb: "Hidden", call: (reason) => post(`/api/admin/users/${encodeURIComponent(userId)}/status`, { status: "hidden", reason }) },
  banned: { verb: "Banned", call: (reason) => post(`/api/admin/users/${encodeURIComponent(userId)}/status`, { status: "banned", reason }) },
  active: { verb: "Restored", call: (reason) => post(`/api/admin/users/${encodeURIComponent(userId)}/status`, { status: "active", reason }) },
  revoke: { verb: "Revoked the tokens of", call: (reason) => post(`/api/admin/users/${encodeURIComponent(userId)}/tokens/revoke`, { reason }) },
  adjust: {
    verb: "Adjusted the points of",
    call: (reason) => post(`/api/admin/users/${encodeURIComponent(userId)}/adjustments`, { delta: Number($("#act-delta").value), reason }),
  },
};

async function act(button) {
  const reason = reasonText();
  if (reason.length < MIN_REASON) return;
  const kind = button.dataset.act;
  showError($("#act-error"), "");
  button.disabled = true;
  try {
    let answer;
    if (kind === "void") {
      answer = await post(`/api/admin/completions/${encodeURIComponent(button.dataset.actionId)}/void`, { reason });
      announce(`Voided the completion; the score is now ${num(answer.newScore)}.`);
    } else {
      answer = await ACTS[kind].call(reason);
      const score =
        answer && answer.newScore !== undefined
          ? `; the score is now ${num(answer.newScore)}`
          : answer && answer.revokedBefore
            ? `: every token issued before ${when(answer.revokedBefore)} is refused`
            : "";
      announce(`${ACTS[kind].verb} ${userId}${score}.`);
    }
    $("#act-reason").value = "";
    if (kind === "adjust") $("#act-delta").value = "";
    updateActButtons();
    await loadUser();
    $("#act-reason").focus();
  } catch (problem) {
    showError($("#act-error"), problem.message);
    updateActButtons();
  }
}

export function init() {
  $("#user-search").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = $("#user-q").value.trim();
    if (!q) {
      $("#user-q").setAttribute("aria-invalid", "true");
      showError($("#user-search-error"), "Type an id or a name to search for.");
      $("#user-q").focus();
      return;
    }
    $("#user-q").removeAttribute("aria-invalid");
    const target = `#/users?q=${encodeURIComponent(q)}`;
    if (window.location.hash === target) search(q);
    else window.location.hash = target;
  });
  $("#act-reason").addEventListener("input", updateActButtons);
  $("#act-delta").addEventListener("input", updateActButtons);
  $("#acts").addEventListener("submit", (event) => event.preventDefault());
  $("#view-user").addEventListener("click", (event) => {
    const button = event.target.closest("button.act");
    if (button && !button.disabled) act(button);
  });
  $("#ledger-more").addEventListener("click", async () => {
    try {
      await loadLedger(false);
    } catch (problem) {
      showError($("#user-error"), problem.message);
    }
  });
}

/** ``#/users`` or ``#/users?q=``: the search. */
export function showSearch(params) {
  const q = params.get("q") || "";
  $("#user-q").value = q;
  if (q) search(q);
  else $("#user-results").hidden = true;
}

/** ``#/users/<id>``: one user's page. */
export function showUser(id) {
  generation += 1;
  userId = id;
  ledgerNext = null;
  $("#user-heading").textContent = id;
  $("#act-reason").value = "";
  $("#act-delta").value = "";
  showError($("#act-error"), "");
  updateActButtons();
  for (const tbody of $$("#view-user tbody")) tbody.replaceChildren();
  return loadUser();
}

export function hide() {
  generation += 1;
}
