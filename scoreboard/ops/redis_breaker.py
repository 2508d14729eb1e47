"""A circuit breaker on Redis: after a timeout, a process stops waiting on Redis for a while.

A Redis that hangs (its process stopped, the host swapping, a partition) makes every command
wait out its socket timeout (2 s for the stores, 1 s for the rate limits), and a claim makes
several such calls. Every caller already copes with Redis failing (the rate limits fall back to
memory, the revocation check fails open, the board is read from PostgreSQL, a recompute waits
in the outbox for the beat's sweep); what none can afford is the waiting. So, per Redis server
(host and port) and per process, shared by every client of the process on that server:

- closed: commands go through. A timeout (connecting, writing or reading) or a connection
  that could not be made opens the breaker.
- open: nothing is sent and no connection attempted; every command fails at once with
  :class:`CircuitOpen`, a ``redis.exceptions.ConnectionError``, so every existing handler of a
  Redis outage applies unchanged. After a timeout it stays open ``SCOREBOARD_REDIS_BREAKER_OPEN``
  seconds (5 s); after a refused connection, which cost no wait, 1 s at most.
- then one trial: the next command goes through (the others are still refused meanwhile). Any
  answer from Redis, even an error reply, closes the breaker; another failure opens it again.

The breaker lives in the connections: a subclass of the URL's connection class, passed to
redis-py as ``connection_class``. So it covers everything built on those clients: the stores'
commands, scripts and pipelines, the relay's pub/sub (refused while open, its listener keeps
retrying with its own backoff) and Flask-Limiter's storage (``RATELIMIT_STORAGE_OPTIONS``). The
connections bring their own retry policy: a command that met a connection the server had closed
runs once more at once; a timeout is never retried (that would double the wait) and nothing is
retried while the breaker is open (redis-py's default retries three times, with growing sleeps).

The Celery broker has clients of its own. With Redis as the broker,
``workers.board.request_refresh`` sets its flag in the stores' Redis before it touches the
broker, so while the breaker is open a claim never reaches the broker either.

``scoreboard_redis_breaker_open`` (``scoreboard.ops.metrics``) is 1 while a breaker of the
process is open. A Redis Cluster gets no breaker: its client deals with a failing node itself.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from . import metrics

log = logging.getLogger(__name__)

# Seconds open after a connection that could not be made at once (refused): trying again costs nothing.
REFUSED_OPEN = 1.0
# URL schemes of a single Redis server, whose clients take a ``connection_class``. Not a Redis Cluster: its
# client handles a node that fails or hangs itself (it re-reads the layout, then retries), and not a Sentinel,
# whose pools bring their own connections.
SCHEMES = {"redis", "rediss", "unix", "redis+unix"}

T = TypeVar("T")


class CircuitOpen(RedisConnectionError):
    """Redis is not waited on right now: it timed out, or refused a connection, moments ago."""


class CircuitBreaker:
    """One Redis server as this process sees it: closed, or open until the next trial may go."""

    def __init__(self, name: str, open_for: float) -> None:
        self.name = name
        self.open_for = open_for
        self._lock = threading.Lock()
        self._open = False
        self._trial_at = 0.0  # while open: when the next trial may go (monotonic)

    @property
    def is_open(self) -> bool:
        """Whether commands are being refused (a trial may be under way)."""
        return self._open

    def admit(self) -> bool:
        """Let a command go: False when closed, True when it goes as the trial; raises :class:`CircuitOpen` if not."""
        if not self._open:
            return False
        with self._lock:
            if not self._open:
                return False
            now = time.monotonic()
            if now < self._trial_at:
                raise CircuitOpen(
                    f"redis at {self.name} not waited on for {self._trial_at - now:.1f}s more "
                    "(it timed out or refused a connection moments ago)"
                )
            self._trial_at = now + self.open_for  # one trial per period; whatever it meets decides
            return True

    def succeeded(self) -> None:
        """Redis answered: close (the common case, closed already, costs one attribute read)."""
        if not self._open:
            return
        with self._lock:
            self._open = False
        log.info("redis at %s answers again: circuit closed", self.name)
        _report()

    def failed(self, waited: bool) -> None:
        """A timeout (``waited``) or a connection that could not be made: open, or stay open, from now."""
        with self._lock:
            opened = not self._open
            self._open = True
            self._trial_at = time.monotonic() + (self.open_for if waited else min(self.open_for, REFUSED_OPEN))
        if opened:
            log.warning(
                "redis at %s %s: not waited on for %.0fs, then one trial",
                self.name,
                "timed out" if waited else "refused a connection",
                self.open_for if waited else min(self.open_for, REFUSED_OPEN),
            )
            _report()


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(name: str, open_for: float) -> CircuitBreaker:
    """The process's breaker for the Redis server ``name`` (``host:port`` or a socket path)."""
    found = _breakers.get(name)
    if found is None:
        with _breakers_lock:
            found = _breakers.setdefault(name, CircuitBreaker(name, open_for))
    return found


def breaker_open() -> bool:
    """Whether any Redis server is being refused by this process right now."""
    return any(b.is_open for b in list(_breakers.values()))


def _report() -> None:
    metrics.REDIS_BREAKER_OPEN.set(1 if breaker_open() else 0)


def _forget_after_fork() -> None:
    """A forked child starts with every breaker closed (its pools reconnect anyway) and unheld locks."""
    global _breakers_lock
    _breakers.clear()
    _breakers_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, RedisTimeoutError | socket.timeout)


class BreakerRetry(Retry):
    """A connection's retry policy: once, at once, after a connection error; never after a timeout, nor while
    the breaker is open (unless this connection carries the trial)."""

    def __init__(self, connection: BreakerConnection, base: Retry) -> None:
        super().__init__(NoBackoff(), 1, base._supported_errors)
        self._connection = connection

    def call_with_retry(self, do: Callable[[], T], fail: Callable[[Exception], Any]) -> T:
        """Run ``do``; on a supported error call ``fail`` and, if the policy allows, run it once more."""
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                failures += 1
                fail(error)
                connection = self._connection
                if (
                    failures > self._retries
                    or _is_timeout(error)
                    or (connection.breaker.is_open and not connection.on_trial)
                ):
                    raise


class BreakerConnection:
    """Mixed in before a redis-py connection class: commands pass the process's breaker for their server."""

    open_for = 5.0  # set on each generated class (connection_class)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        path = getattr(self, "path", None)
        self.breaker = breaker_for(path or f"{self.host}:{self.port}", self.open_for)
        self.on_trial = False  # this connection carries the breaker's trial
        self.retry = BreakerRetry(self, self.retry)

    def _admit(self) -> None:
        if not self.on_trial and self.breaker.admit():
            self.on_trial = True

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        """Connect unless the breaker refuses; a connection that fails (or times out) opens it."""
        if self._sock:
            return
        self._admit()
        try:
            super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)
        except CircuitOpen:
            self.on_trial = False
            raise
        except RedisTimeoutError:
            self.on_trial = False
            self.breaker.failed(waited=True)
            raise
        except RedisConnectionError:
            self.on_trial = False
            self.breaker.failed(waited=False)
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send unless the breaker refuses; a write that times out opens it."""
        self._admit()
        try:
            super().send_packed_command(command, check_health=check_health)
        except RedisTimeoutError:
            self.on_trial = False
            self.breaker.failed(waited=True)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read an answer: any answer (an error reply too) closes the breaker, a timeout opens it."""
        try:
            response = super().read_response(*args, **kwargs)
        except RedisTimeoutError:
            self.on_trial = False
            self.breaker.failed(waited=True)
            raise
        except ResponseError:
            self.on_trial = False
            self.breaker.succeeded()
            raise
        except BaseException:
            self.on_trial = False
            raise
        self.on_trial = False
        self.breaker.succeeded()
        return response


_classes: dict[tuple[type, float], type] = {}


def connection_class(url: str, open_for: float) -> type[redis.connection.AbstractConnection]:
    """The breaker's connection class for clients of ``url`` (TCP, TLS for ``rediss://``, or a Unix socket)."""
    scheme = url.partition("://")[0].lower()
    if scheme.startswith("rediss"):
        base: type = redis.SSLConnection
    elif "unix" in scheme:
        base = redis.UnixDomainSocketConnection
    else:
        base = redis.Connection
    key = (base, open_for)
    if key not in _classes:
        _classes[key] = type(f"Breaker{base.__name__}", (BreakerConnection, base), {"open_for": open_for})
    return _classes[key]


def configure(config: dict[str, Any]) -> None:
    """Give the stores' Redis client (``REDIS_CONNECTION_CLASS``) and the rate limiter's storage the breaker.

    Call before the extensions read the settings. Nothing changes on the embedded stores, on a Redis
    Cluster (see ``SCHEMES``), or with ``SCOREBOARD_REDIS_BREAKER_OPEN=0``.
    """
    open_for = config.get("REDIS_BREAKER_OPEN", 0)
    url = config.get("REDIS_URL")
    if config.get("EMBEDDED_REDIS", True) or not url or open_for <= 0:
        return
    if url.partition("://")[0].lower() in SCHEMES:
        config["REDIS_CONNECTION_CLASS"] = connection_class(url, open_for)
    storage = config.get("RATELIMIT_STORAGE_URI") or ""
    if storage.partition("://")[0].lower() in SCHEMES:
        options = dict(config.get("RATELIMIT_STORAGE_OPTIONS") or {})
        options["connection_class"] = connection_class(storage, open_for)
        config["RATELIMIT_STORAGE_OPTIONS"] = options
    metrics.REDIS_BREAKER_OPEN.set(1 if breaker_open() else 0)
