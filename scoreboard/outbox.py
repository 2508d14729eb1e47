"""The outbox: a score change committed with a flag the board's sweep picks up.

Every write to a user's score or standing goes through :func:`score_change` (all-time, or a period's row),
:func:`period_upsert` (points added to a day, week or month) or :func:`flag_periods`, so the row's ``version``
grows (the mirror never applies an older state) and ``board_pending`` stays set until the board has mirrored it
(``board.refresh`` clears it). ``scoring`` writes through these, and ``board`` folds claims into their periods
through the same upsert, hence their place beside the data model.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, case, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert, Update

from .models import PeriodScore, Score
from .periods import Period

scores = Score.__table__
period_scores = PeriodScore.__table__


def score_change(table: Table = scores, **values: Any) -> dict[str, Any]:
    """SET values for an UPDATE of ``table`` (``scores`` or ``period_scores``): ``values`` plus the marker."""
    return {**values, "version": table.c.version + 1, "board_pending": True}


def not_before(column: ColumnElement, moment: ColumnElement) -> ColumnElement:
    """``moment``, unless ``column`` is already later: a score's ``reached_at`` never moves back. Two claims of
    one user commit in turn, and the second may carry the earlier clock reading; the score was reached when the
    later of them was made (what the ledger's ``max(claimed_at)`` says too)."""
    return case((column > moment, column), else_=moment)


def period_upsert(dialect: str) -> Insert:
    """Add ``:p_points`` to ``:p_user``'s row of period ``:p_period`` (creating it), reached at ``:p_now``."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    statement = insert(period_scores).values(
        period=bindparam("p_period"),
        user_id=bindparam("p_user"),
        score=bindparam("p_points"),
        reached_at=bindparam("p_now"),
        version=1,
        board_pending=True,
    )
    return statement.on_conflict_do_update(
        index_elements=[period_scores.c.period, period_scores.c.user_id],
        set_=score_change(
            period_scores,
            score=period_scores.c.score + statement.excluded.score,
            reached_at=not_before(period_scores.c.reached_at, statement.excluded.reached_at),
        ),
    )


def period_params(periods: Sequence[Period], user_id: str, points: int, now: datetime) -> list[dict[str, Any]]:
    """One :func:`period_upsert` parameter set per period."""
    return [{"p_period": p.key, "p_user": user_id, "p_points": points, "p_now": now} for p in periods]


def flag_periods(user_id: str, keys: Sequence[str]) -> Update:
    """Mark ``user_id``'s rows of the periods ``keys`` changed, so their boards pick up a new standing."""
    return (
        update(period_scores)
        .where(period_scores.c.user_id == user_id, period_scores.c.period.in_(keys))
        .values(score_change(period_scores))
    )
