"""The board message: its one wire format, its cache, and its broadcast to every web process.

A board message is ``{"type", "version", ["changedAt",] "top"}`` with ``top`` last, so the
serialised top list can be cut out of a message without parsing and re-serialising it. Only
this module writes or reads that format (the Lua below builds it from the same parts).
"""

from __future__ import annotations

import json
import threading
import time
from typing import NamedTuple, Protocol

from .channels import MemoryBus
from .cluster import board_tag, on_cluster

_TOP_KEY = ',"top":'


def message_parts(kind: str, top_json: str, changed_at: int | None = None) -> tuple[str, str]:
    """A message split around its version: ``head + str(version) + tail`` is the whole message.

    ``changed_at`` (epoch ms of the oldest change the message carries) rides along as ``changedAt``.
    """
    changed = "" if changed_at is None else f',"changedAt":{int(changed_at)}'
    return f'{{"type":"{kind}","version":', f"{changed}{_TOP_KEY}{top_json}}}"


def board_message(kind: str, version: int, top_json: str, changed_at: int | None = None) -> str:
    """The wire form of a board message; ``top_json`` is already serialised and is not parsed again."""
    head, tail = message_parts(kind, top_json, changed_at)
    return f"{head}{int(version)}{tail}"


class ParsedMessage(NamedTuple):
    """A board message taken apart: the top list stays serialised."""

    kind: str
    version: int
    changed_at: int | None
    top_json: str


def parse_message(message: str) -> ParsedMessage:
    """Take a message built by :func:`board_message` apart, without parsing its top list."""
    cut = message.index(_TOP_KEY)
    fields = json.loads(message[:cut] + "}")
    return ParsedMessage(
        fields["type"], int(fields["version"]), fields.get("changedAt"), message[cut + len(_TOP_KEY) : -1]
    )


def dumps(top: list) -> str:
    """Serialise a top list compactly and deterministically, for comparing and sending."""
    return json.dumps(top, separators=(",", ":"), ensure_ascii=False)


class BoardCache(Protocol):
    """The last broadcast board, cached for reads, and its broadcast."""

    def publish_if_changed(self, top_json: str, changed_at: int | None = None) -> int:
        """Cache and broadcast ``top_json`` unless it is the last one broadcast; returns the new version or 0."""

    def cached(self) -> dict | None:
        """The cached last message as a dict, or None on a miss."""

    def version(self) -> int:
        """The version of the last broadcast."""

    def cache_if_absent(self, version: int, top_json: str) -> None:
        """Re-cache a top list read from the database, unless a broadcast got there first."""

    def consistent(self) -> bool:
        """False if the cached top list differs from the last one published (a miss is not drift)."""

    def invalidate(self) -> None:
        """Forget the cached and published top list, so the next publish re-caches and re-broadcasts it."""


PUBLISH_IF_CHANGED = """
-- KEYS: published top, cached message, version.  ARGV: top, ttl, channel, now (ms), head, tail, tail without changedAt
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('SET', KEYS[2], ARGV[5] .. (redis.call('GET', KEYS[3]) or '0') .. ARGV[7], 'EX', ARGV[2])
  end
  return 0
end
-- Never below the wall clock in ms: versions keep growing even if Redis loses its data.
local version = redis.call('INCR', KEYS[3])
local now = tonumber(ARGV[4])
if now > version then
  version = now
  redis.call('SET', KEYS[3], version)
end
local payload = ARGV[5] .. version .. ARGV[6]
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], payload, 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], payload)
return version
"""


class RedisBoardCache:
    """The cached message and the version in Redis; a publish is one Lua script, so atomic.

    On a cluster (``client`` a ``RedisCluster``, or ``cluster=True``) the keys carry the all-time
    board's hash tag (``<p>{board}:top`` ...), so the script and ``consistent``'s MGET stay in one slot.
    """

    def __init__(self, client, prefix: str, channel: str, ttl: int, cluster: bool | None = None) -> None:
        self.redis = client
        cluster = on_cluster(client) if cluster is None else cluster
        self.channel = channel
        self.ttl = ttl
        base = f"{prefix}{board_tag()}:top" if cluster else f"{prefix}top"
        self.published_key, self.message_key, self.version_key = f"{base}:published", base, f"{base}:version"
        self._publish = client.register_script(PUBLISH_IF_CHANGED)

    def publish_if_changed(self, top_json: str, changed_at: int | None = None) -> int:
        """Cache and broadcast ``top_json`` if it differs from the last broadcast; returns the new version or 0."""
        head, tail = message_parts("update", top_json, changed_at)
        _, plain_tail = message_parts("update", top_json)
        keys = [self.published_key, self.message_key, self.version_key]
        now_ms = int(time.time() * 1000)
        return int(self._publish(keys=keys, args=[top_json, self.ttl, self.channel, now_ms, head, tail, plain_tail]))

    def cached(self) -> dict | None:
        """The cached last message as a dict, or None on a miss."""
        payload = self.redis.get(self.message_key)
        return json.loads(payload) if payload else None

    def version(self) -> int:
        """The version of the last broadcast."""
        return int(self.redis.get(self.version_key) or 0)

    def cache_if_absent(self, version: int, top_json: str) -> None:
        """Re-cache a top list read from the database, unless a broadcast got there first."""
        self.redis.set(self.message_key, board_message("update", version, top_json), ex=self.ttl, nx=True)

    def consistent(self) -> bool:
        """False if the cached top list differs from the last one published (a miss is not drift)."""
        cached, published = self.redis.mget(self.message_key, self.published_key)
        return cached is None or published is None or json.loads(cached)["top"] == json.loads(published)

    def invalidate(self) -> None:
        """Forget the cached and published top list, so the next publish re-caches and re-broadcasts it."""
        self.redis.delete(self.message_key, self.published_key)


class MemoryBoardCache:
    """The last message in memory; a publish hands it to this process's listeners."""

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._lock = threading.Lock()
        self._published: str | None = None
        self._message: str | None = None
        self._version = 0

    def publish_if_changed(self, top_json: str, changed_at: int | None = None) -> int:
        """Cache and broadcast ``top_json`` if it changed; returns the new version or 0."""
        with self._lock:
            if top_json == self._published:
                return 0
            self._version = max(self._version + 1, int(time.time() * 1000))
            self._published = top_json
            self._message = message = board_message("update", self._version, top_json, changed_at)
            version = self._version
        self._bus.publish("board", message)
        return version

    def cached(self) -> dict | None:
        """The last message as a dict, or None."""
        message = self._message
        return json.loads(message) if message else None

    def version(self) -> int:
        """The version of the last broadcast."""
        return self._version

    def cache_if_absent(self, version: int, top_json: str) -> None:
        """Cache a top list read from the database unless a broadcast got there first."""
        with self._lock:
            if self._message is None:
                self._message = board_message("update", version, top_json)

    def consistent(self) -> bool:
        """The cached message is always the one published here."""
        return True

    def invalidate(self) -> None:
        """Forget the published top list, so the next publish re-broadcasts it."""
        with self._lock:
            self._published = None
