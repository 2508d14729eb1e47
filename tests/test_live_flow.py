"""The whole flow against the production stack: gunicorn, a Celery worker, Redis pub/sub, a real socket."""

import json
import time

import requests
from websockets.sync.client import connect

from tests.support import bearer


def ws_url(base):
    return base.replace("http://", "ws://") + "/ws/scoreboard"


def receive_until(ws, predicate, timeout):
    """Read messages until one satisfies ``predicate``; returns it and the seconds waited."""
    start = time.monotonic()
    while True:
        remaining = timeout - (time.monotonic() - start)
        assert remaining > 0, "no matching socket message in time"
        message = json.loads(ws.recv(timeout=remaining))
        if predicate(message):
            return message, time.monotonic() - start


def test_claim_reaches_socket_within_a_second(live_stack, mint, service_headers):
    alice = bearer(mint("alice"))
    completion = requests.post(
        f"{live_stack}/api/actions/completions",
        json={"userId": "alice", "action": "win-challenge", "displayName": "Alice"},
        headers=service_headers,
        timeout=5,
    )
    assert completion.status_code == 201
    body = completion.json()
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

        update, waited = receive_until(ws, lambda m: any(e["userId"] == "alice" for e in m["top"]), 1.0)
        assert waited < 1.0
        assert update["type"] == "update" and update["version"] > snapshot["version"]
        assert update["top"][0] == {"rank": 1, "userId": "alice", "displayName": "Alice", "score": 250}

    top = requests.get(f"{live_stack}/api/score/top", headers=alice, timeout=5)
    assert top.status_code == 200
    assert top.json()[0]["userId"] == "alice" and top.json()[0]["score"] == 250
    assert int(top.headers["X-Board-Version"]) >= update["version"]


def test_each_change_is_one_message_and_versions_grow(live_stack, mint, service_headers):
    headers = {u: bearer(mint(u)) for u in ("p1", "p2")}
    with connect(ws_url(live_stack), open_timeout=5, additional_headers=headers["p1"]) as ws:
        last = json.loads(ws.recv(timeout=5))["version"]
        for user, expected in (("p1", 50), ("p2", 50), ("p1", 100)):
            action_id = requests.post(
                f"{live_stack}/api/actions/completions",
                json={"userId": user, "action": "complete-lesson"},
                headers=service_headers,
                timeout=5,
            ).json()["actionId"]
            r = requests.post(
                f"{live_stack}/api/action/do", json={"actionId": action_id}, headers=headers[user], timeout=5
            )
            assert r.json()["newScore"] == expected
            message, _ = receive_until(
                ws, lambda m: any(e["userId"] == user and e["score"] == expected for e in m["top"]), 1.0
            )
            assert message["version"] > last
            last = message["version"]
        # p1 (100) leads; p2 (50) follows.
        assert [(e["userId"], e["score"]) for e in message["top"]] == [("p1", 100), ("p2", 50)]


def test_rabbitmq_broker_works_by_url(stack_env, tmp_path, mint, service_headers):
    """The same flow with Celery on RabbitMQ instead of Redis: only the URL changes."""
    import socket

    import pytest

    from tests.support import start_web, start_worker

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    env = {**stack_env, "SCOREBOARD_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}
    worker = start_worker(env, tmp_path, name="amqp-worker", concurrency=1)
    web, base = start_web(env, tmp_path, name="amqp-web", workers=1)
    try:
        user = bearer(mint("rabbit"))
        action_id = requests.post(
            f"{base}/api/actions/completions",
            json={"userId": "rabbit", "action": "pass-quiz"},
            headers=service_headers,
            timeout=5,
        ).json()["actionId"]
        with connect(ws_url(base), additional_headers=user, open_timeout=5) as ws:
            json.loads(ws.recv(timeout=5))
            assert (
                requests.post(
                    f"{base}/api/action/do", json={"actionId": action_id}, headers=user, timeout=5
                ).status_code
                == 200
            )
            receive_until(ws, lambda m: any(e["userId"] == "rabbit" for e in m["top"]), 1.0)
        assert "amqp://guest:**@127.0.0.1:5672//" in worker.output()
    finally:
        web.stop()
        worker.stop()
