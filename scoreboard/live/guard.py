"""Who may open a board socket, which board it shows, and what a client may send on it.

Checked in the HTTP handshake, before the socket is accepted: the browser's Origin
(against cross-site WebSocket hijacking), the board asked for (``?period=``: ``all``, the
default, or the current ``day``, ``week`` or ``month``), the credential (a socket ticket, or a
token; needed unless the board is public), and a per-IP cap on open sockets, counted across
every web process (``stores.socket_slots``; per process while Redis is down).
"""

import json
import logging
import os
import threading
import time
import uuid
from collections import Counter, deque
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import get_jwt
from redis.exceptions import RedisError

from ..errors import error_response
from ..periods import ALL, KINDS
from ..security.socket_tickets import SocketHolder, redeem_ticket
from ..security.tokens import verify_token
from ..stores import get_stores
from ..stores.socket_slots import SocketSlots

log = logging.getLogger(__name__)

CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
# The socket's token expired or was revoked (reason "token expired" / "token revoked"): get a fresh one.
CLOSE_TOKEN_ENDED = 4001
# A socket's slot in the shared count lapses this long after its process last renewed it, so the
# sockets of a process that died without closing them stop counting within a minute.
SLOT_TTL = 60.0
SLOT_RENEWAL = SLOT_TTL / 3


class PolicyViolation(Exception):
    """A client broke the socket rules; close with ``code``."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def origin_allowed(origin: str, allowed: list[str], host: str) -> bool:
    """Same origin is always allowed; others only if listed (``*`` lists all)."""
    if "*" in allowed or origin.rstrip("/") in allowed:
        return True
    return urlsplit(origin).netloc == host


class SocketCounter:
    """Open sockets per client IP in this process (the cap's fallback while the shared count is unreachable)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open = Counter()

    def count(self, ip: str) -> int:
        """Sockets ``ip`` holds now."""
        return self._open[ip]

    def opened(self, ip: str) -> None:
        """Count a socket in."""
        with self._lock:
            self._open[ip] += 1

    def closed(self, ip: str) -> None:
        """Count a socket out."""
        with self._lock:
            self._open[ip] -= 1
            if self._open[ip] <= 0:
                del self._open[ip]


class SocketCap:
    """The per-IP cap on open sockets: one count across every web process, in the shared store.

    Each admitted socket holds a slot (``stores.socket_slots``) until it closes; a thread per
    process renews the slots of its open sockets every :data:`SLOT_RENEWAL` seconds, so those of a
    process that died lapse after :data:`SLOT_TTL`. While the store is unreachable, sockets are
    admitted against this process's own count instead (and count only there until they close).
    """

    def __init__(self, slots: SocketSlots, ttl: float = SLOT_TTL, renewal: float = SLOT_RENEWAL) -> None:
        self.slots = slots
        self.ttl = ttl
        self.renewal = renewal
        self.local = SocketCounter()
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, bool]] = {}  # socket id -> (ip, holds a slot in the store)
        self._renewing: int | None = None  # pid whose renewal thread runs

    def admit(self, ip: str, cap: int) -> str | None:
        """A socket id holding one of ``ip``'s ``cap`` places, or None when they are all taken."""
        socket_id = uuid.uuid4().hex
        try:
            shared = self.slots.acquire(ip, socket_id, cap, self.ttl)
            if not shared:
                return None
        except RedisError as exc:
            log.warning("shared socket count unavailable, capping sockets per process: %s", exc)
            shared = False
            if self.local.count(ip) >= cap:
                return None
        self.local.opened(ip)
        with self._lock:
            self._held[socket_id] = (ip, shared)
        self._start_renewing()
        return socket_id

    def release(self, socket_id: str) -> None:
        """The socket closed: give its place back."""
        with self._lock:
            ip, shared = self._held.pop(socket_id, (None, False))
        if ip is None:
            return
        self.local.closed(ip)
        if shared:
            try:
                self.slots.release(ip, socket_id)
            except RedisError as exc:  # the slot lapses on its own
                log.info("socket slot not given back, it lapses in %.0fs: %s", self.ttl, exc)

    def renew(self) -> None:
        """Renew the slots of this process's open sockets (one round trip)."""
        held: dict[str, list[str]] = {}
        with self._lock:
            for socket_id, (ip, shared) in self._held.items():
                if shared:
                    held.setdefault(ip, []).append(socket_id)
        if held:
            self.slots.renew(held, self.ttl)

    def _start_renewing(self) -> None:
        """Start this process's renewal thread once (lazily, so after any fork)."""
        if self._renewing == os.getpid():
            return
        with self._lock:
            if self._renewing == os.getpid():
                return
            self._renewing = os.getpid()
        threading.Thread(target=self._renew_forever, name="socket-slot-renewal", daemon=True).start()

    def _renew_forever(self) -> None:
        pid = os.getpid()
        while self._renewing == pid:
            time.sleep(self.renewal)
            try:
                self.renew()
            except RedisError as exc:
                log.info("socket slots not renewed: %s", exc)


def socket_cap(app: Flask) -> SocketCap:
    """The process's per-IP socket cap."""
    cap = app.extensions.get("scoreboard.socket_cap")
    if cap is None:
        cap = app.extensions.setdefault("scoreboard.socket_cap", SocketCap(get_stores(app).socket_slots))
    return cap


def socket_holder() -> SocketHolder | None:
    """Who the socket is for: a ticket's holder, or a token's; None on a public board without a credential.

    Raises (answered as 401) when a credential is missing on a private board, or given and not valid.
    """
    ticket = request.args.get("ticket")
    if ticket is not None:
        return redeem_ticket(ticket)
    offered = "Authorization" in request.headers or "token" in request.args
    if current_app.config["PUBLIC_BOARD"] and not offered:
        return None
    # Older clients send the token itself, as a header or (browsers cannot set headers on a socket) ?token=.
    verify_token(locations=["headers", "query_string"])
    return SocketHolder.of(get_jwt())


def check_handshake() -> Response | None:
    """Refuse the upgrade (with a JSON answer instead of 101) unless origin, credential and cap allow it.

    What the socket's view needs is left in ``g``: ``socket_period``, ``socket_holder`` and ``socket_slot``.
    """
    config = current_app.config
    origin = request.headers.get("Origin")
    # Browsers always send Origin on a socket handshake; other clients cannot be hijacked.
    if origin and not origin_allowed(origin, config["ALLOWED_ORIGINS"], request.host):
        return error_response(403, "origin_forbidden", "This origin may not open a board socket.")
    period = request.args.get("period") or ALL
    if period not in KINDS:
        return error_response(400, "bad_period", f"unknown period {period[:32]!r}; one of {', '.join(KINDS)}")
    if "at" in request.args:
        return error_response(400, "bad_period", "a socket shows the current period: leave out 'at'")
    g.socket_period = period
    g.socket_holder = socket_holder()
    slot = socket_cap(current_app).admit(request.remote_addr, config["WS_MAX_PER_IP"])
    if slot is None:
        return error_response(
            429, "too_many_sockets", "Too many open board sockets from this address.", headers={"Retry-After": "10"}
        )
    g.socket_slot = slot
    return None


def release_slot(_error: BaseException | None = None) -> None:
    """At the end of the socket's request (or of a refused handshake): give its place in the cap back."""
    slot = g.pop("socket_slot", None)
    if slot is not None:
        socket_cap(current_app).release(slot)


# What a client may send: a fresh snapshot, or its viewer's standing from now on ("me" messages).
CLIENT_REQUESTS = ("resync", "watch")


class ClientPolicy:
    """The board is one-way. A client may send ``{"type": "resync"}`` or ``{"type": "watch"}`` now and then;
    junk or a flood closes it."""

    def __init__(self, max_messages, window=10.0):
        self.max_messages = max_messages
        self.window = window
        self._recent = deque()

    def judge(self, data: str | bytes) -> str:
        """Return the request type of a client frame, or raise :class:`PolicyViolation`."""
        now = time.monotonic()
        self._recent.append(now)
        while self._recent and self._recent[0] < now - self.window:
            self._recent.popleft()
        if len(self._recent) > self.max_messages:
            raise PolicyViolation(CLOSE_POLICY, "too many messages")
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            raise PolicyViolation(CLOSE_UNSUPPORTED, "unsupported message") from None
        if not isinstance(message, dict) or message.get("type") not in CLIENT_REQUESTS:
            raise PolicyViolation(CLOSE_UNSUPPORTED, "unsupported message")
        return message["type"]
