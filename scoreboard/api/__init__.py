"""The REST API: one blueprint per resource, all JSON."""

from flask import abort, request
from flask_cors import CORS

from ..board.standings import RankingNotBuilt
from . import actions, admin, analytics, board, claims, login, openapi, scores, sockets


def _api_headers(response):
    """API answers are per-user and never cached by browsers or proxies, never content-sniffed."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _no_nul_in_path():
    """A path with a NUL names nothing (PostgreSQL cannot even store one): 404 before any query."""
    if "\x00" in request.path:
        abort(404)


def init_app(app):
    """Register every API blueprint, security headers and the CORS allow-list."""
    for module in (login, actions, claims, board, scores, admin, analytics, sockets, openapi):
        app.register_blueprint(module.bp)
    # Every board read (the period top lists included) answers the same way while a ranking is rebuilt.
    app.register_error_handler(RankingNotBuilt, scores.answer_rebuilding)
    app.before_request(_no_nul_in_path)
    app.after_request(_api_headers)
    origins = app.config["ALLOWED_ORIGINS"]
    if origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": origins}},
            supports_credentials=False,
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Board-Version",
                "Retry-After",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ],
            max_age=600,
        )
