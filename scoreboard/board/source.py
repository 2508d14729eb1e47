"""The ranking read straight from the database: the source of truth the board mirrors.

Order: score descending, then who reached that score first, then user id descending (the
same order the mirror keeps, see ``stores.ranking``).
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, text

from ..extensions import db
from ..models import PeriodScore, Score, User, UserStatus
from ..stores.ranking import RankEntry

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Served by the ix_scores_rank index.
RANK_ORDER = (Score.score.desc(), Score.reached_at.asc(), Score.user_id.desc())


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch: an exact integer for ordering ties."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def public_entries(rows: Iterable[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """Shape ``(user_id, display_name, score)`` rows as the API's top list."""
    return [
        {"rank": rank, "userId": user_id, "displayName": name, "score": int(score)}
        for rank, (user_id, name, score) in enumerate(rows, start=1)
    ]


def top_from_db(limit: int) -> list[dict[str, Any]]:
    """The top ``limit`` visible users."""
    rows = db.session.execute(
        select(Score.user_id, User.display_name, Score.score)
        .join(User, User.id == Score.user_id)
        .where(Score.score > 0, User.status == UserStatus.ACTIVE)
        .order_by(*RANK_ORDER)
        .limit(limit)
    ).all()
    return public_entries(rows)


def top_of_everyone(limit: int) -> list[dict[str, Any]]:
    """The top ``limit`` of every user with points, whatever their status (the admin's view)."""
    rows = db.session.execute(
        select(Score.user_id, User.display_name, Score.score, User.status)
        .join(User, User.id == Score.user_id)
        .where(Score.score > 0)
        .order_by(*RANK_ORDER)
        .limit(limit)
    ).all()
    return [
        {"rank": rank, "userId": r.user_id, "displayName": r.display_name, "score": int(r.score), "status": r.status}
        for rank, r in enumerate(rows, start=1)
    ]


def display_names(user_ids: Sequence[str]) -> dict[str, str]:
    """Map user ids to display names in one query."""
    if not user_ids:
        return {}
    return dict(db.session.execute(select(User.id, User.display_name).where(User.id.in_(user_ids))).all())


def unbounded_statement() -> None:
    """Lift the statement timeout for the rest of this transaction: the whole-table reads of a rebuild or a
    reconcile take as long as the table is big, unlike the requests the timeout is for."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL statement_timeout = 0"))


def mirror_rows() -> Select:
    """The columns the all-time mirror needs (the display name too, kept beside the ranking), for every user."""
    return select(Score.user_id, Score.score, Score.reached_at, Score.version, User.status, User.display_name).join(
        User, User.id == Score.user_id
    )


def period_rows() -> Select:
    """The same columns for the period boards, with each row's period key (filter it by ``PeriodScore.period``)."""
    return select(
        PeriodScore.period,
        PeriodScore.user_id,
        PeriodScore.score,
        PeriodScore.reached_at,
        PeriodScore.version,
        User.status,
        User.display_name,
    ).join(User, User.id == PeriodScore.user_id)


def board_rows(board: str) -> Select:
    """The mirror rows of one board: ``""`` the all-time one, else a period key (served by ix_period_scores_rank)."""
    return mirror_rows() if not board else period_rows().where(PeriodScore.period == board)


def to_entries(rows: Iterable[Any]) -> list[RankEntry]:
    """Turn :func:`mirror_rows` rows into mirror entries; only active users with points are visible."""
    return [
        RankEntry(
            user_id=r.user_id,
            score=int(r.score),
            reached_us=to_micros(r.reached_at),
            version=int(r.version),
            visible=r.status == UserStatus.ACTIVE and r.score > 0,
            name=r.display_name,
        )
        for r in rows
    ]
