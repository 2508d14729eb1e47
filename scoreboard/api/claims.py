"""``POST /api/action/do``: the user's browser claims a recorded completion."""

from flask import Blueprint, jsonify, request

from workers.board import request_refresh

from ..extensions import limiter
from ..ops.request_log import counted_as_claim
from ..scoring.claims import claim
from ..security.rate_limits import user_key, user_limit
from ..security.tokens import current_user_id, login_required
from .openapi import Reply, documented
from .schemas import ClaimBody, ClaimResult, parse_body

bp = Blueprint("claims", __name__, url_prefix="/api/action")

# The same actionId again: refused (409) however often it is sent.
CLAIM_AGAIN = {"operationId": "claims.do_action", "requestBody": {"actionId": "$request.body#/actionId"}}


@bp.post("/do")
@counted_as_claim
@documented(
    "Claim a recorded completion, once",
    auth="token",
    body=ClaimBody,
    responses={
        200: Reply(
            ClaimResult,
            "Claimed: the user's new score. The board follows within a second.",
            links={"ReadTheBoard": {"operationId": "board.top"}, "ClaimAgain": CLAIM_AGAIN},
        )
    },
    errors={
        403: "`user_banned`: this account may not claim points.",
        404: "`action_not_found`: no such `actionId` for this user (also when it is another user's).",
        409: "`already_claimed`: this `actionId` was claimed before.",
        410: "`action_expired`, `action_void`: the completion expired or was voided.",
    },
)
@login_required
@limiter.limit(user_limit, key_func=user_key)
def do_action():
    """Claim an ``actionId`` once; answer the user's new score."""
    body = parse_body(ClaimBody)
    new_score = claim(body.action_id, current_user_id(), request.remote_addr, request.user_agent.string)
    request_refresh()
    return jsonify(success=True, newScore=new_score)
