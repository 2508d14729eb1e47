"""A ledger written by hand for the analytics tests, and every figure worked out from its rows in Python
(never through ``scoreboard.analytics``)."""

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, text

from scoreboard.analytics.buckets import BANDS
from scoreboard.extensions import db
from scoreboard.models import ClaimRefusal, Completion, Score, User

# Not on an hour: the current hour is a partial one.
NOW = datetime(2026, 11, 30, 12, 34, 56, 250000, tzinfo=UTC)
ACTIONS = {"daily-login": 10, "complete-lesson": 50, "pass-quiz": 100, "share-result": 20, "win-challenge": 300}
HOURS = {"24h": 24, "7d": 168, "30d": 720}
TTL = timedelta(hours=1)
ANALYTICS_TABLES = (
    "analytics_state, analytics_hours, analytics_delays, analytics_refusals, analytics_players, "
    "analytics_activity, analytics_days"
)


def floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass
class Ledger:
    """The rows written: completions (dicts of ``completions`` columns), refusals, users."""

    completions: list[dict] = field(default_factory=list)
    refusals: list[dict] = field(default_factory=list)
    users: dict[str, datetime] = field(default_factory=dict)
    serial: int = 0

    def user(self, user_id: str, created: datetime) -> str:
        self.users.setdefault(user_id, created)
        return user_id

    def completion(self, user_id, action, created, claimed=None, status=None, expires=None, voided=None) -> dict:
        """One completion; ``status`` defaults to claimed if ``claimed`` else pending."""
        self.serial += 1
        row = {
            "id": f"a{self.serial:07d}",
            "user_id": user_id,
            "action_key": action,
            "points": ACTIONS[action],
            "status": status or ("claimed" if claimed else "pending"),
            "created_at": created,
            "expires_at": expires or created + TTL,
            "claimed_at": claimed,
            "voided_at": voided,
        }
        self.completions.append(row)
        return row

    def adjustment(self, user_id, at, delta) -> None:
        self.serial += 1
        self.completions.append(
            {
                "id": f"adj{self.serial:07d}",
                "user_id": user_id,
                "action_key": None,
                "points": delta,
                "status": "adjustment",
                "reason": "correction",
                "created_at": at,
                "expires_at": at,
                "claimed_at": None,
            }
        )

    def refusal(self, user_id, at, reason) -> None:
        self.refusals.append({"user_id": user_id, "at": at, "reason": reason})


def build(seed: int = 7, users: int = 40, completions: int = 1500) -> Ledger:
    """Completions of every kind across 32 days before ``NOW``: claimed at delays from a fraction of a second to
    most of the hour, pending (claimable or past their expiry and not marked yet), expired, voided after the
    claim or before, admin adjustments, refusals; users created at chosen times."""
    rng = random.Random(seed)
    ledger = Ledger()
    ids = [ledger.user(f"u{i:02d}", NOW - timedelta(days=40) + timedelta(hours=7 * i)) for i in range(users)]
    # A few players whose first claim is recent: new players in the short ranges.
    late_starters = set(ids[-6:])
    for _ in range(completions):
        user = rng.choice(ids)
        span = timedelta(days=3) if user in late_starters else timedelta(days=32)
        created = NOW - timedelta(seconds=rng.uniform(1, span.total_seconds()))
        action = rng.choice(list(ACTIONS))
        fate = rng.random()
        if fate < 0.62:
            delay = rng.choice([rng.uniform(0.05, 59), rng.uniform(60, 599), rng.uniform(600, 3500)])
            claimed = created + timedelta(seconds=delay)
            if claimed >= NOW:
                ledger.completion(user, action, created)  # not claimed yet
            else:
                if rng.random() < 0.04:  # voided after its claim, a while later or just now
                    voided = min(claimed + timedelta(hours=rng.uniform(0, 100)), NOW - timedelta(seconds=1))
                    ledger.completion(user, action, created, claimed, "void", voided=voided)
                else:
                    ledger.completion(user, action, created, claimed)
        elif fate < 0.70:
            # Voided before any claim; a few from before voided_at was kept (none).
            voided = None if rng.random() < 0.2 else min(created + timedelta(minutes=10), NOW - timedelta(seconds=1))
            ledger.completion(user, action, created, status="void", voided=voided)
        else:
            expired = created + TTL <= NOW and rng.random() < 0.85
            # Past its expiry but the expiry job has not marked it yet, or still claimable.
            ledger.completion(user, action, created, status="expired" if expired else "pending")
    # The current hour and the one before it: fresh claims, a claimable pending one.
    for i, user in enumerate(ids[:5]):
        ledger.completion(user, "pass-quiz", NOW - timedelta(minutes=20 + i), NOW - timedelta(minutes=3 + i))
    ledger.completion(ids[0], "daily-login", NOW - timedelta(minutes=2))
    for i in range(8):
        ledger.adjustment(ids[i], NOW - timedelta(days=i, minutes=7), 25 if i % 2 else -5)
    reasons = ["already_claimed", "action_expired", "action_not_found", "action_void", "user_banned"]
    for i in range(120):
        ledger.refusal(
            rng.choice(ids), NOW - timedelta(seconds=rng.uniform(1, 32 * 86400)), reasons[i % 5 if i % 3 else 0]
        )
    return ledger


def write(ledger: Ledger, rows: list[dict] | None = None, refusals: list[dict] | None = None) -> None:
    """Insert the ledger's users, scores, completions and refusals (or just the rows given)."""
    if rows is None:
        db.session.execute(
            insert(User), [{"id": u, "display_name": u, "created_at": at} for u, at in ledger.users.items()]
        )
        db.session.execute(insert(Score), [{"user_id": u, "score": 0} for u in ledger.users])
        rows, refusals = ledger.completions, ledger.refusals
    columns = ("reason", "created_at", "expires_at", "claimed_at", "voided_at")
    if rows:
        db.session.execute(insert(Completion), [dict.fromkeys(columns) | row for row in rows])
    if refusals:
        db.session.execute(insert(ClaimRefusal), refusals)
    db.session.commit()


def clear_rollups() -> None:
    db.session.execute(text(f"TRUNCATE {ANALYTICS_TABLES}"))
    db.session.commit()


def bucket_width(seconds: float) -> int:
    return next(w for upper, w in BANDS if max(seconds, 0) < upper)


def exact_median(values: list[float]) -> tuple[float, float]:
    """The exact median and the histogram's bound on its error (half the widest middle bucket)."""
    ordered = sorted(values)
    n = len(ordered)
    middle = [ordered[(n - 1) // 2], ordered[n // 2]]
    return sum(middle) / 2, max(bucket_width(v) for v in middle) / 2


def expected(ledger: Ledger, range_key: str, now: datetime = NOW) -> dict:
    """Every figure of ``range_key`` at ``now``, from the rows; ``medianClaimSeconds`` as ``(exact, tolerance)``."""
    start = floor_hour(now) - timedelta(hours=HOURS[range_key] - 1)
    rows = [r for r in ledger.completions if r["status"] != "adjustment"]
    claims = [r for r in rows if r["claimed_at"] is not None and start <= r["claimed_at"] < now]
    per_hour = Counter(floor_hour(r["claimed_at"]) for r in claims)
    first_claim: dict[str, datetime] = {}
    for r in rows:
        if r["claimed_at"] is not None and r["claimed_at"] < now:
            first_claim[r["user_id"]] = min(first_claim.get(r["user_id"], r["claimed_at"]), r["claimed_at"])

    def active(since: datetime) -> int:
        return len({r["user_id"] for r in rows if r["claimed_at"] is not None and since <= r["claimed_at"] < now})

    day, days = start.date(), []
    while day <= now.date():
        days.append(day)
        day += timedelta(days=1)
    per_day = defaultdict(set)
    for r in rows:
        if r["claimed_at"] is not None and r["claimed_at"] < now:
            per_day[r["claimed_at"].date()].add(r["user_id"])
    recorded = [r for r in rows if start <= r["created_at"] < now]
    statuses = Counter(
        "expired" if r["status"] == "pending" and r["expires_at"] <= now else r["status"] for r in recorded
    )
    actions = []
    for key in sorted({r["action_key"] for r in recorded} | {r["action_key"] for r in claims}):
        actions.append(
            {
                "action": key,
                "completions": sum(1 for r in recorded if r["action_key"] == key),
                "claims": sum(1 for r in claims if r["action_key"] == key),
                "points": sum(r["points"] for r in claims if r["action_key"] == key),
            }
        )
    refused = Counter(r["reason"] for r in ledger.refusals if start <= r["at"] < now)
    delays = [(r["claimed_at"] - r["created_at"]).total_seconds() for r in claims]
    return {
        "range": range_key,
        "from": start.isoformat(),
        "to": now.isoformat(),
        "generatedAt": now.isoformat(),
        "claimsPerHour": [
            {"at": (start + timedelta(hours=i)).isoformat(), "claims": per_hour[start + timedelta(hours=i)]}
            for i in range(HOURS[range_key])
        ],
        "activeUsers": {
            "daily": active(now - timedelta(days=1)),
            "weekly": active(now - timedelta(days=7)),
            "perDay": [{"day": d.isoformat(), "users": len(per_day[d])} for d in days],
        },
        "newPlayers": sum(1 for at in first_claim.values() if start <= at < now),
        "completions": {
            "recorded": len(recorded),
            "claimed": statuses["claimed"],
            "expired": statuses["expired"],
            "pending": statuses["pending"],
            "void": statuses["void"],
        },
        "medianClaimSeconds": exact_median(delays) if delays else None,
        "actions": actions,
        "topCompleted": [
            a["action"] for a in sorted(actions, key=lambda a: (-a["completions"], a["action"])) if a["completions"]
        ][:10],
        "topRewarding": [
            a["action"] for a in sorted(actions, key=lambda a: (-a["points"], a["action"])) if a["points"]
        ][:10],
        "refusals": [{"reason": r, "count": n} for r, n in sorted(refused.items(), key=lambda i: (-i[1], i[0]))],
    }


def assert_figures(got: dict, want: dict) -> None:
    """Every figure equal; the median within its histogram's resolution."""
    got, want = dict(got), dict(want)
    median, tolerance = want.pop("medianClaimSeconds") or (None, 0)
    answered = got.pop("medianClaimSeconds")
    if median is None:
        assert answered is None
    else:
        assert abs(answered - median) <= tolerance + 1e-6, (answered, median, tolerance)
    for key in want:
        assert got[key] == want[key], key
    assert set(got) == set(want)
