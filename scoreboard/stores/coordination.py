"""Coordination between workers: queue a recompute at most once, run one at a time, bound their rate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from redis.exceptions import LockError

log = logging.getLogger(__name__)


class Coordination(Protocol):
    """The refresh slot (queued-once flag), the refresh lock and the last recompute's time."""

    def claim_refresh_slot(self) -> bool:
        """True if no recompute is queued yet: the caller should queue one."""

    def release_refresh_slot(self) -> None:
        """Let the next change queue a recompute."""

    def refresh_lock(self, timeout: float = 4, wait: float = 15) -> AbstractContextManager[None]:
        """Hold the recompute lock; raises :class:`redis.exceptions.LockError` if busy for ``wait`` seconds."""

    def last_refresh_at(self) -> float:
        """When the last recompute started (epoch seconds), or 0."""

    def mark_refresh(self) -> None:
        """Record that a recompute starts now, for the rate bound."""


class RedisCoordination:
    """The flags and the lock in Redis, shared by every process."""

    def __init__(self, client, prefix: str) -> None:
        self.redis = client
        self.pending_key, self.lock_key, self.last_key = (
            f"{prefix}refresh:pending",
            f"{prefix}refresh:lock",
            f"{prefix}refresh:last",
        )

    def claim_refresh_slot(self) -> bool:
        """True if no recompute is queued yet (the flag lapses after 30 s, should its task be lost)."""
        return bool(self.redis.set(self.pending_key, "1", nx=True, ex=30))

    def release_refresh_slot(self) -> None:
        """Let the next change queue a recompute."""
        self.redis.delete(self.pending_key)

    @contextmanager
    def refresh_lock(self, timeout: float = 4, wait: float = 15) -> Iterator[None]:
        """A lock so one recompute runs at a time across all workers.

        Its TTL is short and renewed every ``timeout / 3`` seconds while the recompute runs, so
        a worker killed mid-run (SIGKILL, out of memory) holds the others up for ``timeout``
        seconds at most, however long a rebuild may take.
        """
        # Not thread-local: the renewal thread must see the token the recompute's thread acquired.
        lock = self.redis.lock(self.lock_key, timeout=timeout, blocking_timeout=wait, thread_local=False)
        if not lock.acquire():
            raise LockError("board refresh lock busy")
        done = threading.Event()

        def renew() -> None:
            while not done.wait(timeout / 3):
                try:
                    lock.reacquire()
                except Exception as exc:  # Redis gone or lock lost: the recompute fails or finishes alone
                    log.warning("board refresh lock not renewed: %s", exc)
                    return

        renewer = threading.Thread(target=renew, name="refresh-lock-renewal", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join(timeout)
            try:
                lock.release()
            except LockError as exc:  # it expired: another recompute may have run alongside this one
                log.warning("board refresh lock had expired before release: %s", exc)

    def last_refresh_at(self) -> float:
        """When the last recompute started (epoch seconds), or 0."""
        return int(self.redis.get(self.last_key) or 0) / 1000

    def mark_refresh(self) -> None:
        """Record that a recompute starts now, for the rate bound."""
        self.redis.set(self.last_key, int(time.time() * 1000), ex=60)


class MemoryCoordination:
    """The same in one process."""

    def __init__(self) -> None:
        self._flag_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._pending = False
        self._last_refresh = 0.0

    def claim_refresh_slot(self) -> bool:
        """True if no recompute is queued yet."""
        with self._flag_lock:
            taken, self._pending = self._pending, True
        return not taken

    def release_refresh_slot(self) -> None:
        """Let the next change queue a recompute."""
        self._pending = False

    @contextmanager
    def refresh_lock(self, timeout: float = 4, wait: float = 15) -> Iterator[None]:
        """One recompute at a time in this process (``timeout`` has no use: a thread cannot die holding it)."""
        if not self._refresh_lock.acquire(timeout=wait):
            raise LockError("board refresh lock busy")
        try:
            yield
        finally:
            self._refresh_lock.release()

    def last_refresh_at(self) -> float:
        """When the last recompute started (epoch seconds)."""
        return self._last_refresh

    def mark_refresh(self) -> None:
        """Record that a recompute starts now, for the rate bound."""
        self._last_refresh = time.time()
