"""Suspects: what a held player sees (nothing changed) and what everyone else sees (no held player on any
board or broadcast), the review API (clear, confirm, voids), and refused claims kept for the scan.

The live tests run on the production stack (gunicorn, a Celery worker, Redis pub/sub) with real
WebSocket clients; the population is real ledger rows (``test_scan.build_population``) and the
suspects come from the real scan.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import func, select
from websockets.sync.client import connect

from scoreboard.board.refresh import refresh_board
from scoreboard.extensions import db
from scoreboard.models import (
    AuditEntry,
    ClaimRefusal,
    Completion,
    CompletionStatus,
    PeriodScore,
    Score,
    Suspect,
    SuspectStatus,
    User,
    UserStatus,
)
from scoreboard.periods import KINDS, period_at
from tests.integrity.test_scan import BOTS, build_population, scan, scan_settings, statuses
from tests.support import bearer, receive_until, record_and_claim_over_http, record_over_http, snapshot, ws_url

BOT = "bot-metronome"


@pytest.fixture
def anomaly(app):
    """The scan's settings for one test, restored after."""
    yield from scan_settings(app)


@pytest.fixture
def admin(mint):
    return bearer(mint("boss", "admin"))


def get(base, path, token, **params):
    r = requests.get(f"{base}{path}", params=params, headers=bearer(token), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def board_users(base, token, period="all"):
    """Every user id on ``period``'s board, walked page by page."""
    seen, cursor = [], None
    while True:
        params = {"period": period, "limit": 100, **({"cursor": cursor} if cursor else {})}
        page = get(base, "/api/scores", token, **params)
        seen += [e["userId"] for e in page["entries"]]
        cursor = page["next"]
        if cursor is None:
            return seen


def has_points_now(made, user, kind):
    """Whether ``user``'s claims include one inside the current ``kind`` period."""
    if kind == "all":
        return True
    now = period_at(kind, datetime.now(UTC))
    return any(now.contains(at) for at, _ in made.claims[user])


def without(user):
    return lambda m: "top" in m and all(e["userId"] != user for e in m["top"])


def showing(user, score=None):
    return lambda m: "top" in m and any(e["userId"] == user and score in (None, e["score"]) for e in m["top"])


def is_me(message):
    return message.get("type") == "me"


# --- a held player ----------------------------------------------------------------------------------


@pytest.mark.live
def test_a_held_suspect_leaves_every_board_while_their_own_view_stays_the_same(
    app, live_stack, mint, service_headers, anomaly
):
    made = build_population(app, bots=BOTS[:1])
    token, viewer = mint(BOT), mint("viewer")
    score = made.score(BOT)
    kinds = [kind for kind in KINDS if has_points_now(made, BOT, kind)]  # "all" always; a day has begun, maybe not
    assert get(live_stack, "/api/score/top", viewer)[0]["userId"] == BOT
    assert all(BOT in board_users(live_stack, viewer, kind) for kind in kinds)
    mine_before = {kind: get(live_stack, "/api/scores/me", token, period=kind, radius=3) for kind in kinds}
    assert mine_before["all"]["rank"] == 1 and mine_before["all"]["score"] == score
    total = mine_before["all"]["total"]
    assert total == len(made.humans) + 1

    with (
        connect(ws_url(live_stack), additional_headers=bearer(viewer), open_timeout=5) as ws,
        connect(ws_url(live_stack), additional_headers=bearer(token), open_timeout=5) as own,
    ):
        receive_until(ws, showing(BOT, score), 5.0)
        receive_until(own, showing(BOT, score), 5.0)
        own.send('{"type":"watch"}')
        me, _ = receive_until(own, is_me, 5.0)
        assert (me["rank"], me["score"], me["total"]) == (1, score, total)

        summary = scan(app, made)
        assert [f["userId"] for f in summary.flagged] == [BOT] and summary.held == 1
        with app.app_context():
            refresh_board()
        update, _ = receive_until(ws, without(BOT), 5.0)
        assert update["top"][0]["userId"] != BOT and len(update["top"]) == 10

        # Off every public listing.
        assert BOT not in [e["userId"] for e in get(live_stack, "/api/score/top", viewer)]
        for kind in KINDS:
            assert BOT not in board_users(live_stack, viewer, kind), kind
            users = get(live_stack, "/api/scores/users", viewer, period=kind, ids=f"{BOT},human-000")
            assert BOT not in [e["userId"] for e in users["entries"]]
        # Their own standing reads exactly as before, on every board.
        for kind in kinds:
            assert get(live_stack, "/api/scores/me", token, period=kind, radius=3) == mine_before[kind], kind
        # Admins see them, held.
        full = get(live_stack, "/api/admin/board", mint("boss", "admin"))
        assert full[0]["userId"] == BOT and full[0]["status"] == UserStatus.HELD

        # Their claims answer as ever, with the real score; their socket's "me" follows, as if on the board.
        claimed = record_and_claim_over_http(live_stack, service_headers, token, BOT)
        assert claimed["newScore"] == score + 50
        me, _ = receive_until(own, is_me, 8.0)  # the first "me" since the hold: nothing showed the hold
        assert (me["rank"], me["score"], me["total"]) == (1, score + 50, total)
        mine = get(live_stack, "/api/scores/me", token, radius=3)
        assert (mine["rank"], mine["score"], mine["total"]) == (1, score + 50, total)
        assert mine["around"][0] == {"rank": 1, "userId": BOT, "displayName": BOT.title(), "score": score + 50}
        assert mine["around"][1:] == mine_before["all"]["around"][1:]
        assert BOT not in [e["userId"] for e in get(live_stack, "/api/score/top", viewer)]
        ws.send('{"type":"resync"}')
        fresh, _ = receive_until(ws, lambda m: m.get("type") == "snapshot", 5.0)
        assert without(BOT)(fresh)


def test_a_held_users_standing_is_the_one_they_would_have_on_every_board(app, client, mint, record_and_claim):
    """In-process, exactly: holding a user (here by hand) changes nothing they can read, and removes them for
    everyone else, on the all-time board and each period's."""
    for user, action in (("ann", "win-challenge"), ("bob", "pass-quiz"), ("cat", "pass-quiz"), ("dan", None)):
        record_and_claim(user, action or "complete-lesson")
    record_and_claim("bob", "complete-lesson")  # bob 150, between ann (250) and cat (100)
    admin, bob, viewer = bearer(mint("boss", "admin")), bearer(mint("bob")), bearer(mint("viewer"))

    def mine(period, radius=2):
        return client.get(f"/api/scores/me?period={period}&radius={radius}", headers=bob).get_json()

    before = {kind: mine(kind) for kind in KINDS}
    assert (before["all"]["rank"], before["all"]["score"], before["all"]["total"]) == (2, 150, 4)
    assert [e["userId"] for e in before["all"]["around"]] == ["ann", "bob", "cat", "dan"]
    cat_before = client.get("/api/scores/me?radius=2", headers=bearer(mint("cat"))).get_json()

    r = client.post("/api/admin/users/bob/status", json={"status": "held", "reason": "a test"}, headers=admin)
    assert r.get_json() == {"userId": "bob", "status": "held"}
    for kind in KINDS:
        assert mine(kind) == before[kind], kind
        assert mine(kind, radius=0)["around"] == [e for e in before[kind]["around"] if e["userId"] == "bob"]
        page = client.get(f"/api/scores?period={kind}", headers=viewer).get_json()
        assert [e["userId"] for e in page["entries"]] == ["ann", "cat", "dan"] and page["total"] == 3
    # Everyone else sees the board without bob: cat moved up.
    cat = client.get("/api/scores/me?radius=2", headers=bearer(mint("cat"))).get_json()
    assert (cat["rank"], cat["total"]) == (cat_before["rank"] - 1, 3)
    assert [e["userId"] for e in cat["around"]] == ["ann", "cat", "dan"]
    # A claim while held: 200, the real score, and the standing it earns.
    assert record_and_claim("bob", "win-challenge")["newScore"] == 400
    now = mine("all")
    assert (now["rank"], now["score"], now["total"]) == (1, 400, 4)
    assert [(e["rank"], e["userId"]) for e in now["around"]] == [(1, "bob"), (2, "ann"), (3, "cat")]
    assert client.get("/api/score/top", headers=viewer).get_json()[0]["userId"] == "ann"


# --- the review ------------------------------------------------------------------------------------


def admin_post(base, path, admin, body):
    return requests.post(f"{base}{path}", json=body, headers=admin, timeout=30)


@pytest.mark.live
def test_clearing_puts_the_player_back_on_the_live_board_and_confirming_bans_them(
    app, live_stack, mint, admin, anomaly, service_headers
):
    made = build_population(app)
    summary = scan(app, made)
    assert sorted(f["userId"] for f in summary.flagged) == sorted(made.bots)
    with app.app_context():
        refresh_board()
    viewer = bearer(mint("viewer"))
    listed = requests.get(f"{live_stack}/api/admin/suspects?status=held", headers=admin, timeout=10).json()
    assert sorted(s["userId"] for s in listed["suspects"]) == sorted(made.bots)

    with connect(ws_url(live_stack), additional_headers=viewer, open_timeout=5) as ws:
        receive_until(ws, without(BOT), 5.0)
        cleared = admin_post(live_stack, f"/api/admin/suspects/{BOT}/clear", admin, {"reason": "our own load test"})
        assert cleared.status_code == 200, cleared.text
        assert cleared.json() == {"userId": BOT, "status": "cleared", "userStatus": "active"}
        update, waited = receive_until(ws, showing(BOT, made.score(BOT)), 5.0)
        print(f"\nthe cleared player was back on the live board after {waited * 1000:.0f} ms")
        assert update["top"][0]["userId"] == BOT
        again = admin_post(live_stack, f"/api/admin/suspects/{BOT}/clear", admin, {"reason": "twice"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_reviewed"

    sharer = "bot-sharer"
    confirmed = admin_post(
        live_stack, f"/api/admin/suspects/{sharer}/confirm", admin, {"reason": "a script", "void": True}
    )
    assert confirmed.status_code == 200, confirmed.text
    voided = len(made.claims[sharer])
    assert confirmed.json() == {
        "userId": sharer,
        "status": "confirmed",
        "userStatus": "banned",
        "voided": voided,
        "pointsVoided": made.score(sharer),
        "newScore": 0,
    }
    login = "bot-login"
    kept = admin_post(live_stack, f"/api/admin/suspects/{login}/confirm", admin, {"reason": "a script too"})
    assert kept.json()["voided"] == 0 and kept.json()["newScore"] == made.score(login)

    with app.app_context():
        acts = db.session.execute(
            select(AuditEntry.target_user, AuditEntry.act, AuditEntry.actor, AuditEntry.reason)
            .where(AuditEntry.actor == "boss")
            .order_by(AuditEntry.id)
        ).all()
        assert [a for a in acts if a.target_user == BOT] == [
            (BOT, "status:active", "boss", "our own load test"),
            (BOT, "suspect:clear", "boss", "our own load test"),
        ]
        assert [a.act for a in acts if a.target_user == sharer] == ["void"] * voided + [
            "status:banned",
            "suspect:confirm",
        ]
        assert [a.act for a in acts if a.target_user == login] == ["status:banned", "suspect:confirm"]
        reviewed = {s.user_id: (s.status, s.reviewed_by, s.review_reason) for s in db.session.scalars(select(Suspect))}
        assert reviewed == {
            BOT: ("cleared", "boss", "our own load test"),
            sharer: ("confirmed", "boss", "a script"),
            login: ("confirmed", "boss", "a script too"),
        }
        assert db.session.scalar(select(Score.score).where(Score.user_id == sharer)) == 0
        assert set(db.session.scalars(select(PeriodScore.score).where(PeriodScore.user_id == sharer))) == {0}
        by_status = select(Completion.status, func.count()).where(Completion.user_id == sharer)
        assert dict(db.session.execute(by_status.group_by(Completion.status)).all()) == {CompletionStatus.VOID: voided}
        db.session.rollback()
    # Banned: their claims are refused from now on.
    recorded = record_over_http(live_stack, service_headers, login)
    claim = requests.post(
        f"{live_stack}/api/action/do",
        json={"actionId": recorded["actionId"]},
        headers=bearer(mint(login)),
        timeout=10,
    )
    assert claim.status_code == 403 and claim.json()["error"]["code"] == "user_banned"


@pytest.mark.live
def test_confirming_with_void_takes_the_windows_points_off_every_live_board(app, live_stack, mint, admin, anomaly):
    anomaly(ANOMALY_ACTION="flag")  # reported only: on the boards until confirmed
    made = build_population(app, bots=BOTS[:1])
    summary = scan(app, made)
    assert [(f["userId"], f["action"]) for f in summary.flagged] == [(BOT, "flagged")]
    viewer = bearer(mint("viewer"))
    kinds = [kind for kind in KINDS if has_points_now(made, BOT, kind)]
    sockets = {
        kind: connect(ws_url(live_stack, f"?period={kind}"), additional_headers=viewer, open_timeout=5)
        for kind in kinds
    }
    try:
        for ws in sockets.values():
            receive_until(ws, showing(BOT), 5.0)
        r = admin_post(live_stack, f"/api/admin/suspects/{BOT}/confirm", admin, {"reason": "a script", "void": True})
        assert r.status_code == 200, r.text
        assert (r.json()["userStatus"], r.json()["pointsVoided"], r.json()["newScore"]) == (
            "banned",
            made.score(BOT),
            0,
        )
        for ws in sockets.values():
            receive_until(ws, without(BOT), 5.0)
    finally:
        for ws in sockets.values():
            ws.close()
    for kind in KINDS:
        assert BOT not in board_users(live_stack, mint("viewer"), kind)
    history = requests.get(f"{live_stack}/api/scores/{BOT}/history", headers=admin, timeout=10).json()
    assert history["entries"][0]["kind"] == "void" and history["entries"][0]["score"] == 0


def test_the_review_api(app, client, mint, admin, anomaly):
    made = build_population(app)
    scan(app, made)
    with app.app_context():  # a suspect of a later scan, to show the order
        later = db.session.get(Suspect, "bot-login")
        later.flagged_at = made.end.replace(year=made.end.year + 1)
        db.session.commit()

    listed = client.get("/api/admin/suspects", headers=admin).get_json()["suspects"]
    assert [s["userId"] for s in listed] == ["bot-login", "bot-sharer", "bot-metronome"]  # newest, then by id
    first = listed[1]
    assert set(first) == {
        "userId", "displayName", "anomalyScore", "flaggedAt", "status", "reasons", "reviewedBy", "reviewedAt",
        "reviewReason",
    }  # fmt: skip
    assert (first["displayName"], first["status"], first["reviewedBy"]) == ("Bot-Sharer", "held", None)
    assert first["anomalyScore"] >= made.threshold and datetime.fromisoformat(first["flaggedAt"]) == made.end
    assert [set(r) for r in first["reasons"]] == [{"feature", "value", "typical"}] * 3
    assert client.get("/api/admin/suspects?limit=1", headers=admin).get_json()["suspects"][0]["userId"] == "bot-login"
    assert client.get("/api/admin/suspects?status=cleared", headers=admin).get_json() == {"suspects": []}
    for bad in ("?status=bogus", "?limit=0", "?limit=501"):
        r = client.get(f"/api/admin/suspects{bad}", headers=admin)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_query", bad

    before = snapshot(app)
    for path, body in (("clear", {"reason": "fine"}), ("confirm", {"reason": "bot", "void": True})):
        for headers in ({}, bearer(mint("bot-sharer")), bearer(mint("svc", "service"))):
            assert client.post(f"/api/admin/suspects/bot-sharer/{path}", json=body, headers=headers).status_code in (
                401,
                403,
            )
        r = client.post(f"/api/admin/suspects/human-000/{path}", json=body, headers=admin)
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "suspect_not_found"
        assert client.post(f"/api/admin/suspects/bot-sharer/{path}", json={}, headers=admin).status_code == 400
        assert (
            client.post(f"/api/admin/suspects/bot-sharer/{path}", json={**body, "x": 1}, headers=admin).status_code
            == 400
        )
    assert client.get("/api/admin/suspects", headers=bearer(mint("bot-sharer"))).status_code == 403
    assert snapshot(app) == before

    assert (
        client.post("/api/admin/suspects/bot-sharer/clear", json={"reason": "fine"}, headers=admin).status_code == 200
    )
    for path, body in (("clear", {"reason": "again"}), ("confirm", {"reason": "changed my mind"})):
        r = client.post(f"/api/admin/suspects/bot-sharer/{path}", json=body, headers=admin)
        assert r.status_code == 409 and r.get_json()["error"] == {
            "code": "already_reviewed",
            "message": "This suspect was already cleared.",
            "suspectStatus": "cleared",
        }
    assert statuses(app, "bot-sharer") == {"bot-sharer": UserStatus.ACTIVE}
    reviewed = client.get("/api/admin/suspects?status=cleared", headers=admin).get_json()["suspects"]
    assert [(s["userId"], s["reviewedBy"], s["reviewReason"]) for s in reviewed] == [("bot-sharer", "boss", "fine")]
    assert reviewed[0]["status"] == SuspectStatus.CLEARED


def test_a_void_that_would_go_below_zero_refuses_the_whole_confirm(app, client, admin, anomaly):
    made = build_population(app, bots=BOTS[:1])
    scan(app, made)
    # An earlier adjustment took points already: voiding every claim of the window would go below zero.
    r = client.post(f"/api/admin/users/{BOT}/adjustments", json={"delta": -100, "reason": "earlier fix"}, headers=admin)
    assert r.status_code == 201
    before = snapshot(app)
    r = client.post(f"/api/admin/suspects/{BOT}/confirm", json={"reason": "bot", "void": True}, headers=admin)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "score_below_zero"
    assert snapshot(app) == before
    r = client.post(f"/api/admin/suspects/{BOT}/confirm", json={"reason": "bot"}, headers=admin)
    assert r.status_code == 200 and r.get_json()["newScore"] == made.score(BOT) - 100


# --- refused claims, kept for the scan ------------------------------------------------------------


def test_refused_claims_are_recorded_and_successful_ones_add_nothing(app, client, mint, record, record_and_claim):
    claimed = record_and_claim("ann")["actionId"]
    theirs = record("bob")["actionId"]
    ann = bearer(mint("ann"))

    def refusals():
        with app.app_context():
            rows = db.session.execute(
                select(ClaimRefusal.user_id, ClaimRefusal.reason, ClaimRefusal.client_ip).order_by(ClaimRefusal.id)
            ).all()
            db.session.rollback()
        return [tuple(r) for r in rows]

    assert refusals() == []  # a claim that succeeds writes no refusal
    assert client.post("/api/action/do", json={"actionId": claimed}, headers=ann).status_code == 409
    assert client.post("/api/action/do", json={"actionId": theirs}, headers=ann).status_code == 404
    client.post(
        "/api/admin/users/bob/status",
        json={"status": "banned", "reason": "a script"},
        headers=bearer(mint("a", "admin")),
    )
    assert client.post("/api/action/do", json={"actionId": theirs}, headers=bearer(mint("bob"))).status_code == 403
    assert refusals() == [
        ("ann", "already_claimed", "127.0.0.1"),
        ("ann", "action_not_found", "127.0.0.1"),
        ("bob", "user_banned", "127.0.0.1"),
    ]
    with app.app_context():
        assert db.session.get(User, "ann").status == UserStatus.ACTIVE  # a refusal is a signal, not a verdict
        db.session.rollback()
