"""Every refusal answers JSON with a stable code and leaves the database exactly as it was."""

from datetime import timedelta

import jwt as pyjwt
import pytest
from sqlalchemy import update

from scoreboard.extensions import db
from scoreboard.models import Action, Completion, User, utcnow
from tests.support import bearer, snapshot

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


def assert_refused(app, client, method, url, status, code, **kwargs):
    """Send the request; assert its status and code, and that no row changed."""
    before = snapshot(app)
    response = client.open(url, method=method, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]
    assert snapshot(app) == before
    return response


def forged(sub="u1", key=SECRET, alg="HS256", **claims):
    payload = {
        "sub": sub,
        "type": "access",
        "fresh": False,
        "jti": "x",
        "iat": utcnow(),
        "nbf": utcnow(),
        "exp": utcnow() + timedelta(minutes=5),
        **claims,
    }
    return pyjwt.encode(payload, key, algorithm=alg)


@pytest.fixture
def pending(record):
    """A pending completion of u1's."""
    return record("u1", "complete-lesson")["actionId"]


@pytest.mark.parametrize(
    "body,kwargs",
    [
        (None, {"data": "not json", "content_type": "application/json"}),
        (None, {"data": "[1, 2]", "content_type": "application/json"}),
        ({}, {}),
        ({"actionId": 12345}, {}),
        ({"actionId": ""}, {}),
        ({"actionId": "a" * 65}, {}),
        ({"actionId": "has spaces!"}, {}),
        ({"actionId": "abc", "points": 1000}, {}),
    ],
)
def test_bad_claim_body_is_400(app, client, mint, pending, body, kwargs):
    if body is not None:
        kwargs = {"json": body}
    assert_refused(app, client, "POST", "/api/action/do", 400, "invalid_body", headers=bearer(mint("u1")), **kwargs)


def test_points_cannot_be_sent(app, client, mint, pending):
    response = assert_refused(
        app,
        client,
        "POST",
        "/api/action/do",
        400,
        "invalid_body",
        json={"actionId": pending, "points": 10**6},
        headers=bearer(mint("u1")),
    )
    assert response.get_json()["error"]["problems"][0]["field"] == "points"


@pytest.mark.parametrize(
    "headers,code",
    [
        ({}, "token_missing"),
        ({"Authorization": "Bearer"}, "token_invalid"),
        ({"Authorization": "Bearer not.a.jwt"}, "token_invalid"),
        ({"Authorization": "Basic dTE6cGFzcw=="}, "token_missing"),
        ({"Authorization": "Bearer " + forged(key="another-secret-another-secret-another")}, "token_invalid"),
        ({"Authorization": "Bearer " + forged(exp=utcnow() - timedelta(minutes=5))}, "token_expired"),
    ],
)
def test_bad_token_is_401(app, client, pending, headers, code):
    response = assert_refused(
        app, client, "POST", "/api/action/do", 401, code, json={"actionId": pending}, headers=headers
    )
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_user_token_cannot_record_completions_403(app, client, mint):
    assert_refused(
        app,
        client,
        "POST",
        "/api/actions/completions",
        403,
        "forbidden",
        json={"userId": "u1", "action": "complete-lesson"},
        headers=bearer(mint("u1")),
    )


def test_unknown_action_id_is_404(app, client, mint, pending):
    assert_refused(
        app,
        client,
        "POST",
        "/api/action/do",
        404,
        "action_not_found",
        json={"actionId": "doesnotexist0000000000000000000"},
        headers=bearer(mint("u1")),
    )


def test_another_users_action_id_is_404(app, client, mint, pending):
    assert_refused(
        app,
        client,
        "POST",
        "/api/action/do",
        404,
        "action_not_found",
        json={"actionId": pending},
        headers=bearer(mint("u2")),
    )


def test_second_claim_is_409(app, client, mint, pending):
    first = client.post("/api/action/do", json={"actionId": pending}, headers=bearer(mint("u1")))
    assert first.status_code == 200
    assert_refused(
        app,
        client,
        "POST",
        "/api/action/do",
        409,
        "already_claimed",
        json={"actionId": pending},
        headers=bearer(mint("u1")),
    )


def test_expired_action_id_is_410(app, client, mint, pending):
    with app.app_context():
        db.session.execute(
            update(Completion).where(Completion.id == pending).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert_refused(
        app,
        client,
        "POST",
        "/api/action/do",
        410,
        "action_expired",
        json={"actionId": pending},
        headers=bearer(mint("u1")),
    )


def test_banned_user_cannot_claim_403(app, client, mint, pending):
    with app.app_context():
        db.session.execute(update(User).where(User.id == "u1").values(status="banned"))
        db.session.commit()
    assert_refused(
        app,
        client,
        "POST",
        "/api/action/do",
        403,
        "user_banned",
        json={"actionId": pending},
        headers=bearer(mint("u1")),
    )


@pytest.mark.parametrize("action", ["no-such-action", "disabled-one"])
def test_unknown_or_disabled_action_is_422(app, client, service_headers, action):
    with app.app_context():
        db.session.add(Action(key="disabled-one", points=5, enabled=False, description=""))
        db.session.commit()
    assert_refused(
        app,
        client,
        "POST",
        "/api/actions/completions",
        422,
        "unknown_action",
        json={"userId": "u1", "action": action},
        headers=service_headers,
    )


def test_oversized_body_is_413(app, client, mint, pending):
    assert_refused(
        app,
        client,
        "POST",
        "/api/action/do",
        413,
        "body_too_large",
        data='{"actionId": "' + "a" * 20000 + '"}',
        content_type="application/json",
        headers=bearer(mint("u1")),
    )


def test_unknown_route_and_method_are_json(app, client, mint):
    assert_refused(app, client, "GET", "/api/nothing-here", 404, "not_found")
    assert_refused(app, client, "DELETE", "/api/score/top", 405, "method_not_allowed", headers=bearer(mint("u1")))


def test_ref_reused_for_another_user_is_409(app, client, service_headers, record):
    record("u1", "complete-lesson", ref="site-42")
    assert_refused(
        app,
        client,
        "POST",
        "/api/actions/completions",
        409,
        "ref_conflict",
        json={"userId": "u2", "action": "complete-lesson", "ref": "site-42"},
        headers=service_headers,
    )


def test_database_down_is_503_json(mint):
    from scoreboard import create_app

    # A real connection to a port where no database listens.
    down = create_app({"SQLALCHEMY_DATABASE_URI": "postgresql://postgres@127.0.0.1:9/none"})
    response = down.test_client().post("/api/action/do", json={"actionId": "abc"}, headers=bearer(mint("u1")))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "database_unavailable"
    assert response.headers["Retry-After"]


def test_redis_down_still_serves_the_board_from_the_database(mint, record_and_claim):
    from scoreboard import create_app

    record_and_claim("u1", "complete-lesson")
    no_redis = create_app({"REDIS_URL": "redis://127.0.0.1:9/0"})
    response = no_redis.test_client().get("/api/score/top", headers=bearer(mint("u2")))
    assert response.status_code == 200
    assert response.get_json()[0]["userId"] == "u1"
