"""From committed scores to the broadcast board (run by the worker's ``refresh`` task).

``refresh_board`` mirrors the changed scores into the ranking store, recomputes the top
list and broadcasts it only when it changed. The database is the outbox:
``scores.board_pending`` stays set until the change is mirrored, so a change committed
while Redis, the broker or every worker was down is picked up by the next sweep.
"""

import logging
import time

from flask import current_app
from sqlalchemy import bindparam, update

from ..extensions import db
from ..models import Score
from ..ops import metrics
from ..stores import get_stores
from ..stores.board_cache import dumps
from ..stores.ranking import Ranking
from .drift import count_drift
from .source import display_names, mirror_rows, public_entries, to_entries, unbounded_statement

log = logging.getLogger(__name__)

BATCH = 2000


def rebuild_mirror(ranking: Ranking) -> int:
    """Reload the whole ranking from the database into the store; returns how many entries differed."""
    ranking.reset()
    changed = 0
    unbounded_statement()
    for chunk in db.session.execute(mirror_rows().execution_options(yield_per=10_000)).partitions():
        changed += ranking.apply(to_entries(chunk))
    ranking.mark_built()
    db.session.commit()
    return changed


def sync_pending(ranking: Ranking, max_batches: int = 50) -> tuple[int, int | None]:
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
        rows = db.session.execute(mirror_rows().where(Score.board_pending).limit(BATCH)).all()
        if not rows:
            break
        entries = to_entries(rows)
        ranking.apply(entries)
        first = min(e.reached_us for e in entries) // 1000
        oldest = first if oldest is None else min(oldest, first)
        # Clear the flag only where no newer change has landed since we read the row.
        db.session.connection().execute(clear, [{"uid": r.user_id, "ver": r.version} for r in rows])
        db.session.commit()
        total += len(rows)
        if len(rows) < BATCH:
            break
    return total, oldest


def compose_top(ranking: Ranking, limit: int) -> list[dict]:
    """The public top list from the mirror, with display names from the database."""
    pairs = ranking.top(limit)
    names = display_names([user_id for user_id, _ in pairs])
    return public_entries([(user_id, names.get(user_id, user_id), score) for user_id, score in pairs])


def refresh_board(rebuild: bool = False) -> int:
    """Mirror pending changes, recompute the top list, broadcast if it changed; returns the new version or 0."""
    config = current_app.config
    stores = get_stores()
    coordination = stores.coordination
    with coordination.refresh_lock():
        # From here on a new change queues the next run: one running, at most one queued.
        coordination.release_refresh_slot()
        # Bound recomputes (and so broadcasts) to BROADCAST_MAX_RATE, whatever the claim rate. Waiting
        # before reading, inside the lock, means the run after a burst reads the burst's last change.
        min_interval = 1.0 / config["BROADCAST_MAX_RATE"]
        wait = coordination.last_refresh_at() + min_interval - time.time()
        if 0 < wait <= min_interval:
            time.sleep(wait)
        coordination.mark_refresh()
        metrics.RECOMPUTES.inc()
        if rebuild and stores.ranking.is_built():
            metrics.RECONCILE_DRIFT.inc(count_drift(stores))
        if rebuild or not stores.ranking.is_built():
            metrics.REBUILDS.labels(reason="reconcile" if rebuild else "mirror_missing").inc()
            rebuild_mirror(stores.ranking)
        _, changed_at = sync_pending(stores.ranking)
        top = compose_top(stores.ranking, config["BOARD_SIZE"])
        db.session.commit()
        version = stores.board_cache.publish_if_changed(dumps(top), changed_at)
        if version:
            metrics.BROADCASTS.inc()
            log.info("board broadcast", extra={"version": version})
        return version
