"""The production gunicorn settings (``gunicorn.conf.py``), without the hooks that reach into the scoreboard's app.

Worker class, workers, connections, backlog, keep-alive and timeouts are the production file's; its
``post_fork`` (psycopg2's cooperative, bounded waits under gevent) is kept, since any gevent app on
psycopg2 needs it; the socket-closing and metrics hooks are the scoreboard's own and are left out.
"""

import runpy
from pathlib import Path

_production = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
for _name in ("bind", "workers", "worker_class", "threads", "worker_connections", "backlog", "timeout"):
    globals()[_name] = _production[_name]
graceful_timeout = _production["graceful_timeout"]
keepalive = _production["keepalive"]
errorlog = "-"
loglevel = _production["loglevel"]
post_fork = _production["post_fork"]


def post_worker_init(worker):
    """Start the worker's relay of the other processes' boards to its sockets."""
    from bench.baseline.app import start_relay

    start_relay()
