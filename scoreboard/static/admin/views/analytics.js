/* Analytics: GET /api/admin/analytics?range=24h|7d|30d, one chart (claims per hour) and tables. */

import { get, query } from "../api.js";
import { $, $$, el, duration, fillRows, num, segmented, showError, when } from "../dom.js";
import { describeChart, timeChart } from "../charts.js";

const RANGE_NAMES = { "24h": "the last 24 hours", "7d": "the last 7 days", "30d": "the last 30 days" };
const OUTCOMES = [
  ["recorded", "Recorded"],
  ["claimed", "Claimed"],
  ["expired", "Expired unclaimed"],
  ["pending", "Still pending"],
  ["void", "Voided"],
];

let ranges = null;
let generation = 0;

function figure(name, value) {
  const node = $(`#analytics-figures [data-figure="${name}"]`);
  if (node) node.textContent = value;
}

function cellRow(header, ...values) {
  return el("tr", {}, el("th", { scope: "row" }, header), values.map((v) => el("td", { className: "num" }, num(v))));
}

async function load() {
  const range = ranges.get();
  const mine = ++generation;
  showError($("#analytics-error"), "");
  let data;
  try {
    data = await get(`/api/admin/analytics${query({ range })}`);
  } catch (problem) {
    if (mine !== generation) return;
    showError($("#analytics-error"), problem.message);
    return;
  }
  if (mine !== generation) return;
  $("#analytics-when").textContent = `${when(data.from)} to ${when(data.to)} · computed ${when(data.generatedAt)}`;
  const activeUsers = data.activeUsers || {};
  figure("dau", num(activeUsers.daily));
  figure("wau", num(activeUsers.weekly));
  figure("new", num(data.newPlayers));
  figure("median", duration(data.medianClaimSeconds));

  const hours = data.claimsPerHour || [];
  timeChart(
    $("#cph-chart"),
    hours.map((h) => Date.parse(h.at) / 1000),
    [{ label: "claims", values: hours.map((h) => h.claims), kind: "bars", colour: "--chart-1" }],
  );
  const total = hours.reduce((sum, h) => sum + h.claims, 0);
  const peak = hours.reduce((best, h) => (h.claims > (best ? best.claims : -1) ? h : best), null);
  describeChart(
    $("#cph-summary"),
    `Claims per hour over ${RANGE_NAMES[range]}: ${num(total)} ${total === 1 ? "claim" : "claims"} in ${num(hours.length)} hours` +
      (peak && peak.claims ? `; the busiest hour began ${when(peak.at)} with ${num(peak.claims)} claims.` : "."),
    ["Hour (UTC)", "Claims"],
    hours.map((h) => [when(h.at), h.claims]),
  );

  const completions = data.completions || {};
  fillRows($("#an-completions tbody"), OUTCOMES.map(([key, label]) => cellRow(label, completions[key] ?? 0)));
  fillRows($("#an-dau tbody"), (activeUsers.perDay || []).map((d) => cellRow(d.day, d.users)), "No active users.");
  fillRows(
    $("#an-refusals tbody"),
    (data.refusals || []).map((r) => cellRow(r.reason, r.count)),
    "No refused claims.",
  );
  fillRows(
    $("#an-actions tbody"),
    (data.actions || []).map((a) => cellRow(a.action, a.completions, a.claims, a.points)),
    "No actions in the range.",
  );
  for (const [id, keys] of [
    ["#an-top-completed", data.topCompleted || []],
    ["#an-top-rewarding", data.topRewarding || []],
  ]) {
    $(id).replaceChildren(...(keys.length ? keys.map((k) => el("li", {}, k)) : [el("li", { className: "muted" }, "none")]));
  }
}

export function init() {
  ranges = segmented($("#view-analytics .segs"), "range", () => load());
}

export function show() {
  load();
}

export function hide() {
  generation += 1;
}

export function clear() {
  for (const dd of $$("#analytics-figures dd")) dd.textContent = "–";
}
