"""Token verification (Flask-JWT-Extended), roles, and the view decorators that require them."""

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import wraps

from flask import Flask, current_app, g, request
from flask_jwt_extended import create_access_token, get_jwt, get_jwt_identity, verify_jwt_in_request
from flask_jwt_extended.config import config as jwt_config
from flask_jwt_extended.internal_utils import has_user_lookup, verify_token_not_blocklisted
from jwt.exceptions import DecodeError

from ..errors import ApiError, error_response
from ..extensions import jwt
from ..inputs import MAX_ID_LENGTH, USER_ID_PATTERN
from .revocations import is_refused

log = logging.getLogger(__name__)
USER_ID = re.compile(USER_ID_PATTERN)
_KEYS = "scoreboard.jwt_keys"
_CACHE = "scoreboard.token_cache"

ROLES = ("service", "admin")
# No legitimate token comes near this; a bigger header is refused before any parsing.
MAX_TOKEN_BYTES = 4096


def mint_token(user_id: str, roles: Iterable[str] = (), expires: timedelta | None = None) -> str:
    """Create an access token for ``user_id`` with a ``roles`` claim."""
    return create_access_token(
        identity=str(user_id),
        additional_claims={"roles": list(roles)},
        expires_delta=expires if expires is not None else current_app.config["JWT_ACCESS_TOKEN_EXPIRES"],
    )


def current_user_id() -> str:
    """The verified ``sub`` of the request's token."""
    return get_jwt_identity()


def current_roles() -> list[str]:
    """The verified ``roles`` claim; anything but a list of strings counts as none."""
    roles = get_jwt().get("roles", [])
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []


class VerifiedTokens:
    """The claims of tokens this process has verified, by their ``Authorization`` header; bounded, least recent out.

    Only the signature and the claims' checks are remembered: a token is never answered from here past its
    ``exp`` (with the configured leeway, as PyJWT counts it), and whether it is revoked is asked on every
    request (``is_refused``, a lookup in the process's copy). Only tokens that passed every check get in.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[float, dict, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, raw: str) -> tuple[dict, dict] | None:
        """``(header, claims)`` of a verified token still within its ``exp``, else None."""
        with self._lock:
            entry = self._entries.get(raw)
            if entry is None:
                return None
            if time.time() >= entry[0]:
                del self._entries[raw]
                return None
            self._entries.move_to_end(raw)
        # Copies: a view that changes its claims must not change the next request's.
        return dict(entry[1]), dict(entry[2])

    def put(self, raw: str, header: dict, claims: dict, leeway: float) -> None:
        """Remember a token that passed every check, until ``exp + leeway`` (PyJWT's bound)."""
        # Valid while exp > now - leeway, exp read as PyJWT reads it.
        deadline = int(claims["exp"]) + leeway
        with self._lock:
            self._entries[raw] = (deadline, dict(header), dict(claims))
            self._entries.move_to_end(raw)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def verified_tokens(app: Flask | None = None) -> VerifiedTokens | None:
    """The process's cache of verified tokens (None when ``SCOREBOARD_TOKEN_CACHE_SIZE`` is 0)."""
    return (app or current_app).extensions.get(_CACHE)


def _from_cache(cache: VerifiedTokens, raw: str) -> tuple[dict, dict] | None:
    """A cached token's ``(header, claims)``, put in the request as Flask-JWT-Extended puts a verified one."""
    found = cache.get(raw)
    if found is None:
        return None
    header, claims = found
    # Revocations are never cached: a revoked jti or a user's cutoff is refused here at once.
    verify_token_not_blocklisted(header, claims)
    g._jwt_extended_jwt_user = {"loaded_user": None}
    g._jwt_extended_jwt_header = header
    g._jwt_extended_jwt = claims
    g._jwt_extended_jwt_location = "headers"
    return header, claims


def verify_token(**kwargs):
    """``verify_jwt_in_request``, refusing time claims PyJWT cannot read as a 401 rather than a crash.

    A token in the ``Authorization`` header that this process verified before is taken from the cache of
    verified tokens (its revocation still checked); any other goes through Flask-JWT-Extended.
    """
    cache = verified_tokens()
    raw = None
    # Only the plain check is cached (the header, an access token, no freshness, no user loader), and not on
    # the methods Flask-JWT-Extended verifies nothing on.
    if (
        cache is not None
        and not kwargs.keys() - {"optional"}
        and request.method not in jwt_config.exempt_methods
        and tuple(jwt_config.token_location) == ("headers",)
    ):
        raw = request.headers.get(jwt_config.header_name)
        if raw and not has_user_lookup():
            found = _from_cache(cache, raw)
            if found is not None:
                return found
        else:
            raw = None
    try:
        verified = verify_jwt_in_request(**kwargs)
    except (OverflowError, TypeError) as exc:
        # PyJWT int()s exp/nbf/iat and catches only ValueError: Infinity, null or a list escape it.
        # Only a correctly signed token gets this far; it is still an unusable one.
        raise DecodeError("exp, nbf and iat must be integers") from exc
    if raw is not None and verified is not None and g.get("_jwt_extended_jwt_location") == "headers":
        leeway = jwt_config.leeway
        cache.put(raw, verified[0], verified[1], leeway.total_seconds() if isinstance(leeway, timedelta) else leeway)
    return verified


def login_required(view: Callable) -> Callable:
    """Require a valid token."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        verify_token()
        return view(*args, **kwargs)

    return wrapper


def role_required(role: str) -> Callable[[Callable], Callable]:
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


def board_reader(view: Callable) -> Callable:
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
    # The parser's own words stay in the log: they help a developer, and tell an attacker what the parser tried.
    log.info("token refused: %s", reason)
    return _unauthorized("token_invalid", "The token is invalid.")


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
    """Beyond the signature: ``exp`` is required, ``sub`` is a user id as the API accepts them, ``roles`` a list."""
    sub = payload.get("sub")
    return (
        "exp" in payload
        and isinstance(sub, str)
        and len(sub) <= MAX_ID_LENGTH
        and USER_ID.fullmatch(sub) is not None
        and isinstance(payload.get("roles", []), list)
    )


def key_id(key: str) -> str:
    """A token's ``kid`` for the verification key ``key``: names the key, reveals nothing of it."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def verification_keys(app: Flask) -> dict[str, str]:
    """``{kid: key}``: the current verification key first, then any being retired (a rotation)."""
    config = app.config
    current = config["JWT_PUBLIC_KEY"] if config["JWT_ALGORITHM"] == "RS256" else config["JWT_SECRET_KEY"]
    return {key_id(key): key for key in (current, *config["JWT_PREVIOUS_KEYS"])}


@jwt.additional_headers_loader
def _name_the_key(identity):
    """Tokens minted here name their key, so a rotation can keep verifying them with the retiring one."""
    return {"kid": next(iter(current_app.extensions[_KEYS]))}


@jwt.decode_key_loader
def _key_for(header, payload):
    """The key a token names by ``kid`` if it is one of ours; otherwise the current key."""
    keys = current_app.extensions[_KEYS]
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    return key if key is not None else next(iter(keys.values()))


@jwt.token_in_blocklist_loader
def _is_revoked(header, payload):
    """Revoked by ``jti`` (logout, bans), or issued before its user's tokens were all revoked."""
    return is_refused(payload)


def _refuse_oversized_tokens():
    """A huge Authorization header or token parameter is refused before it reaches the JWT parser."""
    token = request.headers.get("Authorization", "") or request.args.get("token", "")
    if len(token) > MAX_TOKEN_BYTES:
        return _unauthorized("token_invalid", "The token is too large.")
    return None


def init_app(app: Flask) -> None:
    """Install the request-level token guard and the verification keys."""
    app.extensions[_KEYS] = verification_keys(app)
    size = int(app.config.get("TOKEN_CACHE_SIZE", 0))
    if size > 0:
        app.extensions[_CACHE] = VerifiedTokens(size)
    app.before_request(_refuse_oversized_tokens)
