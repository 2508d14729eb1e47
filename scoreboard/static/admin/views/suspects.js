/* The suspects queue: GET /api/admin/suspects?status=held|flagged, polled while shown; clear or confirm with a reason. */

import { get, post, query } from "../api.js";
import { $, announce, el, num, segmented, showError, when } from "../dom.js";
import { describeChart, dropChart, timeChart } from "../charts.js";

const POLL_MS = 4000;
const MIN_REASON = 3;

let status = "held";
let timer = null;
let active = false;
let statuses = null;
let loaded = false; // the first answer since the view was shown announces nothing new
const cards = new Map(); // userId -> {node, key}

function reasonLine(reason) {
  const typical = reason.typical || {};
  return `${reason.feature}: ${fmt(reason.value)} (typical median ${fmt(typical.median)}, p95 ${fmt(typical.p95)})`;
}

function fmt(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "–" : String(value);
  return Number.isInteger(value) ? num(value) : num(Math.round(value * 1000) / 1000);
}

async function drawTimeline(card, userId) {
  const chart = $(".chart", card);
  const caption = $("figcaption", card);
  const range = $("#suspect-range").value;
  try {
    const activity = await get(`/api/admin/users/${encodeURIComponent(userId)}/activity${query({ range })}`);
    const points = activity.points || [];
    const xs = points.map((p) => Date.parse(p.at) / 1000);
    timeChart(chart, xs, [
      { label: "claims", values: points.map((p) => p.claims), kind: "bars", colour: "--chart-1" },
      { label: "refused", values: points.map((p) => p.refused), kind: "line", colour: "--chart-3" },
    ]);
    const claims = points.reduce((sum, p) => sum + p.claims, 0);
    const refused = points.reduce((sum, p) => sum + p.refused, 0);
    const busy = points.filter((p) => p.claims > 0).length;
    const peak = points.reduce((best, p) => (p.claims > (best ? best.claims : -1) ? p : best), null);
    describeChart(
      caption,
      `Claims per hour, ${range === "7d" ? "last 7 days" : "last 24 hours"}: ${num(claims)} ${claims === 1 ? "claim" : "claims"} in ${num(busy)} of ` +
        `${num(points.length)} hours, ${num(refused)} refused` +
        (peak && peak.claims ? `; busiest hour ${when(peak.at)} with ${num(peak.claims)}.` : "."),
      ["Hour (UTC)", "Claims", "Points", "Refused"],
      points.filter((p) => p.claims || p.refused).map((p) => [when(p.at), p.claims, p.points, p.refused]),
    );
  } catch (problem) {
    chart.replaceChildren();
    caption.textContent = `No claim timeline: ${problem.message}`;
  }
}

function buildCard(suspect) {
  const id = suspect.userId;
  const slug = id.replace(/[^A-Za-z0-9_-]/g, "_");
  const reason = el("textarea", { id: `review-reason-${slug}`, rows: 2, maxLength: 500 });
  const voidBox = el("input", { type: "checkbox", id: `review-void-${slug}` });
  const error = el("p", { className: "error", role: "alert", hidden: true });
  const clear = el("button", { type: "button", className: "act", disabled: true }, "Clear");
  const confirm = el("button", { type: "button", className: "act danger", disabled: true }, "Confirm");
  const headingId = `suspect-${slug}`;
  const node = el(
    "li",
    { className: "card", dataset: { userId: id }, "aria-labelledby": headingId },
    el(
      "h2",
      { id: headingId },
      el("a", { href: `#/users/${encodeURIComponent(id)}` }, `${suspect.displayName || id} (${id})`),
    ),
    el("p", { className: "muted small meta" }),
    el("h3", {}, "Why"),
    el("ul", { className: "reasons" }),
    el(
      "figure",
      { className: "chart-figure", "aria-label": `Claim timeline of ${suspect.displayName || id}` },
      el("div", { className: "chart", "aria-hidden": "true" }),
      el("figcaption", { className: "small" }, "Loading the claim timeline…"),
    ),
    el(
      "div",
      { className: "review" },
      el("label", { for: reason.id }, `Reason for clearing or confirming ${suspect.displayName || id} (required)`),
      reason,
      el("label", { className: "check", for: voidBox.id }, voidBox, "On confirm, void the window's claims"),
      el("div", { className: "buttons" }, clear, confirm),
      error,
    ),
  );
  const sync = () => {
    const ok = reason.value.trim().length >= MIN_REASON;
    clear.disabled = confirm.disabled = !ok;
  };
  reason.addEventListener("input", sync);
  const review = async (kind) => {
    showError(error, "");
    clear.disabled = confirm.disabled = true;
    try {
      const body = { reason: reason.value.trim() };
      if (kind === "confirm") body.void = voidBox.checked;
      const answer = await post(`/api/admin/suspects/${encodeURIComponent(id)}/${kind}`, body);
      announce(
        kind === "clear"
          ? `Cleared ${id}: back to ${answer.userStatus}.`
          : `Confirmed ${id}: banned${answer.voided ? `, ${num(answer.voided)} ${answer.voided === 1 ? "claim" : "claims"} voided` : ""}.`,
      );
      await refresh();
      const next = $("#suspects-list textarea");
      (next || $("#suspects-heading")).focus();
    } catch (problem) {
      showError(error, problem.message);
      sync();
    }
  };
  clear.addEventListener("click", () => review("clear"));
  confirm.addEventListener("click", () => review("confirm"));
  return node;
}

function updateCard(node, suspect) {
  $(".meta", node).textContent =
    `${suspect.status} since ${when(suspect.flaggedAt)} · anomaly score ${fmt(suspect.anomalyScore)}` +
    (suspect.reviewedBy ? ` · reviewed by ${suspect.reviewedBy}: ${suspect.reviewReason}` : "");
  $(".reasons", node).replaceChildren(...(suspect.reasons || []).map((r) => el("li", {}, reasonLine(r))));
}

/** Fetch the queue and update the cards in place (a reason being typed survives a poll). */
async function refresh() {
  try {
    const found = await get(`/api/admin/suspects${query({ status, limit: 100 })}`);
    if (!active) return;
    showError($("#suspects-error"), "");
    const list = $("#suspects-list");
    const seen = new Set();
    let added = 0;
    for (const suspect of found.suspects || []) {
      seen.add(suspect.userId);
      let card = cards.get(suspect.userId);
      if (!card) {
        card = { node: buildCard(suspect) };
        cards.set(suspect.userId, card);
        added += 1;
      }
      list.append(card.node); // in the order answered: newest flag first
      updateCard(card.node, suspect);
      if (!card.drawn) {
        card.drawn = true;
        drawTimeline(card.node, suspect.userId);
      }
    }
    let removed = 0;
    for (const [id, card] of cards) {
      if (seen.has(id)) continue;
      dropChart($(".chart", card.node));
      card.node.remove();
      cards.delete(id);
      removed += 1;
    }
    const count = cards.size;
    $("#suspects-count").textContent = `${count} ${status}`;
    $("#suspects-empty").hidden = count > 0;
    if (added && loaded) announce(`${added} new ${added === 1 ? "suspect" : "suspects"} ${status}.`);
    loaded = true;
  } catch (problem) {
    if (active) showError($("#suspects-error"), problem.message);
  }
}

function clearCards() {
  for (const card of cards.values()) {
    dropChart($(".chart", card.node));
    card.node.remove();
  }
  cards.clear();
}

export function init() {
  statuses = segmented($("#view-suspects .segs"), "status", (value) => {
    status = value;
    loaded = false;
    clearCards();
    refresh();
  });
  $("#suspect-range").addEventListener("change", () => {
    for (const [id, card] of cards) drawTimeline(card.node, id);
  });
}

export function show() {
  active = true;
  loaded = false;
  status = statuses.get();
  refresh();
  clearInterval(timer);
  timer = setInterval(() => document.visibilityState === "visible" && refresh(), POLL_MS);
}

export function hide() {
  active = false;
  clearInterval(timer);
  timer = null;
}
