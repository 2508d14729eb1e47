"""``POST /api/auth/login``: local accounts trade a password for an access token."""

from flask import Blueprint, current_app, jsonify
from flask_jwt_extended import get_jwt
from sqlalchemy import select

from ..errors import ApiError
from ..extensions import db, limiter
from ..models import User, UserStatus
from ..security.passwords import verify_password
from ..security.rate_limits import login_limit
from ..security.revocations import revoke
from ..security.tokens import login_required, mint_token
from .openapi import documented
from .schemas import LoginBody, LoginResult, LogoutResult, parse_body

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


@bp.post("/login")
@documented(
    "Trade a local account's password for a token",
    auth="public",
    body=LoginBody,
    responses={200: LoginResult},
    errors={401: "`invalid_credentials`: wrong username or password."},
)
@limiter.limit(login_limit)
def login():
    """Check a username and password; answer a Bearer token."""
    body = parse_body(LoginBody)
    user = db.session.scalar(select(User).where(User.id == body.username))
    if not verify_password(user.password_hash if user else None, body.password) or user.status == UserStatus.BANNED:
        raise ApiError(401, "invalid_credentials", "Wrong username or password.")
    expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return jsonify(
        accessToken=mint_token(user.id, [r for r in user.roles.split(",") if r]),
        tokenType="Bearer",
        expiresIn=int(expires.total_seconds()),
        userId=user.id,
        displayName=user.display_name,
    )


@bp.post("/logout")
@documented(
    "Revoke the caller's token",
    auth="token",
    responses={200: LogoutResult},
    errors={400: "`token_not_revocable`: the token has no `jti`."},
)
@login_required
def logout():
    """Revoke the caller's token (by its ``jti``) so it is refused from now on."""
    claims = get_jwt()
    if not claims.get("jti"):
        raise ApiError(400, "token_not_revocable", "This token has no jti to revoke.")
    revoke(claims)
    return jsonify(revoked=True)
