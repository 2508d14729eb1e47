"""Revoking tokens by ``jti`` or every token of one user, and checking a token against the revocations in force.

The list lives in the shared store (``stores.revocation_list``). Each web process also keeps
a copy, loaded when its listener subscribes and kept current from the revocations channel
(``live.relay`` feeds it), so a token check costs no round trip while the listener is
subscribed; otherwise it asks the store (one round trip for both checks).

A user's tokens are revoked all at once by a cutoff: every token of theirs issued (``iat``)
before it is refused, a token issued from the cutoff on is not. ``iat`` counts whole seconds, so
the cutoff is the next whole second after the revocation (a token minted in the rest of that
second is refused too: on the safe side). A token without ``iat`` cannot show it came after,
and is refused once its user has a cutoff.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app
from redis.exceptions import RedisError

from ..stores import get_stores
from ..stores.revocation_list import read_user_mark

log = logging.getLogger(__name__)

_EXTENSION = "scoreboard.revocation_copy"


class RevocationCopy:
    """This process's copy of the revocations in force; trusted only while ``current`` is set."""

    def __init__(self, enabled: bool = True) -> None:
        # Off under in-process tests: they reset Redis between tests, which a copy would not notice.
        self.enabled = enabled
        self.current = False  # set by the listener while subscribed
        self._revoked: dict[str, float] = {}
        self._users: dict[str, float] = {}  # user id -> cutoff: their tokens issued before it are refused

    def load(self, revoked: dict[str, float]) -> None:
        """Replace the copy with the list read from the store (after subscribing)."""
        users: dict[str, float] = {}
        jtis = {}
        for name, lapses in revoked.items():
            cut = read_user_mark(name)
            if cut is None:
                jtis[name] = lapses
            else:
                users[cut[0]] = max(cut[1], users.get(cut[0], 0))
        self._revoked, self._users = jtis, users

    def note(self, jti: str, lapses: float) -> None:
        """Record one revocation (from the channel, or made by this process and not to wait for the echo)."""
        cut = read_user_mark(jti)
        if cut is not None:
            self.note_user(*cut)
            return
        now = time.time()
        if len(self._revoked) > 1024:  # revocations are rare: dropping lapsed ones now and then is enough
            self._revoked = {j: t for j, t in self._revoked.items() if t > now}
        if lapses > now:
            self._revoked[jti] = max(lapses, self._revoked.get(jti, 0))

    def is_revoked(self, jti: str) -> bool | None:
        """Whether ``jti`` is revoked, from memory; None when the copy may be stale."""
        if not (self.enabled and self.current):
            return None
        return self._revoked.get(jti, 0) > time.time()

    def note_user(self, user_id: str, cutoff: float) -> None:
        """Record a user's cutoff (only ever moved later)."""
        self._users[user_id] = max(cutoff, self._users.get(user_id, 0))

    def cutoff(self, user_id: str) -> float | None:
        """``user_id``'s cutoff from memory: 0 for none, None when the copy may be stale."""
        if not (self.enabled and self.current):
            return None
        return self._users.get(user_id, 0)


def _issued_before(claims: dict, cutoff: float | None) -> bool:
    """Whether a token with these claims was issued before ``cutoff`` (no ``iat``: it cannot show otherwise)."""
    if not cutoff:
        return False
    iat = claims.get("iat")
    return not isinstance(iat, int | float) or iat < cutoff


def is_refused(claims: dict) -> bool:
    """Whether the token with these (signed) claims is revoked: by its ``jti``, or by its user's cutoff.

    From the copy while it is current (no round trip), else from the store in one round trip; the store
    down fails open, as :func:`is_revoked` does.
    """
    jti = claims.get("jti") or None
    user_id = str(claims.get("sub"))
    copy = revocation_copy()
    known, cutoff = (copy.is_revoked(jti) if jti else False), copy.cutoff(user_id)
    if known is not None and cutoff is not None:
        return known or _issued_before(claims, cutoff)
    try:
        known, cutoff = get_stores().revocations.check(jti, user_id)
    except RedisError as exc:
        log.warning("revocation list unavailable, accepting token: %s", exc)
        return False
    return known or _issued_before(claims, cutoff)


def revocation_copy(app: Flask | None = None) -> RevocationCopy:
    """The process's copy, bound in :func:`init_app`."""
    return (app or current_app).extensions[_EXTENSION]


def is_revoked(jti: str) -> bool:
    """Whether the token ``jti`` is revoked: from the copy while it is current, else from the store.

    The store down fails open: tokens are short-lived and bans are enforced from the database on every claim.
    """
    known = revocation_copy().is_revoked(jti)
    if known is not None:
        return known
    try:
        return get_stores().revocations.is_revoked(jti)
    except RedisError as exc:
        log.warning("revocation list unavailable, accepting token: %s", exc)
        return False


def revoke_jti(jti: str, ttl: float) -> None:
    """Refuse tokens with this ``jti`` for ``ttl`` seconds: in this process at once, elsewhere within milliseconds."""
    lapses = get_stores().revocations.revoke(jti, max(1, ttl))
    revocation_copy().note(jti, lapses)


def revoke_user(user_id: str, ttl: float) -> float:
    """Refuse every token of ``user_id`` issued before the next whole second; returns that cutoff (epoch s).

    Through the same store and channel as a ``jti`` revocation: this process at once, the others within
    milliseconds, a process started later from the store. Kept ``ttl`` seconds at least.
    """
    cutoff = get_stores().revocations.revoke_user(user_id, math.floor(time.time()) + 1, ttl)
    revocation_copy().note_user(user_id, cutoff)
    return cutoff


def revoke(claims: dict) -> None:
    """Revoke the token with these claims until it would have expired anyway."""
    revoke_jti(claims["jti"], claims.get("exp", 0) - time.time() + current_app.config["JWT_DECODE_LEEWAY"])


def init_app(app: Flask) -> None:
    """Create the process's copy (kept current by the live relay's listener)."""
    app.extensions[_EXTENSION] = RevocationCopy(enabled=not app.testing)
