"""Rotating the JWT secret: during the overlap, tokens signed with the retiring key still verify."""

import jwt as pyjwt
import pytest

from config import RefusedConfiguration
from scoreboard.security.tokens import key_id, mint_token
from tests.support import bearer

OLD = "old-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
NEW = "new-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


def app_with(secret, previous=()):
    from scoreboard import create_app

    return create_app({"TESTING": True, "JWT_SECRET_KEY": secret, "JWT_PREVIOUS_KEYS": list(previous)})


def minted_by(app, user="rotated"):
    with app.app_context():
        return mint_token(user)


def status(app, token):
    return app.test_client().get("/api/actions", headers=bearer(token)).status_code


def test_tokens_name_their_key(app):
    old = app_with(OLD)
    assert pyjwt.get_unverified_header(minted_by(old))["kid"] == key_id(OLD)
    assert key_id(OLD) != key_id(NEW) and OLD not in key_id(OLD)


def test_a_rotation_refuses_no_token_and_ends_with_the_old_key_gone(app):
    old, during, after = app_with(OLD), app_with(NEW, previous=[OLD]), app_with(NEW)
    before_switch, after_switch = minted_by(old), minted_by(during)
    # Step 2: the new key signs, the old one only verifies: both tokens pass.
    assert status(during, before_switch) == 200 and status(during, after_switch) == 200
    # Instances still on the old key (rolling restart) accept the new tokens once they list the new key.
    assert status(app_with(OLD, previous=[NEW]), after_switch) == 200
    # Step 3: the old key is dropped: its tokens are refused, the new ones still pass.
    assert status(after, before_switch) == 401 and status(after, after_switch) == 200


def test_an_unknown_kid_is_checked_against_the_current_key_only(app):
    during = app_with(NEW, previous=[OLD])
    forged = pyjwt.encode({"sub": "x", "exp": 2**31 - 1}, OLD, "HS256", headers={"kid": "not-a-key-of-ours"})
    assert status(during, forged) == 401


def test_retired_keys_must_be_real_secrets(app):
    with pytest.raises(RefusedConfiguration, match="SCOREBOARD_JWT_PREVIOUS_SECRET_KEYS"):
        app_with(NEW, previous=["short"])
