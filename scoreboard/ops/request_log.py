"""Per-request bookkeeping: the request id, the access log line, and request-level metrics."""

import logging
import re
import time
import uuid
from collections.abc import Callable

from flask import Flask, current_app, g, request

from . import metrics
from .log_format import ACCESS_FIELDS, verified_user_id

log = logging.getLogger("scoreboard.access")

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only if it is short and plain, so it cannot forge log fields.
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
# Probes and scrapes arrive every few seconds; they are logged only at DEBUG.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _mark(kind: str) -> Callable[[Callable], Callable]:
    def decorator(view: Callable) -> Callable:
        view.request_kind = kind
        return view

    return decorator


# A claim view: its outcomes and durations are recorded in the claim metrics.
counted_as_claim = _mark("claim")
# A socket view: its request lasts as long as the socket, and is counted in the open-sockets gauge.
long_lived = _mark("socket")


def request_kind() -> str | None:
    """The mark of the view serving this request (``claim``, ``socket``), or None."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return getattr(view, "request_kind", None)


def start_request():
    """Adopt the caller's ``X-Request-ID`` (or mint one) and note the start time."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()
    if request_kind() == "socket":
        # A socket's request lasts as long as the socket: counted from here to its teardown.
        metrics.OPEN_SOCKETS.inc()
        g.socket_counted = True


def end_request(_error=None):
    """Stop counting a socket whose request (and so connection) has ended."""
    if g.pop("socket_counted", False):
        metrics.OPEN_SOCKETS.dec()


def finish_request(response):
    """Echo the request id, record claim and rate-limit metrics, write the access log line."""
    if "request_id" not in g:  # a hook before ours answered first
        start_request()
    response.headers[REQUEST_ID_HEADER] = g.request_id
    elapsed = time.perf_counter() - g.request_started
    if request_kind() == "claim":
        metrics.CLAIMS.labels(outcome=claim_outcome(response)).inc()
        metrics.CLAIM_SECONDS.observe(elapsed)
    if response.status_code == 429:
        metrics.RATE_LIMITED.labels(endpoint=request.endpoint or "unknown").inc()
    path = request.path
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if log.isEnabledFor(level):
        method, status = request.method, response.status_code
        fields = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "remote_addr": request.remote_addr,
            "user_id": verified_user_id(),
            "request_id": g.request_id,
        }
        # The fields as attributes (for any handler), and as one dict for the JSON formatter's short path.
        log.log(level, "%s %s %s", method, path, status, extra={**fields, ACCESS_FIELDS: fields})
    return response


def claim_outcome(response):
    """``claimed`` for a success, else the machine-readable error code answered."""
    if response.status_code < 400:
        return "claimed"
    body = response.get_json(silent=True) if response.is_json else None
    code = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else f"http_{response.status_code}"


def init_app(app: Flask) -> None:
    """Run first among the before-request hooks, so even early refusals carry an id."""
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)
    app.after_request(finish_request)
    app.teardown_request(end_request)
