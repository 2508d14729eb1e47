"""Reconcile's measure: how far the board in the stores has drifted from the database.

Run under the refresh lock, just before a rebuild replaces the mirror, so no recompute
changes the mirror while it is compared. Changes still in the outbox (``board_pending``)
are in flight, not drift, and are not counted.
"""

import logging
from collections.abc import Iterable

from sqlalchemy import Select

from ..extensions import db
from ..models import PeriodScore, Score
from ..periods import Period
from ..stores import Stores
from ..stores.ranking import Ranking
from .source import board_rows, mirror_rows, to_entries, unbounded_statement

log = logging.getLogger(__name__)


def count_drift(stores: Stores, periods: Iterable[Period] = ()) -> int:
    """How many things reconcile is about to fix, on the all-time board and on ``periods``' boards; a stale
    cached top list is dropped here.

    Counted: each user whose mirrored state or ranking differs from the database, each
    mirrored state or ranking member the database does not account for, and a cached top
    list that differs from the last one published.
    """
    drift = _board_drift(stores.ranking, mirror_rows().add_columns(Score.board_pending))
    for period in periods:
        ranking = stores.ranking_for(period.board)
        if ranking.is_built():
            drift += _board_drift(ranking, board_rows(period.board).add_columns(PeriodScore.board_pending))
    if not stores.board_cache.consistent():
        stores.board_cache.invalidate()  # the publish that follows re-caches and re-broadcasts the top list
        drift += 1
    if drift:
        log.warning("reconcile found the board drifted from the database; rebuilding", extra={"drift": drift})
    return drift


def _board_drift(ranking: Ranking, query: Select) -> int:
    """One board's count: its mirror against the rows ``query`` reads (with their ``board_pending``)."""
    wrong = present = ranked = 0
    unbounded_statement()
    for chunk in db.session.execute(query.execution_options(yield_per=10_000)).partitions():
        entries = to_entries(chunk)
        for row, e, mirrored in zip(chunk, entries, ranking.compare(entries), strict=True):
            present += mirrored.state is not None
            if row.board_pending:
                # In flight: the mirror may hold the previous state; only account for what it holds.
                ranked += mirrored.state_member_ranked
                continue
            ranked += e.visible and mirrored.entry_member_ranked
            expected = f"{e.version}|{e.member if e.visible else ''}"
            # The member carries the score: the entry's own member ranked means its score is mirrored.
            wrong += mirrored.state != expected or (e.visible and not mirrored.entry_member_ranked)
    db.session.commit()
    states, members = ranking.size()
    return wrong + (states - present) + (members - ranked)
