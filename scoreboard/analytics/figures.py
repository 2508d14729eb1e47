"""``GET /api/admin/analytics``: every figure of one range, from the rollups merged with the ledger's newest part.

A range is the last 24, 168 or 720 hours: from the start of the hour 23, 167 or 719 hours before the
current one, to now. The rollups hold what lies before their watermarks (``rollup``); what lies after is
read from the ledger (``ledger``), so the current hour is always fresh. All reads share one snapshot
(repeatable read on PostgreSQL), so a rollup committing meanwhile is seen either wholly or not at all.
"""

from collections import Counter
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.engine import Connection, Engine

from . import ledger, rollup
from .buckets import median
from .rollup import floor_hour

RANGES: dict[str, int] = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30}
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
TOP = 10


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def span(range_key: str, now: datetime) -> tuple[datetime, datetime]:
    """``(from, to)`` of a range at ``now``."""
    start = floor_hour(now) - timedelta(hours=RANGES[range_key] - 1)
    return start, now


def compute(conn: Connection, range_key: str, now: datetime) -> dict:
    """The answer's figures for ``range_key`` at ``now``, read on ``conn``."""
    start, end = span(range_key, now)
    marks = rollup.watermarks(conn)
    # Claims and refusals: rolled up before the claims watermark, live from it (or from the range's start).
    rolled_to = min(max(marks.claims, start), end)
    live_from = max(marks.claims, start)

    per_hour: Counter = Counter(dict(rollup.hours(conn, start, rolled_to)))
    claims: Counter = Counter()
    points: Counter = Counter()
    recorded: Counter = Counter()
    claimed_ever = unclaimed = void_claimed = void_unclaimed = 0
    for action, n, p, rc, ru, vc, vu in rollup.actions(conn, start, end):
        claims[action] += n
        points[action] += p
        recorded[action] += rc + ru
        claimed_ever += rc
        unclaimed += ru
        void_claimed += vc
        void_unclaimed += vu
    for hour, action, n, p in ledger.claims(conn, live_from, end):
        per_hour[hour] += n
        claims[action] += n
        points[action] += p
    # Completions recorded in the range: the claimed ones by when they were claimed (rolled up, then live) ...
    live_claimed = ledger.recorded_claimed(conn, marks.claims, start, end)
    # ... the never-claimed ones rolled up once settled, live after that.
    live_unclaimed = ledger.recorded_unclaimed(conn, max(marks.settled, start), end)
    recorded.update(live_claimed)
    recorded.update(live_unclaimed)
    claimed_ever += sum(live_claimed.values())
    unclaimed += sum(live_unclaimed.values())
    # ... and the voided ones (rolled up by when they were voided, then live).
    voided_from = None if marks == rollup.NOTHING_ROLLED_UP else marks.claims
    live_void_claimed, live_void_unclaimed = ledger.voided(conn, voided_from, start, end)
    void_claimed += live_void_claimed
    void_unclaimed += live_void_unclaimed
    pending = ledger.claimable(conn, start, end, now)

    histogram = Counter(rollup.delays(conn, start, rolled_to))
    histogram.update(ledger.delays(conn, live_from, end))
    refused = Counter(rollup.refusals(conn, start, rolled_to))
    refused.update(ledger.refusals(conn, live_from, end))

    new_players = rollup.first_claims(conn, start, end) + ledger.new_players(conn, marks.claims, start, end)

    def active_since(cut: datetime) -> int:
        return rollup.last_claims_since(conn, cut) + ledger.active_players(conn, max(marks.claims, cut), end, cut)

    first_day, last_day = start.date(), end.astimezone(UTC).date()
    per_day: Counter = Counter(rollup.days(conn, first_day, last_day))
    day_start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    per_day.update(ledger.active_per_day(conn, max(marks.claims, day_start), end))

    keys = sorted(set(recorded) | set(claims))
    actions = [
        {"action": key, "completions": recorded[key], "claims": claims[key], "points": points[key]} for key in keys
    ]
    hours_in_range = [start + timedelta(hours=i) for i in range(RANGES[range_key])]
    days_in_range: list[date] = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    return {
        "range": range_key,
        "from": _iso(start),
        "to": _iso(end),
        "generatedAt": _iso(now),
        "claimsPerHour": [{"at": _iso(h), "claims": per_hour[h]} for h in hours_in_range],
        "activeUsers": {
            "daily": active_since(end - DAY),
            "weekly": active_since(end - WEEK),
            "perDay": [{"day": d.isoformat(), "users": per_day[d]} for d in days_in_range],
        },
        "newPlayers": new_players,
        "completions": {
            "recorded": claimed_ever + unclaimed,
            "claimed": claimed_ever - void_claimed,
            "expired": unclaimed - void_unclaimed - pending,
            "pending": pending,
            "void": void_claimed + void_unclaimed,
        },
        "medianClaimSeconds": median(histogram),
        "actions": actions,
        "topCompleted": [
            a["action"] for a in sorted(actions, key=lambda a: (-a["completions"], a["action"])) if a["completions"]
        ][:TOP],
        "topRewarding": [
            a["action"] for a in sorted(actions, key=lambda a: (-a["points"], a["action"])) if a["points"]
        ][:TOP],
        "refusals": [{"reason": r, "count": n} for r, n in sorted(refused.items(), key=lambda i: (-i[1], i[0])) if n],
    }


def figures(engine: Engine, range_key: str, now: datetime) -> dict:
    """:func:`compute` in one read-only snapshot of ``engine``'s database."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            return compute(conn, range_key, now)
