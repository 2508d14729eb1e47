"""Gunicorn settings for ``gunicorn -c gunicorn.conf.py wsgi:app``; each can be set from the environment.

The default worker is gevent: an open WebSocket then costs a greenlet (a few KiB)
instead of an OS thread, so one instance holds 10,000 sockets (see
docs/performance.md for the measurements behind the choice). psycopg2 is made
cooperative with psycogreen, so a query waits without blocking the other
greenlets. ``SCOREBOARD_WORKER_CLASS=gthread`` selects threads instead; then every
open socket holds two threads (the handler and simple-websocket's reader) and
``SCOREBOARD_WEB_THREADS`` bounds the sockets a worker can hold.
"""

import multiprocessing
import os

from gunicorn.glogging import Logger


def _env(name, default):
    return os.environ.get(f"SCOREBOARD_{name}", default)


bind = _env("BIND", "127.0.0.1:5000")
workers = int(_env("WEB_WORKERS", max(2, multiprocessing.cpu_count())))
worker_class = _env("WORKER_CLASS", "gevent")
threads = int(_env("WEB_THREADS", 256))
# gevent: concurrent connections (open sockets included) per worker.
worker_connections = int(_env("WORKER_CONNECTIONS", 10000))
# Room for a burst of reconnecting browsers (capped by net.core.somaxconn).
backlog = int(_env("BACKLOG", 4096))
# Sockets stay open indefinitely; the timeout only guards against a stuck worker.
timeout = int(_env("WEB_TIMEOUT", 60))
graceful_timeout = int(_env("GRACEFUL_TIMEOUT", 20))
keepalive = 5
# The app writes one JSON line per request (with request and user ids); gunicorn's own access line is
# extra, off unless asked for.
accesslog = _env("ACCESS_LOG", None)
errorlog = "-"
loglevel = _env("LOG_LEVEL", "info").lower()
# No preload: each worker builds its own app, pools and relay after the fork.
preload_app = False


class QuietAccessLogger(Logger):
    """Gunicorn's logger, but with a logging config set it writes access lines only if ``accesslog`` is."""

    def access(self, resp, req, environ, request_time):
        """Log the request only when an access log was asked for (otherwise gunicorn formats one anyway)."""
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


logger_class = QuietAccessLogger

if _env("LOG_FORMAT", "json") == "json":
    # Gunicorn's own lines (boot, worker exits, timeouts) as JSON, like the app's (scoreboard.ops.logging).
    _json = {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "{levelname}{name}{process}{message}",
        "style": "{",
        "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
        "timestamp": "time",
    }
    logconfig_dict = {
        "formatters": {"generic": _json},
        "loggers": {
            "gunicorn.error": {
                "level": loglevel.upper(),
                "handlers": ["error_console"],
                "propagate": False,
                "qualname": "gunicorn.error",
            },
            "gunicorn.access": {
                "level": "INFO",
                "handlers": ["console"],
                "propagate": False,
                "qualname": "gunicorn.access",
            },
        },
        # The app adds its own JSON handler to the root logger in each worker.
        "root": {"level": "INFO", "handlers": []},
    }


def post_fork(server, worker):
    """Under gevent, make psycopg2 yield to other greenlets while it waits on the database."""
    if worker_class == "gevent":
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()


def on_starting(server):
    """Empty PROMETHEUS_MULTIPROC_DIR before any worker writes to it: old files would add stale counts."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))


def post_worker_init(worker):
    """When this worker is told to stop, close its WebSockets with 1001 so widgets reconnect elsewhere."""
    from scoreboard.ops.shutdown import watch_gunicorn_worker

    watch_gunicorn_worker(worker, worker.wsgi)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (open sockets) from the metrics (prometheus-client's recipe)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
