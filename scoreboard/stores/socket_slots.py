"""Open board sockets per client IP, counted across every web process, for the per-IP cap.

Each open socket holds a slot: a member of its IP's sorted set, scored with the time the slot
lapses. The process holding the socket renews its slots while the socket is open (a heartbeat)
and gives the slot back when it closes; the slots of a process that died without closing its
sockets lapse on their own, so a crash never locks an address out for longer than one lapse.

Redis key (``<p>`` is ``SCOREBOARD_REDIS_PREFIX``): ``<p>sockets:<ip>``, a sorted set
``socket id -> lapse time`` (epoch seconds), expiring as a whole once every slot in it has
lapsed. Every command and script touches that one key, so on a Redis Cluster any slot serves
it (no hash tag needed). Times come from the web processes' clocks, which run NTP (as the tie
order already needs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Protocol


class SocketSlots(Protocol):
    """Slots per IP, each held by one open socket until it is given back or lapses."""

    def acquire(self, ip: str, socket_id: str, cap: int, ttl: float) -> bool:
        """Hold a slot of ``ip`` for ``socket_id`` for ``ttl`` seconds, unless ``cap`` are held already.

        Counting and taking are one atomic step: of two processes racing for the last slot, one gets it.
        """

    def renew(self, held: Mapping[str, Iterable[str]], ttl: float) -> None:
        """Keep the slots still held (``{ip: socket ids}``) for another ``ttl`` seconds; a slot given back stays so."""

    def release(self, ip: str, socket_id: str) -> None:
        """Give the slot of ``socket_id`` back."""

    def count(self, ip: str) -> int:
        """How many slots of ``ip`` are held now."""


ACQUIRE = """
-- KEYS: the IP's slots.  ARGV: now, lapse time, socket id, cap, key lifetime (s)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisSocketSlots:
    """A sorted set per IP; taking a slot is one Lua script (trim the lapsed, count, add)."""

    def __init__(self, client, prefix: str) -> None:
        self.redis = client
        self.prefix = f"{prefix}sockets:"
        self._acquire = client.register_script(ACQUIRE)

    def key(self, ip: str) -> str:
        """The key of ``ip``'s slots."""
        return self.prefix + ip

    def acquire(self, ip: str, socket_id: str, cap: int, ttl: float) -> bool:
        """Hold a slot for ``socket_id`` unless ``ip`` holds ``cap`` already."""
        now = time.time()
        args = [now, now + ttl, socket_id, cap, int(ttl) + 1]
        return bool(self._acquire(keys=[self.key(ip)], args=args))

    def renew(self, held: Mapping[str, Iterable[str]], ttl: float) -> None:
        """Push the lapse of every slot still held ``ttl`` seconds out, in one round trip."""
        lapses = time.time() + ttl
        with self.redis.pipeline(transaction=False) as pipe:
            for ip, socket_ids in held.items():
                members = dict.fromkeys(socket_ids, lapses)
                if members:
                    pipe.zadd(self.key(ip), members, xx=True)  # only slots still there: one given back stays so
                    pipe.expire(self.key(ip), int(ttl) + 1)
            pipe.execute()

    def release(self, ip: str, socket_id: str) -> None:
        """Give the slot back."""
        self.redis.zrem(self.key(ip), socket_id)

    def count(self, ip: str) -> int:
        """Slots of ``ip`` that have not lapsed."""
        return int(self.redis.zcount(self.key(ip), f"({time.time()}", "+inf"))


class MemorySocketSlots:
    """The same in one process, under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, dict[str, float]] = {}

    def acquire(self, ip: str, socket_id: str, cap: int, ttl: float) -> bool:
        """Hold a slot for ``socket_id`` unless ``ip`` holds ``cap`` already."""
        now = time.time()
        with self._lock:
            slots = {s: lapse for s, lapse in self._slots.get(ip, {}).items() if lapse > now}
            if len(slots) >= cap:
                self._slots[ip] = slots
                return False
            slots[socket_id] = now + ttl
            self._slots[ip] = slots
            return True

    def renew(self, held: Mapping[str, Iterable[str]], ttl: float) -> None:
        """Push the lapse of every slot still held ``ttl`` seconds out."""
        lapses = time.time() + ttl
        with self._lock:
            for ip, socket_ids in held.items():
                slots = self._slots.get(ip, {})
                for socket_id in socket_ids:
                    if socket_id in slots:
                        slots[socket_id] = lapses

    def release(self, ip: str, socket_id: str) -> None:
        """Give the slot back."""
        with self._lock:
            slots = self._slots.get(ip)
            if slots is not None:
                slots.pop(socket_id, None)
                if not slots:
                    del self._slots[ip]

    def count(self, ip: str) -> int:
        """Slots of ``ip`` that have not lapsed."""
        now = time.time()
        with self._lock:
            return sum(1 for lapse in self._slots.get(ip, {}).values() if lapse > now)
