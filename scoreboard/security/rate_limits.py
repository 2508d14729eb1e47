"""Rate-limit keys and limits (Flask-Limiter; stored in Redis so they hold across processes)."""

from flask import current_app
from flask_jwt_extended import get_jwt_identity


def user_key() -> str:
    """Limit by the verified JWT ``sub`` (the view has verified the token already)."""
    return f"user:{get_jwt_identity()}"


def user_limit() -> str:
    """The per-user limit on claims, e.g. ``10/second;300/minute;5000/hour``."""
    return current_app.config["RATE_LIMIT_USER"]


def service_limit() -> str:
    """The per-caller limit on recording completions (a site backend records for many users)."""
    return current_app.config["RATE_LIMIT_SERVICE"]


def login_limit() -> str:
    """The per-IP limit on password logins."""
    return current_app.config["RATE_LIMIT_LOGIN"]
