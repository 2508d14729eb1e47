"""Listening to the broadcast channels: one subscription per process, for boards and revocations."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

# on_message(kind, payload): kind is "subscribed" (payload None) once listening, then "board" or "revoked".
OnMessage = Callable[[str, str | None], None]


class Channels(Protocol):
    """The process's subscription to the board and revocation channels."""

    def listen(self, on_message: OnMessage, stop: threading.Event) -> None:
        """Call ``on_message`` for every message until ``stop`` is set; raises if the connection drops."""


class RedisChannels:
    """Redis pub/sub on ``<p>board`` and ``<p>revoked``."""

    def __init__(self, client, prefix: str) -> None:
        self.redis = client
        self.board_channel = f"{prefix}board"
        self.revocations_channel = f"{prefix}revoked"

    def listen(self, on_message: OnMessage, stop: threading.Event) -> None:
        """Relay messages until ``stop`` is set; raises if Redis drops.

        ``"subscribed"`` comes first (the caller re-syncs what it may have missed). Board
        messages that queued up while the previous one was being handed out are skipped for
        the newest: each is a whole board, so only the latest matters, and a fan-out slower
        than the broadcast rate never falls further behind. Every revocation is relayed.
        """
        pubsub = self._open()
        try:
            pubsub.subscribe(self.board_channel, self.revocations_channel)
            on_message("subscribed", None)
            while not stop.is_set():
                latest = None
                message = pubsub.get_message(timeout=1.0)
                while message is not None:
                    if message["type"] == "message":
                        if message["channel"] == self.board_channel:
                            latest = message["data"]
                        else:
                            on_message("revoked", message["data"])
                    message = pubsub.get_message(timeout=0)
                if latest is not None:
                    on_message("board", latest)
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
