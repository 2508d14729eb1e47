"""The admin API the console uses: search, standings, ledger pages, activity, audit filters, the board of
everyone per period, and revoking every token of a user; on the real PostgreSQL and Redis."""

import time
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from sqlalchemy import select

from scoreboard.extensions import db
from scoreboard.models import AuditEntry, ClaimRefusal, Completion, CompletionStatus, User
from scoreboard.scoring.completions import new_action_id
from scoreboard.scoring.moderation import AUDIT_ACTS
from tests.support import bearer, snapshot, wait_until

ADMIN_GETS = (
    "/api/admin/users?q=u1",
    "/api/admin/users/u1/ledger",
    "/api/admin/users/u1/activity",
    "/api/admin/board?period=day",
    "/api/admin/audit?act=adjust",
)


@pytest.fixture
def admin(mint):
    return bearer(mint("boss", "admin"))


def get(client, url, headers):
    response = client.get(url, headers=headers)
    return response.status_code, response.get_json()


def set_status(client, admin, user_id, status):
    r = client.post(f"/api/admin/users/{user_id}/status", json={"status": status, "reason": "test"}, headers=admin)
    assert r.status_code == 200, r.get_json()


def adjust(client, headers, user_id, delta, reason="goodwill"):
    r = client.post(f"/api/admin/users/{user_id}/adjustments", json={"delta": delta, "reason": reason}, headers=headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


# --- who may call ---------------------------------------------------------------------------------


def test_every_new_route_is_refused_without_a_token_and_to_non_admins(app, client, mint, record):
    record("u1")
    before = snapshot(app)
    for headers, status in (({}, 401), (bearer(mint("u1")), 403), (bearer(mint("svc", "service")), 403)):
        for url in ADMIN_GETS:
            assert client.get(url, headers=headers).status_code == status, (url, headers)
        r = client.post("/api/admin/users/u1/tokens/revoke", json={"reason": "sneaky"}, headers=headers)
        assert r.status_code == status
    assert snapshot(app) == before


# --- search ---------------------------------------------------------------------------------------


@pytest.fixture
def people(record, record_and_claim, client, admin):
    """Ids and names chosen so that one query hits each group; scores to order each group by."""
    record("ali", displayName="Zed")  # the exact id, no points
    record_and_claim("ali-2", displayName="Second")  # 50
    record_and_claim("alice", "pass-quiz", displayName="Alice")  # 100
    record_and_claim("Alibaba", displayName="Cave")  # 50: a prefix in another case
    record_and_claim("kal", "win-challenge", displayName="Kalina")  # 250, "ali" inside the name
    record_and_claim("carol", displayName="ALIson")  # 50, "ALI" at the start, in capitals
    record_and_claim("dave", displayName="Dave")  # no match
    record("percent", displayName="100% sure")


def search(client, admin, q, limit=None):
    url = f"/api/admin/users?q={q}" + (f"&limit={limit}" if limit else "")
    status, body = get(client, url, admin)
    assert status == 200, body
    return [u["userId"] for u in body["users"]]


def test_search_puts_the_exact_id_first_then_id_prefixes_then_names(client, admin, people):
    # exact; id prefixes by score then id (Alibaba and ali-2 tie at 50: "Alibaba" < "ali-2"); names by score.
    assert search(client, admin, "ali") == ["ali", "alice", "Alibaba", "ali-2", "kal", "carol"]
    _, body = get(client, "/api/admin/users?q=ali", admin)
    assert body["users"][1] == {
        "userId": "alice",
        "displayName": "Alice",
        "status": "active",
        "score": 100,
        "createdAt": body["users"][1]["createdAt"],
    }
    # Case-insensitive everywhere but the exact id: "ALI" names no user, so "ali" is a prefix match.
    assert search(client, admin, "ALI") == ["alice", "Alibaba", "ali-2", "ali", "kal", "carol"]
    assert search(client, admin, "ali", limit=2) == ["ali", "alice"]
    assert search(client, admin, "dave") == ["dave"]
    assert search(client, admin, "nobody") == []


def test_search_names_by_their_start_under_three_characters_and_escapes_wildcards(client, admin, people):
    assert search(client, admin, "ka") == ["kal"]  # Kalina starts with "Ka"; no name starting "ka" otherwise
    assert search(client, admin, "al") == ["alice", "Alibaba", "ali-2", "ali", "carol"]  # ALIson by its start
    assert search(client, admin, "%") == []  # a literal percent sign starts no id or name
    assert search(client, admin, "0% s") == ["percent"]
    assert search(client, admin, "_") == []


def test_search_refuses_bad_queries(app, client, admin, people):
    for url in (
        "/api/admin/users",
        "/api/admin/users?q=",
        "/api/admin/users?q=" + "a" * 65,
        "/api/admin/users?q=ali&limit=0",
        "/api/admin/users?q=ali&limit=51",
        "/api/admin/users?q=ali&limit=ten",
    ):
        status, body = get(client, url, admin)
        assert (status, body["error"]["code"]) == (400, "invalid_query"), url
    assert len(search(client, admin, "a" * 64)) == 0
    assert len(search(client, admin, "al", limit=50)) == 5


# --- standings ------------------------------------------------------------------------------------


def test_standings_per_period_for_an_active_a_hidden_a_banned_and_a_held_user(client, mint, admin, record_and_claim):
    record_and_claim("top", "win-challenge")  # 250
    record_and_claim("held", "pass-quiz")  # 100
    record_and_claim("mid", "complete-lesson")  # 50
    record_and_claim("hidden", "pass-quiz")
    record_and_claim("banned", "win-challenge")
    set_status(client, admin, "hidden", "hidden")
    set_status(client, admin, "banned", "banned")
    set_status(client, admin, "held", "held")

    def standings(user_id):
        status, body = get(client, f"/api/admin/users/{user_id}", admin)
        assert status == 200, body
        return body["standings"]

    day, week, month = (
        get(client, f"/api/scores/me?period={k}", bearer(mint("top")))[1]["key"] for k in ("day", "week", "month")
    )
    for kind, key in (("all", "all"), ("day", day), ("week", week), ("month", month)):
        public = get(client, f"/api/scores/me?period={kind}", bearer(mint("mid")))[1]
        assert public["rank"] == 2 and public["total"] == 2  # top and mid are public; held is not
        assert standings("top")[kind] == {
            "period": key,
            "rank": 1,
            "score": 250,
            "total": 2,
            "held": False,
            "rankUnknown": False,
        }
        assert standings("mid")[kind] == {
            "period": key,
            "rank": 2,
            "score": 50,
            "total": 2,
            "held": False,
            "rankUnknown": False,
        }
        # Held: the rank they would have, as their own view shows it, and the total counting them.
        mine = get(client, f"/api/scores/me?period={kind}", bearer(mint("held")))[1]
        assert standings("held")[kind] == {
            "period": key,
            "rank": 2,
            "score": 100,
            "total": 3,
            "held": True,
            "rankUnknown": False,
        }
        assert (mine["rank"], mine["total"]) == (2, 3)
        assert standings("hidden")[kind] == {
            "period": key,
            "rank": None,
            "score": 100,
            "total": 2,
            "held": False,
            "rankUnknown": False,
        }
        assert standings("banned")[kind] == {
            "period": key,
            "rank": None,
            "score": 250,
            "total": 2,
            "held": False,
            "rankUnknown": False,
        }


def test_standings_of_a_user_without_points(client, admin, record):
    record("fresh")
    # Nobody has points yet, so no board was built: the page still answers from the database, the ranks are
    # marked unknown, and the rebuild is queued.
    status, body = get(client, "/api/admin/users/fresh", admin)
    assert status == 200, body
    assert body["user"]["userId"] == "fresh" and len(body["ledger"]) == 1
    assert body["standings"]["all"] == {
        "period": "all",
        "rank": None,
        "score": 0,
        "total": None,
        "held": False,
        "rankUnknown": True,
    }
    status, body = wait_until(
        lambda: (
            (found := get(client, "/api/admin/users/fresh", admin))[1]["standings"]["all"]["total"] is not None
            and found
        ),
        timeout=10,
    )
    assert body["standings"]["all"] == {
        "period": "all",
        "rank": None,
        "score": 0,
        "total": 0,
        "held": False,
        "rankUnknown": False,
    }
    assert get(client, "/api/admin/users/nobody", admin)[0] == 404


# --- ledger pages ---------------------------------------------------------------------------------


def test_ledger_pages_walk_newest_first_without_duplicates_or_gaps(app, client, admin, record, record_and_claim):
    for action in ("complete-lesson", "pass-quiz", "share-result", "daily-login"):
        record_and_claim("walker", action)
    for _ in range(3):
        record("walker")
    adjust(client, admin, "walker", 7)
    record_and_claim("other")
    with app.app_context():
        expected = db.session.scalars(
            select(Completion.id)
            .where(Completion.user_id == "walker")
            .order_by(Completion.created_at.desc(), Completion.id.desc())
        ).all()
        db.session.rollback()
    assert len(expected) == 8

    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/admin/users/walker/ledger?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, body = get(client, url, admin)
        assert status == 200, body
        seen += [row["actionId"] for row in body["entries"]]
        assert all(row["userId"] == "walker" for row in body["entries"])
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == expected and pages == 3
    first = get(client, "/api/admin/users/walker/ledger", admin)[1]
    assert [row["actionId"] for row in first["entries"]] == expected and first["next"] is None
    assert first["entries"][0]["status"] == "adjustment" and first["entries"][0]["points"] == 7


def test_ledger_refuses_tampered_and_foreign_cursors_and_unknown_users(client, admin, record):
    for _ in range(3):
        record("walker")
    record("other")
    cursor = get(client, "/api/admin/users/walker/ledger?limit=1", admin)[1]["next"]
    assert cursor
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    for url in (
        f"/api/admin/users/walker/ledger?cursor={tampered}",
        f"/api/admin/users/other/ledger?cursor={cursor}",  # another user's cursor
        "/api/admin/users/walker/ledger?cursor=not-a-cursor",
    ):
        status, body = get(client, url, admin)
        assert (status, body["error"]["code"]) == (400, "bad_cursor"), url
    for url in ("/api/admin/users/walker/ledger?limit=0", "/api/admin/users/walker/ledger?limit=201"):
        assert get(client, url, admin)[1]["error"]["code"] == "invalid_query"
    status, body = get(client, "/api/admin/users/nobody/ledger", admin)
    assert (status, body["error"]["code"]) == (404, "user_not_found")


# --- activity -------------------------------------------------------------------------------------


def _hour(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def test_activity_counts_each_hour_from_the_rows_written(app, client, admin):
    now = datetime.now(UTC)
    claims = {  # user -> [(claimed at, points, status)]
        "busy": [
            (now - timedelta(minutes=1), 50, CompletionStatus.CLAIMED),
            (now - timedelta(hours=1, minutes=5), 100, CompletionStatus.CLAIMED),
            (now - timedelta(hours=1, minutes=20), 10, CompletionStatus.VOID),  # claimed then, voided since
            (now - timedelta(hours=5), 250, CompletionStatus.CLAIMED),
            (now - timedelta(hours=30), 20, CompletionStatus.CLAIMED),  # only in 7d
            (now - timedelta(days=10), 20, CompletionStatus.CLAIMED),  # only in 30d
        ],
        "other": [(now - timedelta(hours=1), 999, CompletionStatus.CLAIMED)],
    }
    refusals = {"busy": [now - timedelta(hours=2), now - timedelta(hours=2, minutes=1), now - timedelta(hours=40)]}
    with app.app_context():
        for user_id in ("busy", "other"):
            db.session.add(User(id=user_id, display_name=user_id))
        db.session.flush()
        for user_id, rows in claims.items():
            for at, points, status in rows:
                recorded = at - timedelta(minutes=10)
                db.session.add(
                    Completion(
                        id=new_action_id(),
                        user_id=user_id,
                        action_key="complete-lesson",
                        points=points,
                        status=status,
                        created_at=recorded,
                        expires_at=recorded + timedelta(hours=1),
                        claimed_at=at,
                        voided_at=now if status == CompletionStatus.VOID else None,
                    )
                )
        # Neither is a claim: an adjustment, and a completion never claimed.
        db.session.add(
            Completion(
                id=new_action_id(),
                user_id="busy",
                action_key=None,
                points=5,
                status="adjustment",
                created_at=now,
                expires_at=now,
                claimed_at=now,
            )
        )
        db.session.add(
            Completion(
                id=new_action_id(),
                user_id="busy",
                action_key="pass-quiz",
                points=100,
                status="pending",
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
        for at in refusals["busy"]:
            db.session.add(ClaimRefusal(user_id="busy", at=at, reason="already_claimed"))
        db.session.commit()

    for name, hours in (("24h", 24), ("7d", 168), ("30d", 720)):
        status, body = get(client, f"/api/admin/users/busy/activity?range={name}", admin)
        assert status == 200, body
        start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
        assert (body["range"], body["bucket"]) == (name, "hour")
        assert end - start == timedelta(hours=hours) and start <= now < end and end == _hour(end)
        expected = {start + timedelta(hours=i): {"claims": 0, "points": 0, "refused": 0} for i in range(hours)}
        for at, points, _ in claims["busy"]:
            if start <= at < end:
                expected[_hour(at)]["claims"] += 1
                expected[_hour(at)]["points"] += points
        for at in refusals["busy"]:
            if start <= at < end:
                expected[_hour(at)]["refused"] += 1
        got = [
            (datetime.fromisoformat(p["at"]), {k: p[k] for k in ("claims", "points", "refused")})
            for p in body["points"]
        ]
        assert got == sorted(expected.items())  # every hour, oldest first, zeros included
        assert sum(p["claims"] == 0 for p in body["points"]) >= hours - 6
    assert sum(p["claims"] for p in get(client, "/api/admin/users/busy/activity", admin)[1]["points"]) == 4
    status, body = get(client, "/api/admin/users/busy/activity?range=1y", admin)
    assert (status, body["error"]["code"]) == (400, "invalid_query")
    assert get(client, "/api/admin/users/nobody/activity", admin)[0] == 404


# --- audit ----------------------------------------------------------------------------------------


def test_audit_filters_by_actor_target_and_act_and_pages_by_id(client, mint, admin, record):
    record("u1")
    record("u2")
    eve = bearer(mint("eve", "admin"))
    set_status(client, admin, "u1", "hidden")
    adjust(client, admin, "u2", 5)
    adjust(client, eve, "u1", 3)
    set_status(client, eve, "u1", "active")
    assert client.post("/api/admin/tokens/revoke", json={"jti": "j1", "reason": "leak"}, headers=eve).status_code == 200

    def acts(query):
        status, body = get(client, f"/api/admin/audit?{query}", admin)
        assert status == 200, body
        return [(e["actor"], e["act"], e["targetUser"]) for e in body]

    everything = acts("")
    assert everything == [
        ("eve", "revoke", None),
        ("eve", "status:active", "u1"),
        ("eve", "adjust", "u1"),
        ("boss", "adjust", "u2"),
        ("boss", "status:hidden", "u1"),
    ]
    assert acts("actor=eve") == everything[:3]
    assert acts("target=u1") == [everything[1], everything[2], everything[4]]
    assert acts("act=adjust") == [everything[2], everything[3]]
    assert acts("actor=boss&target=u1") == [everything[4]]
    assert acts("actor=nobody") == []

    ids = [e["id"] for e in get(client, "/api/admin/audit", admin)[1]]
    walked, before = [], None
    while True:
        page = get(client, "/api/admin/audit?limit=2" + (f"&before={before}" if before else ""), admin)[1]
        if not page:
            break
        walked += [e["id"] for e in page]
        before = page[-1]["id"]
    assert walked == ids == sorted(ids, reverse=True)
    assert [e["id"] for e in get(client, f"/api/admin/audit?target=u1&before={ids[1]}", admin)[1]] == [ids[2], ids[4]]

    for query in ("act=dance", "act=", "before=abc", "before=0", "limit=0", "limit=501", "actor=" + "x" * 65):
        status, body = get(client, f"/api/admin/audit?{query}", admin)
        assert (status, body["error"]["code"]) == (400, "invalid_query"), query


def test_the_audit_kinds_are_an_enum_in_the_document(client):
    document = client.get("/api/openapi.json").get_json()
    act = next(p for p in document["paths"]["/api/admin/audit"]["get"]["parameters"] if p["name"] == "act")
    assert act["schema"]["enum"] == list(AUDIT_ACTS)
    assert document["components"]["schemas"]["AuditOut"]["properties"]["act"]["enum"] == list(AUDIT_ACTS)
    assert {
        "status:hidden",
        "status:banned",
        "status:active",
        "status:held",
        "adjust",
        "void",
        "revoke",
        "revoke:user",
        "suspect:clear",
        "suspect:confirm",
        "suspect:flag",
    } == set(AUDIT_ACTS)


# --- the board of everyone, per period ------------------------------------------------------------


def test_the_admin_board_per_period_shows_every_user_with_status(client, mint, admin, record_and_claim):
    record_and_claim("banned", "win-challenge")  # 250
    record_and_claim("held", "pass-quiz")  # 100
    record_and_claim("hidden", "share-result")  # 20
    record_and_claim("active", "complete-lesson")  # 50
    for user_id in ("banned", "held", "hidden"):
        set_status(client, admin, user_id, user_id)
    expected = [("banned", 250, "banned"), ("held", 100, "held"), ("active", 50, "active"), ("hidden", 20, "hidden")]
    for query in ("", "?period=all", "?period=day", "?period=week", "?period=month"):
        status, body = get(client, f"/api/admin/board{query}", admin)
        assert status == 200, body
        assert [(e["userId"], e["score"], e["status"]) for e in body] == expected, query
        assert [e["rank"] for e in body] == [1, 2, 3, 4]
        public = get(client, f"/api/score/top{query}", bearer(mint("viewer")))[1]
        assert [e["userId"] for e in public] == ["active"]
    today = datetime.now(UTC).date().isoformat()
    assert len(get(client, f"/api/admin/board?period=day&at={today}", admin)[1]) == 4
    for query in ("?period=year", "?period=all&at=2026-01-01", "?period=day&at=2999-01-01", "?period=day&at=x"):
        status, body = get(client, f"/api/admin/board{query}", admin)
        assert (status, body["error"]["code"]) == (400, "bad_period"), query


# --- revoking every token of a user ---------------------------------------------------------------


def test_revoking_a_users_tokens_refuses_those_issued_before_and_is_audited(app, client, mint, admin, record):
    record("victim")
    old, bystander = mint("victim"), mint("bystander")
    assert client.get("/api/scores/victim/history", headers=bearer(old)).status_code == 200

    r = client.post("/api/admin/users/victim/tokens/revoke", json={"reason": "account compromised"}, headers=admin)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    revoked_before = datetime.fromisoformat(body["revokedBefore"])
    assert body["userId"] == "victim" and revoked_before.timestamp() > time.time() - 1

    refused = client.get("/api/scores/victim/history", headers=bearer(old))
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "token_revoked"
    assert client.post("/api/socket-ticket", headers=bearer(old)).status_code == 401
    assert client.get("/api/actions", headers=bearer(bystander)).status_code == 200
    # A token issued from the cutoff on (iat counts whole seconds) works.
    wait_until(lambda: time.time() >= revoked_before.timestamp(), timeout=3, message="the cutoff never passed")
    assert client.get("/api/scores/victim/history", headers=bearer(mint("victim"))).status_code == 200

    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.act == "revoke:user")).one()
        assert (entry.actor, entry.target_user, entry.reason) == ("boss", "victim", "account compromised")
        assert entry.to_dict()["details"] == {"revoked_before": body["revokedBefore"]}
        db.session.rollback()


def test_revoking_tokens_needs_a_reason_and_a_known_user(app, client, admin, record):
    record("victim")
    before = snapshot(app)
    for body in ({}, {"reason": ""}, {"reason": "ok", "extra": 1}):
        r = client.post("/api/admin/users/victim/tokens/revoke", json=body, headers=admin)
        assert (r.status_code, r.get_json()["error"]["code"]) == (400, "invalid_body")
    r = client.post("/api/admin/users/nobody/tokens/revoke", json={"reason": "who?"}, headers=admin)
    assert (r.status_code, r.get_json()["error"]["code"]) == (404, "user_not_found")
    assert snapshot(app) == before


# --- answers as documented ------------------------------------------------------------------------


def test_the_new_routes_answer_as_documented(app, client, mint, admin, record_and_claim):
    record_and_claim("u1")
    set_status(client, admin, "u1", "held")
    adjust(client, admin, "u1", 3)
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    cursor = get(client, "/api/admin/users/u1/ledger?limit=1", admin)[1]["next"]
    calls = [
        ("GET", "/api/admin/users?q=u", "/api/admin/users", None, 200),
        ("GET", "/api/admin/users/u1", "/api/admin/users/{user_id}", None, 200),
        ("GET", f"/api/admin/users/u1/ledger?limit=1&cursor={cursor}", "/api/admin/users/{user_id}/ledger", None, 200),
        ("GET", "/api/admin/users/u1/activity?range=7d", "/api/admin/users/{user_id}/activity", None, 200),
        ("GET", "/api/admin/board?period=week", "/api/admin/board", None, 200),
        ("GET", "/api/admin/audit?act=adjust&target=u1", "/api/admin/audit", None, 200),
        ("GET", "/api/admin/users/u1/ledger?cursor=x", "/api/admin/users/{user_id}/ledger", None, 400),
        ("GET", "/api/admin/audit?act=x", "/api/admin/audit", None, 400),
        (
            "POST",
            "/api/admin/users/u1/tokens/revoke",
            "/api/admin/users/{user_id}/tokens/revoke",
            {"reason": "why"},
            200,
        ),
        (
            "POST",
            "/api/admin/users/zz/tokens/revoke",
            "/api/admin/users/{user_id}/tokens/revoke",
            {"reason": "why"},
            404,
        ),
    ]
    for method, url, template, body, status in calls:
        response = client.open(url, method=method, json=body, headers=admin)
        assert response.status_code == status, (url, response.get_data(as_text=True))
        schema[template][method].validate_response(response)
