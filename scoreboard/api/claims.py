"""``POST /api/action/do``: the user's browser claims a recorded completion."""

from flask import Blueprint, jsonify, request

from ..auth import current_user_id, login_required
from ..board.pipeline import request_refresh
from ..extensions import limiter
from ..ratelimits import user_key, user_limit
from ..scoring.claims import claim
from .schemas import ClaimBody, parse_body

bp = Blueprint("claims", __name__, url_prefix="/api/action")


@bp.post("/do")
@login_required
@limiter.limit(user_limit, key_func=user_key)
def do_action():
    """Claim an ``actionId`` once; answer the user's new score."""
    body = parse_body(ClaimBody)
    new_score = claim(body.action_id, current_user_id(), request.remote_addr, request.user_agent.string)
    request_refresh()
    return jsonify(success=True, newScore=new_score)
