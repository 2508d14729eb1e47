"""The admin API: every correction is a ledger row or status change, audited, and reaches the board."""

import json

import pytest
from sqlalchemy import select

from scoreboard.extensions import db
from scoreboard.models import AuditEntry, Completion, Score
from tests.conftest import PREFIX
from tests.support import bearer, snapshot


@pytest.fixture
def admin(mint):
    return bearer(mint("boss", "admin"))


def public_top(client, mint):
    return [e["userId"] for e in client.get("/api/score/top", headers=bearer(mint("viewer"))).get_json()]


def test_admin_routes_need_the_admin_role(app, client, mint, record):
    record("u1")
    before = snapshot(app)
    for user_headers in ({}, bearer(mint("u1")), bearer(mint("svc", "service"))):
        r = client.post(
            "/api/admin/users/u1/adjustments", json={"delta": 500, "reason": "sneaky"}, headers=user_headers
        )
        assert r.status_code in (401, 403)
        assert client.get("/api/admin/users/u1", headers=user_headers).status_code in (401, 403)
    assert snapshot(app) == before


def test_hide_and_ban_leave_the_public_board_admins_see_everyone(client, mint, record, record_and_claim, admin):
    record_and_claim("alice")
    record_and_claim("mallory", "win-challenge")
    assert public_top(client, mint) == ["mallory", "alice"]

    r = client.post(
        "/api/admin/users/mallory/status", json={"status": "hidden", "reason": "suspicious run"}, headers=admin
    )
    assert r.get_json() == {"userId": "mallory", "status": "hidden"}
    assert public_top(client, mint) == ["alice"]
    full = client.get("/api/admin/board", headers=admin).get_json()
    assert [(e["userId"], e["status"]) for e in full] == [("mallory", "hidden"), ("alice", "active")]

    client.post("/api/admin/users/mallory/status", json={"status": "banned", "reason": "confirmed bot"}, headers=admin)
    action_id = record("mallory")["actionId"]
    refused = client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(mint("mallory")))
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "user_banned"

    client.post(
        "/api/admin/users/mallory/status", json={"status": "active", "reason": "appeal accepted"}, headers=admin
    )
    assert public_top(client, mint) == ["mallory", "alice"]


def test_adjustment_is_a_ledger_row_with_a_reason_and_reaches_the_live_board(
    client, record_and_claim, admin, redis_client
):
    record_and_claim("u1")
    record_and_claim("u2", "pass-quiz")
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{PREFIX}board")
    pubsub.get_message(timeout=1)

    r = client.post(
        "/api/admin/users/u1/adjustments", json={"delta": 75, "reason": "missed points from outage"}, headers=admin
    )
    assert r.status_code == 201 and r.get_json()["newScore"] == 125
    message = json.loads(pubsub.get_message(timeout=2)["data"])
    pubsub.close()
    assert [(e["userId"], e["score"]) for e in message["top"]] == [("u1", 125), ("u2", 100)]

    ledger = client.get("/api/admin/users/u1", headers=admin).get_json()
    assert ledger["score"] == 125
    adjustment = ledger["ledger"][0]
    assert (adjustment["status"], adjustment["points"], adjustment["reason"]) == (
        "adjustment",
        75,
        "missed points from outage",
    )
    assert ledger["audit"][0]["act"] == "adjust" and ledger["audit"][0]["actor"] == "boss"
    assert ledger["audit"][0]["actorIp"] == "127.0.0.1"


def test_a_reason_is_mandatory(app, client, record, admin):
    record("u1")
    before = snapshot(app)
    for body in (
        {"delta": 10},
        {"delta": 10, "reason": ""},
        {"delta": 0, "reason": "nothing"},
        {"delta": "10", "reason": "string delta"},
    ):
        r = client.post("/api/admin/users/u1/adjustments", json=body, headers=admin)
        assert r.status_code == 400, body
    assert client.post("/api/admin/users/u1/status", json={"status": "banned"}, headers=admin).status_code == 400
    assert snapshot(app) == before


def test_void_reverses_a_claim(app, client, mint, record_and_claim, admin):
    kept = record_and_claim("u1", "pass-quiz")["actionId"]
    voided = record_and_claim("u1", "win-challenge")["actionId"]
    r = client.post(f"/api/admin/completions/{voided}/void", json={"reason": "duplicate of quiz"}, headers=admin)
    assert r.get_json() == {"actionId": voided, "userId": "u1", "status": "void", "newScore": 100}
    assert public_top(client, mint) == ["u1"]
    again = client.post(f"/api/admin/completions/{voided}/void", json={"reason": "twice"}, headers=admin)
    assert again.status_code == 409
    with app.app_context():
        assert db.session.scalar(select(Score.score).where(Score.user_id == "u1")) == 100
        assert db.session.get(Completion, kept).status == "claimed"
        audit = db.session.scalars(select(AuditEntry).where(AuditEntry.act == "void")).one()
        assert (audit.actor, audit.target_completion, audit.reason) == ("boss", voided, "duplicate of quiz")


def test_voiding_a_pending_completion_makes_it_unclaimable(app, client, mint, record, admin):
    action_id = record("u1")["actionId"]
    client.post(f"/api/admin/completions/{action_id}/void", json={"reason": "issued by mistake"}, headers=admin)
    r = client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(mint("u1")))
    assert r.status_code == 410 and r.get_json()["error"]["code"] == "action_void"


def test_audit_log_lists_every_act(client, mint, record, admin):
    record("u1")
    client.post("/api/admin/users/u1/status", json={"status": "hidden", "reason": "check"}, headers=admin)
    client.post("/api/admin/users/u1/adjustments", json={"delta": 5, "reason": "goodwill"}, headers=admin)
    entries = client.get("/api/admin/audit", headers=admin).get_json()
    assert [(e["act"], e["reason"], e["targetUser"]) for e in entries] == [
        ("adjust", "goodwill", "u1"),
        ("status:hidden", "check", "u1"),
    ]
    assert client.get("/api/admin/users/nobody", headers=admin).status_code == 404
