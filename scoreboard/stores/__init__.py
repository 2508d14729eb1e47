"""Shared state outside the database, one adapter per job, each on Redis or in process memory.

Every job has a ``typing.Protocol`` in its own module and two adapters that implement it:
on Redis (shared by every web process and worker) and in memory (the embedded
single-process mode that ``make run`` uses). :class:`Stores` bundles one of each; the app
binds it in :func:`init_app` and code reaches it through :func:`get_stores`.

Redis keys (``<p>`` is ``SCOREBOARD_REDIS_PREFIX``, default ``scoreboard:``):

==========================  ======  ===========================================================
``<p>rank``                 zset    0 -> ``<score:019d><inverted reached time:017d>:<user id>``, visible users
``<p>rank:state``           hash    user id -> ``<version>|<member>``: guards against stale writes
``<p>rank:built``           string  the mirror's format (``3``) once ``rank`` has been rebuilt from the database
``<p>rank:names``           hash    ranked user id -> display name, written with the member (one read, no database)
``<p>top``                  string  the last broadcast message (JSON), TTL ``SCOREBOARD_TOP_CACHE_TTL``
``<p>top:published``        string  the last broadcast top list, to publish only on change
``<p>top:version``          string  broadcast version: max(previous + 1, now in ms)
``<p>rank:<period>``        zset    a period's board (``day:2026-12-02`` ...); its ``:state``, ``:built``, ``:names``
``<p>top:<kind>``           string  a timed board's (day, week, month) last message, with ``:published``, ``:version``
``<p>refresh:pending``      string  single-flight flag: a recompute is queued (TTL 30 s)
``<p>refresh:lock``         lock    held while a recompute runs
``<p>refresh:last``         string  when the last recompute started (ms), to bound the rate
``<p>revoked``              zset    revoked token ``jti`` -> when its revocation lapses (epoch s)
``<p>socket-ticket:<hash>`` string  an unused socket ticket's holder, TTL at most 30 s (``socket_tickets``)
``<p>sockets:<ip>``         zset    one client IP's open sockets -> last renewal (``socket_slots``)
``<p>board`` (channel)      pub/sub every broadcast message of the all-time board
``<p>board:<kind>``         pub/sub (channel) every broadcast message of the current day, week or month board
``<p>revoked`` (channel)    pub/sub every revocation, ``{"jti", "exp"}``, for the processes' copies
==========================  ======  ===========================================================

Every member of a ranking has score 0, so Redis orders them by member alone: the member spells the
rank (highest score, then whoever reached it first, then the higher user id), and ranks, pages after a
member and a user's neighbours are each one O(log n) script (:mod:`.ranking`).

On a Redis Cluster (``redis+cluster://``, see :mod:`.cluster`) the first eight carry the board's
hash tag, so the scripts and multi-key commands over them stay in one slot: ``<p>{board}:rank``,
``<p>{board}:rank:state``, ``<p>{board}:rank:built``, ``<p>{board}:rank:names``, ``<p>{board}:top``,
``<p>{board}:top:published``, ``<p>{board}:top:version`` (a named board ``<b>``, such as a period's:
``<p>{board:<b>}:rank`` ...).
The others are each used alone and keep their names. A timed board's cache carries its kind's tag:
``<p>{board:<kind>}:top``, ``<p>{board:<kind>}:top:published``, ``<p>{board:<kind>}:top:version``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from flask import Flask, current_app

from config import is_redis_cluster

from ..periods import ALL, TIMED
from .board_cache import BoardCache, MemoryBoardCache, RedisBoardCache
from .channels import Channels, MemoryBus, RedisChannels
from .cluster import ClusterChannels, check_cluster, cluster_from_url
from .coordination import Coordination, MemoryCoordination, RedisCoordination
from .ranking import MemoryRanking, Ranking, RedisRanking
from .revocation_list import MemoryRevocationList, RedisRevocationList, RevocationList
from .socket_slots import MemorySocketSlots, RedisSocketSlots, SocketSlots
from .socket_tickets import MemorySocketTickets, RedisSocketTickets, SocketTickets

_EXTENSION = "scoreboard.stores"


@dataclass(frozen=True)
class Stores:
    """One adapter per job, all on the same backend."""

    ranking: Ranking
    board_cache: BoardCache
    coordination: Coordination
    revocations: RevocationList
    channels: Channels
    socket_tickets: SocketTickets
    socket_slots: SocketSlots
    ping: Callable[[], None]
    embedded: bool
    make_ranking: Callable[[str], Ranking] = field(repr=False, compare=False)
    _boards: dict[str, Ranking] = field(default_factory=dict, init=False, repr=False, compare=False)
    _boards_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    # The timed boards' caches (day, week, month); the all-time one is ``board_cache``.
    timed_board_caches: dict[str, BoardCache] = field(default_factory=dict, repr=False, compare=False)

    def ranking_for(self, board: str) -> Ranking:
        """The ranking of ``board``: ``""`` is the all-time :attr:`ranking`, any other name (a period's key) its own.

        Each is made once per name and kept, so every caller of one board shares its adapter.
        """
        if not board:
            return self.ranking
        with self._boards_lock:
            ranking = self._boards.get(board)
            if ranking is None:
                ranking = self._boards[board] = self.make_ranking(board)
            return ranking

    def board_cache_for(self, kind: str) -> BoardCache:
        """The cache and broadcast of one board kind: ``"all"`` is :attr:`board_cache`; day, week, month their own."""
        if kind == ALL:
            return self.board_cache
        try:
            return self.timed_board_caches[kind]
        except KeyError:
            raise ValueError(f"no board cache for {kind!r}") from None


def redis_stores(url: str, prefix: str, cache_ttl: int, connection_class: type | None = None) -> Stores:
    """Every store on the Redis at ``url``, under ``prefix``; ``redis+cluster://`` is a Redis Cluster.

    ``connection_class``, when given, makes every connection (the circuit breaker's, see ``scoreboard.ops``).
    """
    options = {"decode_responses": True, "socket_timeout": 2, "socket_connect_timeout": 2, "health_check_interval": 15}
    if connection_class is not None:
        options["connection_class"] = connection_class
    cluster = is_redis_cluster(url)
    if cluster:
        client = cluster_from_url(url, **options)
    else:
        import redis

        client = redis.Redis.from_url(url, **options)
    ranking = RedisRanking(client, prefix)
    # On a cluster the subscription is opened on the node serving the board's keys, or any node that answers.
    channels = ClusterChannels(client, prefix, ranking.members_key) if cluster else RedisChannels(client, prefix)
    return Stores(
        ranking=ranking,
        board_cache=RedisBoardCache(client, prefix, channels.board_channel, cache_ttl),
        coordination=RedisCoordination(client, prefix),
        revocations=RedisRevocationList(client, prefix, channels.revocations_channel),
        channels=channels,
        socket_tickets=RedisSocketTickets(client, prefix),
        socket_slots=RedisSocketSlots(client, prefix),
        ping=partial(check_cluster, client) if cluster else client.ping,
        embedded=False,
        make_ranking=partial(RedisRanking, client, prefix),
        timed_board_caches={
            kind: RedisBoardCache(client, prefix, channels.board_channels[kind], cache_ttl, period=kind)
            for kind in TIMED
        },
    )


def memory_stores() -> Stores:
    """Every store in this process's memory, sharing one in-process message bus."""
    bus = MemoryBus()
    return Stores(
        ranking=MemoryRanking(),
        board_cache=MemoryBoardCache(bus),
        coordination=MemoryCoordination(),
        revocations=MemoryRevocationList(bus),
        channels=bus,
        socket_tickets=MemorySocketTickets(),
        socket_slots=MemorySocketSlots(),
        ping=lambda: None,
        embedded=True,
        make_ranking=MemoryRanking,
        timed_board_caches={kind: MemoryBoardCache(bus, period=kind) for kind in TIMED},
    )


def get_stores(app: Flask | None = None) -> Stores:
    """The stores bound to ``app`` (default: the current app)."""
    return (app or current_app).extensions[_EXTENSION]


def init_app(app: Flask) -> None:
    """Bind the Redis stores, or the in-process ones when no Redis is configured."""
    config = app.config
    if config["EMBEDDED_REDIS"]:
        stores = memory_stores()
    else:
        stores = redis_stores(
            config["REDIS_URL"], config["REDIS_PREFIX"], config["TOP_CACHE_TTL"], config.get("REDIS_CONNECTION_CLASS")
        )
    app.extensions[_EXTENSION] = stores
