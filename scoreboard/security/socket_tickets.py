"""Socket tickets: what a browser puts in a board socket's URL instead of its token.

Browsers cannot set headers on a WebSocket, so a token would travel as ``?token=``, and URLs
end up in proxies' and servers' access logs. Instead the page trades its token for a ticket
(``POST /api/socket-ticket``, with the token as a Bearer header) and opens the socket with
``?ticket=``. A ticket is 256 random bits, lives :data:`TICKET_SECONDS` (never past the token's
own expiry), and is taken by its first redemption, atomically (``stores.socket_tickets``), so
two handshakes with one ticket get one socket. It stands for the token it was issued against:
its user, its ``jti``, its ``iat`` and its ``exp``, so the socket it opens ends when that token does,
and a revocation of the token (or of every token of its user) refuses the ticket too.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ApiError
from ..stores import get_stores
from .revocations import is_refused

TICKET_SECONDS = 30
# A ticket is 43 characters; anything much longer is refused before the store is asked.
MAX_TICKET_LENGTH = 128


@dataclass(frozen=True)
class SocketHolder:
    """Who a board socket was opened for: the token's user, its ``jti`` (None if it has none), its ``exp`` and
    its ``iat`` (None if it has none; a user's revocation cutoff compares with it)."""

    user_id: str
    jti: str | None
    expires_at: float
    issued_at: float | None = None

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> SocketHolder:
        """The holder named by a verified token's claims."""
        jti = claims.get("jti")
        iat = claims.get("iat")
        return cls(
            str(claims["sub"]),
            jti if isinstance(jti, str) and jti else None,
            float(claims["exp"]),
            float(iat) if isinstance(iat, int | float) else None,
        )

    def claims(self) -> dict[str, Any]:
        """The token claims a revocation check reads (``sub``, ``jti``, ``iat``)."""
        found: dict[str, Any] = {"sub": self.user_id, "jti": self.jti}
        if self.issued_at is not None:
            found["iat"] = self.issued_at
        return found

    def dumps(self) -> str:
        """As stored under a ticket."""
        return json.dumps({"sub": self.user_id, "jti": self.jti, "exp": self.expires_at, "iat": self.issued_at})

    @classmethod
    def loads(cls, text: str) -> SocketHolder:
        """Read back what :meth:`dumps` wrote."""
        data = json.loads(text)
        iat = data.get("iat")
        return cls(data["sub"], data["jti"], float(data["exp"]), None if iat is None else float(iat))


def issue_ticket(claims: Mapping[str, Any]) -> tuple[str, int]:
    """A new ticket for the token with these (verified) claims, and its lifetime in seconds."""
    holder = SocketHolder.of(claims)
    ttl = max(1, min(TICKET_SECONDS, int(holder.expires_at - time.time())))
    ticket = secrets.token_urlsafe(32)
    get_stores().socket_tickets.put(ticket, holder.dumps(), ttl)
    return ticket, ttl


def redeem_ticket(ticket: str) -> SocketHolder:
    """The holder of ``ticket``, which is spent from now on; a 401 :class:`ApiError` if it cannot open a socket."""
    stored = get_stores().socket_tickets.take(ticket) if 0 < len(ticket) <= MAX_TICKET_LENGTH else None
    if stored is None:
        raise ApiError(401, "ticket_invalid", "The socket ticket is unknown, used or expired.")
    holder = SocketHolder.loads(stored)
    if holder.expires_at <= time.time():
        raise ApiError(401, "token_expired", "The token has expired.")
    if is_refused(holder.claims()):
        raise ApiError(401, "token_revoked", "The token has been revoked.")
    return holder
