"""The per-process relay between the board's pub/sub channel and the open sockets.

One listener thread per process subscribes once. Each broadcast is serialised
and framed as a WebSocket text frame once; the listener then writes that same
frame to every socket with a non-blocking send, so a fan-out costs one system
call per socket and wakes no per-socket thread. A socket that cannot take the
frame at once (a slow client) gets it through its own thread instead, which
keeps only the latest frame and gives up after a send timeout, so one slow
client never holds up the others.

Each process writes at most a budget of board frames a second
(``SCOREBOARD_FANOUT_FRAMES_PER_SECOND``): after writing a board to N sockets the relay
holds the next board back for N / budget seconds, while broadcasts arriving meanwhile collapse
into the newest. With few sockets every broadcast goes out at once; with thousands each socket
gets fewer, fresher boards, and never one more than a second behind the newest broadcast.

Each socket watches one board kind (``?period=``: the all-time board, or the current
day, ISO week or month); each broadcast names its board, and goes to the sockets
watching that kind only.

The relay also keeps the process's in-memory boards, one per kind (for ``GET
/api/score/top`` and snapshots), and revocation copy (for token checks) current for
as long as it is subscribed, and indexes sockets by their token's ``jti`` and user: a
revocation it hears ends every socket opened with that token, and a user's cutoff every
socket of theirs opened with a token issued before it (4001 ``token revoked``).
A ticker thread, off the fan-out path, sends ``me`` messages to the sockets that asked
for their own standing (``live.standings``) and replaces a timed board whose period
has ended (at midnight) with the new period's, even before the worker broadcasts it.
Everything here works with plain threads (gthread, the dev server) and with
gevent's monkey-patched ones.
"""

import json
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Iterable

from flask import Flask, current_app
from redis.exceptions import RedisError

from ..board.local_copy import local_boards
from ..board.reads import read_board
from ..ops import metrics
from ..periods import ALL, KINDS, TIMED, resolve
from ..security.revocations import revocation_copy
from ..security.socket_tickets import SocketHolder
from ..stores import get_stores
from ..stores.board_cache import board_message, dumps, parse_message
from ..stores.revocation_list import read_user_mark
from .guard import CLOSE_TOKEN_ENDED
from .standings import StandingsFeed

log = logging.getLogger(__name__)

_EXTENSION = "scoreboard.relay"

# How many sockets to write to before letting other threads (requests) run.
FANOUT_SLICE = 256
# After a fan-out that took T seconds the relay rests at least T (times this) before the next one, and broadcasts
# arriving meanwhile collapse into the latest: however slow a machine's sends, fan-out then takes at most
# half of a worker's time and claims keep the rest, while every socket still gets the newest board.
FANOUT_REST = 1.0
# The longest a board is held back from the start of the fan-out before it (less that fan-out's own
# time), so a socket's board is never more than a second behind the newest broadcast: the promise
# wins over the budget when a process holds more sockets than a second's budget of frames.
LAG_LIMIT = 0.9
# The ticker's longest sleep: how soon after a midnight the timed boards roll over without a broadcast.
TICK = 1.0
# Guards the hand-over of a waiting "me" frame between the ticker and a socket's thread (held for a swap only).
_NOTES = threading.Lock()


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame around ``payload`` (bytes), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def carries_close_frame(data: bytes | memoryview) -> bool:
    """Whether ``data`` (whole frames, as wsproto writes them) holds a close frame (opcode 0x8)."""
    view = memoryview(data)
    while len(view) >= 2:
        if view[0] & 0x0F == 0x8:
            return True
        size, head = view[1] & 0x7F, 2
        if size == 126:
            size, head = int.from_bytes(view[2:4], "big"), 4
        elif size == 127:
            size, head = int.from_bytes(view[2:10], "big"), 10
        if view[1] & 0x80:  # masked: a client's frame (a server never masks)
            head += 4
        view = view[head + size :]
    return False


def os_socket(sock: socket.socket) -> socket.socket:
    """The OS-level socket under ``sock``: gevent wraps it (as ``_sock``); plain sockets are their own."""
    return getattr(sock, "_sock", sock)


def send_nowait(raw: socket.socket, data: bytes | memoryview) -> int:
    """Write what fits into the socket buffer now; returns the bytes written (0 if full)."""
    try:
        return raw.send(data, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return 0


def send_all(raw: socket.socket, data: bytes | memoryview, timeout: float) -> None:
    """Write all of ``data``, waiting for buffer space at most ``timeout`` seconds in all."""
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    poller = None
    while view:
        sent = send_nowait(raw, view)
        if sent:
            view = view[sent:]
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("websocket send timed out")
        if poller is None:
            # select.poll rather than select.select: descriptors past 1024 are normal with many sockets.
            poller = select.poll()
            poller.register(raw.fileno(), select.POLLOUT)
        poller.poll(remaining * 1000)


class GuardedSocket:
    """Stands in for a WebSocket's socket so every write (pings, pongs, close) takes the subscriber's lock.

    Without it a ping could land in the middle of a half-written board frame. It also notes, under
    the same lock, when a close frame goes out (``closed``): nothing may follow it on the wire, and
    simple-websocket marks the socket closed only after the write, outside the lock.
    """

    __slots__ = ("_lock", "_raw", "_sock", "_timeout", "closed")

    def __init__(self, sock, lock, timeout):
        self._sock = sock
        self._raw = os_socket(sock)
        self._lock = lock
        self._timeout = timeout
        self.closed = False

    def send(self, data: bytes) -> int:
        """Write all of ``data`` under the lock, bounded by the send timeout."""
        with self._lock:
            if carries_close_frame(data):
                self.closed = True
            send_all(self._raw, data, self._timeout)
        return len(data)

    sendall = send

    def recv(self, size: int) -> bytes:
        """Read from the underlying socket."""
        return self._sock.recv(size)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class Subscriber:
    """One socket's delivery state: the last version it was sent and at most one frame waiting.

    The relay thread writes directly when the socket takes the whole frame at
    once; otherwise the frame (or its unsent rest) waits here for the socket's
    own thread, and a newer frame replaces an older waiting one. Nothing is
    written once the socket has closed or sent its close frame (checked under
    the lock every write takes).

    ``holder`` is who the socket was opened for (None: nobody, a public board);
    ``period`` the board kind it watches (``all``, ``day``, ``week``, ``month``);
    ``ending``, once set by :meth:`end`, is the ``(code, reason)`` its thread closes it with.
    Besides board frames it may carry ``me`` messages (:meth:`notify`, ``live.standings``), which
    have no version of their own: the newest waiting one replaces an older one.
    """

    __slots__ = (
        "ending",
        "guard",
        "holder",
        "lock",
        "me_at",
        "me_last",
        "note",
        "pending",
        "period",
        "raw",
        "rest",
        "shown",
        "timeout",
        "ws",
    )

    def __init__(self, ws, timeout, holder: SocketHolder | None = None, period: str = ALL):
        self.ws = ws
        self.holder = holder
        self.period = period
        self.ending: tuple[int, str] | None = None
        self.note: bytes | None = None  # a "me" frame waiting for the socket's thread
        self.me_last: tuple | None = None  # the (rank, score, total) last sent in a "me" message
        self.me_at = -1e9  # when (monotonic) it was sent
        self.lock = threading.Lock()
        self.timeout = timeout
        self.raw = os_socket(ws.sock)
        self.guard = ws.sock = GuardedSocket(ws.sock, self.lock, timeout)
        self.shown = -1
        self.pending = None
        self.rest = None

    def _open(self) -> bool:
        """Whether frames may still go out (call under the lock): not after the close frame, nor once closed.

        ``ws`` is simple-websocket's connection; of it the relay needs ``sock``, ``event`` and, where
        it has one, the ``connected`` flag.
        """
        return not self.guard.closed and getattr(self.ws, "connected", True)

    def end(self, code: int, reason: str) -> None:
        """Have the socket's own thread close it with ``code`` and ``reason`` (at once: it is woken)."""
        if self.ending is None:
            self.ending = (code, reason)
        self._wake()

    def offer(self, version: int, frame: bytes) -> None:
        """From the relay thread: send ``frame`` now if the socket takes it, else leave it for the socket's thread."""
        if version <= self.shown:
            return
        # Until the snapshot has gone out (shown < 0) nothing may overtake it: the socket's thread sends this after.
        if self.shown >= 0 and self.lock.acquire(blocking=False):
            try:
                if not self._open():
                    return  # closing: a frame now could follow the close frame
                if self.rest is None and version > self.shown:
                    self.pending = None
                    sent = send_nowait(self.raw, frame)
                    if sent == len(frame):
                        self.shown = version
                        return
                    if sent:
                        # Part of the frame is on the wire: its rest must go before anything else.
                        self.rest, self.shown = memoryview(frame)[sent:], version
                        self._wake()
                        return
            except (OSError, ValueError):
                return  # the socket is closing; its own thread notices
            finally:
                self.lock.release()
        if self.pending is None or self.pending[0] < version:
            self.pending = (version, frame)
        self._wake()

    def flush(self) -> None:
        """From the socket's thread: finish a half-sent frame, then send the waiting one; may raise TimeoutError."""
        with self.lock:
            if not self._open():
                self.rest = self.pending = None
                return
            if self.rest is not None:
                rest, self.rest = self.rest, None
                send_all(self.raw, rest, self.timeout)
            item, self.pending = self.pending, None
            if item is not None and item[0] > self.shown:
                send_all(self.raw, item[1], self.timeout)
                self.shown = item[0]
            with _NOTES:
                note, self.note = self.note, None
            if note is not None:
                send_all(self.raw, note, self.timeout)

    def send_text(self, text: str, version: int | None = None) -> None:
        """Send one message now (the snapshot; or, without a version, a message outside the board's order)."""
        with self.lock:
            if not self._open():
                return
            send_all(self.raw, text_frame(text.encode()), self.timeout)
            if version is not None:
                self.shown = max(self.shown, version)

    def notify(self, text: str, at_once: bool = False) -> None:
        """Send a message outside the board's order (``me``).

        ``at_once`` (the socket's own thread): now, waiting for the socket if need be. Otherwise (the
        relay's ticker) only if the socket takes it whole at once; else the newest waits for the socket's thread.
        """
        frame = text_frame(text.encode())
        if at_once:
            with self.lock:
                if not self._open():
                    return
                if self.rest is not None:  # a half-sent frame goes first
                    rest, self.rest = self.rest, None
                    send_all(self.raw, rest, self.timeout)
                send_all(self.raw, frame, self.timeout)
            return
        if self.shown >= 0 and self.rest is None and self.note is None and self.lock.acquire(blocking=False):
            try:
                if not self._open():
                    return
                if self.rest is None:
                    sent = send_nowait(self.raw, frame)
                    if sent == len(frame):
                        return
                    if sent:
                        self.rest = memoryview(frame)[sent:]
                        self._wake()
                        return
            except (OSError, ValueError):
                return  # the socket is closing; its own thread notices
            finally:
                self.lock.release()
        with _NOTES:
            self.note = frame
        self._wake()

    def _wake(self):
        # The socket's thread waits on the WebSocket's own event, which also fires when the client writes or leaves.
        self.ws.event.set()


def fan_out(subscribers: tuple[Subscriber, ...], version: int, frame: bytes) -> int:
    """Offer ``frame`` of ``version`` to each subscriber; returns how many were offered it (not shown it yet)."""
    offered = 0
    for subscriber in subscribers:
        if version > subscriber.shown:
            subscriber.offer(version, frame)
            offered += 1
            if offered % FANOUT_SLICE == 0:
                time.sleep(0)  # a long fan-out must not starve the request threads
    return offered


class Relay:
    """Fans broadcast messages out to this process's sockets, and keeps the process's copies current.

    The one listener per process: it feeds the in-memory boards (``board.local_copy``, one per
    kind) and the revocation copy (``security.revocations``) as well as the sockets. Its ticker
    thread sends the ``me`` messages (:attr:`standings`) and rolls timed boards over at their end.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.channels = get_stores(app).channels
        self.boards = local_boards(app)
        self.board = self.boards[ALL]
        self.revocations = revocation_copy(app)
        self.standings = StandingsFeed(app, self.boards)
        self._subscribers: dict[str, set[Subscriber]] = {kind: set() for kind in KINDS}  # by the board watched
        self._by_jti: dict[str, set[Subscriber]] = {}  # sockets opened with a token, by its jti
        self._by_user: dict[str, set[Subscriber]] = {}  # sockets opened with a token, by its user
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.frames_per_second = max(1, int(app.config["FANOUT_FRAMES_PER_SECOND"]))
        self._running: int | None = None  # pid whose listener thread runs (set as it starts, cleared as it ends)
        self._ticking: int | None = None  # pid whose ticker thread runs

    def start(self) -> None:
        """Start the listener and ticker threads once per process (lazily, so after any fork)."""
        # Called before every request: a plain attribute, not Thread.is_alive() (a lock). It holds the
        # pid that started the thread, since a forked child inherits the attribute, not the thread.
        pid = os.getpid()
        if self._running == pid and self._ticking == pid:
            return
        with self._lock:
            if self._running != pid or self._ticking != pid:
                self._stop.clear()
            if self._running != pid:
                self._running = pid
                threading.Thread(target=self._run, name="board-relay", daemon=True).start()
            if self._ticking != pid:
                self._ticking = pid
                threading.Thread(target=self._tick_forever, name="board-ticker", daemon=True).start()

    def stop(self) -> None:
        """Stop listening and ticking (the threads exit within a second)."""
        self._stop.set()
        self.standings.wake.set()

    def subscribe(self, ws, send_timeout: float, holder: SocketHolder | None = None, period: str = ALL) -> Subscriber:
        """Attach a socket (opened for ``holder``, if anybody); it gets every broadcast of ``period`` from now on."""
        subscriber = Subscriber(ws, send_timeout, holder, period)
        with self._lock:
            self._subscribers[period].add(subscriber)
            if holder is not None:
                self._by_user.setdefault(holder.user_id, set()).add(subscriber)
                if holder.jti is not None:
                    self._by_jti.setdefault(holder.jti, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a closed socket."""
        self.standings.unwatch(subscriber)
        with self._lock:
            self._subscribers[subscriber.period].discard(subscriber)
            holder = subscriber.holder
            if holder is None:
                return
            for index, name in ((self._by_jti, holder.jti), (self._by_user, holder.user_id)):
                same = index.get(name) if name is not None else None
                if same is not None:
                    same.discard(subscriber)
                    if not same:
                        del index[name]

    def end_revoked(self, jtis: Iterable[str]) -> int:
        """Close every socket opened with a token of these ids (4001 ``token revoked``); returns how many."""
        with self._lock:
            ending = [subscriber for jti in jtis for subscriber in self._by_jti.get(jti, ())]
        for subscriber in ending:
            subscriber.end(CLOSE_TOKEN_ENDED, "token revoked")
        return len(ending)

    def end_issued_before(self, user_id: str, cutoff: float) -> int:
        """Close every socket of ``user_id`` opened with a token issued before ``cutoff`` (or without ``iat``)."""
        with self._lock:
            ending = [
                subscriber
                for subscriber in self._by_user.get(user_id, ())
                if subscriber.holder.issued_at is None or subscriber.holder.issued_at < cutoff
            ]
        for subscriber in ending:
            subscriber.end(CLOSE_TOKEN_ENDED, "token revoked")
        return len(ending)

    def _end_refused(self, name: str) -> None:
        """End the sockets a revocation announced as ``name`` (a token id, or a user's cutoff) refuses."""
        cut = read_user_mark(name)
        if cut is None:
            self.end_revoked([name])
        else:
            self.end_issued_before(*cut)

    @property
    def socket_count(self) -> int:
        """Open sockets in this process."""
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    def _set_current(self, current: bool) -> None:
        self.boards.current = self.revocations.current = current

    def deliver(self, message: str) -> bool:
        """Send ``message`` to every socket watching its board if it is newer than what was last relayed."""
        return self._deliver(message) is not None

    def _deliver(self, message: str) -> int | None:
        """:meth:`deliver`; returns the sockets offered the frame, or None if the message was not newer."""
        parsed = parse_message(message)
        board = self.boards.get(parsed.period)
        if board is None:
            log.warning("broadcast of an unknown board %r ignored", parsed.period)
            return None
        with self._lock:
            if not board.offer(parsed.version, parsed.top_json, parsed.key):
                return None
            frame = text_frame(message.encode())
            subscribers = tuple(self._subscribers[parsed.period])
        fanned = fan_out(subscribers, parsed.version, frame)
        if parsed.changed_at is not None:
            metrics.BROADCAST_LAG.observe(max(0.0, time.time() - parsed.changed_at / 1000))
        # The standings are read on the ticker thread: this only marks the board's watchers due.
        self.standings.due(parsed.period)
        return fanned

    def close_all(self, code: int, reason: str) -> int:
        """Close every open socket with ``code`` (1001 when the process stops); returns how many."""
        with self._lock:
            subscribers = [subscriber for kind in self._subscribers.values() for subscriber in kind]
        for subscriber in subscribers:
            ws = subscriber.ws
            try:
                if ws.connected:
                    # The client's close reply wakes the socket's thread; waking it sooner would let the
                    # server drop the connection while simple-websocket's reader still waits to read it.
                    ws.close(reason=code, message=reason)
            except Exception as exc:  # closing already, or the peer is gone: nothing left to tell it
                log.debug("socket already closing: %s", exc)
        return len(subscribers)

    def _deliver_read(self, kind: str) -> bool:
        """Read the board of ``kind`` (the cache, else composed for the current period) and relay it if newer."""
        board = read_board(kind)
        return self.deliver(
            board_message("update", board["version"], dumps(board["top"]), None, kind, board.get("key"))
        )

    def _resync(self) -> None:
        """After (re)subscribing, catch up on anything broadcast or revoked while not listening."""
        # Subscribed first, loaded second: a revocation made in between arrives on the channel as well.
        in_force = get_stores(self.app).revocations.in_force()
        self.revocations.load(in_force)
        with self._lock:
            revoked_while_away = [jti for jti in self._by_jti if jti in in_force]
        self.end_revoked(revoked_while_away)
        for name in in_force:
            if read_user_mark(name) is not None:
                self._end_refused(name)
        with self.app.app_context():
            for kind in KINDS:
                self._deliver_read(kind)

    def roll_over(self) -> list[str]:
        """Replace each timed board held whose period has ended by the current period's; returns the kinds replaced.

        The worker broadcasts a period's board when a claim changes it, so after a midnight nobody
        has claimed past yet, the held day (week, month) would stay. In an app context.
        """
        rolled = []
        if not self.boards.current:
            return rolled  # not subscribed: the re-sync on subscribing loads every board anyway
        for kind in TIMED:
            board = self.boards[kind]
            if board.version >= 0 and board.key != resolve(kind).key:
                try:
                    if self._deliver_read(kind):
                        rolled.append(kind)
                except RedisError as exc:
                    log.info("the %s board did not roll over yet: %s", kind, exc)
        return rolled

    def _tick_forever(self) -> None:
        """The ticker: ``me`` messages when due, and timed boards rolled over; never on the fan-out path."""
        pid = os.getpid()
        wake = self.standings.wake
        failing = False
        try:
            while not self._stop.is_set() and self._ticking == pid:
                wake.clear()
                wait = TICK
                try:
                    with self.app.app_context():
                        self.roll_over()
                        wait = min(wait, self.standings.run())
                    failing = False
                except Exception as exc:  # a bug or an outage must not end the ticker; logged once until it passes
                    if not failing:
                        log.exception("board ticker failed; trying again every second")
                    else:
                        log.debug("board ticker still failing: %s", exc)
                    failing = True
                wake.wait(max(0.05, wait))
        finally:
            if self._ticking == pid:
                self._ticking = None

    def _on_message(self, kind: str, payload: str | None) -> float | None:
        """One message of the subscription; for a board, returns how long the next board must wait."""
        if kind == "subscribed":
            self._resync()
            self._set_current(True)
        elif kind == "revoked":
            revocation = json.loads(payload)
            self.revocations.note(revocation["jti"], float(revocation["exp"]))
            self._end_refused(revocation["jti"])
        else:
            started = time.monotonic()
            fanned = self._deliver(payload)
            return self.hold_after(fanned or 0, started, time.monotonic() - started)
        return None

    def hold_after(self, frames: int, started: float, spent: float) -> float:
        """Seconds from now the next board must wait after a fan-out of ``frames`` begun at ``started``.

        The frame budget spaces fan-outs ``frames / budget`` apart (start to start), and the rest
        at least ``spent * (1 + FANOUT_REST)``; neither beyond :data:`LAG_LIMIT` less the fan-out's
        own time, so a board held back is still written within a second of its broadcast.
        """
        if frames == 0:
            return 0.0
        spacing = max(frames / self.frames_per_second, spent * (1 + FANOUT_REST) if spent > 0.005 else 0.0)
        spacing = min(spacing, max(spent, LAG_LIMIT - spent))
        return max(0.0, started + spacing - time.monotonic())

    def _run(self) -> None:
        try:
            self._listen_until_stopped()
        finally:
            self._set_current(False)
            self._running = None

    def _listen_until_stopped(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self.channels.listen(self._on_message, self._stop)
                backoff = 0.2
            except Exception as exc:  # Redis gone: keep sockets open, retry, re-sync on return
                self._set_current(False)
                log.warning("board relay lost its subscription, retrying in %.1fs: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)


def get_relay(app: Flask | None = None) -> Relay:
    """The process's relay, bound in :func:`init_app`."""
    return (app or current_app).extensions[_EXTENSION]


def _start_listening() -> None:
    """Before any request: make sure this process listens, so its in-memory copies are current."""
    get_relay().start()


def init_app(app: Flask) -> None:
    """Create the process's relay; outside in-process tests, start its listener on the first request."""
    app.extensions[_EXTENSION] = Relay(app)
    if not app.testing:
        app.before_request(_start_listening)
