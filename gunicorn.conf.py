"""Gunicorn settings for ``gunicorn -c gunicorn.conf.py wsgi:app``; each can be set from the environment.

The default worker is gevent: an open WebSocket then costs a greenlet (a few KiB)
instead of an OS thread, so one instance holds 10,000 sockets (see
docs/performance.md for the measurements behind the choice). psycopg2 is made
cooperative by a wait callback (``scoreboard.ops.db_waits``), so a query waits without
blocking the other greenlets, and never longer than ``SCOREBOARD_DB_WAIT_TIMEOUT`` (with
either worker class). ``SCOREBOARD_WORKER_CLASS=gthread`` selects threads instead; then every
open socket holds two threads (the handler and simple-websocket's reader) and
``SCOREBOARD_WEB_THREADS`` bounds the sockets a worker can hold.
"""

import json
import multiprocessing

from gunicorn import util as gunicorn_util
from gunicorn.glogging import Logger

from config import env, env_int

bind = env("BIND", "127.0.0.1:5000")
workers = env_int("WEB_WORKERS", max(2, multiprocessing.cpu_count()))
worker_class = env("WORKER_CLASS", "gevent")
threads = env_int("WEB_THREADS", 256)
# gevent: concurrent connections (open sockets included) per worker.
worker_connections = env_int("WORKER_CONNECTIONS", 10000)
# Room for a burst of reconnecting browsers (capped by net.core.somaxconn).
backlog = env_int("BACKLOG", 4096)
# Sockets stay open indefinitely; the timeout only guards against a stuck worker.
timeout = env_int("WEB_TIMEOUT", 60)
graceful_timeout = env_int("GRACEFUL_TIMEOUT", 20)
keepalive = 5
# The app writes one JSON line per request (with request and user ids); gunicorn's own access line is
# extra, off unless asked for.
accesslog = env("ACCESS_LOG")
errorlog = "-"
loglevel = env("LOG_LEVEL", "info").lower()
# No preload: each worker builds its own app, pools and relay after the fork.
preload_app = False


class QuietAccessLogger(Logger):
    """Gunicorn's logger, but with a logging config set it writes access lines only if ``accesslog`` is."""

    def access(self, resp, req, environ, request_time):
        """Log the request only when an access log was asked for (otherwise gunicorn formats one anyway)."""
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


logger_class = QuietAccessLogger

# Gunicorn's own lines (boot, worker exits, timeouts, and access lines when asked for) in the app's format
# (SCOREBOARD_LOG_FORMAT: json or text), scrubbed of credentials the same way (scoreboard.ops.log_format).
logconfig_dict = {
    "formatters": {"generic": {"()": "scoreboard.ops.log_format.make_formatter", "kind": env("LOG_FORMAT", "json")}},
    "loggers": {
        "gunicorn.error": {
            "level": loglevel.upper(),
            "handlers": ["error_console"],
            "propagate": False,
            "qualname": "gunicorn.error",
        },
        "gunicorn.access": {
            "level": "INFO",
            "handlers": ["console" if accesslog in (None, "-") else "access_file"],
            "propagate": False,
            "qualname": "gunicorn.access",
        },
    },
    # The app adds its own handler to the root logger in each worker.
    "root": {"level": "INFO", "handlers": []},
}
if accesslog not in (None, "-"):
    # SCOREBOARD_ACCESS_LOG names a file: the access lines go there, in the same format. Gunicorn merges
    # this dict over its defaults one level deep, so its two console handlers are restated with the file's.
    logconfig_dict["handlers"] = {
        "console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stderr"},
        "access_file": {"class": "logging.FileHandler", "filename": accesslog, "formatter": "generic"},
    }


def post_fork(server, worker):
    """Bound every wait on the database (SCOREBOARD_DB_WAIT_TIMEOUT); under gevent the waits also yield to the
    other greenlets (the cooperative wait psycogreen's would give, with a deadline)."""
    from scoreboard.ops import db_waits

    db_waits.install(green=worker_class == "gevent")


def on_starting(server):
    """Empty PROMETHEUS_MULTIPROC_DIR before any worker writes to it: old files would add stale counts."""
    from scoreboard.ops import metrics

    metrics.reset_multiprocess_dir()


def post_worker_init(worker):
    """When this worker is told to stop, close its WebSockets with 1001 so widgets reconnect elsewhere."""
    from scoreboard.live.shutdown import watch_gunicorn_worker

    watch_gunicorn_worker(worker, worker.wsgi)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (open sockets) from the metrics (prometheus-client's recipe)."""
    from scoreboard.ops import metrics

    metrics.mark_dead(worker.pid)


# Gunicorn answers a request it cannot parse (a request line or headers too large, a malformed line)
# itself, before the app sees it, with an HTML page. These are the same refusals as the app's JSON
# errors; the message is generic because gunicorn's own quotes the request (and so any token in it).
SERVER_ERRORS = {
    400: ("bad_request", "The request could not be parsed."),
    403: ("forbidden", "This request is not allowed."),
    431: ("headers_too_large", "The request's headers are too large."),
    500: ("internal_error", "Internal error."),
    501: ("not_implemented", "This transfer coding is not supported."),
}


def write_json_error(sock, status_int, reason, mesg):
    """Gunicorn's own error answers as ``{"error": {"code", "message"}}`` JSON."""
    code, message = SERVER_ERRORS.get(status_int, ("http_error", reason))
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn_util.write_error = write_json_error  # the workers call util.write_error; there is no hook for it
