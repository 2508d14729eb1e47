"""Bounded waits on PostgreSQL: a psycopg2 wait callback that gives up after a deadline.

A server that holds its connections open but does not answer (its processes stopped, the host
swapping, a hypervisor pause) escapes every other bound: ``statement_timeout`` and
``lock_timeout`` need a running server to fire, and TCP keepalives and ``tcp_user_timeout`` need
unacknowledged packets, while the server's kernel still acknowledges every one. psycopg2 calls a
*wait callback*, once one is set, for every operation that waits on the server (a connect, each
statement, a commit, each fetch of a server-side cursor). The one here lets each operation wait
at most ``timeout`` seconds in all, then raises :class:`DatabaseTimeout`.

psycopg2 closes the connection when the callback raises, so SQLAlchemy finds it closed, treats
the error as a disconnect (the connection is invalidated, never returned to the pool half-used)
and raises ``sqlalchemy.exc.OperationalError``, which the API answers as 503
``database_unavailable``. The next operation opens a fresh connection, so the process recovers by
itself once the server answers again. A pool's pre-ping that times out fails its checkout at once
rather than reconnecting (which would wait out the bound a second time).

Two flavours of the same loop: under gevent the wait yields to the other greenlets
(``gevent.socket.wait_read``/``wait_write``, as psycogreen's callback does); with threads it blocks
the calling thread in ``select.poll``, not ``select.select``, since descriptors pass 1024 in a
process holding thousands of sockets.

The callback is process-wide. It is installed where requests and tasks are served: by gunicorn's
``post_fork`` (either worker class), in the Celery worker's pool processes, and before the first
request of any other server (``flask run``). ``flask`` commands (a migration, a rebuild) get none:
their statements may take as long as ``statement_timeout`` lets them.
"""

from __future__ import annotations

import math
import select
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg2
from psycopg2 import extensions

if TYPE_CHECKING:  # gunicorn's post_fork imports this module before gevent patches the worker: no Flask yet
    from flask import Flask
    from sqlalchemy.engine import ExceptionContext

Wait = Callable[[int, bool, float], bool]  # (descriptor, for writing, seconds) -> ready in time


class DatabaseTimeout(psycopg2.OperationalError):
    """PostgreSQL did not answer within the wait bound; psycopg2 has closed the connection."""


def gevent_patched() -> bool:
    """Whether gevent has patched this process's sockets (a gevent gunicorn worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("socket"))


def _poll_wait(fileno: int, writing: bool, seconds: float) -> bool:
    """Block this thread until ``fileno`` is ready or ``seconds`` pass; True when ready (or in error)."""
    poller = select.poll()
    poller.register(fileno, select.POLLOUT if writing else select.POLLIN)
    return bool(poller.poll(math.ceil(seconds * 1000)))


def _gevent_wait() -> Wait:
    """The same wait, yielding to the other greenlets meanwhile."""
    from gevent.socket import wait_read, wait_write

    def wait(fileno: int, writing: bool, seconds: float) -> bool:
        try:
            (wait_write if writing else wait_read)(fileno, timeout=seconds)
        except TimeoutError:  # gevent's socket.timeout
            return False
        return True

    return wait


def wait_callback(timeout: float | None, green: bool) -> Callable[[extensions.connection], None]:
    """A psycopg2 wait callback: each operation waits ``timeout`` seconds at most (None: no bound)."""
    wait = _gevent_wait() if green else _poll_wait
    limit = timeout if timeout and timeout > 0 else math.inf

    def wait_for_database(conn: extensions.connection) -> None:
        deadline = time.monotonic() + limit
        while True:
            state = conn.poll()
            if state == extensions.POLL_OK:
                return
            if state not in (extensions.POLL_READ, extensions.POLL_WRITE):
                raise psycopg2.OperationalError(f"bad result from poll: {state!r}")
            left = deadline - time.monotonic()
            if left <= 0 or not wait(conn.fileno(), state == extensions.POLL_WRITE, min(left, 86400.0)):
                raise DatabaseTimeout(f"the database did not answer within {limit:g}s")

    return wait_for_database


def install(timeout: float | None = None, green: bool | None = None) -> None:
    """Bound every wait of this process on PostgreSQL to ``timeout`` seconds.

    ``timeout`` defaults to ``SCOREBOARD_DB_WAIT_TIMEOUT``; ``green`` (default: whether gevent has
    patched the process) selects the gevent wait. With no bound and no gevent, no callback is set.
    """
    if timeout is None:
        from config import database_settings

        timeout = database_settings()["DB_WAIT_TIMEOUT"]
    if green is None:
        green = gevent_patched()
    if not green and not (timeout and timeout > 0):
        extensions.set_wait_callback(None)
        return
    extensions.set_wait_callback(wait_callback(timeout, green))


def timed_out(error: BaseException) -> bool:
    """Whether ``error`` (a SQLAlchemy error, or psycopg2's own) is the wait bound giving up."""
    return isinstance(getattr(error, "orig", None) or error, DatabaseTimeout)


def _ping_timeout_is_final(context: ExceptionContext) -> None:
    """A pre-ping that timed out fails the checkout at once: reconnecting to a server that does not answer
    would wait out the bound a second time."""
    if context.is_pre_ping and timed_out(context.original_exception):
        context.is_disconnect = False


def init_app(app: Flask) -> None:
    """Make a timed-out pre-ping final; under any server that has not installed the callback (``flask run``),
    install it before the first request.

    The callback is not installed in tests served in process (``TESTING``), nor on the embedded SQLite database.
    """
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        return
    from sqlalchemy import event

    from ..extensions import db

    with app.app_context():
        for engine in db.engines.values():
            event.listen(engine, "handle_error", _ping_timeout_is_final)
    if app.testing:
        return
    timeout = app.config["DB_WAIT_TIMEOUT"]

    def bound_database_waits() -> None:
        if extensions.get_wait_callback() is None:
            install(timeout)

    app.before_request(bound_database_waits)
