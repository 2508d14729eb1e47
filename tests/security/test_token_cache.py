"""The cache of verified tokens: a repeat caller's token is not decoded again, but is refused once revoked,
never accepted past ``exp`` (with the leeway), and a token that failed a check never gets in."""

import time
from datetime import timedelta
from unittest import mock

import jwt as pyjwt
import pytest

from scoreboard.security import tokens
from scoreboard.security.revocations import revoke_jti, revoke_user
from tests.support import bearer, wait_until


@pytest.fixture
def cache(app):
    found = tokens.verified_tokens(app)
    assert found is not None and found.size == app.config["TOKEN_CACHE_SIZE"] > 0
    return found


def _verifications():
    """Counts the calls into Flask-JWT-Extended's verification (the full decode)."""
    return mock.patch.object(tokens, "verify_jwt_in_request", wraps=tokens.verify_jwt_in_request)


def test_a_repeat_callers_token_is_decoded_once(client, mint, cache):
    token = mint("cached-user")
    with _verifications() as verify:
        for _ in range(5):
            assert client.get("/api/score/top", headers=bearer(token)).status_code == 200
    assert verify.call_count == 1
    assert cache.get(f"Bearer {token}")[1]["sub"] == "cached-user"


def test_a_cached_token_is_refused_as_soon_as_its_jti_is_revoked(app, client, mint, cache):
    token = mint("revoked-later")
    assert client.get("/api/score/top", headers=bearer(token)).status_code == 200
    assert cache.get(f"Bearer {token}") is not None
    claims = pyjwt.decode(token, options={"verify_signature": False})
    with app.app_context():
        revoke_jti(claims["jti"], 60)
    answer = client.get("/api/score/top", headers=bearer(token))
    assert answer.status_code == 401 and answer.json["error"]["code"] == "token_revoked"


def test_a_cached_token_is_refused_as_soon_as_its_users_tokens_are_revoked(app, client, mint, cache):
    token = mint("cut-off-user")
    assert client.get("/api/score/top", headers=bearer(token)).status_code == 200
    with app.app_context():
        revoke_user("cut-off-user", 60)
    answer = client.get("/api/score/top", headers=bearer(token))
    assert answer.status_code == 401 and answer.json["error"]["code"] == "token_revoked"
    # Another user's cached token is untouched.
    other = mint("not-cut-off")
    assert client.get("/api/score/top", headers=bearer(other)).status_code == 200
    assert client.get("/api/score/top", headers=bearer(other)).status_code == 200


def test_a_cached_token_is_never_accepted_past_its_exp_and_leeway(app, client, mint, cache):
    leeway = app.config["JWT_DECODE_LEEWAY"]
    # Expired by the clock, still inside the leeway for one to two seconds: accepted, and cached.
    token = mint("expiring-user", expires=timedelta(seconds=1.5 - leeway))
    exp = pyjwt.decode(token, options={"verify_signature": False})["exp"]
    assert client.get("/api/score/top", headers=bearer(token)).status_code == 200
    assert cache.get(f"Bearer {token}") is not None

    def refused():
        sent = time.time()
        answer = client.get("/api/score/top", headers=bearer(token))
        if answer.status_code == 200:
            assert sent < exp + leeway, "served past exp + leeway"
            return False
        assert answer.status_code == 401 and answer.json["error"]["code"] == "token_expired"
        return True

    wait_until(refused, timeout=5, interval=0.01, message="the token was never refused")
    assert time.time() >= exp + leeway
    assert cache.get(f"Bearer {token}") is None


def test_tokens_that_fail_a_check_are_not_cached(client, mint, cache):
    token = mint("tampered")
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    for raw in (forged, "not-a-token", mint("bad id with spaces")):
        answer = client.get("/api/score/top", headers=bearer(raw))
        assert answer.status_code == 401
        assert cache.get(f"Bearer {raw}") is None
    # A refused answer is not remembered as an accepted one either: still refused the second time.
    assert client.get("/api/score/top", headers=bearer(forged)).status_code == 401


def test_a_view_changing_its_claims_does_not_change_the_cached_ones(app, mint, cache):
    token = mint("mutating-user")
    with app.test_request_context("/", headers=bearer(token)):
        tokens.verify_token()
        tokens.get_jwt()["sub"] = "someone-else"
    with app.test_request_context("/", headers=bearer(token)):
        tokens.verify_token()
        assert tokens.current_user_id() == "mutating-user"


@pytest.mark.unit
def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    cache = tokens.VerifiedTokens(2)
    far = time.time() + 3600
    for name in ("a", "b"):
        cache.put(name, {}, {"sub": name, "exp": far}, 0)
    assert cache.get("a") is not None  # "b" is now the least recently used
    cache.put("c", {}, {"sub": "c", "exp": far}, 0)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a")[1]["sub"] == "a" and cache.get("c")[1]["sub"] == "c"
