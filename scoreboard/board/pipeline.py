"""From committed scores to the broadcast board.

``request_refresh`` runs after a claim commits and queues at most one recompute;
``refresh_board`` (run by the worker) mirrors the changed scores into the store,
recomputes the top list and broadcasts it only when it changed. The database is
the outbox: ``scores.board_pending`` stays set until the change is mirrored, so a
change committed while Redis, the broker or every worker was down is picked up
by the next sweep.
"""

import json
import logging
import time

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import bindparam, select, update

from ..extensions import db
from ..models import Score, User
from ..ops import metrics
from ..scoring.ranking import display_names, public_entries, to_micros, top_from_db
from . import get_store
from .entry import RankEntry

log = logging.getLogger(__name__)

REFRESH_TASK = "workers.board.refresh"
BATCH = 2000


class _Queued:
    """What ``send_task`` hands back for a recompute: nobody waits for its result."""

    __slots__ = ("id", "ignored")

    def __init__(self, task_id):
        self.id = task_id


def request_refresh():
    """Queue one board recompute unless one is already queued; never raises."""
    store = get_store()
    try:
        if not store.claim_refresh_slot():
            return False
    except RedisError as exc:
        log.warning("board refresh not queued, redis unavailable (the sweep will catch up): %s", exc)
        return False
    try:
        celery = current_app.extensions["celery"]
        if celery.conf.task_always_eager:
            celery.tasks[REFRESH_TASK].delay()
        else:
            # No AsyncResult: building one looks up the result backend, which Celery caches per thread,
            # and under gevent every request is a new greenlet, so each send paid for a fresh lookup.
            celery.send_task(REFRESH_TASK, ignore_result=True, result_cls=_Queued)
        return True
    except Exception as exc:  # broker down: the outbox keeps the change for the sweep
        log.warning("board refresh not queued, broker unavailable (the sweep will catch up): %s", exc)
        try:
            store.release_refresh_slot()
        except RedisError:
            pass
        return False


def _entries(rows):
    """Turn score rows into mirror entries."""
    return [
        RankEntry(
            user_id=r.user_id,
            score=int(r.score),
            reached_us=to_micros(r.reached_at),
            version=int(r.version),
            visible=r.status == "active" and r.score > 0,
        )
        for r in rows
    ]


def _rows():
    """The columns the mirror needs, for every user."""
    return select(Score.user_id, Score.score, Score.reached_at, Score.version, User.status).join(
        User, User.id == Score.user_id
    )


def rebuild_mirror(store):
    """Reload the whole ranking from the database into the store; returns how many entries differed."""
    store.reset()
    changed = 0
    result = db.session.execute(_rows().execution_options(yield_per=10_000))
    for chunk in result.partitions():
        changed += store.apply(_entries(chunk))
    store.mark_built()
    db.session.commit()
    return changed


def sync_pending(store, max_batches=50):
    """Mirror the outbox (rows flagged ``board_pending``) into the store.

    Returns how many rows, and when the oldest of them changed (epoch ms, None if none did).
    """
    scores = Score.__table__
    clear = (
        update(scores)
        .where(scores.c.user_id == bindparam("uid"), scores.c.version == bindparam("ver"))
        .values(board_pending=False)
    )
    total, oldest = 0, None
    for _ in range(max_batches):
        rows = db.session.execute(_rows().where(Score.board_pending).limit(BATCH)).all()
        if not rows:
            break
        entries = _entries(rows)
        store.apply(entries)
        first = min(e.reached_us for e in entries) // 1000
        oldest = first if oldest is None else min(oldest, first)
        # Clear the flag only where no newer change has landed since we read the row.
        db.session.connection().execute(clear, [{"uid": r.user_id, "ver": r.version} for r in rows])
        db.session.commit()
        total += len(rows)
        if len(rows) < BATCH:
            break
    return total, oldest


def compose_top(store, limit):
    """The public top list from the mirror, with display names from the database."""
    pairs = store.top(limit)
    names = display_names([user_id for user_id, _ in pairs])
    return public_entries([(user_id, names.get(user_id, user_id), score) for user_id, score in pairs])


def dumps(top):
    """Serialise a top list compactly and deterministically, for comparing and sending."""
    return json.dumps(top, separators=(",", ":"), ensure_ascii=False)


def refresh_board(rebuild=False):
    """Mirror pending changes, recompute the top list, broadcast if it changed; returns the new version or 0."""
    config = current_app.config
    store = get_store()
    with store.refresh_lock():
        # From here on a new change queues the next run: one running, at most one queued.
        store.release_refresh_slot()
        # Bound recomputes (and so broadcasts) to BROADCAST_MAX_RATE, whatever the claim rate. Waiting
        # before reading, inside the lock, means the run after a burst reads the burst's last change.
        min_interval = 1.0 / config["BROADCAST_MAX_RATE"]
        wait = store.last_refresh_at() + min_interval - time.time()
        if 0 < wait <= min_interval:
            time.sleep(wait)
        store.mark_refresh()
        metrics.RECOMPUTES.inc()
        if rebuild and store.is_built():
            from .audit import count_drift

            metrics.RECONCILE_DRIFT.inc(count_drift(store, _rows(), _entries))
        if rebuild or not store.is_built():
            metrics.REBUILDS.labels(reason="reconcile" if rebuild else "mirror_missing").inc()
            rebuild_mirror(store)
        _, changed_at = sync_pending(store)
        top = compose_top(store, config["BOARD_SIZE"])
        db.session.commit()
        version = store.publish_if_changed(dumps(top), config["TOP_CACHE_TTL"], changed_at)
        if version:
            metrics.BROADCASTS.inc()
            log.info("board broadcast", extra={"version": version})
        return version


def read_board():
    """The current board ``{"version", "top"}``: the cache, else the database (then re-cached)."""
    config = current_app.config
    store = get_store()
    version = None
    try:
        board = store.cached_board()
        if board is not None:
            metrics.CACHE.labels(result="hit").inc()
            return board
        version = store.version()
    except RedisError as exc:
        log.warning("board cache unavailable, reading the database: %s", exc)
    metrics.CACHE.labels(result="miss").inc()
    top = top_from_db(config["BOARD_SIZE"])
    if version is not None:
        try:
            store.cache_if_absent(version, dumps(top), config["TOP_CACHE_TTL"])
        except RedisError:
            pass
    return {"type": "update", "version": version or 0, "top": top}
