"""Coordination between workers: queue a recompute at most once, run one at a time, bound their rate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from redis.exceptions import LockError

from .cluster import on_cluster

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

    def begin_refresh(self, min_interval: float) -> float:
        """Release the refresh slot and book this recompute's start: ``min_interval`` seconds after the last one's,
        or now if that has passed. Returns how long to wait before starting (0 when it may start now)."""

    def hold_refresh(self, min_interval: float, ttl: float = 5, take: bool = False) -> float | None:
        """While a recompute keeps running (``board.refresh``'s drain): take the refresh slot as the running one's
        (changes find it taken and queue no run; the running one reads them next), or keep it, for ``ttl`` seconds,
        and book the next start as :meth:`begin_refresh` does. Returns how long to wait, or None when a change
        has queued a run already (or holding is not supported): the caller then ends with a released slot.
        ``take``: take the slot even from a queued run's flag (the run that starts is the one it queued)."""


# Both scripts below end here: book the recompute's start at least ``interval`` after the last, answer the wait (ms).
_BOOK_START = """
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local start = now
local due = tonumber(redis.call('GET', KEYS[2]) or '0') + interval
if due > now and due - now <= interval then start = due end
redis.call('SET', KEYS[2], start, 'EX', 60)
return start - now
"""

# KEYS: refresh slot, last start. ARGV: now (ms), the least interval between starts (ms), the hold's ttl (ms), "1" to
# take the slot whatever holds it.
# The slot holds "draining" while a running recompute holds it, "1" when a change has queued a run.
HOLD_REFRESH = (
    """
local cur = redis.call('GET', KEYS[1])
if ARGV[4] ~= '1' and cur and cur ~= 'draining' then return -1 end
redis.call('SET', KEYS[1], 'draining', 'PX', ARGV[3])
"""
    + _BOOK_START
)

# KEYS: refresh slot, last start. ARGV: now (ms), the least interval between starts (ms).
BEGIN_REFRESH = (
    """
redis.call('DEL', KEYS[1])
"""
    + _BOOK_START
)


def _booked_start(last: float, now: float, min_interval: float) -> float:
    """When a recompute may start, ``min_interval`` after ``last``; now if ``last`` is odd (a clock stepped back)."""
    due = last + min_interval
    return due if 0 < due - now <= min_interval else now


class RedisCoordination:
    """The flags and the lock in Redis, shared by every process."""

    def __init__(self, client, prefix: str) -> None:
        self.redis = client
        self.pending_key, self.lock_key, self.last_key = (
            f"{prefix}refresh:pending",
            f"{prefix}refresh:lock",
            f"{prefix}refresh:last",
        )
        cluster = on_cluster(client)
        self._begin = None if cluster else client.register_script(BEGIN_REFRESH)
        self._hold = None if cluster else client.register_script(HOLD_REFRESH)

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

    def begin_refresh(self, min_interval: float) -> float:
        """Release the slot and book the start in one script (a cluster: three calls, the keys' slots differ)."""
        if self._begin is None:
            self.release_refresh_slot()
            now = time.time()
            start = _booked_start(self.last_refresh_at(), now, min_interval)
            self.redis.set(self.last_key, int(start * 1000), ex=60)
            return start - now
        wait_ms = self._begin(
            keys=[self.pending_key, self.last_key], args=[int(time.time() * 1000), int(min_interval * 1000)]
        )
        return int(wait_ms) / 1000

    def hold_refresh(self, min_interval: float, ttl: float = 5, take: bool = False) -> float | None:
        """Take or keep the slot for the running recompute and book its next start, in one script (a cluster:
        None, the keys' slots differ, so each run there is queued as usual)."""
        if self._hold is None:
            return None
        now_ms = int(time.time() * 1000)
        args = [now_ms, int(min_interval * 1000), int(ttl * 1000), "1" if take else "0"]
        wait_ms = int(self._hold(keys=[self.pending_key, self.last_key], args=args))
        return None if wait_ms < 0 else wait_ms / 1000


class MemoryCoordination:
    """The same in one process."""

    def __init__(self) -> None:
        self._flag_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._pending = False
        self._draining = False  # the slot is held by a running recompute, not by a queued one
        self._last_refresh = 0.0

    def claim_refresh_slot(self) -> bool:
        """True if no recompute is queued yet."""
        with self._flag_lock:
            taken, self._pending = self._pending, True
        return not taken

    def release_refresh_slot(self) -> None:
        """Let the next change queue a recompute."""
        self._pending = self._draining = False

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

    def hold_refresh(self, min_interval: float, ttl: float = 5, take: bool = False) -> float | None:
        """Take or keep the slot for the running recompute (None if a change queued a run) and book its start."""
        with self._flag_lock:
            if self._pending and not self._draining and not take:
                return None
            self._pending = self._draining = True
        now = time.time()
        self._last_refresh = start = _booked_start(self._last_refresh, now, min_interval)
        return start - now

    def begin_refresh(self, min_interval: float) -> float:
        """Release the slot and book the start."""
        self._pending = self._draining = False
        now = time.time()
        self._last_refresh = start = _booked_start(self._last_refresh, now, min_interval)
        return start - now
