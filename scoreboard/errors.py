"""JSON errors with a stable machine-readable ``code``: never an HTML page or a traceback."""

import logging
import math
import time

from flask import current_app, jsonify
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from .extensions import limiter

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",  # the body did not arrive within SCOREBOARD_BODY_TIMEOUT (scoreboard.ops.body_timeout)
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", ...}}`` with an HTTP status."""

    def __init__(self, status, code, message, **details):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(status, code, message, headers=None, **details):
    """Build the JSON error body every failure path answers with."""
    body = {"error": {"code": code, "message": message, **details}}
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def handle_api_error(error):
    """Answer a raised :class:`ApiError`; a ``retryAfter`` detail is also sent as ``Retry-After``."""
    retry_after = error.details.get("retryAfter")
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return error_response(error.status, error.code, error.message, headers, **error.details)


def _rate_limit_headers():
    """``Retry-After`` and ``X-RateLimit-*`` for the limit a 429 breached.

    Flask-Limiter can write these on every response, at the price of reading the window back from
    Redis each time; by default they are written here instead, on refusals only.
    """
    breached = limiter.current_limit
    if breached is None or current_app.config.get("RATELIMIT_HEADERS_ENABLED"):
        return {}
    try:
        reset_at = breached.reset_at
    except RedisError:
        return {"Retry-After": "1"}
    return {
        # Rounded up: a client that waits exactly this long never retries into the same window.
        "Retry-After": str(max(1, math.ceil(reset_at - time.time()))),
        "X-RateLimit-Limit": str(breached.limit.amount),
        "X-RateLimit-Remaining": str(breached.remaining),
        "X-RateLimit-Reset": str(reset_at),
    }


def handle_http_exception(error):
    """Answer Werkzeug's HTTP errors (404, 405, 413, 429...) as JSON."""
    code = HTTP_CODES.get(error.code, "http_error")
    if error.code == 429:
        message = f"Too many requests: limit {error.description}."
        return error_response(429, code, message, _rate_limit_headers())
    return error_response(error.code or 500, code, error.description or code)


def handle_database_down(error):
    """A database that cannot be reached is a 503, not a 500."""
    cause = getattr(error, "orig", None) or error
    # The driver's first line says which failure it was (refused, timed out, too many clients); never the SQL.
    log.warning("database unavailable: %s: %s", type(cause).__name__, str(cause).strip().partition("\n")[0][:200])
    return error_response(
        503, "database_unavailable", "The database is unavailable; retry shortly.", headers={"Retry-After": "1"}
    )


def handle_redis_down(error):
    """Redis unreachable: 503 naming the service."""
    log.warning("redis unavailable: %s", error)
    return error_response(
        503, "redis_unavailable", "The cache service is unavailable; retry shortly.", headers={"Retry-After": "1"}
    )


def handle_broker_down(error):
    """Task broker unreachable: 503 naming the service."""
    log.warning("broker unavailable: %s", error)
    return error_response(
        503, "broker_unavailable", "The task broker is unavailable; retry shortly.", headers={"Retry-After": "1"}
    )


def handle_unexpected(error):
    """Log the bug with its traceback; tell the client only that it happened."""
    log.exception("unhandled error")
    return error_response(500, "internal_error", "Internal error.")


def init_app(app):
    """Register the JSON error handlers."""
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(InterfaceError, handle_database_down)
    app.register_error_handler(PoolTimeoutError, handle_database_down)
    app.register_error_handler(RedisConnectionError, handle_redis_down)
    app.register_error_handler(RedisTimeoutError, handle_redis_down)
    app.register_error_handler(BrokerError, handle_broker_down)
    app.register_error_handler(Exception, handle_unexpected)
