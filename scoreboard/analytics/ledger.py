"""The figures' parts computed straight from the ledger, over any span: on PostgreSQL for what the rollups
do not hold yet (the last hour or so), on SQLite for everything.

Every query reads through an index on PostgreSQL: claims by ``claimed_at``, never-claimed completions by
``created_at`` and voided ones by when they were voided (two partial indexes), claimable ones by
``expires_at`` (the expiry job's partial index), refusals by ``at``. None scans the ledger.
"""

from collections import Counter
from datetime import UTC, date, datetime

from sqlalchemy import Date, Integer, and_, cast, distinct, exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ..models import AnalyticsActivity, AnalyticsPlayer, ClaimRefusal, Completion, CompletionStatus
from .buckets import bucket_sql

ledger = Completion.__table__
refusals_table = ClaimRefusal.__table__
players = AnalyticsPlayer.__table__
activity = AnalyticsActivity.__table__


def hour_of(column: ColumnElement, dialect: str) -> ColumnElement:
    """The UTC hour a timestamp falls in."""
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%d %H:00:00", column)
    return func.date_trunc("hour", column, "UTC")


def day_of(column: ColumnElement, dialect: str) -> ColumnElement:
    """The UTC day a timestamp falls in."""
    if dialect == "sqlite":
        return func.date(column)
    return cast(func.timezone("UTC", column), Date)


def delay_seconds(dialect: str) -> ColumnElement:
    """Seconds from a completion's recording to its claim."""
    if dialect == "sqlite":
        return (func.julianday(ledger.c.claimed_at) - func.julianday(ledger.c.created_at)) * 86400.0
    return func.extract("epoch", ledger.c.claimed_at - ledger.c.created_at)


def as_hour(value: datetime | str) -> datetime:
    """An hour as the database gave it back (SQLite: text), aware in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_day(value: date | str) -> date:
    """A day as the database gave it back (SQLite: text)."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def _claimed_between(lo: datetime, hi: datetime) -> ColumnElement:
    return and_(ledger.c.claimed_at >= lo, ledger.c.claimed_at < hi, ledger.c.action_key.is_not(None))


def claims(conn: Connection, lo: datetime, hi: datetime) -> list[tuple[datetime, str, int, int]]:
    """``(hour, action, claims, points)`` of the claims made in ``[lo, hi)``."""
    hour = hour_of(ledger.c.claimed_at, conn.dialect.name).label("hour")
    rows = conn.execute(
        select(hour, ledger.c.action_key, func.count(), func.sum(ledger.c.points))
        .where(_claimed_between(lo, hi))
        .group_by(hour, ledger.c.action_key)
    ).all()
    return [(as_hour(h), action, int(n), int(points or 0)) for h, action, n, points in rows]


def delays(conn: Connection, lo: datetime, hi: datetime) -> Counter:
    """The histogram ``{bucket: claims}`` of the delays of the claims made in ``[lo, hi)``."""
    bucket = bucket_sql(delay_seconds(conn.dialect.name), conn.dialect.name).label("bucket")
    rows = conn.execute(select(bucket, func.count()).where(_claimed_between(lo, hi)).group_by(bucket)).all()
    return Counter({int(b): int(n) for b, n in rows})


def refusals(conn: Connection, lo: datetime, hi: datetime) -> Counter:
    """Refused claims in ``[lo, hi)`` by reason."""
    table = refusals_table
    rows = conn.execute(
        select(table.c.reason, func.count()).where(table.c.at >= lo, table.c.at < hi).group_by(table.c.reason)
    ).all()
    return Counter({reason: int(n) for reason, n in rows})


def recorded_claimed(conn: Connection, claimed_from: datetime, lo: datetime, hi: datetime) -> Counter:
    """By action: completions recorded in ``[lo, hi)`` and claimed at or after ``claimed_from``."""
    rows = conn.execute(
        select(ledger.c.action_key, func.count())
        .where(
            ledger.c.claimed_at >= claimed_from,
            ledger.c.created_at >= lo,
            ledger.c.created_at < hi,
            ledger.c.action_key.is_not(None),
        )
        .group_by(ledger.c.action_key)
    ).all()
    return Counter({action: int(n) for action, n in rows})


def recorded_unclaimed(conn: Connection, lo: datetime, hi: datetime) -> Counter:
    """By action: completions recorded in ``[lo, hi)`` and never claimed (pending, expired or voided unclaimed)."""
    rows = conn.execute(
        select(ledger.c.action_key, func.count())
        .where(
            ledger.c.claimed_at.is_(None),
            ledger.c.created_at >= lo,
            ledger.c.created_at < hi,
            ledger.c.status != CompletionStatus.ADJUSTMENT,
            ledger.c.action_key.is_not(None),
        )
        .group_by(ledger.c.action_key)
    ).all()
    return Counter({action: int(n) for action, n in rows})


def claimable(conn: Connection, lo: datetime, hi: datetime, now: datetime) -> int:
    """Completions recorded in ``[lo, hi)`` that can still be claimed at ``now``."""
    return int(
        conn.execute(
            select(func.count()).where(
                ledger.c.status == CompletionStatus.PENDING,
                ledger.c.expires_at > now,
                ledger.c.created_at >= lo,
                ledger.c.created_at < hi,
            )
        ).scalar_one()
    )


def voided(conn: Connection, voided_from: datetime | None, lo: datetime, hi: datetime) -> tuple[int, int]:
    """Completions recorded in ``[lo, hi)`` and voided at or after ``voided_from`` (None: whenever, voids from
    before ``voided_at`` was kept included): ``(voided after their claim, voided unclaimed)``."""
    was_claimed = cast(ledger.c.claimed_at.is_not(None), Integer).label("was_claimed")
    when = [] if voided_from is None else [ledger.c.voided_at >= voided_from]
    rows = conn.execute(
        select(was_claimed, func.count())
        .where(
            ledger.c.status == CompletionStatus.VOID,
            *when,
            ledger.c.created_at >= lo,
            ledger.c.created_at < hi,
            ledger.c.action_key.is_not(None),
        )
        .group_by(was_claimed)
    ).all()
    found = {int(flag): int(n) for flag, n in rows}
    return found.get(1, 0), found.get(0, 0)


def new_players(conn: Connection, claimed_from: datetime, lo: datetime, hi: datetime) -> int:
    """Users with no claim before ``claimed_from`` in the rollups whose first claim since falls in ``[lo, hi)``."""
    first = (
        select(ledger.c.user_id, func.min(ledger.c.claimed_at).label("first"))
        .where(ledger.c.claimed_at >= claimed_from)
        .group_by(ledger.c.user_id)
        .subquery()
    )
    known = exists().where(players.c.user_id == first.c.user_id)
    return int(
        conn.execute(
            select(func.count()).select_from(first).where(first.c.first >= lo, first.c.first < hi, ~known)
        ).scalar_one()
    )


def active_players(conn: Connection, lo: datetime, hi: datetime, rolled_up_since: datetime) -> int:
    """Users who claimed in ``[lo, hi)`` and whose rolled-up last claim is not at or after ``rolled_up_since``
    (those the rollups count already)."""
    counted = exists().where(players.c.user_id == ledger.c.user_id, players.c.last_claim_at >= rolled_up_since)
    return int(
        conn.execute(
            select(func.count(distinct(ledger.c.user_id))).where(
                ledger.c.claimed_at >= lo, ledger.c.claimed_at < hi, ~counted
            )
        ).scalar_one()
    )


def active_per_day(conn: Connection, lo: datetime, hi: datetime) -> Counter:
    """Per UTC day: users who claimed in ``[lo, hi)`` that day and are not in the rolled-up activity of that day."""
    dialect = conn.dialect.name
    day = day_of(ledger.c.claimed_at, dialect)
    counted = exists().where(activity.c.day == day, activity.c.user_id == ledger.c.user_id)
    labelled = day.label("day")
    rows = conn.execute(
        select(labelled, func.count(distinct(ledger.c.user_id)))
        .where(ledger.c.claimed_at >= lo, ledger.c.claimed_at < hi, ~counted)
        .group_by(labelled)
    ).all()
    return Counter({as_day(d): int(n) for d, n in rows})
