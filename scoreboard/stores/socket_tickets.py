"""Socket tickets: short-lived, single-use stand-ins for a token in a board socket's URL.

A browser cannot set headers on a WebSocket, so a token would have to travel in the URL, where
proxies and access logs keep it. Instead the widget trades its token for a ticket over HTTP
(``POST /api/socket-ticket``) and opens the socket with ``?ticket=``: the ticket lives seconds
and is taken by its first redemption, so a copy left in a log opens nothing.

Redis key (``<p>`` is ``SCOREBOARD_REDIS_PREFIX``): ``<p>socket-ticket:<sha256 of the ticket>``,
a string holding what the ticket stands for (JSON), with the ticket's lifetime as its TTL. The
key names a hash of the ticket, so listing the keys reveals no ticket one could redeem. Every
command touches that one key, so on a Redis Cluster any slot serves it (no hash tag needed).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Protocol


def ticket_digest(ticket: str) -> str:
    """What a ticket is stored under: its SHA-256, so the store never holds a redeemable ticket."""
    return hashlib.sha256(ticket.encode()).hexdigest()


class SocketTickets(Protocol):
    """Tickets waiting for their one redemption."""

    def put(self, ticket: str, holder: str, ttl: int) -> None:
        """Keep ``holder`` (what the ticket stands for) under ``ticket`` for ``ttl`` seconds (at least 1)."""

    def take(self, ticket: str) -> str | None:
        """The holder of ``ticket``, removed in the same step (of two takes, one gets it); None if unknown or lapsed."""


class RedisSocketTickets:
    """One string per ticket; taken with ``GETDEL``, which reads and deletes in one atomic step."""

    def __init__(self, client, prefix: str) -> None:
        self.redis = client
        self.prefix = f"{prefix}socket-ticket:"

    def key(self, ticket: str) -> str:
        """The key of ``ticket``."""
        return self.prefix + ticket_digest(ticket)

    def put(self, ticket: str, holder: str, ttl: int) -> None:
        """Keep ``holder`` under ``ticket`` for ``ttl`` seconds."""
        self.redis.set(self.key(ticket), holder, ex=max(1, int(ttl)))

    def take(self, ticket: str) -> str | None:
        """The holder of ``ticket``, deleted as it is read."""
        return self.redis.getdel(self.key(ticket))


class MemorySocketTickets:
    """The same in one process, under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, tuple[str, float]] = {}

    def put(self, ticket: str, holder: str, ttl: int) -> None:
        """Keep ``holder`` under ``ticket`` for ``ttl`` seconds; lapsed tickets are dropped on the way."""
        now = time.monotonic()
        with self._lock:
            if len(self._tickets) > 1024:
                self._tickets = {k: v for k, v in self._tickets.items() if v[1] > now}
            self._tickets[ticket_digest(ticket)] = (holder, now + max(1, int(ttl)))

    def take(self, ticket: str) -> str | None:
        """The holder of ``ticket``, removed as it is read."""
        with self._lock:
            found = self._tickets.pop(ticket_digest(ticket), None)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]
