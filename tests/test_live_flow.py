"""The whole flow against the production stack: gunicorn, a Celery worker, Redis pub/sub, a real socket."""

import json
import socket

import pytest
import requests
from websockets.sync.client import connect

from tests.support import (
    bearer,
    receive_until,
    record_and_claim_over_http,
    record_over_http,
    start_web,
    start_worker,
    ws_url,
)

pytestmark = pytest.mark.live


def showing(user, score=None):
    """A predicate on board messages: ``user`` is on the board (with ``score``, if given)."""
    return lambda message: any(e["userId"] == user and score in (None, e["score"]) for e in message["top"])


def test_claim_reaches_socket_within_a_second(live_stack, mint, service_headers):
    alice = bearer(mint("alice"))
    body = record_over_http(live_stack, service_headers, "alice", "win-challenge", displayName="Alice")
    assert body["userId"] == "alice" and body["points"] == 250 and len(body["actionId"]) >= 32

    with connect(ws_url(live_stack), additional_headers=alice, open_timeout=5) as ws:
        snapshot = json.loads(ws.recv(timeout=5))
        assert snapshot["type"] == "snapshot"
        assert all(entry["userId"] != "alice" for entry in snapshot["top"])

        claimed = requests.post(
            f"{live_stack}/api/action/do", json={"actionId": body["actionId"]}, headers=alice, timeout=5
        )
        assert claimed.status_code == 200
        assert claimed.json() == {"success": True, "newScore": 250}

        update, waited = receive_until(ws, showing("alice"), 1.0)
        assert waited < 1.0
        assert update["type"] == "update" and update["version"] > snapshot["version"]
        assert update["top"][0] == {"rank": 1, "userId": "alice", "displayName": "Alice", "score": 250}

    top = requests.get(f"{live_stack}/api/score/top", headers=alice, timeout=5)
    assert top.status_code == 200
    assert top.json()[0]["userId"] == "alice" and top.json()[0]["score"] == 250
    assert int(top.headers["X-Board-Version"]) >= update["version"]


def test_each_change_is_one_message_and_versions_grow(live_stack, mint, service_headers):
    tokens = {u: mint(u) for u in ("p1", "p2")}
    with connect(ws_url(live_stack), open_timeout=5, additional_headers=bearer(tokens["p1"])) as ws:
        last = json.loads(ws.recv(timeout=5))["version"]
        for user, expected in (("p1", 50), ("p2", 50), ("p1", 100)):
            claimed = record_and_claim_over_http(live_stack, service_headers, tokens[user], user)
            assert claimed["newScore"] == expected
            message, _ = receive_until(ws, showing(user, expected), 1.0)
            assert message["version"] > last
            last = message["version"]
        # p1 (100) leads; p2 (50) follows.
        assert [(e["userId"], e["score"]) for e in message["top"]] == [("p1", 100), ("p2", 50)]


def test_rabbitmq_broker_works_by_url(stack_env, tmp_path, mint, service_headers):
    """The same flow with Celery on RabbitMQ instead of Redis: only the URL changes."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    env = {**stack_env, "SCOREBOARD_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}
    worker = start_worker(env, tmp_path, name="amqp-worker", concurrency=1)
    web, base = start_web(env, tmp_path, name="amqp-web", workers=1)
    try:
        token = mint("rabbit")
        with connect(ws_url(base), additional_headers=bearer(token), open_timeout=5) as ws:
            json.loads(ws.recv(timeout=5))
            record_and_claim_over_http(base, service_headers, token, "rabbit", "pass-quiz")
            receive_until(ws, showing("rabbit"), 1.0)
        assert "amqp://guest:**@127.0.0.1:5672//" in worker.output()
    finally:
        web.stop()
        worker.stop()
