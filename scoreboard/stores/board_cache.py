"""The board messages: their one wire format, their caches, and their broadcast to every web process.

A board message is ``{"type", "version", ["period", "key",] ["changedAt",] "top"}`` with ``top`` last,
so the serialised top list can be cut out of a message without parsing and re-serialising it. The
all-time board's messages carry no period (they are as they always were); those of a timed board
(the current day, ISO week or month) carry its kind as ``period`` and the period's ``key``
(``"period":"week","key":"week:2026-W49"``). Only this module writes or reads that format (the Lua
below builds it from the same parts).

There is one cache per board kind (``Stores.board_cache_for``). The all-time one keeps its keys and
channel (``<p>top``, ``<p>top:published``, ``<p>top:version``, ``<p>board``); a timed kind ``<k>`` has
``<p>top:<k>``, ``<p>top:<k>:published``, ``<p>top:<k>:version`` and the channel ``<p>board:<k>``
(on a cluster ``<p>{board:<k>}:top`` ..., so its script stays in one slot).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from ..periods import ALL
from .channels import MemoryBus
from .cluster import board_tag, on_cluster
from .ranking import run_scripts

_TOP_KEY = ',"top":'


def _period_fields(period: str | None, key: str | None) -> str:
    """The ``period`` and ``key`` fields of a timed board's message; nothing for the all-time board."""
    if period is None or period == ALL:
        return ""
    fields = f',"period":{json.dumps(period)}'
    return fields if key is None else f'{fields},"key":{json.dumps(key)}'


def message_parts(
    kind: str, top_json: str, changed_at: int | None = None, period: str | None = None, key: str | None = None
) -> tuple[str, str]:
    """A message split around its version: ``head + str(version) + tail`` is the whole message.

    ``changed_at`` (epoch ms of the oldest change the message carries) rides along as ``changedAt``;
    ``period`` (a timed kind; None or ``"all"`` for the all-time board) and its ``key`` come before it.
    """
    changed = "" if changed_at is None else f',"changedAt":{int(changed_at)}'
    return f'{{"type":"{kind}","version":', f"{_period_fields(period, key)}{changed}{_TOP_KEY}{top_json}}}"


def board_message(
    kind: str,
    version: int,
    top_json: str,
    changed_at: int | None = None,
    period: str | None = None,
    key: str | None = None,
) -> str:
    """The wire form of a board message; ``top_json`` is already serialised and is not parsed again."""
    head, tail = message_parts(kind, top_json, changed_at, period, key)
    return f"{head}{int(version)}{tail}"


class _Fields(NamedTuple):
    kind: str
    version: int
    changed_at: int | None
    top_json: str


class ParsedMessage(_Fields):
    """A board message taken apart: the top list stays serialised.

    The tuple is ``(kind, version, changed_at, top_json)``; the board it belongs to rides beside it as
    ``period`` (``"all"`` for the all-time board) and ``key`` (the period's key, None for all time),
    so a parsed all-time message still compares equal to its four fields.
    """

    period: str
    key: str | None

    def __new__(
        cls, kind: str, version: int, changed_at: int | None, top_json: str, period: str = ALL, key: str | None = None
    ) -> ParsedMessage:
        parsed = super().__new__(cls, kind, version, changed_at, top_json)
        parsed.period, parsed.key = period, key
        return parsed


def parse_message(message: str) -> ParsedMessage:
    """Take a message built by :func:`board_message` apart, without parsing its top list."""
    cut = message.index(_TOP_KEY)
    fields = json.loads(message[:cut] + "}")
    return ParsedMessage(
        fields["type"],
        int(fields["version"]),
        fields.get("changedAt"),
        message[cut + len(_TOP_KEY) : -1],
        fields.get("period", ALL),
        fields.get("key"),
    )


def dumps(top: list) -> str:
    """Serialise a top list compactly and deterministically, for comparing and sending."""
    return json.dumps(top, separators=(",", ":"), ensure_ascii=False)


def _published(top_json: str, period: str, key: str | None) -> str:
    """What a cache compares to decide "changed": the top list, and for a timed board the period's key too.

    With the key in it, the first board of a new period is broadcast even when it is as empty as the last.
    """
    return top_json if period == ALL else f"{key or ''}\n{top_json}"


class BoardCache(Protocol):
    """The last broadcast board of one kind, cached for reads, and its broadcast."""

    period: str  # the board's kind: "all", or a timed kind ("day", "week", "month") whose messages carry it

    def publish_if_changed(self, top_json: str, changed_at: int | None = None, key: str | None = None) -> int:
        """Cache and broadcast ``top_json`` unless it is the last one broadcast; returns the new version or 0.

        ``key`` is a timed board's period key: a new key is a change even when the list is the same.
        The all-time board has none (it is ignored there).
        """

    def cached(self) -> dict | None:
        """The cached last message as a dict, or None on a miss."""

    def version(self) -> int:
        """The version of the last broadcast."""

    def cache_if_absent(self, version: int, top_json: str, key: str | None = None) -> None:
        """Re-cache a top list read from the database (of the period ``key``), unless a broadcast got there first."""

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

    ``period`` is the board's kind: ``"all"`` keys ``<p>top``, ``<p>top:published``, ``<p>top:version``;
    a timed kind ``<k>`` keys ``<p>top:<k>`` ... and its messages carry ``period`` and ``key``. On a
    cluster (``client`` a ``RedisCluster``, or ``cluster=True``) the keys carry the board's hash tag
    (``<p>{board}:top``, ``<p>{board:<k>}:top`` ...), so the script and ``consistent``'s MGET stay in one slot.
    """

    def __init__(
        self, client, prefix: str, channel: str, ttl: int, cluster: bool | None = None, period: str = ALL
    ) -> None:
        self.redis = client
        cluster = on_cluster(client) if cluster is None else cluster
        self.channel = channel
        self.ttl = ttl
        self.period = period
        board = "" if period == ALL else period
        named = f":{board}" if board else ""
        base = f"{prefix}{board_tag(board)}:top" if cluster else f"{prefix}top{named}"
        self.published_key, self.message_key, self.version_key = f"{base}:published", base, f"{base}:version"
        self._publish = client.register_script(PUBLISH_IF_CHANGED)

    def publish_call(self, top_json: str, changed_at: int | None = None, key: str | None = None) -> tuple:
        """The publish script, its keys and its arguments, for :func:`publish_each` to run beside others."""
        key = None if self.period == ALL else key
        head, tail = message_parts("update", top_json, changed_at, self.period, key)
        _, plain_tail = message_parts("update", top_json, None, self.period, key)
        keys = [self.published_key, self.message_key, self.version_key]
        now_ms = int(time.time() * 1000)
        published = _published(top_json, self.period, key)
        return self._publish, keys, [published, self.ttl, self.channel, now_ms, head, tail, plain_tail]

    def publish_if_changed(self, top_json: str, changed_at: int | None = None, key: str | None = None) -> int:
        """Cache and broadcast ``top_json`` if it (or the period's ``key``) differs from the last broadcast.

        Returns the new version, or 0 when nothing changed.
        """
        script, keys, args = self.publish_call(top_json, changed_at, key)
        return int(script(keys=keys, args=args))

    def cached(self) -> dict | None:
        """The cached last message as a dict, or None on a miss."""
        payload = self.redis.get(self.message_key)
        return json.loads(payload) if payload else None

    def version(self) -> int:
        """The version of the last broadcast."""
        return int(self.redis.get(self.version_key) or 0)

    def cache_if_absent(self, version: int, top_json: str, key: str | None = None) -> None:
        """Re-cache a top list read from the database (of the period ``key``), unless a broadcast got there first."""
        key = None if self.period == ALL else key
        message = board_message("update", version, top_json, period=self.period, key=key)
        self.redis.set(self.message_key, message, ex=self.ttl, nx=True)

    def consistent(self) -> bool:
        """False if the cached top list (or period) differs from the last one published (a miss is not drift)."""
        cached, published = self.redis.mget(self.message_key, self.published_key)
        if cached is None or published is None:
            return True
        message = json.loads(cached)
        if self.period == ALL:
            return message["top"] == json.loads(published)
        key, _, top_json = published.partition("\n")
        return (message.get("key") or "") == key and message["top"] == json.loads(top_json)

    def invalidate(self) -> None:
        """Forget the cached and published top list, so the next publish re-caches and re-broadcasts it."""
        self.redis.delete(self.message_key, self.published_key)


def publish_each(items: Sequence[tuple[BoardCache, str, int | None, str | None]]) -> list[int]:
    """:meth:`BoardCache.publish_if_changed` of several boards (``(cache, top_json, changed_at, key)`` each), in
    one round trip when they share a Redis; each publish stays atomic on its own."""
    clients = {id(cache.redis): cache.redis for cache, *_ in items if isinstance(cache, RedisBoardCache)}
    if len(clients) != 1 or not all(isinstance(cache, RedisBoardCache) for cache, *_ in items):
        return [cache.publish_if_changed(top_json, changed_at, key) for cache, top_json, changed_at, key in items]
    calls = [cache.publish_call(top_json, changed_at, key) for cache, top_json, changed_at, key in items]
    return [int(version) for version in run_scripts(next(iter(clients.values())), calls)]


class MemoryBoardCache:
    """The last message of one board kind in memory; a publish hands it to this process's listeners."""

    def __init__(self, bus: MemoryBus, period: str = ALL) -> None:
        self._bus = bus
        self.period = period
        self._lock = threading.Lock()
        self._published: str | None = None
        self._message: str | None = None
        self._version = 0

    def publish_if_changed(self, top_json: str, changed_at: int | None = None, key: str | None = None) -> int:
        """Cache and broadcast ``top_json`` if it (or the period's ``key``) changed; returns the new version or 0."""
        key = None if self.period == ALL else key
        published = _published(top_json, self.period, key)
        with self._lock:
            if published == self._published:
                return 0
            self._version = max(self._version + 1, int(time.time() * 1000))
            self._published = published
            self._message = message = board_message("update", self._version, top_json, changed_at, self.period, key)
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

    def cache_if_absent(self, version: int, top_json: str, key: str | None = None) -> None:
        """Cache a top list read from the database unless a broadcast got there first."""
        key = None if self.period == ALL else key
        with self._lock:
            if self._message is None:
                self._message = board_message("update", version, top_json, period=self.period, key=key)

    def consistent(self) -> bool:
        """The cached message is always the one published here."""
        return True

    def invalidate(self) -> None:
        """Forget the published top list, so the next publish re-broadcasts it."""
        with self._lock:
            self._published = None
