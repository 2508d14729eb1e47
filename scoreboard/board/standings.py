"""Standings beyond the top list: pages of a board, a user's neighbours, chosen users, a user's history.

The boards are read from their ranking mirrors (``stores.ranking_for``), so every rank here is the
rank ``GET /api/score/top`` shows: highest score first, equal scores by who reached them first,
only visible users with points, 1..N without gaps. A mirror that is not built (Redis lost its
data, a period nobody has rebuilt yet) raises :class:`RankingNotBuilt` rather than answering
from a partial ranking. Each read is one script, which checks the built flag and returns the
display names kept beside the ranking, so a board read makes one Redis round trip and none to
PostgreSQL (the database is asked only for a name the mirror lacks, or for a held user's own
place). A user's history is read from the ledger in PostgreSQL, in one query.

A held user (``UserStatus.HELD``, a suspect of the anomaly scan awaiting review) is on no board,
yet their own standing reads as if they were: the member their score row spells is placed in the
ranking by an O(log n) read (``Ranking.around_as_if``), so nothing they see tips them off.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Integer, Select, and_, bindparam, func, literal, or_, select, tuple_, union_all
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import Compiled
from sqlalchemy.exc import DBAPIError

from ..extensions import db
from ..models import Completion, CompletionStatus, PeriodScore, Score, User, UserStatus, UTCDateTime
from ..ops.db_waits import timed_out
from ..periods import Period
from ..stores import get_stores
from ..stores.ranking import RankEntry, Ranking, RankingNotBuilt, Standing
from .source import display_names, to_micros

__all__ = ["RankingNotBuilt"]  # raised by the reads here; the API answers it with a 503

# A history event's kind; also its tie-break between events at one instant of one ledger row
# (a claim and its void), in this (alphabetical) order.
CLAIM, ADJUSTMENT, VOID = "claim", "adjustment", "void"
EVENT_KINDS = (ADJUSTMENT, CLAIM, VOID)


def ranking_of(period: Period) -> Ranking:
    """The ranking mirror of ``period``'s board; its reads here pass ``checked=True`` (a :class:`RankingNotBuilt`
    when it is not built, found by the read itself)."""
    return get_stores().ranking_for(period.board)


def entries_of(standings: Sequence[Standing]) -> list[dict[str, Any]]:
    """Standings shaped like the top list's rows, with the display names the mirror returned; the database is
    asked (one query) only for names it did not hold."""
    missing = sorted({s.user_id for s in standings if s.name is None})
    names = display_names(missing) if missing else {}
    return [
        {
            "rank": s.rank,
            "userId": s.user_id,
            "displayName": s.name or names.get(s.user_id, s.user_id),
            "score": s.score,
        }
        for s in standings
    ]


def top(period: Period, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` entries of ``period``'s board."""
    standings, _ = ranking_of(period).page(None, limit, checked=True)
    return entries_of(standings)


@dataclass(frozen=True)
class Page:
    """One page of a board: its entries, the keyset position after the last one, the board's size."""

    entries: list[dict[str, Any]]
    last_member: str | None
    more: bool
    total: int


def page(period: Period, after: str | None, limit: int) -> Page:
    """The ``limit`` entries right after the member ``after`` (None: from rank 1).

    Keyset on the member, not an offset: a claim only moves its user up, so a walk that goes on
    while scores change never shows a user twice and never skips a user whose score held still.
    """
    standings, total = ranking_of(period).page(after, limit, checked=True)
    last = standings[-1] if standings else None
    return Page(
        entries=entries_of(standings),
        last_member=last.member if last else None,
        more=last is not None and len(standings) == limit and last.rank < total,
        total=total,
    )


def held_members(board: str, user_ids: Sequence[str]) -> dict[str, str]:
    """The ranking members the held users among ``user_ids`` would have on ``board`` (``""`` all time, else a
    period's key): one read of their score rows by primary key. Users without points there are left out."""
    if not user_ids:
        return {}
    table = Score if not board else PeriodScore
    query = (
        select(table.user_id, table.score, table.reached_at)
        .join(User, User.id == table.user_id)
        .where(table.user_id.in_(list(user_ids)), User.status == UserStatus.HELD, table.score > 0)
    )
    if board:
        query = query.where(PeriodScore.period == board)
    return {
        r.user_id: RankEntry(r.user_id, int(r.score), to_micros(r.reached_at), 0, True).member
        for r in db.session.execute(query)
    }


def around(period: Period, user_id: str, radius: int) -> tuple[Standing | None, list[dict[str, Any]], int]:
    """``user_id``'s standing, the entries ``radius`` ranks either side of it, and the board's size.

    A held user gets the standing they would have, their neighbours around them and a total counting
    them; the database is read only for a user the ranking does not hold.
    """
    ranking = ranking_of(period)
    standing, near, total = ranking.around(user_id, radius, checked=True)
    if standing is None:
        member = held_members(period.board, [user_id]).get(user_id)
        if member is not None:
            standing, near, total = ranking.around_as_if(member, radius)
    return standing, entries_of(near) if standing else [], total


def of_users(period: Period, user_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The entries of the ranked users among ``user_ids``, in rank order (the others left out)."""
    found = ranking_of(period).standings(list(user_ids), checked=True)
    return entries_of(sorted(found.values(), key=lambda s: s.rank))


# --- history -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryKey:
    """A history event's place in time order: when, which ledger row, which kind (the keyset cursor);
    ``before`` is the running total just before it (the next page's newest score), None where not known."""

    at: datetime
    row_id: str
    kind: str
    before: int | None = None


def _events(user_id: Any, bounded: bool = False, keyset: bool = False, limited: bool = False) -> Select:
    """Every change of ``user_id``'s score (a value or a bound parameter) in the ledger:
    ``(at, row_id, kind, delta, action)``, one branch per kind of change.

    ``bounded`` keeps a period's (``h_start`` <= at < ``h_end``), ``keyset`` those before the cursor's event
    (``h_at``, ``h_row``, ``h_kind``), and ``limited`` only each branch's newest ``h_limit``: each branch is then
    read newest first through its own time-ordered index of the user's rows (``ix_completions_user_claims``,
    ``_user_adjustments``, ``_user_voids``), so a page reads about as many rows as it answers, however long the
    ledger, and the newest of the three branches' are the page's.
    """
    c = Completion.__table__
    mine = c.c.user_id == user_id
    timed = UTCDateTime()

    def branch(at: Any, kind: str, delta: Any, action: Any, *where: Any) -> Select:
        if bounded:
            where += (at >= bindparam("h_start", type_=timed), at < bindparam("h_end", type_=timed))
        if keyset:
            cursor_at = bindparam("h_at", type_=timed)
            # ``at <= h_at`` is implied by the tuple's comparison; stated, it bounds the index scan.
            where += (
                at <= cursor_at,
                tuple_(at, c.c.id, literal(kind)) < tuple_(cursor_at, bindparam("h_row"), bindparam("h_kind")),
            )
        rows = select(
            at.label("at"),
            c.c.id.label("row_id"),
            literal(kind).label("kind"),
            delta.label("delta"),
            action.label("action"),
        ).where(mine, *where)
        if not limited:
            return rows
        # A subquery of its own: SQLite takes no ORDER BY or LIMIT on a branch of a UNION.
        newest = rows.order_by(at.desc(), c.c.id.desc()).limit(bindparam("h_limit", type_=Integer())).subquery()
        return select(*newest.c)

    claims = branch(
        c.c.claimed_at,
        CLAIM,
        c.c.points,
        func.coalesce(c.c.action_key, literal(CLAIM)),
        c.c.claimed_at.is_not(None),
        # A void from before ``voided_at`` was recorded has no time for its reversal: both halves are left
        # out, so the running total still ends at the score.
        or_(
            c.c.status == CompletionStatus.CLAIMED,
            and_(c.c.status == CompletionStatus.VOID, c.c.voided_at.is_not(None)),
        ),
    )
    adjustments = branch(
        c.c.created_at, ADJUSTMENT, c.c.points, literal(ADJUSTMENT), c.c.status == CompletionStatus.ADJUSTMENT
    )
    voids = branch(
        c.c.voided_at,
        VOID,
        -c.c.points,
        literal(VOID),
        c.c.status == CompletionStatus.VOID,
        c.c.claimed_at.is_not(None),
        c.c.voided_at.is_not(None),
    )
    return union_all(claims, adjustments, voids)


# Where a history page's running total starts (the total after its newest entry):
SCORE_ROW = "score"  # the all-time first page: the user's score row, which every change of the ledger moves
LEDGER_SUM = "sum"  # a period's first page, or a cursor that carries no total: the sum of the events up to it
CARRIED = "carried"  # a later page: the total the previous page's cursor carries


@functools.cache
def _history_statement(bounded: bool, keyset: bool, start: str) -> Select:
    """The history page as one statement, built once per shape: a period's bounds or none, a cursor or none,
    and where its running total starts (``start``: :data:`SCORE_ROW`, :data:`LEDGER_SUM` or :data:`CARRIED`).

    Each row carries ``start``'s total as ``anchor`` (None for :data:`CARRIED`); the page's totals are worked out
    from it backwards (:func:`history`), so the page reads only its own rows (each kind's newest, see
    :func:`_events`), except for :data:`LEDGER_SUM`, whose sum reads every event up to the page.

    Bound by name: ``h_user``, ``h_limit`` (one more than the page), ``h_start`` and ``h_end`` (a period's),
    ``h_at``, ``h_row`` and ``h_kind`` (the cursor's event).
    """
    events = _events(bindparam("h_user"), bounded, keyset, limited=True).subquery("events")
    if start == SCORE_ROW:
        anchor = select(Score.score).where(Score.user_id == bindparam("h_user")).scalar_subquery()
    elif start == LEDGER_SUM:
        every = _events(bindparam("h_user"), bounded, keyset).subquery("every")
        anchor = select(func.sum(every.c.delta)).scalar_subquery()
    else:
        anchor = literal(None, type_=Integer())
    return (
        select(*events.c, anchor.label("anchor"))
        .order_by(events.c.at.desc(), events.c.row_id.desc(), events.c.kind.desc())
        .limit(bindparam("h_limit", type_=Integer()))
    )


# Asked only when a history page is empty: is there such a user at all?
_USER_EXISTS = select(User.id).where(User.id == bindparam("h_user"))


@functools.cache
def _compiled(statement: Select, dialect: Dialect) -> Compiled:
    return statement.compile(dialect=dialect)


class _HistoryRow(NamedTuple):
    """A row of :func:`_history_statement`, in its column order."""

    at: datetime | None
    row_id: str | None
    kind: str | None
    delta: int | None
    action: str | None
    anchor: int | None


def _history_rows(statement: Select, params: dict[str, Any], row: Callable[..., Any] = _HistoryRow) -> list[Any]:
    """Run a history page on the autocommitted pool without pre-ping where there is one (PostgreSQL's ``claims`` bind),
    compiled once and sent as its SQL on the driver's cursor (no result metadata built per call): the query is
    then the request's only round trip (no ``SELECT 1``, ``BEGIN`` or ``COMMIT``). A driver error goes through
    SQLAlchemy's own mapping (a dead connection is invalidated, and a 503 answers what is down); a connection
    left dead by a database restart fails its first use, and the read is then run once more on a fresh one."""
    engine = db.engines.get("claims")
    if engine is None:
        rows = db.session.execute(statement, params).all()
        db.session.commit()
        return rows
    compiled = _compiled(statement, engine.dialect)
    dialect = engine.dialect
    for attempt in (1, 2):
        try:
            with engine.connect() as conn:
                bound = compiled.construct_params(params)
                cursor = conn.connection.driver_connection.cursor()
                try:
                    cursor.execute(compiled.string, bound)
                    return [row(*found) for found in cursor.fetchall()]
                except dialect.loaded_dbapi.Error as exc:
                    gone = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
                    if gone:
                        conn.invalidate(exc)
                    raise DBAPIError.instance(
                        compiled.string,
                        bound,
                        exc,
                        dialect.loaded_dbapi.Error,
                        connection_invalidated=gone,
                        dialect=dialect,
                    ) from exc
                finally:
                    if not cursor.closed:
                        cursor.close()
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated or timed_out(exc):
                raise
    raise AssertionError("unreachable")


def history(
    user_id: str, period: Period, before: HistoryKey | None, limit: int
) -> tuple[list[dict], HistoryKey | None] | None:
    """A page of ``user_id``'s score changes inside ``period``, newest first, starting after ``before``; None when
    there is no such user.

    Each entry's ``score`` is the running total after it: the sum of the user's changes in the
    period up to it, in time order (the period's score; for all time, the score). The newest entry's
    total is known before the page is read: the score row for the all-time first page, the sum of the
    period's events for a period's first page, the total the cursor carries for a later page. Each older
    entry's is the one after it less its change. Returns the entries and the key of the last one when
    there may be more. One query (:func:`_history_statement`), through the time-ordered indexes of :func:`_events`;
    an empty page asks one more, whether the user exists.
    """
    bounded = period.start is not None
    params: dict[str, Any] = {"h_user": user_id, "h_limit": limit + 1}
    if bounded:
        params.update(h_start=period.start, h_end=period.end)
    if before is not None:
        params.update(h_at=before.at, h_row=before.row_id, h_kind=before.kind)
        start = CARRIED if before.before is not None else LEDGER_SUM
    else:
        start = LEDGER_SUM if bounded else SCORE_ROW
    rows = _history_rows(_history_statement(bounded, before is not None, start), params)
    if not rows and not _history_rows(_USER_EXISTS, {"h_user": user_id}, row=lambda *values: values):
        return None
    more = len(rows) > limit
    rows = rows[:limit]
    total = before.before if start == CARRIED else int(rows[0].anchor or 0) if rows else 0
    entries = []
    for r in rows:
        entries.append(
            {"at": r.at.isoformat(), "score": total, "delta": int(r.delta), "kind": r.kind, "action": r.action}
        )
        total -= int(r.delta)
    last = rows[-1] if rows and more else None
    return entries, HistoryKey(last.at, last.row_id, last.kind, total) if last else None
