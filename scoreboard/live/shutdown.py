"""Graceful shutdown of a web process: open WebSockets close with 1001 (going away).

Gunicorn stops a worker with SIGTERM (on ``kill -TERM <master>``, a HUP reload, or a
rolling restart); the worker stops accepting connections and waits up to
``graceful_timeout`` for its requests to finish. A WebSocket never finishes on its own,
so without this it would be cut when the worker exits and the browser would see an
abnormal close (1006). Instead, as soon as the worker is told to stop, every socket is
closed with 1001, which tells the widget to reconnect, and the load balancer sends it
to an instance that is still up. Sockets that finish their handshake during the drain
are closed the same way.
"""

import logging
import threading
import time
from typing import Any

from flask import Flask

from .relay import get_relay

log = logging.getLogger(__name__)

GOING_AWAY = 1001
REASON = "server restarting"


def close_sockets(app: Flask) -> int:
    """Close this process's open sockets with 1001; returns how many there were."""
    return get_relay(app).close_all(GOING_AWAY, REASON)


def watch_gunicorn_worker(worker: Any, app: Flask, interval: float = 0.2) -> threading.Thread:
    """Close sockets with 1001 once ``worker`` stops being alive (SIGTERM clears ``worker.alive``).

    Watching the flag, rather than taking over the signal, works the same for the
    gthread and gevent workers and leaves gunicorn's own handling untouched.
    """

    def watch():
        """Wait for the stop, then close sockets until the process exits."""
        while worker.alive:
            time.sleep(interval)
        closed = close_sockets(app)
        log.info("worker stopping: closed %d sockets with 1001", closed)
        while True:  # until the process exits: sockets still finishing their handshake
            time.sleep(interval)
            close_sockets(app)

    thread = threading.Thread(target=watch, name="shutdown-watch", daemon=True)
    thread.start()
    return thread
