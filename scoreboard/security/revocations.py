"""Revoking tokens by ``jti``, and checking a token against the revocations in force.

The list lives in the shared store (``stores.revocation_list``). Each web process also keeps
a copy, loaded when its listener subscribes and kept current from the revocations channel
(``live.relay`` feeds it), so a token check costs no round trip while the listener is
subscribed; otherwise it asks the store.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, current_app
from redis.exceptions import RedisError

from ..stores import get_stores

log = logging.getLogger(__name__)

_EXTENSION = "scoreboard.revocation_copy"


class RevocationCopy:
    """This process's copy of the revocations in force; trusted only while ``current`` is set."""

    def __init__(self, enabled: bool = True) -> None:
        # Off under in-process tests: they reset Redis between tests, which a copy would not notice.
        self.enabled = enabled
        self.current = False  # set by the listener while subscribed
        self._revoked: dict[str, float] = {}

    def load(self, revoked: dict[str, float]) -> None:
        """Replace the copy with the list read from the store (after subscribing)."""
        self._revoked = dict(revoked)

    def note(self, jti: str, lapses: float) -> None:
        """Record one revocation (from the channel, or made by this process and not to wait for the echo)."""
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


def revoke(claims: dict) -> None:
    """Revoke the token with these claims until it would have expired anyway."""
    revoke_jti(claims["jti"], claims.get("exp", 0) - time.time() + current_app.config["JWT_DECODE_LEEWAY"])


def init_app(app: Flask) -> None:
    """Create the process's copy (kept current by the live relay's listener)."""
    app.extensions[_EXTENSION] = RevocationCopy(enabled=not app.testing)
