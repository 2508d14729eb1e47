"""Reconcile's measure: how far the board in Redis has drifted from the database.

Run under the refresh lock, just before a rebuild replaces the mirror, so no recompute
changes the mirror while it is compared. Changes still in the outbox (``board_pending``)
are in flight, not drift, and are not counted.
"""

import logging

from ..extensions import db
from ..models import Score

log = logging.getLogger(__name__)


def count_drift(store, rows, to_entries):
    """Entries of the mirror and cache that disagree with the database; a stale cache is dropped.

    ``rows`` selects the mirror's columns for every user; ``to_entries`` turns rows into
    mirror entries. Counted once each: a user whose mirrored state or ranking is wrong or
    missing, a mirrored user or ranking member the database does not account for, and a
    cached top list that differs from the last one published.
    """
    wrong = present = ranked = 0
    result = db.session.execute(rows.add_columns(Score.board_pending).execution_options(yield_per=10_000))
    for chunk in result.partitions():
        for row, (has_state, in_rank, matches) in zip(chunk, store.audit(to_entries(chunk))):
            present += has_state
            ranked += in_rank
            wrong += not matches and not row.board_pending
    db.session.commit()
    states, members = store.mirror_size()
    drift = wrong + (states - present) + (members - ranked)
    if not store.cache_consistent():
        store.invalidate_cache()  # the publish that follows re-caches and re-broadcasts the top list
        drift += 1
    if drift:
        log.warning("reconcile found the board drifted from the database; rebuilding", extra={"drift": drift})
    return drift
