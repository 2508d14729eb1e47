"""Revoked token ids (logout, bans), each until the token would have expired anyway.

A revocation is also announced on the revocations channel, so every process can keep a copy
(``security.revocations``) and check tokens without a round trip.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Protocol

from .channels import MemoryBus


def announcement(jti: str, lapses: float) -> str:
    """The channel message announcing a revocation."""
    return json.dumps({"jti": jti, "exp": lapses})


class RevocationList(Protocol):
    """Token ids refused until a lapse time."""

    def revoke(self, jti: str, ttl: float) -> float:
        """Refuse ``jti`` for ``ttl`` seconds from now (at least 1; only ever extended); returns when it lapses."""

    def is_revoked(self, jti: str) -> bool:
        """Whether ``jti`` is revoked and its revocation has not lapsed."""

    def in_force(self) -> dict[str, float]:
        """Every revocation in force: ``{jti: lapse time}``."""


REVOKE = """
-- KEYS: the revocation list.  ARGV: now, lapse time, jti, channel, announcement
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[3])  -- adds, or only ever extends
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


class RedisRevocationList:
    """A sorted set ``jti -> lapse time``; lapsed entries are trimmed as new ones come.

    A revocation is one Lua script (trim, add, announce), atomic on one Redis and on a cluster
    alike (a cluster refuses a MULTI holding a PUBLISH).
    """

    def __init__(self, client, prefix: str, channel: str) -> None:
        self.redis = client
        self.key = f"{prefix}revoked"
        self.channel = channel
        self._revoke = client.register_script(REVOKE)

    def revoke(self, jti: str, ttl: float) -> float:
        """Refuse ``jti`` for ``ttl`` seconds from now and announce it; returns when the revocation lapses."""
        now = time.time()
        lapses = now + max(1, int(ttl))
        self._revoke(keys=[self.key], args=[now, lapses, jti, self.channel, announcement(jti, lapses)])
        return lapses

    def is_revoked(self, jti: str) -> bool:
        """Whether ``jti`` is revoked (and its revocation has not lapsed)."""
        lapses = self.redis.zscore(self.key, jti)
        return lapses is not None and lapses > time.time()

    def in_force(self) -> dict[str, float]:
        """Every revocation in force: ``{jti: lapse time}``."""
        return dict(self.redis.zrangebyscore(self.key, f"({time.time()}", "+inf", withscores=True))


class MemoryRevocationList:
    """The same in one process; announcements go to the process's listeners."""

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._lock = threading.Lock()
        self._revoked: dict[str, float] = {}

    def revoke(self, jti: str, ttl: float) -> float:
        """Refuse ``jti`` until ``ttl`` seconds from now; returns when the revocation lapses."""
        lapses = time.time() + max(1, int(ttl))
        with self._lock:
            lapses = self._revoked[jti] = max(lapses, self._revoked.get(jti, 0))
        self._bus.publish("revoked", announcement(jti, lapses))
        return lapses

    def is_revoked(self, jti: str) -> bool:
        """Whether ``jti`` was revoked (and its revocation has not lapsed)."""
        return self._revoked.get(jti, 0) > time.time()

    def in_force(self) -> dict[str, float]:
        """Every revocation in force: ``{jti: lapse time}``."""
        now = time.time()
        with self._lock:
            return {jti: lapses for jti, lapses in self._revoked.items() if lapses > now}
