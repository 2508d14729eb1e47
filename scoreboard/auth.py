"""Token verification (Flask-JWT-Extended), roles, and local password accounts."""

import logging
import time
from functools import wraps

from flask import current_app, request
from flask_jwt_extended import create_access_token, get_jwt, get_jwt_identity, verify_jwt_in_request
from jwt.exceptions import DecodeError
from redis.exceptions import RedisError
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import ApiError, error_response
from .extensions import jwt
from .live.relay import memory_relay

log = logging.getLogger(__name__)

ROLES = ("service", "admin")
# No legitimate token comes near this; a bigger header is refused before any parsing.
MAX_TOKEN_BYTES = 4096

# Checked against when the username is unknown, so a login takes as long either way.
_DUMMY_HASH = generate_password_hash("timing-equaliser")


def hash_password(password):
    """Hash with Werkzeug's scrypt: slow on purpose."""
    return generate_password_hash(password)


def verify_password(password_hash, password):
    """Check a password; a missing hash still costs a full hash check."""
    return check_password_hash(password_hash or _DUMMY_HASH, password) and password_hash is not None


def mint_token(user_id, roles=(), expires=None):
    """Create an access token for ``user_id`` with a ``roles`` claim."""
    return create_access_token(
        identity=str(user_id),
        additional_claims={"roles": list(roles)},
        expires_delta=expires if expires is not None else current_app.config["JWT_ACCESS_TOKEN_EXPIRES"],
    )


def current_user_id():
    """The verified ``sub`` of the request's token."""
    return get_jwt_identity()


def current_roles():
    """The verified ``roles`` claim; anything but a list of strings counts as none."""
    roles = get_jwt().get("roles", [])
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []


def verify_token(**kwargs):
    """``verify_jwt_in_request``, refusing time claims PyJWT cannot read as a 401 rather than a crash."""
    try:
        return verify_jwt_in_request(**kwargs)
    except (OverflowError, TypeError) as exc:
        # PyJWT int()s exp/nbf/iat and catches only ValueError: Infinity, null or a list escape it.
        # Only a correctly signed token gets this far; it is still an unusable one.
        raise DecodeError("exp, nbf and iat must be integers") from exc


def login_required(view):
    """Require a valid token."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        verify_token()
        return view(*args, **kwargs)

    return wrapper


def role_required(role):
    """Require a valid token whose ``roles`` claim holds ``role``."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            verify_token()
            # Flask-JWT-Extended verifies nothing on OPTIONS (CORS preflights): with no claims to check,
            # answer the preflight and never run the protected view.
            if request.method == "OPTIONS":
                return current_app.make_default_options_response()
            if role not in current_roles():
                raise ApiError(403, "forbidden", f"This needs the '{role}' role.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def board_reader(view):
    """Require a token to read the board unless the board is public."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        verify_token(optional=current_app.config["PUBLIC_BOARD"])
        return view(*args, **kwargs)

    return wrapper


def _unauthorized(code, message):
    return error_response(401, code, message, headers={"WWW-Authenticate": "Bearer"})


@jwt.unauthorized_loader
def _missing_token(reason):
    return _unauthorized("token_missing", "A Bearer token is required.")


@jwt.invalid_token_loader
def _invalid_token(reason):
    return _unauthorized("token_invalid", f"The token is invalid: {reason}.")


@jwt.expired_token_loader
def _expired_token(header, payload):
    return _unauthorized("token_expired", "The token has expired.")


@jwt.revoked_token_loader
def _revoked_token(header, payload):
    return _unauthorized("token_revoked", "The token has been revoked.")


@jwt.token_verification_failed_loader
def _verification_failed(header, payload):
    return _unauthorized("token_invalid", "The token failed verification.")


@jwt.user_lookup_error_loader
def _user_lookup_failed(header, payload):
    return _unauthorized("token_invalid", "The token's user is unknown.")


@jwt.token_verification_loader
def _claims_are_well_formed(header, payload):
    """Beyond the signature: ``exp`` is required, ``sub`` is a short string, ``roles`` a list."""
    sub = payload.get("sub")
    return (
        "exp" in payload and isinstance(sub, str) and 0 < len(sub) <= 64 and isinstance(payload.get("roles", []), list)
    )


@jwt.token_in_blocklist_loader
def _is_revoked(header, payload):
    """Revoked by ``jti`` (logout, bans), from the process's copy while it is current, else from Redis.

    Redis down fails open: tokens are short-lived and bans are enforced from the database on every claim.
    """
    jti = payload.get("jti")
    if not jti:
        return False
    relay = memory_relay(current_app._get_current_object(), "REVOCATIONS_IN_MEMORY")
    known = relay.is_revoked(jti) if relay else None
    if known is not None:
        return known
    try:
        return current_app.extensions["scoreboard.store"].is_token_revoked(jti)
    except RedisError as exc:
        log.warning("revocation list unavailable, accepting token: %s", exc)
        return False


def revoke_jti(jti, ttl):
    """Refuse tokens with this ``jti`` for ``ttl`` seconds, in this process at once and in the others
    as soon as the revocation reaches them (milliseconds)."""
    app = current_app._get_current_object()
    lapses = app.extensions["scoreboard.store"].revoke_token(jti, max(1, ttl))
    relay = memory_relay(app, "REVOCATIONS_IN_MEMORY")
    if relay:
        relay.note_revoked(jti, lapses)


def revoke(payload):
    """Revoke the token with these claims until it would have expired anyway."""
    revoke_jti(payload["jti"], payload.get("exp", 0) - time.time() + current_app.config["JWT_DECODE_LEEWAY"])


def _refuse_oversized_tokens():
    """A huge Authorization header or token parameter is refused before it reaches the JWT parser."""
    token = request.headers.get("Authorization", "") or request.args.get("token", "")
    if len(token) > MAX_TOKEN_BYTES:
        return _unauthorized("token_invalid", "The token is too large.")
    return None


def init_app(app):
    """Install the request-level token guard."""
    app.before_request(_refuse_oversized_tokens)
