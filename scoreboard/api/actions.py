"""The action catalog and recording completions (the site's trusted server side)."""

from flask import Blueprint, jsonify

from ..auth import login_required, role_required
from ..extensions import limiter
from ..ratelimits import service_limit, user_key
from ..scoring.catalog import enabled_actions
from ..scoring.completions import record_completion
from .schemas import CompletionBody, parse_body

bp = Blueprint("actions", __name__, url_prefix="/api/actions")


@bp.get("")
@login_required
def list_actions():
    """The enabled actions and their points."""
    return jsonify([action.to_dict() for action in enabled_actions()])


@bp.post("/completions")
@role_required("service")
@limiter.limit(service_limit, key_func=user_key)
def create_completion():
    """Record a completion; answer the one-time ``actionId`` the user's browser will claim."""
    body = parse_body(CompletionBody)
    completion, created = record_completion(body.user_id, body.action, body.ref, body.display_name)
    return jsonify(completion.to_dict()), 201 if created else 200
