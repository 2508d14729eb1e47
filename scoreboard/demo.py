"""The demo page at ``/`` and the one endpoint it needs; registered only when ``DEMO_ENABLED`` is on.

On a real site the site's own backend records a completion with its service token when a
user finishes something. The demo page has no backend of its own, so ``POST /demo/complete``
plays that part for the signed-in user; the page then claims the answered ``actionId``
through the real ``POST /api/action/do`` with the user's token.
"""

from flask import Blueprint, jsonify, render_template
from pydantic import Field

from config import env_bool

from .api.openapi import Reply, documented
from .api.schemas import Body, CompletionOut, parse_body
from .auth import current_user_id, login_required
from .extensions import limiter
from .ratelimits import user_key, user_limit
from .scoring.completions import record_completion

bp = Blueprint("demo", __name__)


class DemoCompletionBody(Body):
    """``POST /demo/complete``: which catalog action the signed-in user completed."""

    action: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


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


def enabled(app):
    """``DEMO_ENABLED`` from the app config or ``SCOREBOARD_DEMO_ENABLED``; on by default only in embedded mode."""
    configured = app.config.get("DEMO_ENABLED")
    if configured is None:
        configured = env_bool("DEMO_ENABLED", app.config["EMBEDDED_DATABASE"])
    return bool(configured)


def init_app(app):
    """Register the demo blueprint when the demo is enabled."""
    app.config["DEMO_ENABLED"] = enabled(app)
    if app.config["DEMO_ENABLED"]:
        app.register_blueprint(bp)
