/* The admin API from the page: one Bearer token, kept in this tab's sessionStorage (never a cookie). */

const TOKEN_KEY = "scoreboard-admin-session";

/** A refused or failed request, worded from the service's JSON problem (`{"error": {code, message, problems}}`). */
export class ApiProblem extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let session = null; // {token, sub, viaPassword}
let onSessionEnded = () => {};

/** The claims of a JWT, read without checking it (the server checks it on every request). */
export function readClaims(token) {
  try {
    const part = String(token).split(".")[1];
    const binary = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
  } catch (_) {
    return {};
  }
}

export function currentSession() {
  return session;
}

/** Keep ``token`` for this tab; ``viaPassword``: the console made it, so signing out revokes it. */
export function startSession(token, viaPassword) {
  session = { token, sub: String(readClaims(token).sub || ""), viaPassword: Boolean(viaPassword) };
  try {
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ token, viaPassword: session.viaPassword }));
  } catch (_) {
    /* storage blocked: the session lives in memory only */
  }
  return session;
}

/** The session kept in this tab by an earlier load, or null. */
export function restoreSession() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
    if (kept && typeof kept.token === "string" && kept.token) return startSession(kept.token, kept.viaPassword);
  } catch (_) {
    /* nothing usable kept */
  }
  return null;
}

/** Forget the token everywhere the page kept it. */
export function endSession() {
  session = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    /* nothing kept */
  }
}

/** Called with a message when the server says the token is no longer good (401). */
export function whenSessionEnds(callback) {
  onSessionEnded = callback;
}

/** The service refused the session's token outside :func:`request` (the socket ticket): end the session. */
export function sessionRefused(message) {
  if (session) onSessionEnded(message);
}

function describe(status, body) {
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error === "object") {
    let message = String(error.message || error.code || `HTTP ${status}`);
    if (Array.isArray(error.problems) && error.problems.length) {
      message += " " + error.problems.map((p) => `${p.field}: ${p.problem}`).join("; ");
    }
    return new ApiProblem(status, String(error.code || "error"), message, error);
  }
  if (status === 429) return new ApiProblem(status, "rate_limited", "Too many requests; wait a moment and try again.");
  if (status >= 500) return new ApiProblem(status, "unavailable", `The service could not answer (HTTP ${status}).`);
  return new ApiProblem(status, "error", `The request failed (HTTP ${status}).`);
}

/**
 * Call the service: ``request("GET", "/api/admin/board")`` -> the parsed JSON body, or throws
 * :class:`ApiProblem`. ``token`` overrides the session's (signing in checks a token before keeping it).
 */
export async function request(method, path, { body, token } = {}) {
  const bearer = token || (session && session.token);
  const headers = { Accept: "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (_) {
    throw new ApiProblem(0, "network", "The service could not be reached.");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const problem = describe(response.status, data);
    if (response.status === 401 && !token && session) onSessionEnded(problem.message);
    throw problem;
  }
  return data;
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, body, options) => request("POST", path, { ...options, body });

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
