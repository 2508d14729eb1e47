"""Per-user features of the completion ledger over a sliding window, for the anomaly model.

The window's claims are the ledger rows whose ``claimed_at`` falls in ``[end - window, end)``
and that were claimed (``claimed``, or ``void`` after a claim); its refusals are the
``claim_refusals`` rows whose ``at`` falls in it. A few aggregate queries group them per user
(windows, counts, a median) on PostgreSQL or SQLite alike, and numpy turns the aggregates into
one row of :data:`FEATURES` per user with at least ``min_claims`` claims. docs/anomalies.md
explains every feature and why it separates scripts from people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
from sqlalchemy import Float, Integer, and_, case, cast, func, or_, select, text

from ..extensions import db
from ..models import Action, ClaimRefusal, Completion, CompletionStatus

# A gap this long or longer is a break between sessions: the rhythm (gap_cv) is measured within sessions.
SESSION_BREAK_SECONDS = 3600.0
# With fewer gaps inside sessions than this, chance alone makes a few gaps look regular: no rhythm is measured,
# and the feature takes the CV of random (Poisson) timing.
MIN_RHYTHM_GAPS = 10
UNMEASURED_CV = 1.0
# Two consecutive claims closer than this are a burst: a person reads, plays or clicks between claims.
BURST_GAP_SECONDS = 3.0
# A repeat of a cooldown action within this many cooldowns of the previous one is "at the cooldown".
COOLDOWN_FACTOR = 2.0
HIGH, LOW = "high", "low"
# The smallest robust unit, in transformed units (a share moving by 0.1, a count by ~10%): features on which
# nearly everybody agrees (most users have no refusals) would otherwise make any difference look enormous.
MIN_SPREAD = 0.1


class Feature(NamedTuple):
    """One feature: what it is, how it is computed, which side is suspicious, how the model sees it.

    ``suspicious`` is the side an automated player departs to (``"high"`` or ``"low"``); the
    model ignores departures to the other side. ``log_offset``: the model sees
    ``log(value + log_offset)`` (heavy-tailed, multiplicative features), or the value itself if None.
    """

    name: str
    description: str
    computed: str
    suspicious: str
    log_offset: float | None


FEATURES: tuple[Feature, ...] = (
    Feature(
        "claims_per_active_hour",
        "Claims per hour the user was active: the pace while playing.",
        "claims / active_hours",
        HIGH,
        1.0,
    ),
    Feature(
        "active_hours",
        "Clock hours (UTC) of the window with at least one claim.",
        "count(distinct floor(epoch(claimed_at) / 3600))",
        HIGH,
        None,
    ),
    Feature(
        "longest_rest_hours",
        "The longest stretch of the window without a claim (people sleep): short for a round-the-clock player.",
        "max(first claim - window start, largest gap between claims, window end - last claim) / 3600",
        LOW,
        1.0,
    ),
    Feature(
        "gap_cv",
        "Coefficient of variation of the gaps between consecutive claims within sessions: near 0 for a fixed rhythm.",
        f"std(gaps) / mean(gaps) over the gaps under {SESSION_BREAK_SECONDS:g} s in claimed_at order"
        f" (0 if they are all 0; {UNMEASURED_CV:g}, random timing, if there are fewer than {MIN_RHYTHM_GAPS})",
        LOW,
        0.01,
    ),
    Feature(
        "burst_share",
        f"Share of consecutive claims less than {BURST_GAP_SECONDS:g} s apart.",
        f"count(gap < {BURST_GAP_SECONDS:g} s) / count(gaps)",
        HIGH,
        None,
    ),
    Feature(
        "median_claim_delay",
        "Median seconds from a completion's recording to its claim: a script claims at once.",
        "median(claimed_at - created_at)",
        LOW,
        1.0,
    ),
    Feature(
        "cooldown_share",
        f"Share of claims of cooldown actions recorded within {COOLDOWN_FACTOR:g} cooldowns of the previous one.",
        "count(created_at - previous created_at of the same action < factor * cooldown_seconds) / count(such claims)",
        HIGH,
        None,
    ),
    Feature(
        "distinct_ips",
        "Distinct client addresses the claims came from.",
        "count(distinct client_ip)",
        HIGH,
        1.0,
    ),
    Feature(
        "distinct_user_agents",
        "Distinct user agents the claims came from.",
        "count(distinct user_agent)",
        HIGH,
        1.0,
    ),
    Feature(
        "refusals_per_claim",
        "Refused claims (replays, others' ids, expired or void ones) per successful claim.",
        "count(claim_refusals in the window) / claims",
        HIGH,
        None,
    ),
)
NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


@dataclass(eq=False)
class Population:
    """The users judged in one window: ``values[i]`` holds ``user_ids[i]``'s features, in ``names`` order."""

    user_ids: list[str]
    values: np.ndarray
    names: tuple[str, ...] = NAMES
    _typical: dict[str, dict[str, float]] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.user_ids)

    def features_of(self, row: int) -> dict[str, float]:
        """Row ``row``'s features by name, as plain floats."""
        return {name: float(value) for name, value in zip(self.names, self.values[row], strict=True)}

    def typical(self) -> dict[str, dict[str, float]]:
        """Per feature: the population's ``median`` and ``p95`` and the ``spread`` between them in model units.

        ``p95`` is taken on the suspicious side: the value 95% of users stay on the ordinary side
        of (the 95th percentile of a "high" feature, the 5th of a "low" one). ``spread`` is
        ``|T(p95) - T(median)|`` in the model's transformed units, at least :data:`MIN_SPREAD`, the
        robust unit in which reasons rank features and :func:`~.detector.changed_markedly` measures change.
        """
        if self._typical is None:
            specs = {f.name: f for f in FEATURES}
            result = {}
            for column, name in enumerate(self.names):
                spec = specs[name]
                values = self.values[:, column]
                if len(values):
                    median = float(np.median(values))
                    p95 = float(np.quantile(values, 0.95 if spec.suspicious == HIGH else 0.05))
                else:
                    median = p95 = 0.0
                spread = max(abs(float(transform(spec, p95) - transform(spec, median))), MIN_SPREAD)
                result[name] = {"median": median, "p95": p95, "spread": spread}
            self._typical = result
        return self._typical


def transform(spec: Feature, value: float | np.ndarray) -> float | np.ndarray:
    """The model's view of a feature's value(s): ``log(value + log_offset)``, or the value itself."""
    if spec.log_offset is None:
        return value
    return np.log(np.asarray(value, dtype=float) + spec.log_offset)


def _epoch(column, dialect: str):
    """Seconds since 1970 (UTC) of a timestamp column, with fractions, on PostgreSQL or SQLite."""
    if dialect == "sqlite":
        # UTCDateTime stores naive UTC text on SQLite. julianday reads it to the millisecond, in days: rounding
        # to the millisecond undoes the float error of the days, so a moment on the hour stays in its hour.
        return func.round((func.julianday(column) - 2440587.5) * 86400.0, 3)
    return cast(func.extract("epoch", column), Float)


def _bucket(seconds, size: int, dialect: str):
    """``floor(seconds / size)`` as an integer (e.g. the clock hour a moment falls in, for ``size`` 3600)."""
    if dialect == "sqlite":
        return cast(seconds / float(size), Integer)  # truncation is floor for moments after 1970
    return cast(func.floor(seconds / float(size)), Integer)


def population(end: datetime, window: timedelta, min_claims: int = 6) -> Population:
    """The features of every user with at least ``min_claims`` claims in ``[end - window, end)``.

    Reads with the app's ``db.session`` (PostgreSQL or SQLite) and changes nothing; users are in
    ``user_id`` order. On PostgreSQL the reads run in a savepoint that lifts the statement timeout
    for themselves only: they take as long as the window is big, unlike the requests it bounds.
    """
    start = end - window
    session = db.session
    dialect = session.get_bind().dialect.name
    nested = session.begin_nested() if dialect == "postgresql" else None
    try:
        if nested is not None:
            session.execute(text("SET LOCAL statement_timeout = 0"))
            # The window's sorts (gaps, medians) stay in memory rather than spill to disk.
            session.execute(text("SET LOCAL work_mem = '128MB'"))
        rows = _read(session, dialect, start, end, min_claims)
    finally:
        if nested is not None:
            nested.rollback()  # ends the savepoint, and with it the SET LOCALs
    return _assemble(rows, start.timestamp(), end.timestamp())


def _read(session, dialect: str, start: datetime, end: datetime, min_claims: int) -> dict[str, list]:
    """The aggregate queries: per user (counts, gaps, limits, addresses), median delays, refusals."""
    claims = (
        select(
            Completion.user_id.label("user_id"),
            Completion.action_key.label("action_key"),
            Completion.client_ip.label("client_ip"),
            Completion.user_agent.label("user_agent"),
            _epoch(Completion.claimed_at, dialect).label("t"),
            _epoch(Completion.created_at, dialect).label("tc"),
        )
        .where(
            Completion.claimed_at >= start,
            Completion.claimed_at < end,
            Completion.status.in_((CompletionStatus.CLAIMED, CompletionStatus.VOID)),
            Completion.action_key.is_not(None),
        )
        .subquery("claims")
    )
    c = claims.c

    ordered = select(
        c.user_id,
        c.t,
        c.client_ip,
        c.user_agent,
        c.action_key,
        _bucket(c.t, 3600, dialect).label("hour"),
        (c.t - func.lag(c.t).over(partition_by=c.user_id, order_by=c.t)).label("gap"),
        (c.tc - func.lag(c.tc).over(partition_by=(c.user_id, c.action_key), order_by=c.tc)).label("same_gap"),
    ).subquery("ordered")
    o = ordered.c
    in_session = o.gap < SESSION_BREAK_SECONDS
    cooldown = Action.cooldown_seconds
    has_cooldown = and_(cooldown.is_not(None), cooldown > 0)
    per_user = session.execute(
        select(
            o.user_id,
            func.count(),
            func.count(o.hour.distinct()),
            func.min(o.t),
            func.max(o.t),
            func.max(o.gap),
            func.sum(case((in_session, 1), else_=0)),
            func.sum(case((in_session, o.gap), else_=None)),
            func.sum(case((in_session, o.gap * o.gap), else_=None)),
            func.sum(case((o.gap < BURST_GAP_SECONDS, 1), else_=0)),
            func.sum(case((has_cooldown, 1), else_=0)),
            func.sum(case((and_(has_cooldown, o.same_gap < cooldown * COOLDOWN_FACTOR), 1), else_=0)),
            func.count(o.client_ip.distinct()),
            func.count(o.user_agent.distinct()),
        )
        .select_from(ordered.outerjoin(Action, Action.key == o.action_key))
        .group_by(o.user_id)
        .having(func.count() >= min_claims)
        .order_by(o.user_id)
    ).all()

    # The median delay: the middle row (or the two middle rows) of each user's delays in order.
    ranked = select(
        c.user_id,
        (c.t - c.tc).label("delay"),
        func.row_number().over(partition_by=c.user_id, order_by=c.t - c.tc).label("rn"),
        func.count().over(partition_by=c.user_id).label("n"),
    ).subquery("ranked")
    r = ranked.c
    medians = session.execute(
        select(r.user_id, func.avg(r.delay))
        .where(r.n >= min_claims, or_(r.rn == (r.n + 1) // 2, r.rn == (r.n + 2) // 2))
        .group_by(r.user_id)
    ).all()

    refusals = session.execute(
        select(ClaimRefusal.user_id, func.count())
        .where(ClaimRefusal.at >= start, ClaimRefusal.at < end)
        .group_by(ClaimRefusal.user_id)
    ).all()
    return {"per_user": per_user, "medians": medians, "refusals": refusals}


def _column(rows: list, width: int) -> np.ndarray:
    """Aggregate rows (a user id, then numbers) as a float matrix without the id; NULL -> 0."""
    if not rows:
        return np.zeros((0, width))
    return np.array([[0.0 if v is None else float(v) for v in row[1:]] for row in rows], dtype=float)


def _scatter(index: dict[str, int], rows: list, n: int) -> np.ndarray:
    """A per-user aggregate (one number a row) at its users' positions; 0 for users without a row."""
    out = np.zeros(n)
    where = np.fromiter((index.get(row[0], -1) for row in rows), dtype=np.int64, count=len(rows))
    keep = where >= 0
    if keep.any():
        out[where[keep]] = _column(rows, 1)[keep, 0]
    return out


def _assemble(rows: dict[str, list], start: float, end: float) -> Population:
    """numpy: the aggregates as one feature row per user."""
    per_user = rows["per_user"]
    user_ids = [row[0] for row in per_user]
    n = len(user_ids)
    if n == 0:
        return Population(user_ids=[], values=np.zeros((0, len(NAMES))), names=NAMES)
    index = {uid: i for i, uid in enumerate(user_ids)}
    (claims, hours, first, last, max_gap, gaps_in, gap_sum, gap_sq, bursts, cd_claims, cd_at, ips, agents) = _column(
        per_user, 13
    ).T
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_gap = gap_sum / gaps_in
        variance = np.maximum(gap_sq / gaps_in - mean_gap**2, 0.0)
        gap_cv = np.where(mean_gap > 0, np.sqrt(variance) / mean_gap, 0.0)
    columns = {
        "claims_per_active_hour": claims / hours,
        "active_hours": hours,
        "longest_rest_hours": np.maximum.reduce([first - start, max_gap, end - last]) / 3600.0,
        "gap_cv": np.where(gaps_in >= MIN_RHYTHM_GAPS, gap_cv, UNMEASURED_CV),
        "burst_share": bursts / np.maximum(claims - 1, 1),
        "median_claim_delay": np.maximum(_scatter(index, rows["medians"], n), 0.0),
        "cooldown_share": np.where(cd_claims > 0, cd_at / np.maximum(cd_claims, 1), 0.0),
        "distinct_ips": ips,
        "distinct_user_agents": agents,
        "refusals_per_claim": _scatter(index, rows["refusals"], n) / claims,
    }
    values = np.column_stack([columns[name] for name in NAMES])
    return Population(user_ids=user_ids, values=values, names=NAMES)
