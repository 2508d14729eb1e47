"""Listening to the broadcast channels: one subscription per process, for every board and the revocations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from ..periods import ALL, TIMED

# on_message(kind, payload): kind is "subscribed" (payload None) once listening, then "board" or "revoked".
# Board messages of every kind (all time, day, week, month) come as "board"; each message names its board.
# For a board it may return seconds: the next board message is held back that long (the newest of each
# channel kept meanwhile), while revocations are still relayed as they come.
OnMessage = Callable[[str, str | None], float | None]


def board_channel(prefix: str, period: str = ALL) -> str:
    """The channel of one board kind's broadcasts: ``<p>board`` (all time) or ``<p>board:<kind>``."""
    return f"{prefix}board" if period == ALL else f"{prefix}board:{period}"


class Channels(Protocol):
    """The process's subscription to the board and revocation channels."""

    def listen(self, on_message: OnMessage, stop: threading.Event) -> None:
        """Call ``on_message`` for every message until ``stop`` is set; raises if the connection drops."""


class RedisChannels:
    """Redis pub/sub on ``<p>board``, ``<p>board:<kind>`` for each timed kind in ``timed``, and ``<p>revoked``.

    Each board kind has a channel of its own, so the newest message of each is kept apart from the
    others' when they queue up (below), without parsing them.
    """

    def __init__(self, client, prefix: str, timed: tuple[str, ...] = TIMED) -> None:
        self.redis = client
        self.board_channel = board_channel(prefix)
        self.board_channels = {ALL: self.board_channel, **{kind: board_channel(prefix, kind) for kind in timed}}
        self.revocations_channel = f"{prefix}revoked"

    def listen(self, on_message: OnMessage, stop: threading.Event) -> None:
        """Relay messages until ``stop`` is set; raises if Redis drops.

        ``"subscribed"`` comes first (the caller re-syncs what it may have missed). Board
        messages that queued up while the previous one was being handed out, or while the
        caller asked to hold boards back (``on_message`` returning seconds), are skipped for
        the newest of their channel: each is a whole board, so only the latest of each kind
        matters, and a fan-out slower than the broadcast rate never falls further behind.
        Every revocation is relayed as it comes, held boards or not.
        """
        pubsub = self._open()
        boards = set(self.board_channels.values())
        try:
            pubsub.subscribe(*self.board_channels.values(), self.revocations_channel)
            on_message("subscribed", None)
            latest: dict[str, str] = {}  # channel -> its newest message not relayed yet, the longest waiting first
            hold_until = 0.0  # no board goes out before this (monotonic), as the last one's on_message asked
            while not stop.is_set():
                wait = max(0.0, hold_until - time.monotonic()) if latest else 1.0
                message = pubsub.get_message(timeout=wait)
                while message is not None:
                    if message["type"] == "message":
                        if message["channel"] in boards:
                            # A newer board replaces the waiting one in its place, so no channel waits behind
                            # another's stream of broadcasts.
                            latest[message["channel"]] = message["data"]
                        else:
                            on_message("revoked", message["data"])
                    message = pubsub.get_message(timeout=0)
                while latest and time.monotonic() >= hold_until and not stop.is_set():
                    channel = next(iter(latest))
                    hold = on_message("board", latest.pop(channel))
                    if hold:
                        hold_until = time.monotonic() + hold
        finally:
            pubsub.close()

    def _open(self):
        """A pub/sub connection (on a cluster, ``stores.cluster.ClusterChannels`` picks the node)."""
        return self.redis.pubsub(ignore_subscribe_messages=True)


class MemoryBus:
    """The channels inside one process: a publish calls every listener directly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[OnMessage] = []

    def publish(self, kind: str, payload: str) -> None:
        """Hand ``payload`` to every listener as a ``kind`` message."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(kind, payload)

    def listen(self, on_message: OnMessage, stop: threading.Event) -> None:
        """Receive every message published in this process until ``stop`` is set."""
        with self._lock:
            self._listeners.append(on_message)
        try:
            on_message("subscribed", None)
            stop.wait()
        finally:
            with self._lock:
                self._listeners.remove(on_message)
