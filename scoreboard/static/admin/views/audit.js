/* The audit log: GET /api/admin/audit?actor=&target=&act=&before=, newest first, "Older" pages back. */

import { get, query } from "../api.js";
import { $, el, fillRows, showError, when } from "../dom.js";

const PAGE = 50;

let filters = {};
let oldest = null;
let generation = 0;

function row(entry) {
  const target = entry.targetUser
    ? el("a", { href: `#/users/${encodeURIComponent(entry.targetUser)}` }, entry.targetUser)
    : entry.details && entry.details.jti
      ? `token ${entry.details.jti}`
      : "–";
  return el(
    "tr",
    { dataset: { auditId: String(entry.id) } },
    el("td", { className: "num" }, String(entry.id)),
    el("td", {}, when(entry.at)),
    el("td", {}, entry.actor),
    el("th", { scope: "row" }, entry.act),
    el("td", {}, target),
    el("td", {}, entry.reason),
  );
}

async function load(reset) {
  const mine = reset ? ++generation : generation;
  showError($("#audit-error"), "");
  try {
    const entries = await get(`/api/admin/audit${query({ ...filters, limit: PAGE, before: reset ? "" : oldest })}`);
    if (mine !== generation) return;
    const tbody = $("#audit-table tbody");
    if (reset) fillRows(tbody, entries.map(row), "No admin acts match.");
    else tbody.append(...entries.map(row));
    if (entries.length) oldest = entries[entries.length - 1].id;
    $("#audit-older").hidden = entries.length < PAGE;
  } catch (problem) {
    if (mine === generation) showError($("#audit-error"), problem.message);
  }
}

export function init() {
  $("#audit-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const next = {};
    for (const name of ["actor", "target", "act"]) {
      const value = String(form.get(name) || "").trim();
      if (value) next[name] = value;
    }
    const hash = `#/audit${query(next)}`;
    if (window.location.hash === hash) {
      filters = next;
      load(true);
    } else window.location.hash = hash;
  });
  $("#audit-older").addEventListener("click", () => load(false));
}

/** ``#/audit?actor=&target=&act=``: the filtered log, newest first. */
export function show(params) {
  filters = {};
  for (const name of ["actor", "target", "act"]) {
    const value = params.get(name) || "";
    $(`#audit-${name}`).value = value;
    if (value) filters[name] = value;
  }
  oldest = null;
  load(true);
}

export function hide() {
  generation += 1;
}
