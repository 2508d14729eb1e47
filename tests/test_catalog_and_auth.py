"""The action catalog, recording completions, local accounts and the operator CLI."""

import json

import jwt as pyjwt
import pytest
from sqlalchemy import select

from scoreboard.extensions import db
from scoreboard.models import Action, Completion
from scoreboard.scoring.catalog import CatalogError, load_catalog
from tests.support import bearer


def test_enabled_actions_are_listed(client, mint):
    actions = client.get("/api/actions", headers=bearer(mint("u1"))).get_json()
    assert {a["key"]: a["points"] for a in actions}["win-challenge"] == 250
    assert all(a["enabled"] for a in actions)


def test_catalog_loads_from_json_and_csv(app, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"actions": [{"key": "read-article", "points": 7}]}))
    (tmp_path / "b.csv").write_text(
        "key,points,enabled,description,maxPerUserPerDay,cooldownSeconds\n"
        "watch-video,12,true,Watched,3,\nold-thing,1,false,,,\n"
    )
    with app.app_context():
        assert load_catalog(tmp_path / "a.json") == 1
        assert load_catalog(tmp_path / "b.csv") == 2
        video = db.session.get(Action, "watch-video")
        assert (video.points, video.max_per_user_per_day, video.cooldown_seconds) == (12, 3, None)
        assert db.session.get(Action, "old-thing").enabled is False


@pytest.mark.parametrize(
    "content",
    [
        '[{"key": "x", "points": -5}]',
        '[{"key": "x", "points": 99999999}]',
        '[{"key": "x", "points": 1, "surprise": true}]',
        '[{"key": "x", "points": 1}, {"key": "x", "points": 2}]',
    ],
)
def test_bad_catalog_is_refused_whole(app, tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with app.app_context():
        before = db.session.scalars(select(Action.key)).all()
        with pytest.raises(CatalogError):
            load_catalog(path)
        assert db.session.scalars(select(Action.key)).all() == before


def test_completion_ids_are_unguessable_and_bound_to_the_user(app, record):
    ids = {record("u1")["actionId"] for _ in range(20)}
    assert len(ids) == 20 and all(len(i) >= 32 for i in ids)  # 192 random bits, URL-safe
    with app.app_context():
        assert set(db.session.scalars(select(Completion.user_id).where(Completion.id.in_(ids)))) == {"u1"}


def test_ref_makes_recording_idempotent(app, client, service_headers):
    body = {"userId": "u1", "action": "complete-lesson", "ref": "order-991"}
    first = client.post("/api/actions/completions", json=body, headers=service_headers)
    again = client.post("/api/actions/completions", json=body, headers=service_headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["actionId"] == again.get_json()["actionId"]
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Completion)) == 1


def test_points_come_from_the_catalog(client, service_headers):
    r = client.post("/api/actions/completions", json={"userId": "u1", "action": "pass-quiz"}, headers=service_headers)
    assert r.get_json()["points"] == 100


def test_login_answers_a_token_for_the_user(app, client):
    from scoreboard.scoring.completions import ensure_user
    from scoreboard.security.passwords import hash_password

    with app.app_context():
        ensure_user("carol", "Carol")
        from scoreboard.models import User

        db.session.get(User, "carol").password_hash = hash_password("s3cret-pass")
        db.session.commit()
        stored = db.session.get(User, "carol").password_hash
    assert stored.startswith("scrypt:")  # a slow hash, never the password
    ok = client.post("/api/auth/login", json={"username": "carol", "password": "s3cret-pass"})
    assert ok.status_code == 200
    body = ok.get_json()
    assert body["tokenType"] == "Bearer" and body["expiresIn"] == 3600
    claims = pyjwt.decode(body["accessToken"], app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert claims["sub"] == "carol" and claims["roles"] == []
    for wrong in ({"username": "carol", "password": "nope"}, {"username": "nobody", "password": "x"}):
        refused = client.post("/api/auth/login", json=wrong)
        assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "invalid_credentials"


def test_cli_mints_tokens_and_creates_users(app):
    runner = app.test_cli_runner()
    minted = runner.invoke(args=["tokens", "mint", "svc", "--role", "service", "--expires", "15m"])
    assert minted.exit_code == 0, minted.output
    claims = pyjwt.decode(minted.output.strip(), app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert claims["sub"] == "svc" and claims["roles"] == ["service"]
    assert claims["exp"] - claims["iat"] == 900
    created = runner.invoke(args=["users", "create", "dave", "--password", "pw", "--display-name", "Dave"])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(args=["actions", "list"])
    assert "win-challenge" in listed.output


def login_status(client, username, password):
    return client.post("/api/auth/login", json={"username": username, "password": password}).status_code


def test_creating_an_existing_account_never_changes_its_password_unless_told(app, client):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "create", "alice", "--password", "first", "--role", "admin"]).exit_code == 0

    again = runner.invoke(args=["users", "create", "alice", "--password", "second", "--display-name", "Alice"])
    assert again.exit_code != 0 and "--reset-password" in again.output and "not changed" in again.output
    assert login_status(client, "alice", "first") == 200 and login_status(client, "alice", "second") == 401

    tolerated = runner.invoke(args=["users", "create", "alice", "--password", "second", "--exist-ok"])
    assert tolerated.exit_code == 0 and "unchanged" in tolerated.output
    assert login_status(client, "alice", "first") == 200

    reset = runner.invoke(args=["users", "create", "alice", "--password", "second", "--reset-password"])
    assert reset.exit_code == 0 and "password reset" in reset.output
    assert login_status(client, "alice", "second") == 200 and login_status(client, "alice", "first") == 401
    token = client.post("/api/auth/login", json={"username": "alice", "password": "second"}).get_json()["accessToken"]
    assert pyjwt.decode(token, options={"verify_signature": False})["roles"] == ["admin"]  # roles kept


def test_rs256_tokens_verify_with_the_public_key(app, monkeypatch):
    """An app verifying with a public key accepts RS256 tokens only; it lists the catalog of the test database,
    which ``app`` sets up."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from scoreboard import create_app

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    monkeypatch.setenv("SCOREBOARD_JWT_PUBLIC_KEY", public)
    rs_app = create_app()
    token = pyjwt.encode(
        {"sub": "ext-user", "exp": 4102444800, "type": "access", "roles": []}, private, algorithm="RS256"
    )
    hs_token = pyjwt.encode(
        {"sub": "ext-user", "exp": 4102444800, "type": "access"},
        "test-secret-key-0123456789-abcdefghijklmnop",
        algorithm="HS256",
    )
    client = rs_app.test_client()
    assert client.get("/api/actions", headers=bearer(token)).status_code == 200
    assert client.get("/api/actions", headers=bearer(hs_token)).status_code == 401
