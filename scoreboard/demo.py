"""The demo page at ``/`` and the one endpoint it needs; registered only when ``DEMO_ENABLED`` is on.

On a real site the site's own backend records a completion with its service token when a
user finishes something. The demo page has no backend of its own, so ``POST /demo/complete``
plays that part for the signed-in user; the page then claims the answered ``actionId``
through the real ``POST /api/action/do`` with the user's token.
"""

from flask import Blueprint, Flask, jsonify, render_template

from .api.openapi import Reply, documented
from .api.schemas import Body, CompletionOut, parse_body
from .extensions import limiter
from .inputs import ActionKey
from .scoring.completions import record_completion
from .security.rate_limits import user_key, user_limit
from .security.tokens import current_user_id, login_required

bp = Blueprint("demo", __name__)


class DemoCompletionBody(Body):
    """``POST /demo/complete``: which catalog action the signed-in user completed."""

    action: ActionKey


@bp.get("/")
@documented(
    "The demo page",
    auth="public",
    tags=("demo",),
    responses={200: Reply(str, "The live board and a sign-in form.", media_type="text/html")},
)
def page():
    """The demo page: sign in, complete actions, watch the live board."""
    return render_template("demo.html")


@bp.post("/demo/complete")
@documented(
    "Record a completion for the signed-in user (the demo's stand-in for a site backend)",
    auth="token",
    tags=("demo",),
    body=DemoCompletionBody,
    responses={201: CompletionOut},
    errors={
        422: "`unknown_action`: the action is not in the catalog or is disabled.",
        429: "`action_cooldown`, `action_daily_cap`: the catalog's limits for this user.",
    },
)
@login_required
@limiter.limit(user_limit, key_func=user_key)
def complete():
    """Record a completion for the token's user, as the site's backend would; answer the ``actionId``."""
    body = parse_body(DemoCompletionBody)
    completion, _ = record_completion(current_user_id(), body.action)
    return jsonify(completion.to_dict()), 201


def init_app(app: Flask) -> None:
    """Register the demo blueprint when ``DEMO_ENABLED`` is on (by default only on the embedded database)."""
    if app.config["DEMO_ENABLED"]:
        app.register_blueprint(bp)
