"""Who may open a board socket, and what a client may send on it.

Checked in the HTTP handshake, before the socket is accepted: the browser's Origin
(against cross-site WebSocket hijacking), the token when the board is not public,
and a per-IP cap on open sockets in this process.
"""

import json
import threading
import time
from collections import Counter, deque
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

from ..errors import error_response
from ..security.tokens import verify_token

CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008


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
    """Open sockets per client IP in this process."""

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


def socket_counter(app: Flask) -> SocketCounter:
    """The process's per-IP socket counter."""
    return app.extensions.setdefault("scoreboard.ws_per_ip", SocketCounter())


def check_handshake() -> Response | None:
    """Refuse the upgrade (with a JSON answer instead of 101) unless origin, token and caps allow it."""
    config = current_app.config
    origin = request.headers.get("Origin")
    # Browsers always send Origin on a socket handshake; other clients cannot be hijacked.
    if origin and not origin_allowed(origin, config["ALLOWED_ORIGINS"], request.host):
        return error_response(403, "origin_forbidden", "This origin may not open a board socket.")
    if not config["PUBLIC_BOARD"]:
        # Browsers cannot set headers on a socket: the token may come as ?token=.
        verify_token(locations=["headers", "query_string"])
    if socket_counter(current_app).count(request.remote_addr) >= config["WS_MAX_PER_IP"]:
        return error_response(
            429, "too_many_sockets", "Too many open board sockets from this address.", headers={"Retry-After": "10"}
        )
    return None


class ClientPolicy:
    """The board is one-way. A client may send ``{"type": "resync"}`` now and then; junk or a flood closes it."""

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
        if not isinstance(message, dict) or message.get("type") != "resync":
            raise PolicyViolation(CLOSE_UNSUPPORTED, "unsupported message")
        return "resync"
