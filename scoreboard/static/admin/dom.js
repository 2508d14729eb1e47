/* Small DOM helpers: every value from the service goes in as text, never as markup. */

/** ``el("td", {className: "num"}, "12")``: an element with properties (``dataset``, ``aria-*`` as attributes) and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("aria-") || key === "role" || key === "for" || key === "scope") node.setAttribute(key, String(value));
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

const numbers = new Intl.NumberFormat(document.documentElement.lang || "en");
export const num = (value) => (value === null || value === undefined ? "–" : numbers.format(value));

const stamps = new Intl.DateTimeFormat(document.documentElement.lang || "en", {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZone: "UTC",
  timeZoneName: "short",
});
/** An ISO time as a readable UTC stamp (the service's periods are UTC by default). */
export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : stamps.format(date);
}

/** Seconds as "42 s", "3 min 5 s", "2 h 10 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A status as a word in a badge (colour only adds to the word). */
export function statusBadge(status) {
  return el("span", { className: "badge", dataset: { status } }, status || "active");
}

/** Replace a table body's rows; an empty list shows one row saying so. */
export function fillRows(tbody, rows, empty = "Nothing yet.") {
  const columns = tbody.closest("table").querySelectorAll("thead th").length || 1;
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: columns, className: "muted" }, empty))]));
}

/** Show ``message`` in an error line (or hide it with none). */
export function showError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

let announceTimer = null;
/** Say ``message`` in the console's polite live region. */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  clearTimeout(announceTimer);
  region.textContent = "";
  // A fresh node text after a tick, so the same message twice is spoken twice.
  announceTimer = setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/** Make a group of ``aria-pressed`` toggle buttons act as one choice; ``onChoose(value)`` on a change. */
export function segmented(group, attribute, onChoose) {
  const buttons = $$("button", group);
  const set = (value) => {
    for (const button of buttons) button.setAttribute("aria-pressed", String(button.dataset[attribute] === value));
  };
  for (const button of buttons) {
    button.addEventListener("click", () => {
      if (button.getAttribute("aria-pressed") === "true") return;
      set(button.dataset[attribute]);
      onChoose(button.dataset[attribute]);
    });
  }
  return {
    set,
    get: () => (buttons.find((b) => b.getAttribute("aria-pressed") === "true") || buttons[0]).dataset[attribute],
  };
}
