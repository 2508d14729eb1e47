"""The action catalog and recording completions (the site's trusted server side)."""

from flask import Blueprint, jsonify

from ..extensions import limiter
from ..scoring.catalog import enabled_actions
from ..scoring.completions import record_completion
from ..security.rate_limits import service_limit, user_key
from ..security.tokens import login_required, role_required
from .openapi import Reply, documented
from .schemas import ActionOut, CompletionBody, CompletionOut, parse_body

bp = Blueprint("actions", __name__, url_prefix="/api/actions")

# The user's browser claims the answered actionId (with the user's own token).
CLAIM_IT = {
    "ClaimTheCompletion": {"operationId": "claims.do_action", "requestBody": {"actionId": "$response.body#/actionId"}}
}


@bp.get("")
@documented("The enabled action catalog", auth="token", responses={200: list[ActionOut]})
@login_required
def list_actions():
    """The enabled actions and their points."""
    return jsonify([action.to_dict() for action in enabled_actions()])


@bp.post("/completions")
@documented(
    "Record that a user completed an action",
    auth="service",
    body=CompletionBody,
    responses={
        201: Reply(CompletionOut, "Recorded: the one-time `actionId` for the user's browser to claim.", links=CLAIM_IT),
        200: Reply(CompletionOut, "This `ref` was recorded before: the same completion.", links=CLAIM_IT),
    },
    errors={
        409: "`ref_conflict`: the `ref` was used for another user or action.",
        422: "`unknown_action`: the action is not in the catalog or is disabled.",
        429: "`action_cooldown`, `action_daily_cap`: the catalog's limits for this user (`retryAfter`).",
    },
)
@role_required("service")
@limiter.limit(service_limit, key_func=user_key)
def create_completion():
    """Record a completion; answer the one-time ``actionId`` the user's browser will claim."""
    body = parse_body(CompletionBody)
    completion, created = record_completion(body.user_id, body.action, body.ref, body.display_name)
    return jsonify(completion.to_dict()), 201 if created else 200
