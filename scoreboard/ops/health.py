"""``GET /healthz`` (the process answers), ``GET /readyz`` (its backing services answer), ``GET /metrics``."""

import logging
import threading
import time

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from ..errors import error_response
from ..extensions import celery_app, db
from ..stores import get_stores
from . import metrics

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


def check_database():
    """Run ``SELECT 1`` on a pooled connection (pre-ping replaces dead ones)."""
    try:
        db.session.execute(text("SELECT 1"))
    finally:
        db.session.rollback()
    return "ok"


def check_redis():
    """Ping the Redis that holds the board, cache, pub/sub and rate limits."""
    stores = get_stores()
    if stores.embedded:
        return "embedded"
    stores.ping()
    return "ok"


def check_broker():
    """Open a fresh connection to the Celery broker (a pooled one could be stale)."""
    celery = celery_app()
    if celery.conf.task_always_eager:
        return "embedded"
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    return "ok"


CHECKS = (("database", check_database), ("redis", check_redis), ("broker", check_broker))


@bp.get("/healthz")
def healthz():
    """Liveness: the process is up and serving requests; touches no backing service."""
    return jsonify(status="ok")


# A probe's answer is reused this long: /readyz needs no token, and each real check opens a broker
# connection, so a flood of probes must not become a flood of connections.
READY_CACHE_SECONDS = 1.0


class Readiness:
    """The last readiness check of one app in this process, reused for ``READY_CACHE_SECONDS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, str], list[str]] | None = None  # (when, checks, failing)

    def check(self) -> tuple[dict[str, str], list[str]]:
        """``(checks, failing)``: each service's state; one probe at a time runs the checks."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < READY_CACHE_SECONDS:
                return self._last[1], self._last[2]
            checks, failing = {}, []
            for name, check in CHECKS:
                try:
                    checks[name] = check()
                except Exception as exc:  # any failure means "not ready"; the class name is enough to act on
                    log.warning("readiness check failed: %s unreachable (%s)", name, exc.__class__.__name__)
                    checks[name] = "unreachable"
                    failing.append(name)
            metrics.READINESS_CHECKS.inc()
            self._last = (time.monotonic(), checks, failing)
            return checks, failing


def readiness() -> Readiness:
    """The current app's readiness cache."""
    return current_app.extensions.setdefault("scoreboard.readiness", Readiness())


@bp.get("/readyz")
def readyz():
    """Readiness: 200 when the database, Redis and the broker all answer, else 503 naming the failing ones."""
    checks, failing = readiness().check()
    if failing:
        return error_response(
            503,
            f"{failing[0]}_unavailable",
            f"Not ready: {', '.join(failing)} unreachable.",
            headers={"Retry-After": "1"},
            failing=failing,
            checks=checks,
        )
    return jsonify(status="ready", checks=checks)


@bp.get("/metrics")
def prometheus_metrics():
    """Every metric in the Prometheus text format (all processes' in multiprocess mode)."""
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
