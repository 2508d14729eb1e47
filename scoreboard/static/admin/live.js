/*
 * The public board's socket, opened the way the widget opens it: trade the token for a single-use
 * socket ticket (POST /api/socket-ticket), then /ws/scoreboard?ticket=...&period=... The console only
 * listens for board messages, as a cue to fetch the admin board again (which also shows the users the
 * public board leaves out).
 */

import { currentSession, sessionRefused } from "./api.js";

const BASE_MS = 1000;
const MAX_MS = 30000;

export class BoardSocket {
  /** ``onBoard()`` on each board message of ``period``; ``onState(state)`` with connecting, live, reconnecting. */
  constructor({ onBoard, onState }) {
    this.onBoard = onBoard;
    this.onState = onState;
    this.period = "all";
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.generation = 0;
    this.stopped = true;
  }

  /** Connect (or reconnect) to ``period``'s board. */
  start(period) {
    this.period = period;
    this.stopped = false;
    this.attempt = 0;
    this._close();
    this._connect();
  }

  /** Close the socket and stop retrying. */
  stop() {
    this.stopped = true;
    this._close();
  }

  _close() {
    this.generation += 1;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(1000, "console leaving the board");
      } catch (_) {
        /* already closed */
      }
    }
  }

  async _ticket() {
    const session = currentSession();
    if (!session) return null;
    try {
      const response = await fetch("/api/socket-ticket", {
        method: "POST",
        headers: { Authorization: `Bearer ${session.token}` },
        cache: "no-store",
        credentials: "omit",
      });
      if (response.status === 401) {
        // The token ended (expired or revoked): the whole session has, not just this socket.
        const body = await response.json().catch(() => null);
        sessionRefused((body && body.error && body.error.message) || "The service refused the token.");
        return null;
      }
      if (!response.ok) return null;
      const body = await response.json();
      return typeof body.ticket === "string" ? body.ticket : null;
    } catch (_) {
      return null;
    }
  }

  async _connect() {
    const generation = this.generation;
    this.onState(this.attempt ? "reconnecting" : "connecting");
    const ticket = await this._ticket();
    if (generation !== this.generation || this.stopped) return;
    if (!ticket) {
      this._retry();
      return;
    }
    const url = new URL("/ws/scoreboard", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.period !== "all") url.searchParams.set("period", this.period);
    url.searchParams.set("ticket", ticket);
    let ws;
    try {
      ws = new WebSocket(url.href);
    } catch (_) {
      this._retry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (!message || (message.period || "all") !== this.period) return;
      if (message.type === "snapshot" || message.type === "update") {
        this.attempt = 0;
        this.onState("live");
        this.onBoard(message);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._retry();
    };
  }

  _retry() {
    if (this.stopped) return;
    const ceiling = Math.min(MAX_MS, BASE_MS * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.attempt += 1;
    this.onState("reconnecting");
    const generation = this.generation;
    this.timer = setTimeout(() => {
      if (generation === this.generation && !this.stopped) this._connect();
    }, delay);
  }
}
