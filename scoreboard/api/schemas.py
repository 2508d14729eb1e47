"""Request bodies, validated with pydantic: unknown fields and oversize values are refused."""

from datetime import datetime
from typing import Annotated, Any, Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, WithJsonSchema, field_validator
from pydantic.alias_generators import to_camel

from ..errors import ApiError
from ..inputs import MAX_IDS, ActionId, ActionKey, DisplayName, QueryInt, Reason, UserId, UserIdList
from ..models import CompletionStatus, SuspectStatus, UserStatus
from ..periods import KINDS, TIMED, Period, UnknownPeriod, resolve
from ..scoring.moderation import AUDIT_ACTS


class Body(BaseModel):
    """Strict base: no extra fields, no type coercion from strings to numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value):
        """Refuse NUL characters: PostgreSQL cannot store them, so they would fail deep in a query."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class ClaimBody(Body):
    """``POST /api/action/do``."""

    action_id: ActionId = Field(alias="actionId")


class CompletionBody(Body):
    """``POST /api/actions/completions``."""

    user_id: UserId = Field(alias="userId")
    action: ActionKey
    ref: str | None = Field(default=None, min_length=1, max_length=128)
    display_name: DisplayName | None = Field(default=None, alias="displayName")


class LoginBody(Body):
    """``POST /api/auth/login``."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class StatusBody(Body):
    """``POST /api/admin/users/<id>/status``."""

    status: Literal[UserStatus.ALL]
    reason: Reason


class AdjustBody(Body):
    """``POST /api/admin/users/<id>/adjustments``: a signed delta and a mandatory reason."""

    delta: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    reason: Reason

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value):
        if value == 0:
            raise ValueError("delta must not be 0")
        return value


class VoidBody(Body):
    """``POST /api/admin/completions/<actionId>/void``."""

    reason: Reason


class ClearSuspectBody(Body):
    """``POST /api/admin/suspects/<userId>/clear``: why the suspect is no bot."""

    reason: Reason


class ConfirmSuspectBody(Body):
    """``POST /api/admin/suspects/<userId>/confirm``: why, and whether to void the window's claims."""

    reason: Reason
    void: bool = Field(
        default=False,
        description="Also void the user's claims from the start of the scan's window on (their points leave every "
        "board).",
    )


class RevokeBody(Body):
    """``POST /api/admin/tokens/revoke``."""

    jti: str = Field(min_length=1, max_length=128)
    reason: Reason


class UserRevokeBody(Body):
    """``POST /api/admin/users/<userId>/tokens/revoke``: why every token the user holds now is refused."""

    reason: Reason


MAX_PROBLEMS = 10


def _problems(exc: ValidationError) -> tuple[list[dict], dict]:
    """The first :data:`MAX_PROBLEMS` of a validation error's problems, and how many more there were."""
    errors = exc.errors(include_url=False, include_input=False)
    problems = [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]}
        for err in errors[:MAX_PROBLEMS]
    ]
    # A body with thousands of bad keys must not get an answer many times its own size.
    more = {"moreProblems": len(errors) - MAX_PROBLEMS} if len(errors) > MAX_PROBLEMS else {}
    return problems, more


def parse_body(model):
    """Validate the JSON body against ``model`` or raise a 400 naming the problem."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        # Nested deeper than the parser recurses (a 16 KiB body can be): as unusable as malformed JSON.
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems, more = _problems(exc)
        raise ApiError(400, "invalid_body", "The body failed validation.", problems=problems, **more) from None


# Query strings. Each model documents its parameters in the OpenAPI document and validates them;
# ``period`` and ``at`` are only described here and resolved by ``scoreboard.periods`` (400 ``bad_period``).


def _no_default(schema: dict) -> None:
    """Leave ``default: null`` out of a parameter's schema: an absent parameter is not a null one."""
    schema.pop("default", None)


PeriodKind = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "enum": list(KINDS)}),
    Field(
        description="`all` (the default), `day`, `week` (ISO, from Monday) or `month`.", json_schema_extra=_no_default
    ),
]
PeriodDate = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "format": "date"}),
    Field(
        description="A day inside the period wanted, `YYYY-MM-DD` (default: the current period); only with "
        "`day`, `week` or `month`, never in the future nor in a period older than those kept.",
        json_schema_extra=_no_default,
    ),
]
Cursor = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 1024}),
    Field(
        description="The `next` of the previous page, as it was; only for the same query.",
        json_schema_extra=_no_default,
    ),
]


class Query(BaseModel):
    """Base of query strings: unknown parameters are ignored, values arrive as strings."""

    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value, info: ValidationInfo):
        """Refuse NUL characters, as in bodies: PostgreSQL cannot compare them, so they would fail in a query.
        A cursor is opaque and verified whole (a bad one answers ``bad_cursor``): it never reaches a query."""
        if info.field_name != "cursor" and isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class PeriodQuery(Query):
    """Which board: a period kind and a day inside it."""

    period: PeriodKind = None
    at: PeriodDate = None


class ScoresQuery(PeriodQuery):
    """``GET /api/scores``: one page of the ranking."""

    limit: QueryInt = Field(default=50, ge=1, le=100, description="Entries per page, 1 to 100.")
    cursor: Cursor = None


class MyStandingQuery(PeriodQuery):
    """``GET /api/scores/me``: the caller's rank and neighbours."""

    radius: QueryInt = Field(default=5, ge=0, le=25, description="Neighbours shown on each side, 0 to 25.")


class SuspectsQuery(Query):
    """``GET /api/admin/suspects``: the anomaly scan's suspects, newest first."""

    status: Annotated[
        Literal[SuspectStatus.ALL] | None,
        WithJsonSchema({"type": "string", "enum": list(SuspectStatus.ALL)}),
        Field(
            description="Only the suspects of this status: `held` or `flagged` (awaiting review), `cleared`, "
            "`confirmed`.",
            json_schema_extra=_no_default,
        ),
    ] = None
    limit: QueryInt = Field(default=100, ge=1, le=500, description="How many, 1 to 500.")


class UserSearchQuery(Query):
    """``GET /api/admin/users``: find users by id or display name."""

    q: str = Field(
        min_length=1,
        max_length=64,
        description="The exact id, the start of an id, or part of a display name (the start of one for 1 or 2 "
        "characters); case-insensitive.",
    )
    limit: QueryInt = Field(default=20, ge=1, le=50, description="How many, 1 to 50.")


class LedgerQuery(Query):
    """``GET /api/admin/users/<userId>/ledger``: one page of a user's ledger, newest first."""

    limit: QueryInt = Field(default=50, ge=1, le=200, description="Rows per page, 1 to 200.")
    cursor: Cursor = None


ACTIVITY_RANGES = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30}  # hours in each range


class ActivityQuery(Query):
    """``GET /api/admin/users/<userId>/activity``: a user's claims per hour."""

    range: Literal[tuple(ACTIVITY_RANGES)] = Field(
        default="24h", description="The last `24h`, `7d` or `30d`, in whole hours up to the current one."
    )


class AuditQuery(Query):
    """``GET /api/admin/audit``: the admin acts, newest first, filtered and paged."""

    actor: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=64,
            description="Only the acts of this actor (exact).",
            json_schema_extra=_no_default,
        ),
    ] = None
    target: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=64,
            description="Only the acts about this user (exact).",
            json_schema_extra=_no_default,
        ),
    ] = None
    act: Annotated[
        Literal[AUDIT_ACTS] | None,
        WithJsonSchema({"type": "string", "enum": list(AUDIT_ACTS)}),
        Field(description="Only acts of this kind.", json_schema_extra=_no_default),
    ] = None
    before: Annotated[
        QueryInt | None,
        Field(
            ge=1,
            description="Only acts with an id below this (the last id seen: the next page).",
            json_schema_extra=_no_default,
        ),
    ] = None
    limit: QueryInt = Field(default=100, ge=1, le=500, description="How many, 1 to 500.")


class UsersQuery(PeriodQuery):
    """``GET /api/scores/users``: chosen users' standings."""

    ids: UserIdList = Field(description=f"Comma-separated user ids, 1 to {MAX_IDS}.")


class HistoryQuery(PeriodQuery):
    """``GET /api/scores/<userId>/history``: one page of a user's score changes, newest first."""

    limit: QueryInt = Field(default=50, ge=1, le=100, description="Entries per page, 1 to 100.")
    cursor: Cursor = None


def parse_query(model):
    """Validate the query string against ``model`` (each parameter's first value), or raise 400 ``invalid_query``."""
    data = {name: request.args[name] for name in model.model_fields if name in request.args}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems, more = _problems(exc)
        raise ApiError(400, "invalid_query", "The query string failed validation.", problems=problems, **more) from None


def requested_period(query: PeriodQuery) -> Period:
    """The period ``query`` names, or a 400 ``bad_period`` saying why it names none."""
    try:
        return resolve(query.period, query.at)
    except UnknownPeriod as exc:
        raise ApiError(400, "bad_period", str(exc)) from None


# Response shapes. The views answer plain dicts; these models describe them in the OpenAPI
# document, and the schemathesis suite checks every answer against them.


class Out(BaseModel):
    """Base of answers: camelCase names on the wire, extra fields allowed (clients must ignore them)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Problem(Out):
    """One field that failed validation."""

    field: str
    problem: str


class ErrorDetail(Out):
    """``error``: a stable machine-readable ``code`` and a message for humans; some codes add details."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    message: str = Field(min_length=1)
    problems: list[Problem] | None = Field(default=None, description="At most 10 fields that failed validation.")
    more_problems: int | None = Field(default=None, description="How many more failed beyond those listed.")
    retry_after: int | None = None


class Error(Out):
    """Every error answer."""

    error: ErrorDetail


class LoginResult(Out):
    """``POST /api/auth/login``."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    user_id: str
    display_name: str


class LogoutResult(Out):
    """``POST /api/auth/logout``."""

    revoked: Literal[True]


class SocketTicket(Out):
    """``POST /api/socket-ticket``: an opaque, single-use ticket for one socket handshake."""

    ticket: str = Field(min_length=1, description="Send as `/ws/scoreboard?ticket=<ticket>`; it works once.")
    expires_in: int = Field(ge=1, le=30, description="Seconds left to use it.")


class ActionOut(Out):
    """One entry of the action catalog."""

    key: str
    points: int
    enabled: bool
    description: str
    max_per_user_per_day: int | None
    cooldown_seconds: int | None


class CompletionOut(Out):
    """A recorded completion, as answered to the service that recorded it."""

    action_id: str
    user_id: str
    action: str
    points: int
    status: Literal[CompletionStatus.OF_ACTIONS]
    expires_at: datetime


class ClaimResult(Out):
    """``POST /api/action/do``."""

    success: Literal[True]
    new_score: int


class TopEntry(Out):
    """One row of the board, highest score first."""

    rank: int = Field(ge=1)
    user_id: str
    display_name: str
    score: int


class TopMessage(Out):
    """``snapshot`` on connect, ``update`` on every change; a day, week or month board names itself."""

    type: Literal["snapshot", "update"]
    version: int
    period: Literal[TIMED] | None = Field(None, description="Absent on the all-time board.")
    key: str | None = Field(None, description="The period's key, e.g. `week:2026-W49`; absent on the all-time board.")
    changed_at: int | None = Field(None, description="Epoch ms of the oldest change the message carries.")
    top: list[TopEntry]


class MeMessage(Out):
    """After ``{"type": "watch"}``: the viewer's own place, sent when it changes (at most once a second)."""

    type: Literal["me"]
    version: int
    period: Literal[KINDS]
    key: str | None = Field(None, description="The period's key; absent on the all-time board.")
    rank: int | None = Field(description="Null while the viewer has no points on this board.")
    score: int | None
    total: int


class SocketError(Out):
    """The answer to a request the socket cannot serve, e.g. ``watch`` without a viewer (``sign_in_required``)."""

    type: Literal["error"]
    code: str
    message: str


BoardMessage = Annotated[TopMessage | MeMessage | SocketError, Field(discriminator="type")]


class AdminUser(Out):
    """A user as the admin API shows it."""

    user_id: str
    display_name: str
    status: Literal[UserStatus.ALL]
    created_at: datetime


class LedgerRow(Out):
    """A ledger row: a completion or an admin adjustment."""

    action_id: str
    user_id: str
    action: str | None
    points: int
    status: Literal[CompletionStatus.ALL]
    expires_at: datetime
    reason: str | None
    created_at: datetime
    claimed_at: datetime | None
    client_ip: str | None
    user_agent: str | None


class AuditOut(Out):
    """One admin act."""

    id: int
    at: datetime
    actor: str
    actor_ip: str | None
    act: Literal[AUDIT_ACTS]
    target_user: str | None
    target_completion: str | None
    reason: str
    details: dict[str, Any]


class PeriodStanding(Out):
    """A user's place on one public board."""

    period: str = Field(description="`all`, or the current period's key (`day:2026-12-02`, `week:2026-W49` ...).")
    rank: int | None = Field(ge=1, description="Null when not on the board: hidden, banned, or no points there.")
    score: int = Field(description="The user's score in the period (0 without points there).")
    total: int | None = Field(
        ge=0, description="How many users the board ranks (a held user counted, as they see it); null if unknown."
    )
    held: bool = Field(description="The user is held: `rank` is where they would be, off the public board.")
    rankUnknown: bool = Field(
        description="The board's ranking is being rebuilt (queued by this read) or Redis is unreachable: `rank` and "
        "`total` are null for now; the rest of the page is from the database."
    )


class UserStandings(Out):
    """A user's place on the all-time board and the current day's, week's and month's."""

    all: PeriodStanding
    day: PeriodStanding
    week: PeriodStanding
    month: PeriodStanding


class UserLedger(Out):
    """``GET /api/admin/users/<id>``."""

    user: AdminUser
    score: int
    standings: UserStandings
    ledger: list[LedgerRow] = Field(description="The latest 200 rows, newest recorded first.")
    audit: list[AuditOut]


class UserHit(Out):
    """A user found by a search."""

    user_id: str
    display_name: str
    status: Literal[UserStatus.ALL]
    score: int
    created_at: datetime


class UserSearch(Out):
    """``GET /api/admin/users``."""

    users: list[UserHit]


class LedgerPage(Out):
    """``GET /api/admin/users/<id>/ledger``: one page, newest recorded first."""

    entries: list[LedgerRow]
    next: str | None = Field(description="The cursor of the next (older) page; null on the last one.")


class ActivityPoint(Out):
    """One hour of a user's activity."""

    at: datetime = Field(description="The hour's start (UTC).")
    claims: int = Field(ge=0, description="Claims made in the hour (voided ones since included).")
    points: int = Field(description="The points those claims gave.")
    refused: int = Field(ge=0, description="Claims refused in the hour.")


class UserActivity(Out):
    """``GET /api/admin/users/<id>/activity``: every hour of the range, oldest first."""

    range: Literal[tuple(ACTIVITY_RANGES)]
    from_: datetime = Field(alias="from", description="The first hour's start (inclusive).")
    to: datetime = Field(description="The last hour's end (exclusive): the end of the current hour.")
    bucket: Literal["hour"]
    points: list[ActivityPoint]


class UserRevokeResult(Out):
    """``POST /api/admin/users/<id>/tokens/revoke``."""

    user_id: str
    revoked_before: datetime = Field(description="Every token of the user issued (`iat`) before this is refused.")


class StatusResult(Out):
    """``POST /api/admin/users/<id>/status``."""

    user_id: str
    status: Literal[UserStatus.ALL]


class AdjustmentResult(Out):
    """``POST /api/admin/users/<id>/adjustments``."""

    adjustment_id: str
    user_id: str
    delta: int
    new_score: int


class VoidResult(Out):
    """``POST /api/admin/completions/<actionId>/void``."""

    action_id: str
    user_id: str
    status: Literal["void"]
    new_score: int


class RevokeResult(Out):
    """``POST /api/admin/tokens/revoke``."""

    jti: str
    revoked: Literal[True]


class TypicalValue(Out):
    """What the judged population shows for a feature: its median and the 95th percentile on the suspicious side."""

    model_config = ConfigDict(extra="allow")

    median: float | None
    p95: float | None


class SuspectReason(Out):
    """One feature that drove a flag: the user's value against the population's."""

    feature: str = Field(description="A feature of docs/anomalies.md, e.g. `gap_cv`.")
    value: float | None
    typical: TypicalValue


class SuspectOut(Out):
    """A user the anomaly scan flagged."""

    user_id: str
    display_name: str
    anomaly_score: float = Field(description="Higher is more anomalous; flagged above the threshold.")
    flagged_at: datetime
    status: Literal[SuspectStatus.ALL]
    reasons: list[SuspectReason] = Field(description="The features that drove the flag, most telling first.")
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_reason: str | None


class SuspectsList(Out):
    """``GET /api/admin/suspects``."""

    suspects: list[SuspectOut]


class ClearedSuspect(Out):
    """``POST /api/admin/suspects/<userId>/clear``."""

    user_id: str
    status: Literal["cleared"]
    user_status: Literal[UserStatus.ALL] = Field(description="The user's status now: the one before the hold.")


class ConfirmedSuspect(Out):
    """``POST /api/admin/suspects/<userId>/confirm``."""

    user_id: str
    status: Literal["confirmed"]
    user_status: Literal["banned"]
    voided: int = Field(ge=0, description="Claims voided (0 without `void`).")
    points_voided: int = Field(ge=0)
    new_score: int


class AdminTopEntry(TopEntry):
    """A row of the admin board: every user, with their status."""

    status: Literal[UserStatus.ALL]


class Health(Out):
    """``GET /healthz``."""

    status: Literal["ok"]


class Ready(Out):
    """``GET /readyz``: each backing service's state."""

    status: Literal["ready"]
    checks: dict[str, str]


class PeriodOut(Out):
    """Which board an answer is from: the period's kind, key and span (``null`` for all time)."""

    period: Literal[KINDS]
    key: str = Field(description="`all`, `day:2026-12-02`, `week:2026-W49` or `month:2026-12`.")
    start: datetime | None = Field(description="Where the period starts (inclusive); null for all time.")
    end: datetime | None = Field(description="Where it ends (exclusive); null for all time.")


class ScoresPage(PeriodOut):
    """``GET /api/scores``: one page of the ranking, in rank order."""

    entries: list[TopEntry]
    next: str | None = Field(description="The cursor of the next page; null on the last one.")
    total: int = Field(ge=0, description="How many users the ranking holds now.")


class MyStanding(PeriodOut):
    """``GET /api/scores/me``: the caller's rank, score and neighbours (nulls and no neighbours when unranked)."""

    user_id: str
    rank: int | None = Field(ge=1)
    score: int | None
    total: int = Field(ge=0)
    around: list[TopEntry]


class UsersStandings(PeriodOut):
    """``GET /api/scores/users``: the ranked ones among the users asked for, in rank order."""

    entries: list[TopEntry]


class HistoryEntry(Out):
    """One change of a user's score: a claim, an adjustment or the void of a claim."""

    at: datetime
    score: int = Field(description="The score (in the period) right after this change.")
    delta: int
    kind: Literal["claim", "adjustment", "void"]
    action: str = Field(description="The action key of a claim; `adjustment` or `void` for the others.")


class ScoreHistory(PeriodOut):
    """``GET /api/scores/<userId>/history``: one page of changes, newest first."""

    user_id: str
    entries: list[HistoryEntry]
    next: str | None = Field(description="The cursor of the next (older) page; null on the last one.")
