"""``GET /api/admin/analytics`` (role ``admin``): the ledger's figures over the last 24 hours, 7 or 30 days."""

from datetime import datetime
from typing import Literal

from flask import Blueprint, jsonify
from pydantic import Field

from ..analytics import RANGES, figures
from ..extensions import db
from ..periods import clock
from ..security.tokens import role_required
from .openapi import Reply, documented
from .schemas import Out, Query, parse_query

bp = Blueprint("analytics", __name__, url_prefix="/api/admin")

RangeKey = Literal[tuple(RANGES)]


class AnalyticsQuery(Query):
    """``GET /api/admin/analytics``: which range."""

    range: RangeKey = Field(default="24h", description="The last `24h`, `7d` or `30d`, up to now.")


class HourClaims(Out):
    """The claims made in one hour."""

    at: datetime = Field(description="The hour's start.")
    claims: int = Field(ge=0)


class DayUsers(Out):
    """The distinct claimers of one UTC day."""

    day: str = Field(description="YYYY-MM-DD (UTC).")
    users: int = Field(ge=0)


class ActiveUsers(Out):
    """Distinct users with a claim."""

    daily: int = Field(ge=0, description="In the 24 hours before `to`.")
    weekly: int = Field(ge=0, description="In the 7 days before `to`.")
    per_day: list[DayUsers] = Field(description="Each UTC day the range touches, oldest first (the first one whole).")


class CompletionCounts(Out):
    """What became of the completions recorded in the range (adjustments are not completions)."""

    recorded: int = Field(ge=0)
    claimed: int = Field(ge=0)
    expired: int = Field(ge=0, description="Not claimed before their expiry, whether or not marked expired yet.")
    pending: int = Field(ge=0, description="Claimable now.")
    void: int = Field(ge=0)


class ActionFigures(Out):
    """One action key in the range."""

    action: str
    completions: int = Field(ge=0, description="Recorded in the range.")
    claims: int = Field(ge=0, description="Claims made in the range (a claim voided later included).")
    points: int = Field(ge=0, description="Points those claims issued; admin adjustments are not counted.")


class RefusalCount(Out):
    """Refused claims of one reason."""

    reason: str
    count: int = Field(ge=1)


class Analytics(Out):
    """``GET /api/admin/analytics``; every figure is defined in docs/analytics.md."""

    range: RangeKey
    from_: datetime = Field(alias="from", description="The start of the range's first hour.")
    to: datetime = Field(description="Now: the range's end (exclusive).")
    generated_at: datetime
    claims_per_hour: list[HourClaims] = Field(description="Every hour of the range, oldest first; the last is now's.")
    active_users: ActiveUsers
    new_players: int = Field(ge=0, description="Users whose first claim ever falls in the range.")
    completions: CompletionCounts
    median_claim_seconds: float | None = Field(
        description="Median time from recording to claim of the claims made in the range, from a histogram "
        "(within half a bucket: 0.5 s under a minute, 5 s under 10 min, 30 s under an hour); null without claims."
    )
    actions: list[ActionFigures] = Field(description="By action key.")
    top_completed: list[str] = Field(max_length=10, description="Most completions recorded first.")
    top_rewarding: list[str] = Field(max_length=10, description="Most points issued first.")
    refusals: list[RefusalCount] = Field(description="Most first.")


@bp.before_request
@role_required("admin")
def _admins_only():
    """Every analytics route needs the ``admin`` role."""


@bp.get("/analytics")
@documented(
    "The ledger's figures over the last 24 hours, 7 or 30 days",
    auth="admin",
    tags=("admin",),
    query=AnalyticsQuery,
    responses={200: Reply(Analytics, "Claims per hour, active and new players, completions, actions, refusals.")},
    errors={400: "`invalid_query`: `range` is not `24h`, `7d` or `30d`."},
)
def analytics():
    """Claims per hour, active and new players, completions recorded against claimed, the median time to claim,
    the actions most completed and most rewarding, refused claims by reason: over ``?range=24h|7d|30d``."""
    query = parse_query(AnalyticsQuery)
    return jsonify(figures(db.engine, query.range, clock()))
