"""Request bodies, validated with pydantic: unknown fields and oversize values are refused."""

from flask import request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ApiError

Id = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")


class Body(BaseModel):
    """Strict base: no extra fields, no type coercion from strings to numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ClaimBody(Body):
    """``POST /api/action/do``."""

    action_id: str = Field(alias="actionId", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class CompletionBody(Body):
    """``POST /api/actions/completions``."""

    user_id: str = Field(alias="userId", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")
    action: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    ref: str | None = Field(default=None, min_length=1, max_length=128)
    display_name: str | None = Field(default=None, alias="displayName", min_length=1, max_length=80)


class LoginBody(Body):
    """``POST /api/auth/login``."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


def parse_body(model):
    """Validate the JSON body against ``model`` or raise a 400 naming the problem."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(400, "invalid_body", "The body failed validation.", problems=problems) from None
