"""Request bodies, validated with pydantic: unknown fields and oversize values are refused."""

from datetime import datetime
from typing import Any, Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from ..errors import ApiError
from ..inputs import ActionId, ActionKey, DisplayName, Reason, UserId
from ..models import CompletionStatus, UserStatus


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


class RevokeBody(Body):
    """``POST /api/admin/tokens/revoke``."""

    jti: str = Field(min_length=1, max_length=128)
    reason: Reason


MAX_PROBLEMS = 10


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
        errors = exc.errors(include_url=False, include_input=False)
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]}
            for err in errors[:MAX_PROBLEMS]
        ]
        # A body with thousands of bad keys must not get an answer many times its own size.
        more = {"moreProblems": len(errors) - MAX_PROBLEMS} if len(errors) > MAX_PROBLEMS else {}
        raise ApiError(400, "invalid_body", "The body failed validation.", problems=problems, **more) from None


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


class BoardMessage(Out):
    """One message on ``/ws/scoreboard``: ``snapshot`` on connect, ``update`` on every change."""

    type: Literal["snapshot", "update"]
    version: int
    top: list[TopEntry]


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
    act: str
    target_user: str | None
    target_completion: str | None
    reason: str
    details: dict[str, Any]


class UserLedger(Out):
    """``GET /api/admin/users/<id>``."""

    user: AdminUser
    score: int
    ledger: list[LedgerRow]
    audit: list[AuditOut]


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


class AdminTopEntry(TopEntry):
    """A row of the admin board: every user, with their status."""

    status: Literal[UserStatus.ALL]


class AuditQuery(Out):
    """``GET /api/admin/audit`` query: how many acts, newest first."""

    limit: int = Field(default=100, ge=1, le=500)


class Health(Out):
    """``GET /healthz``."""

    status: Literal["ok"]


class Ready(Out):
    """``GET /readyz``: each backing service's state."""

    status: Literal["ready"]
    checks: dict[str, str]
