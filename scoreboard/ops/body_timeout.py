"""A deadline on a request's body: a client that sends it too slowly gets 408 and is let go.

Gunicorn hands a request to the app once its headers are in; the body is read from the socket as
the app asks for it. A client sending its body a byte at a time would otherwise hold the reading
greenlet (gevent) or thread (gthread) for as long as it cared to. This middleware gives the whole
body ``SCOREBOARD_BODY_TIMEOUT`` seconds (10) from the request's arrival:

- under gevent, every read of ``wsgi.input`` runs inside a ``gevent.Timeout`` of what is left;
- with threads under gunicorn, each of gunicorn's reads from the socket gets what is left as its
  socket timeout (the body reader's socket is wrapped for the length of the request), so a trickle
  of bytes cannot stretch the deadline either;
- under another threaded server (``flask run``), each read gets what is left as its socket
  timeout: each wait is bounded, not their sum.

A read past the deadline raises :class:`BodyTimeout` (408), answered as JSON ``body_timeout`` by
``scoreboard.errors``. The connection's reading side is shut down first, so the server neither
waits for the rest of the body nor reads a next request from it: it writes the answer and closes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask
from werkzeug.exceptions import RequestTimeout

from .db_waits import gevent_patched

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BodyTimeout(RequestTimeout):
    """The request's body did not arrive within ``SCOREBOARD_BODY_TIMEOUT``."""

    description = "The request body did not arrive in time."


def _client_socket(environ: dict[str, Any]) -> Any:
    """The connection's socket, where the server exposes it (gunicorn, Werkzeug's server)."""
    return environ.get("gunicorn.socket") or environ.get("werkzeug.socket")


def _stop_reading(sock: Any) -> None:
    """Shut the reading side: the server then sees the end of the stream instead of waiting on the client."""
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def _within_deadline(sock: socket.socket, deadline: float, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` with what is left until ``deadline`` as ``sock``'s timeout; past it, :class:`BodyTimeout`."""
    left = deadline - time.monotonic()
    if left > 0:
        previous = sock.gettimeout()
        sock.settimeout(left)
        try:
            return call(*args)
        except TimeoutError:
            pass
        finally:
            sock.settimeout(previous)
    _stop_reading(sock)
    raise BodyTimeout()


class BoundedInput:
    """``wsgi.input`` whose every read ends by the deadline; subclasses say how a read is bounded."""

    def __init__(self, stream: Any, deadline: float, sock: Any) -> None:
        self._stream = stream
        self._deadline = deadline
        self._sock = sock

    def _bounded(self, method: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes of the body (all of it by default)."""
        return self._bounded(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        """Read one line of the body."""
        return self._bounded(self._stream.readline, size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read the body's lines."""
        return self._bounded(self._stream.readlines, hint)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class GreenBoundedInput(BoundedInput):
    """``wsgi.input`` under gevent: each read runs under a ``gevent.Timeout`` of what is left of the deadline."""

    def _bounded(self, method: Callable[..., Any], *args: Any) -> Any:
        import gevent

        left = self._deadline - time.monotonic()
        expired = BodyTimeout()
        try:
            if left <= 0:
                raise expired
            with gevent.Timeout(left, expired):
                return method(*args)
        except BodyTimeout:
            _stop_reading(self._sock)
            raise


class DeadlineSocket:
    """Stands in for the client's socket while a body is read with threads: each ``recv`` waits what is left."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def recv(self, size: int, *flags: int) -> bytes:
        """Receive like the socket, but never past the deadline (then :class:`BodyTimeout`)."""
        return _within_deadline(self._sock, self._deadline, self._sock.recv, size, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ThreadBoundedInput(BoundedInput):
    """``wsgi.input`` under another threaded server: each read gets what is left as its socket timeout."""

    def _bounded(self, method: Callable[..., Any], *args: Any) -> Any:
        return _within_deadline(self._sock, self._deadline, method, *args)


def _has_body(environ: dict[str, Any]) -> bool:
    length = environ.get("CONTENT_LENGTH") or ""
    return (length not in ("", "0")) or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


class BodyDeadline:
    """WSGI middleware: the request's body must arrive within ``timeout`` seconds of the request."""

    def __init__(self, app: WSGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Serve the request with its body's reads bounded by the deadline."""
        sock = _client_socket(environ)
        if sock is None or not _has_body(environ):
            return self.app(environ, start_response)
        deadline = time.monotonic() + self.timeout
        if gevent_patched():
            environ["wsgi.input"] = GreenBoundedInput(environ["wsgi.input"], deadline, sock)
            return self.app(environ, start_response)
        # gunicorn (gthread): Body -> reader -> unreader, whose socket every read of the body goes through.
        unreader = getattr(getattr(environ["wsgi.input"], "reader", None), "unreader", None)
        if getattr(unreader, "sock", None) is not sock:
            environ["wsgi.input"] = ThreadBoundedInput(environ["wsgi.input"], deadline, sock)
            return self.app(environ, start_response)
        unreader.sock = DeadlineSocket(sock, deadline)
        try:
            return self.app(environ, start_response)
        finally:
            unreader.sock = sock


def init_app(app: Flask) -> None:
    """Bound the time a request's body may take to arrive (``SCOREBOARD_BODY_TIMEOUT``; ``0``: no bound)."""
    timeout = app.config["BODY_TIMEOUT"]
    if timeout and timeout > 0:
        app.wsgi_app = BodyDeadline(app.wsgi_app, timeout)
