"""The rollups the worker keeps on PostgreSQL, and their reads.

Two watermarks, both whole hours, kept in ``analytics_state``:

- ``claims``: every claim (by ``claimed_at``) and refused claim (by ``at``) before it is rolled up: into
  ``analytics_hours`` (claims and points per hour and action; and, per the hour each claimed completion
  was *recorded* in, ``recorded_claimed``; and per the hour each voided completion was recorded in, by when
  it was voided, ``void_claimed`` and ``void_unclaimed``), ``analytics_delays``, ``analytics_refusals``,
  ``analytics_players`` (first and last claim) and ``analytics_activity``/``analytics_days`` (each day's
  distinct claimers).
- ``settled``: every completion recorded before it that was never claimed is counted in
  ``analytics_hours.recorded_unclaimed``; no completion recorded before it can still be claimed.

Each run moves the watermarks forward, a few hours per transaction, to ``now - lag`` (and ``settled``
no further than the oldest completion that can still be claimed). A transaction writes one window's
rows and its watermark together, under an advisory lock: a window is rolled up exactly once, a run
killed half-way leaves the watermarks where its last commit put them, a second run at once finds nothing
to do, and a run after downtime catches up from where the last one stopped.

The lag is there for claims that commit late: a claim's ``claimed_at`` is taken just before its
statement, which commits within the claim's own bounds (a pool wait, the statement and wait timeouts,
one retry: seconds). A claim committing more than the lag after its ``claimed_at`` would be missed by
the rollups; hours younger than the lag are always read from the ledger itself.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from .buckets import bucket_sql
from .ledger import delay_seconds

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
# Hours per transaction: a catch-up's statements stay well inside the statement and wait bounds.
CHUNK_HOURS = 3
# Days of per-user activity kept: the longest range, with room.
ACTIVITY_DAYS = 40
# Any constant: the advisory lock that serialises runs.
LOCK_ID = 0x5C0A_0A11

CLAIMS = "claims"
SETTLED = "settled"


def floor_hour(at: datetime) -> datetime:
    """The start of the UTC hour ``at`` falls in."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Watermarks:
    """Where the rollups stop: claims and refusals before ``claims``, never-claimed completions before ``settled``."""

    claims: datetime
    settled: datetime


# The oldest time the ledger can hold: no rollups (SQLite, or a rollup that never ran) means everything is live.
NOTHING_ROLLED_UP = Watermarks(datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC))


def watermarks(conn: Connection) -> Watermarks:
    """The current watermarks (``NOTHING_ROLLED_UP`` until a first run, and always on SQLite)."""
    if conn.dialect.name != "postgresql":
        return NOTHING_ROLLED_UP
    found = dict(conn.execute(text("SELECT name, at FROM analytics_state")).all())
    return Watermarks(
        claims=found.get(CLAIMS, NOTHING_ROLLED_UP.claims), settled=found.get(SETTLED, NOTHING_ROLLED_UP.settled)
    )


# --- the job ------------------------------------------------------------------------------------------------------

_HOUR = "date_trunc('hour', {column}, 'UTC')"
_CLAIMED_IN_WINDOW = "claimed_at >= :lo AND claimed_at < :hi AND action_key IS NOT NULL"

CLAIM_HOURS = f"""
INSERT INTO analytics_hours (hour, action_key, claims, points)
SELECT {_HOUR.format(column="claimed_at")}, action_key, count(*), sum(points)
FROM completions WHERE {_CLAIMED_IN_WINDOW} GROUP BY 1, 2
ON CONFLICT (hour, action_key) DO UPDATE SET claims = EXCLUDED.claims, points = EXCLUDED.points
"""
# Added to the hour each claimed completion was recorded in, which may be an earlier window's.
RECORDED_CLAIMED = f"""
INSERT INTO analytics_hours (hour, action_key, recorded_claimed)
SELECT {_HOUR.format(column="created_at")}, action_key, count(*)
FROM completions WHERE {_CLAIMED_IN_WINDOW} GROUP BY 1, 2
ON CONFLICT (hour, action_key) DO UPDATE
    SET recorded_claimed = analytics_hours.recorded_claimed + EXCLUDED.recorded_claimed
"""
# Voids are events too (a void is final): added to the hour the voided completion was recorded in. Voids from
# before voided_at was kept have none: the first window takes them all.
VOIDS = f"""
INSERT INTO analytics_hours (hour, action_key, void_claimed, void_unclaimed)
SELECT {_HOUR.format(column="created_at")}, action_key,
       count(*) FILTER (WHERE claimed_at IS NOT NULL), count(*) FILTER (WHERE claimed_at IS NULL)
FROM completions
WHERE status = 'void' AND (voided_at >= :lo AND voided_at < :hi OR :first AND voided_at IS NULL)
  AND action_key IS NOT NULL
GROUP BY 1, 2
ON CONFLICT (hour, action_key) DO UPDATE
    SET void_claimed = analytics_hours.void_claimed + EXCLUDED.void_claimed,
        void_unclaimed = analytics_hours.void_unclaimed + EXCLUDED.void_unclaimed
"""
REFUSALS = f"""
INSERT INTO analytics_refusals (hour, reason, refusals)
SELECT {_HOUR.format(column="at")}, reason, count(*) FROM claim_refusals WHERE at >= :lo AND at < :hi GROUP BY 1, 2
ON CONFLICT (hour, reason) DO UPDATE SET refusals = EXCLUDED.refusals
"""
PLAYERS = f"""
INSERT INTO analytics_players (user_id, first_claim_at, last_claim_at)
SELECT user_id, min(claimed_at), max(claimed_at) FROM completions WHERE {_CLAIMED_IN_WINDOW} GROUP BY user_id
ON CONFLICT (user_id) DO UPDATE SET
    first_claim_at = least(analytics_players.first_claim_at, EXCLUDED.first_claim_at),
    last_claim_at = greatest(analytics_players.last_claim_at, EXCLUDED.last_claim_at)
"""
# A day's count grows only by the (day, user) pairs that are new to it: distinct claimers, exactly.
ACTIVITY = f"""
WITH fresh AS (
    INSERT INTO analytics_activity (day, user_id)
    SELECT DISTINCT (claimed_at AT TIME ZONE 'UTC')::date, user_id FROM completions WHERE {_CLAIMED_IN_WINDOW}
    ON CONFLICT DO NOTHING
    RETURNING day
)
INSERT INTO analytics_days (day, users) SELECT day, count(*) FROM fresh GROUP BY day
ON CONFLICT (day) DO UPDATE SET users = analytics_days.users + EXCLUDED.users
"""
UNCLAIMED = f"""
INSERT INTO analytics_hours (hour, action_key, recorded_unclaimed)
SELECT {_HOUR.format(column="created_at")}, action_key, count(*) FROM completions
WHERE claimed_at IS NULL AND created_at >= :lo AND created_at < :hi
  AND status <> 'adjustment' AND action_key IS NOT NULL
GROUP BY 1, 2
ON CONFLICT (hour, action_key) DO UPDATE SET recorded_unclaimed = EXCLUDED.recorded_unclaimed
"""
SET_MARK = """
INSERT INTO analytics_state (name, at) VALUES (:name, :at) ON CONFLICT (name) DO UPDATE SET at = EXCLUDED.at
"""


def _delays_statement() -> str:
    """The delays' histogram of a window, with the bucket expression shared with the ledger reads."""
    bucket = bucket_sql(delay_seconds("postgresql"), "postgresql")
    bucket_text = str(bucket.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    return f"""
INSERT INTO analytics_delays (hour, bucket, claims)
SELECT {_HOUR.format(column="claimed_at")}, {bucket_text}, count(*)
FROM completions WHERE {_CLAIMED_IN_WINDOW} GROUP BY 1, 2
ON CONFLICT (hour, bucket) DO UPDATE SET claims = EXCLUDED.claims
"""


DELAYS = _delays_statement()


@dataclass
class RunSummary:
    """What one run did: the watermarks before and after, and how many windows it committed."""

    claims_from: datetime | None = None
    claims_to: datetime | None = None
    settled_from: datetime | None = None
    settled_to: datetime | None = None
    windows: int = 0

    def as_dict(self) -> dict:
        """JSON-ready."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


def _start_marks(conn: Connection, target: datetime) -> tuple[Watermarks, bool]:
    """The watermarks, or where a first run starts (the hour of the oldest claim, refusal or never-claimed row);
    and whether this is the first window ever."""
    found = dict(conn.execute(text("SELECT name, at FROM analytics_state")).all())
    first = CLAIMS not in found
    if first:
        oldest = conn.execute(
            text("SELECT least((SELECT min(claimed_at) FROM completions), (SELECT min(at) FROM claim_refusals))")
        ).scalar()
        found[CLAIMS] = min(floor_hour(oldest), target) if oldest else target
    if SETTLED not in found:
        oldest = conn.execute(text("SELECT min(created_at) FROM completions WHERE claimed_at IS NULL")).scalar()
        found[SETTLED] = min(floor_hour(oldest), target) if oldest else target
    return Watermarks(found[CLAIMS], found[SETTLED]), first


def _settled_target(conn: Connection, now: datetime, lag: timedelta) -> datetime:
    """How far ``settled`` may go: ``now - lag``, and no further than the hour of the oldest completion that
    can still be claimed (a claim taken at ``now - lag`` may still be committing)."""
    oldest_claimable = conn.execute(
        text("SELECT min(created_at) FROM completions WHERE status = 'pending' AND expires_at > :cut"),
        {"cut": now - lag},
    ).scalar()
    target = floor_hour(now - lag)
    return min(target, floor_hour(oldest_claimable)) if oldest_claimable else target


def _one_window(engine: Engine, now: datetime, lag: timedelta, summary: RunSummary) -> bool:
    """Roll up at most ``CHUNK_HOURS`` of each watermark in one transaction; False when both are caught up."""
    # Read committed: each statement after the lock sees what the run before this one committed.
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
        target = floor_hour(now - lag)
        marks, first = _start_marks(conn, target)
        if summary.windows == 0:
            summary.claims_from, summary.settled_from = marks.claims, marks.settled
        moved = False
        claims_to = min(marks.claims + CHUNK_HOURS * HOUR, target)
        if claims_to > marks.claims:
            window = {"lo": marks.claims, "hi": claims_to, "first": first}
            for statement in (CLAIM_HOURS, RECORDED_CLAIMED, VOIDS, DELAYS, REFUSALS, PLAYERS, ACTIVITY):
                conn.execute(text(statement), window)
            moved = True
        conn.execute(text(SET_MARK), {"name": CLAIMS, "at": max(claims_to, marks.claims)})
        settled_to = min(marks.settled + CHUNK_HOURS * HOUR, _settled_target(conn, now, lag))
        if settled_to > marks.settled:
            conn.execute(text(UNCLAIMED), {"lo": marks.settled, "hi": settled_to})
            moved = True
        conn.execute(text(SET_MARK), {"name": SETTLED, "at": max(settled_to, marks.settled)})
        if moved:
            keep_from: date = (now - timedelta(days=ACTIVITY_DAYS)).date()
            conn.execute(text("DELETE FROM analytics_activity WHERE day < :day"), {"day": keep_from})
            summary.windows += 1
        summary.claims_to, summary.settled_to = max(claims_to, marks.claims), max(settled_to, marks.settled)
        return moved


def run_rollup(engine: Engine, now: datetime, lag: timedelta, max_windows: int | None = None) -> RunSummary:
    """Move both watermarks up to ``now - lag``, one committed window at a time (PostgreSQL; a no-op elsewhere)."""
    summary = RunSummary()
    if engine.dialect.name != "postgresql":
        return summary
    while max_windows is None or summary.windows < max_windows:
        if not _one_window(engine, now, lag, summary):
            break
    if summary.windows:
        log.info("analytics rolled up: %s", summary.as_dict())
    return summary


# --- reads --------------------------------------------------------------------------------------------------------


def hours(conn: Connection, lo: datetime, hi: datetime) -> list[tuple[datetime, int]]:
    """``(hour, claims)`` of the rolled-up hours in ``[lo, hi)``."""
    rows = conn.execute(
        text(
            "SELECT hour, sum(claims) FROM analytics_hours WHERE hour >= :lo AND hour < :hi AND claims > 0 "
            "GROUP BY hour"
        ),
        {"lo": lo, "hi": hi},
    ).all()
    return [(h.astimezone(UTC), int(n)) for h, n in rows]


def actions(conn: Connection, lo: datetime, hi: datetime) -> list[tuple[str, int, int, int, int, int, int]]:
    """``(action, claims, points, recorded_claimed, recorded_unclaimed, void_claimed, void_unclaimed)`` summed over
    the hours in ``[lo, hi)``."""
    rows = conn.execute(
        text(
            "SELECT action_key, sum(claims), sum(points), sum(recorded_claimed), sum(recorded_unclaimed), "
            "sum(void_claimed), sum(void_unclaimed) "
            "FROM analytics_hours WHERE hour >= :lo AND hour < :hi GROUP BY action_key"
        ),
        {"lo": lo, "hi": hi},
    ).all()
    return [(row[0], *(int(v) for v in row[1:])) for row in rows]


def delays(conn: Connection, lo: datetime, hi: datetime) -> dict[int, int]:
    """The delays' histogram of the rolled-up hours in ``[lo, hi)``."""
    rows = conn.execute(
        text("SELECT bucket, sum(claims) FROM analytics_delays WHERE hour >= :lo AND hour < :hi GROUP BY bucket"),
        {"lo": lo, "hi": hi},
    ).all()
    return {int(b): int(n) for b, n in rows}


def refusals(conn: Connection, lo: datetime, hi: datetime) -> dict[str, int]:
    """Rolled-up refusals of the hours in ``[lo, hi)`` by reason."""
    rows = conn.execute(
        text("SELECT reason, sum(refusals) FROM analytics_refusals WHERE hour >= :lo AND hour < :hi GROUP BY reason"),
        {"lo": lo, "hi": hi},
    ).all()
    return {r: int(n) for r, n in rows}


def first_claims(conn: Connection, lo: datetime, hi: datetime) -> int:
    """Users whose first rolled-up claim falls in ``[lo, hi)``."""
    return int(
        conn.execute(
            text("SELECT count(*) FROM analytics_players WHERE first_claim_at >= :lo AND first_claim_at < :hi"),
            {"lo": lo, "hi": hi},
        ).scalar_one()
    )


def last_claims_since(conn: Connection, since: datetime) -> int:
    """Users whose last rolled-up claim is at or after ``since``."""
    return int(
        conn.execute(
            text("SELECT count(*) FROM analytics_players WHERE last_claim_at >= :since"), {"since": since}
        ).scalar_one()
    )


def days(conn: Connection, first: date, last: date) -> dict[date, int]:
    """Rolled-up distinct claimers of each UTC day from ``first`` to ``last``."""
    rows = conn.execute(
        text("SELECT day, users FROM analytics_days WHERE day >= :first AND day <= :last"),
        {"first": first, "last": last},
    ).all()
    return {d: int(n) for d, n in rows}
