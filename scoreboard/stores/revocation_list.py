"""Revoked token ids (logout, bans), each until the token would have expired anyway; and per-user cutoffs.

A revocation is also announced on the revocations channel, so every process can keep a copy
(``security.revocations``) and check tokens without a round trip.

A per-user cutoff refuses every token of one user issued (``iat``) before it. It is kept beside the
token ids (``<p>revoked-users``: user id -> cutoff, epoch s) and announced on the same channel, in
the same ``{"jti", "exp"}`` message, under a reserved name no token id can have: NUL, which no
request may carry, then ``user``, NUL, the user id, NUL and the cutoff (:func:`user_mark`). Every
process's copy and its re-load after (re)subscribing then take cutoffs as they take token ids.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Protocol

from .channels import MemoryBus

USER_MARK = "\x00user\x00"


def announcement(jti: str, lapses: float) -> str:
    """The channel message announcing a revocation."""
    return json.dumps({"jti": jti, "exp": lapses})


def user_mark(user_id: str, cutoff: float) -> str:
    """The reserved name announcing ``user_id``'s cutoff where a token id would go (never a real ``jti``)."""
    return f"{USER_MARK}{user_id}\x00{cutoff!r}"


def read_user_mark(name: str) -> tuple[str, float] | None:
    """``(user id, cutoff)`` if ``name`` is a :func:`user_mark`, else None (a token id)."""
    if not name.startswith(USER_MARK):
        return None
    user_id, _, cutoff = name[len(USER_MARK) :].rpartition("\x00")
    try:
        return user_id, float(cutoff)
    except ValueError:
        return None


class RevocationList(Protocol):
    """Token ids refused until a lapse time."""

    def revoke(self, jti: str, ttl: float) -> float:
        """Refuse ``jti`` for ``ttl`` seconds from now (at least 1; only ever extended); returns when it lapses."""

    def is_revoked(self, jti: str) -> bool:
        """Whether ``jti`` is revoked and its revocation has not lapsed."""

    def in_force(self) -> dict[str, float]:
        """Every revocation in force: ``{jti: lapse time}``, each user's cutoff among them as a :func:`user_mark`."""

    def revoke_user(self, user_id: str, cutoff: float, ttl: float) -> float:
        """Refuse ``user_id``'s tokens issued before ``cutoff`` (only ever moved later) and announce it; kept
        ``ttl`` seconds past the cutoff at least (a token issued before then has expired by then). Returns the
        cutoff in force."""

    def check(self, jti: str | None, user_id: str) -> tuple[bool, float | None]:
        """In one round trip: whether ``jti`` is revoked, and ``user_id``'s cutoff (None without one)."""


REVOKE = """
-- KEYS: the revocation list.  ARGV: now, lapse time, jti, channel, announcement
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[3])  -- adds, or only ever extends
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


REVOKE_USER = """
-- KEYS: the per-user cutoffs.  ARGV: oldest cutoff kept, cutoff, user id, channel, announcement
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[3])  -- adds, or only ever moves later
redis.call('PUBLISH', ARGV[4], ARGV[5])
return redis.call('ZSCORE', KEYS[1], ARGV[3])
"""


class RedisRevocationList:
    """A sorted set ``jti -> lapse time``; lapsed entries are trimmed as new ones come.

    A revocation is one Lua script (trim, add, announce), atomic on one Redis and on a cluster
    alike (a cluster refuses a MULTI holding a PUBLISH).
    """

    def __init__(self, client, prefix: str, channel: str) -> None:
        self.redis = client
        self.key = f"{prefix}revoked"
        self.users_key = f"{prefix}revoked-users"
        self.channel = channel
        self._revoke = client.register_script(REVOKE)
        self._revoke_user = client.register_script(REVOKE_USER)

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
        """Every revocation in force: ``{jti: lapse time}``, each user's cutoff among them as a :func:`user_mark`
        (lapsing never: a cutoff only refuses tokens issued before it)."""
        revoked = dict(self.redis.zrangebyscore(self.key, f"({time.time()}", "+inf", withscores=True))
        for user_id, cutoff in self.redis.zrange(self.users_key, 0, -1, withscores=True):
            revoked[user_mark(user_id, cutoff)] = math.inf
        return revoked

    def revoke_user(self, user_id: str, cutoff: float, ttl: float) -> float:
        """Refuse ``user_id``'s tokens issued before ``cutoff`` and announce it; returns the cutoff in force."""
        now = time.time()
        message = announcement(user_mark(user_id, cutoff), cutoff + max(1, int(ttl)))
        kept = now - max(1, int(ttl))  # older cutoffs refuse only tokens that have expired
        args = [kept, cutoff, user_id, self.channel, message]
        return float(self._revoke_user(keys=[self.users_key], args=args))

    def check(self, jti: str | None, user_id: str) -> tuple[bool, float | None]:
        """Whether ``jti`` is revoked and ``user_id``'s cutoff, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zscore(self.key, jti or "")
        pipe.zscore(self.users_key, user_id)
        lapses, cutoff = pipe.execute()
        return bool(jti) and lapses is not None and lapses > time.time(), cutoff


class MemoryRevocationList:
    """The same in one process; announcements go to the process's listeners."""

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._lock = threading.Lock()
        self._revoked: dict[str, float] = {}
        self._users: dict[str, float] = {}

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
            revoked = {jti: lapses for jti, lapses in self._revoked.items() if lapses > now}
            revoked.update({user_mark(user_id, cutoff): math.inf for user_id, cutoff in self._users.items()})
        return revoked

    def revoke_user(self, user_id: str, cutoff: float, ttl: float) -> float:
        """Refuse ``user_id``'s tokens issued before ``cutoff``; returns the cutoff in force."""
        with self._lock:
            cutoff = self._users[user_id] = max(cutoff, self._users.get(user_id, 0))
        self._bus.publish("revoked", announcement(user_mark(user_id, cutoff), cutoff + max(1, int(ttl))))
        return cutoff

    def check(self, jti: str | None, user_id: str) -> tuple[bool, float | None]:
        """Whether ``jti`` is revoked, and ``user_id``'s cutoff."""
        return bool(jti) and self.is_revoked(jti), self._users.get(user_id)
