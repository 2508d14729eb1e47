"""Reading the board: this process's in-memory copy when current, else the cache, else the database."""

import logging

from flask import current_app
from redis.exceptions import RedisError

from ..ops import metrics
from ..stores import get_stores
from ..stores.board_cache import dumps
from .local_copy import local_board
from .source import top_from_db

log = logging.getLogger(__name__)


def read_board() -> dict:
    """The current board ``{"type", "version", "top"}``: the cache, else the database (then re-cached)."""
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


def current_top(counted: bool = True) -> tuple[int, str | bytes]:
    """``(version, top list as JSON)``: from memory when the process's copy is current, else :func:`read_board`.

    ``counted`` records a read from memory in the cache metric (socket snapshots are not top-list reads).
    """
    held = local_board().held()
    if held is not None:
        if counted:
            metrics.CACHE.labels(result="memory").inc()
        return held
    board = read_board()
    return board["version"], dumps(board["top"])
