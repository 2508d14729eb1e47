"""Reading a board: this process's in-memory copy when current, else the cache, else the ranking or the database.

Each board kind reads the same way: the all-time board and the current day, ISO week and month.
A timed board is only ever the current period's: a cached or held board of a period that has
ended (the day rolled over, and the worker has not broadcast the new day yet) is not shown, the
new period's is composed from its ranking instead (:func:`board.refresh.compose_top`).
"""

import logging
from typing import NamedTuple

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import select

from ..extensions import db
from ..models import PeriodScore, User, UserStatus
from ..ops import metrics
from ..periods import ALL, resolve
from ..stores import get_stores
from ..stores.board_cache import dumps
from .local_copy import local_board
from .refresh import compose_top
from .source import public_entries, top_from_db

log = logging.getLogger(__name__)


class Board(NamedTuple):
    """One board as read: its version, its period's key (None for all time) and its top list as JSON."""

    version: int
    key: str | None
    top_json: str | bytes


def read_board(kind: str = ALL) -> dict:
    """The current board of ``kind`` as its message ``{"type", "version", ["period", "key",] "top"}``.

    The all-time board: the cache, else the database (then re-cached). A timed board: the cache when it
    holds the current period's, else composed from the period's ranking, else (Redis down) the database.
    """
    if kind != ALL:
        return _read_timed(kind)
    config = current_app.config
    board_cache = get_stores().board_cache
    version = None
    try:
        board = board_cache.cached()
        if board is not None:
            metrics.CACHE.labels(result="hit").inc()
            return board
        version = board_cache.version()
    except RedisError as exc:
        log.warning("board cache unavailable, reading the database: %s", exc)
    metrics.CACHE.labels(result="miss").inc()
    top = top_from_db(config["BOARD_SIZE"])
    if version is not None:
        try:
            board_cache.cache_if_absent(version, dumps(top))
        except RedisError:
            pass
    return {"type": "update", "version": version or 0, "top": top}


def _read_timed(kind: str) -> dict:
    """The current period's board of ``kind`` (``day``, ``week``, ``month``)."""
    size = current_app.config["BOARD_SIZE"]
    period = resolve(kind)
    stores = get_stores()
    cache = stores.board_cache_for(kind)
    try:
        board = cache.cached()
        if board is not None and board.get("key") == period.key:
            metrics.CACHE.labels(result="hit").inc()
            return board
        # One above the last broadcast (of this period, or of the one that ended): it replaces that board
        # everywhere, and the worker's next broadcast (never below it, versions only grow) replaces it in turn.
        version = cache.version() + 1
        metrics.CACHE.labels(result="miss").inc()
        top = compose_top(stores.ranking_for(period.board), size)
    except RedisError as exc:
        log.warning("%s board unavailable in redis, reading the database: %s", kind, exc)
        metrics.CACHE.labels(result="miss").inc()
        version, top = 0, _period_top_from_db(period.key, size)
    return {"type": "update", "version": version, "period": kind, "key": period.key, "top": top}


def _period_top_from_db(key: str, limit: int) -> list[dict]:
    """The top ``limit`` visible users of the period ``key``, in the board's order (ix_period_scores_rank)."""
    rows = db.session.execute(
        select(PeriodScore.user_id, User.display_name, PeriodScore.score)
        .join(User, User.id == PeriodScore.user_id)
        .where(PeriodScore.period == key, PeriodScore.score > 0, User.status == UserStatus.ACTIVE)
        .order_by(PeriodScore.score.desc(), PeriodScore.reached_at.asc(), PeriodScore.user_id.desc())
        .limit(limit)
    ).all()
    return public_entries(rows)


def current_board(kind: str = ALL, counted: bool = True) -> Board:
    """The board of ``kind``: from memory when the process's copy is current (and of the current period), else
    :func:`read_board`.

    ``counted`` records a read from memory in the cache metric (socket snapshots are not top-list reads).
    """
    key = None if kind == ALL else resolve(kind).key
    held = local_board(kind=kind).held(key)
    if held is not None:
        if counted:
            metrics.CACHE.labels(result="memory").inc()
        return Board(held[0], key, held[1])
    board = read_board(kind)
    return Board(board["version"], board.get("key"), dumps(board["top"]))


def current_top(counted: bool = True, kind: str = ALL) -> tuple[int, str | bytes]:
    """``(version, top list as JSON)`` of the board of ``kind`` (default all time); see :func:`current_board`."""
    board = current_board(kind, counted)
    return board.version, board.top_json
