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
    """How many things reconcile is about to fix; a stale cached top list is dropped here.

    Counted: each user whose mirrored state or ranking differs from the database, each
    mirrored state or ranking member the database does not account for, and a cached top
    list that differs from the last one published. ``rows`` selects the mirror's columns
    for every user; ``to_entries`` turns rows into mirror entries.
    """
    wrong = present = ranked = 0
    result = db.session.execute(rows.add_columns(Score.board_pending).execution_options(yield_per=10_000))
    for chunk in result.partitions():
        entries = to_entries(chunk)
        for row, e, (state, state_member_score, entry_member_score) in zip(chunk, entries, store.audit(entries)):
            present += state is not None
            if row.board_pending:
                # In flight: the mirror may hold the previous state; only account for what it holds.
                ranked += state_member_score is not None
                continue
            ranked += e.visible and entry_member_score is not None
            expected = f"{e.version}|{e.member if e.visible else ''}"
            wrong += state != expected or (e.visible and entry_member_score != e.score)
    db.session.commit()
    states, members = store.mirror_size()
    drift = wrong + (states - present) + (members - ranked)
    if not store.cache_consistent():
        store.invalidate_cache()  # the publish that follows re-caches and re-broadcasts the top list
        drift += 1
    if drift:
        log.warning("reconcile found the board drifted from the database; rebuilding", extra={"drift": drift})
    return drift
