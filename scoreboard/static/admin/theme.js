/* The console's theme, applied before the first paint: the one chosen in this browser, else the system's. */
(() => {
  "use strict";

  let saved = null;
  try {
    saved = localStorage.getItem("scoreboard-admin-theme");
  } catch (_) {
    /* storage blocked: follow the system */
  }
  const system = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  document.documentElement.dataset.theme = saved === "dark" || saved === "light" ? saved : system;
})();
