"""The Celery worker's operations: quick broker reconnects, bounded database waits, and metrics (it serves
no HTTP of its own).

With ``SCOREBOARD_WORKER_METRICS_PORT`` set, the worker's main process serves ``/metrics``
on that port (``SCOREBOARD_WORKER_METRICS_ADDR``, default all interfaces). The prefork
pool's children record into ``PROMETHEUS_MULTIPROC_DIR``, which the worker needs then:
give it a directory of its own, not the web server's.
"""

import functools
import logging
import os
from typing import Any

from celery.signals import worker_init, worker_process_shutdown
from celery.worker.consumer import Consumer

from . import metrics

log = logging.getLogger(__name__)

# Seconds between attempts to reach a lost broker: Celery's own back-off grows by 2 s a try up
# to 30 s, which after a long outage would leave the board stale for up to 30 s after its return.
RECONNECT_EVERY = 1.0


class QuickReconnectConsumer(Consumer):
    """Celery's consumer, retrying a lost broker every second (forever, with ``broker_connection_max_retries=None``)."""

    def ensure_connected(self, conn):
        """Connect as Celery does, with a flat retry interval."""
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=RECONNECT_EVERY, interval_step=0, interval_max=RECONNECT_EVERY
        )
        return super().ensure_connected(conn)


@worker_init.connect
def serve_worker_metrics(sender=None, **_kwargs):
    """In the worker's main process, before the pool forks: start the metrics endpoint."""
    flask_app = getattr(getattr(sender, "app", None), "flask_app", None)  # set by celery_init_app
    if flask_app is None:
        return
    port = flask_app.config["WORKER_METRICS_PORT"]
    if not port:
        return
    if metrics.multiprocess_dir() is None:
        log.warning(
            "SCOREBOARD_WORKER_METRICS_PORT is set without PROMETHEUS_MULTIPROC_DIR: "
            "the pool's samples cannot be collected; metrics not served"
        )
        return
    metrics.reset_multiprocess_dir()
    metrics.serve(port, flask_app.config["WORKER_METRICS_ADDR"])
    log.info("worker metrics on port %s", port)


@worker_init.connect
def bound_database_waits(sender: Any = None, **_kwargs: Any) -> None:
    """Before the pool forks (its processes inherit it): no task waits on the database longer than
    ``SCOREBOARD_DB_WAIT_TIMEOUT`` for one operation (``scoreboard.ops.db_waits``)."""
    flask_app = getattr(getattr(sender, "app", None), "flask_app", None)  # set by celery_init_app
    if flask_app is None or not flask_app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        return
    from . import db_waits

    db_waits.install(flask_app.config["DB_WAIT_TIMEOUT"])


@worker_process_shutdown.connect
def forget_pool_process(pid=None, **_kwargs):
    """A pool process is exiting: drop its live gauges from the aggregate."""
    metrics.mark_dead(pid or os.getpid())
