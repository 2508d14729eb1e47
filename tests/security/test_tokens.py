"""Forged, stale and revoked tokens are all refused with 401 and change nothing."""

import base64
import json
from datetime import timedelta

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scoreboard.models import utcnow
from tests.support import bearer, snapshot

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


def claims(sub="u1", **extra):
    now = utcnow()
    base = {
        "sub": sub,
        "type": "access",
        "fresh": False,
        "jti": "j-" + sub,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "roles": [],
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data, default=str).encode()).rstrip(b"=").decode()


def alg_none_token(payload):
    payload = {k: int(v.timestamp()) if hasattr(v, "timestamp") else v for k, v in payload.items()}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


def tampered_sub(token, new_sub):
    """Swap ``sub`` inside a genuinely signed token, keeping the old signature."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["sub"] = new_sub
    return f"{header}.{b64(data)}.{signature}"


def claim_with(app, client, token, action_id):
    """Try to claim; assert 401 and that nothing changed; return the error code."""
    before = snapshot(app)
    response = client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(token))
    assert response.status_code == 401, response.get_json()
    assert snapshot(app) == before
    return response.get_json()["error"]["code"]


@pytest.fixture
def victim_action(record):
    return record("u1", "win-challenge")["actionId"]


def test_alg_none_is_refused(app, client, victim_action):
    assert claim_with(app, client, alg_none_token(claims()), victim_action) == "token_invalid"


def test_wrong_key_is_refused(app, client, victim_action):
    token = pyjwt.encode(claims(), "a-different-secret-of-the-same-length-000", algorithm="HS256")
    assert claim_with(app, client, token, victim_action) == "token_invalid"


def test_other_hmac_algorithm_is_refused(app, client, victim_action):
    token = pyjwt.encode(claims(), SECRET, algorithm="HS512")
    assert claim_with(app, client, token, victim_action) == "token_invalid"


def test_expired_is_refused(app, client, victim_action):
    token = pyjwt.encode(
        claims(exp=utcnow() - timedelta(minutes=1), iat=utcnow() - timedelta(hours=1)), SECRET, algorithm="HS256"
    )
    assert claim_with(app, client, token, victim_action) == "token_expired"


def test_not_yet_valid_is_refused(app, client, victim_action):
    token = pyjwt.encode(claims(nbf=utcnow() + timedelta(minutes=5)), SECRET, algorithm="HS256")
    assert claim_with(app, client, token, victim_action) == "token_invalid"


def test_missing_exp_is_refused(app, client, victim_action):
    token = pyjwt.encode(claims(exp=None), SECRET, algorithm="HS256")
    assert claim_with(app, client, token, victim_action) == "token_invalid"


def test_numeric_sub_is_refused(app, client, victim_action):
    token = pyjwt.encode({**claims(), "sub": 12345}, SECRET, algorithm="HS256")
    assert claim_with(app, client, token, victim_action) == "token_invalid"


def test_tampered_sub_is_refused(app, client, mint, victim_action):
    attacker = mint("attacker")
    assert claim_with(app, client, tampered_sub(attacker, "u1"), victim_action) == "token_invalid"


def test_oversized_token_is_refused(app, client, victim_action):
    token = pyjwt.encode(claims(padding="x" * 6000), SECRET, algorithm="HS256")
    assert claim_with(app, client, token, victim_action) == "token_invalid"


def test_a_logged_out_token_is_revoked(app, client, mint, victim_action):
    token = mint("u1")
    assert client.post("/api/auth/logout", headers=bearer(token)).get_json() == {"revoked": True}
    assert claim_with(app, client, token, victim_action) == "token_revoked"
    # Another token of the same user still works.
    ok = client.post("/api/action/do", json={"actionId": victim_action}, headers=bearer(mint("u1")))
    assert ok.status_code == 200


def test_admin_revokes_a_token_by_jti(app, client, mint, victim_action):
    token = mint("u1")
    jti = pyjwt.decode(token, options={"verify_signature": False})["jti"]
    admin = bearer(mint("boss", "admin"))
    response = client.post("/api/admin/tokens/revoke", json={"jti": jti, "reason": "stolen token"}, headers=admin)
    assert response.status_code == 200
    assert claim_with(app, client, token, victim_action) == "token_revoked"


@pytest.fixture
def rsa_keys():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture
def rs_app(monkeypatch, rsa_keys):
    from scoreboard import create_app

    monkeypatch.setenv("SCOREBOARD_JWT_PUBLIC_KEY", rsa_keys[1].decode())
    return create_app()


def test_rs256_public_key_used_as_hmac_secret_is_refused(rs_app, rsa_keys, record):
    action_id = record("u1", "win-challenge")["actionId"]
    # The classic confusion attack: sign HS256 with the (public) verification key.
    forged = pyjwt.api_jws.PyJWS(algorithms=["HS256"])._algorithms["HS256"]
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({**claims(), 'iat': 0, 'nbf': 0, 'exp': 4102444800})}"
    signature = forged.sign(signing_input.encode(), rsa_keys[1])
    token = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert claim_with(rs_app, rs_app.test_client(), token, action_id) == "token_invalid"
    genuine = pyjwt.encode({**claims(), "iat": 0, "nbf": 0, "exp": 4102444800}, rsa_keys[0], algorithm="RS256")
    assert (
        rs_app.test_client().post("/api/action/do", json={"actionId": action_id}, headers=bearer(genuine)).status_code
        == 200
    )


def test_issuer_and_audience_are_checked_when_configured(record):
    from scoreboard import create_app

    strict = create_app({"JWT_DECODE_ISSUER": "https://auth.example.test", "JWT_DECODE_AUDIENCE": "scoreboard"})
    action_id = record("u1", "win-challenge")["actionId"]
    client = strict.test_client()
    for bad in (
        {"iss": "https://evil.test", "aud": "scoreboard"},
        {"iss": "https://auth.example.test", "aud": "x"},
        {"aud": "scoreboard"},
    ):
        token = pyjwt.encode(claims(**bad), SECRET, algorithm="HS256")
        assert claim_with(strict, client, token, action_id) == "token_invalid"
    good = pyjwt.encode(claims(iss="https://auth.example.test", aud="scoreboard"), SECRET, algorithm="HS256")
    assert client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(good)).status_code == 200


@pytest.mark.unit
def test_a_deployment_with_the_development_secret_refuses_to_start(monkeypatch):
    from scoreboard import create_app

    monkeypatch.delenv("SCOREBOARD_JWT_SECRET_KEY")
    with pytest.raises(RuntimeError, match="SCOREBOARD_JWT_SECRET_KEY"):
        create_app()
    monkeypatch.setenv("SCOREBOARD_JWT_SECRET_KEY", "short")
    with pytest.raises(RuntimeError, match="shorter than 32 bytes"):
        create_app()
