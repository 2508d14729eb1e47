"""The board: ranking order, the Redis mirror and cache, and broadcasting only on change."""

import json
from datetime import timedelta

from sqlalchemy import update

from scoreboard.board.reads import read_board
from scoreboard.board.refresh import refresh_board
from scoreboard.board.source import top_from_db
from scoreboard.extensions import db
from scoreboard.models import Score, User, utcnow
from tests.conftest import PREFIX
from tests.support import bearer


def set_scores(app, rows):
    """Force ``{user: (score, seconds_ago)}`` into the database and flag them for the board."""
    now = utcnow()
    with app.app_context():
        for user, (score, ago) in rows.items():
            db.session.execute(
                update(Score)
                .where(Score.user_id == user)
                .values(
                    score=score, reached_at=now - timedelta(seconds=ago), version=Score.version + 1, board_pending=True
                )
            )
        db.session.commit()


def test_top_is_highest_first_and_ties_go_to_who_reached_first(app, client, mint, record, redis_client):
    for user in ("early", "late", "high", "low", "zzz-late", "aaa-late"):
        record(user)
    set_scores(
        app,
        {
            "early": (500, 30),
            "late": (500, 10),
            "high": (900, 5),
            "low": (100, 1),
            "zzz-late": (500, 20),
            "aaa-late": (500, 20),
        },
    )
    with app.app_context():
        refresh_board()
        from_db = [e["userId"] for e in top_from_db(10)]
        from_cache = [e["userId"] for e in read_board()["top"]]
    expected = ["high", "early", "zzz-late", "aaa-late", "late", "low"]
    assert from_db == expected
    assert from_cache == expected
    mirror = [m.split(":", 1)[1] for m in redis_client.zrevrange(f"{PREFIX}rank", 0, -1)]
    assert mirror == expected
    answer = client.get("/api/score/top", headers=bearer(mint("viewer"))).get_json()
    assert [e["userId"] for e in answer] == expected
    assert [e["rank"] for e in answer] == [1, 2, 3, 4, 5, 6]


def test_only_ten_are_shown(app, client, mint, record):
    for i in range(12):
        record(f"p{i:02d}")
    set_scores(app, {f"p{i:02d}": (100 + i, 0) for i in range(12)})
    with app.app_context():
        refresh_board()
    top = client.get("/api/score/top", headers=bearer(mint("viewer"))).get_json()
    assert [e["score"] for e in top] == list(range(111, 101, -1))


def test_cache_miss_reads_database_and_recaches_with_ttl(app, client, mint, record_and_claim, redis_client):
    record_and_claim("u1")
    redis_client.delete(f"{PREFIX}top")
    top = client.get("/api/score/top", headers=bearer(mint("viewer"))).get_json()
    assert top == [{"rank": 1, "userId": "u1", "displayName": "u1", "score": 50}]
    cached = json.loads(redis_client.get(f"{PREFIX}top"))
    assert cached["top"] == top
    assert 0 < redis_client.ttl(f"{PREFIX}top") <= app.config["TOP_CACHE_TTL"]


def test_broadcast_only_when_the_top_changes(app, record_and_claim, redis_client):
    record_and_claim("u1")
    version = int(redis_client.get(f"{PREFIX}top:version"))
    with app.app_context():
        assert refresh_board() == 0  # nothing changed: no new version, no message
    assert int(redis_client.get(f"{PREFIX}top:version")) == version
    record_and_claim("u1")
    assert int(redis_client.get(f"{PREFIX}top:version")) > version


def test_message_published_on_change(record_and_claim, redis_client):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{PREFIX}board")
    pubsub.get_message(timeout=1)
    record_and_claim("u1")
    message = pubsub.get_message(timeout=2)
    pubsub.close()
    payload = json.loads(message["data"])
    assert payload["type"] == "update"
    assert payload["top"] == [{"rank": 1, "userId": "u1", "displayName": "u1", "score": 50}]


def test_mirror_is_rebuilt_from_the_database_when_missing(record_and_claim, redis_client):
    record_and_claim("a")
    record_and_claim("b", "win-challenge")
    for key in redis_client.scan_iter(f"{PREFIX}*"):
        if key != f"{PREFIX}top:version":
            redis_client.delete(key)
    record_and_claim("c", "pass-quiz")  # the refresh finds no mirror and rebuilds it
    assert [m.split(":", 1)[1] for m in redis_client.zrevrange(f"{PREFIX}rank", 0, -1)] == ["b", "c", "a"]


def test_hidden_users_leave_the_board(app, client, mint, record_and_claim):
    record_and_claim("shown")
    record_and_claim("hidden", "win-challenge")
    with app.app_context():
        db.session.execute(update(User).where(User.id == "hidden").values(status="hidden"))
        db.session.execute(
            update(Score).where(Score.user_id == "hidden").values(version=Score.version + 1, board_pending=True)
        )
        db.session.commit()
        refresh_board()
    top = client.get("/api/score/top", headers=bearer(mint("viewer"))).get_json()
    assert [e["userId"] for e in top] == ["shown"]


def test_board_needs_a_token_unless_public(app, client):
    assert client.get("/api/score/top").status_code == 401
    app.config["PUBLIC_BOARD"] = True
    try:
        assert client.get("/api/score/top").status_code == 200
    finally:
        app.config["PUBLIC_BOARD"] = False
