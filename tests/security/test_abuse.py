"""Hammering, racing and replaying: limits hold across processes and caps hold under concurrency."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from scoreboard.extensions import db
from scoreboard.models import Completion, Score, utcnow
from tests.support import bearer, claim_together, peak_in_flight, snapshot, start_web, wait_until


def _parallel(n, fn):
    gate = threading.Barrier(n)

    def run(i):
        gate.wait(timeout=10)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.live
def test_two_hundred_parallel_claims_of_one_action_id(app, live_stack, mint, record):
    action_id = record("racer", "pass-quiz")["actionId"]
    answers = claim_together(live_stack, [(bearer(mint("racer")), action_id)] * 200, workers=100)
    assert peak_in_flight(answers) >= 50, "the claims hardly overlapped"
    assert Counter(a.status for a in answers) == {200: 1, 409: 199}
    with app.app_context():
        assert db.session.scalar(select(Score.score).where(Score.user_id == "racer")) == 100


def _settle(app, timeout=10):
    """Wait until the worker has mirrored every change, so snapshots compare only the API's effects."""

    def mirrored():
        with app.app_context():
            pending = db.session.scalar(select(func.count()).select_from(Score).where(Score.board_pending))
            db.session.rollback()
        return pending == 0

    wait_until(mirrored, timeout, message="the board never caught up")


@pytest.mark.live
def test_replay_and_other_users_ids_gain_nothing(app, live_stack, mint, record):
    action_id = record("owner", "win-challenge")["actionId"]
    owner, thief = bearer(mint("owner")), bearer(mint("thief"))
    assert requests.post(f"{live_stack}/api/action/do", json={"actionId": action_id}, headers=thief).status_code == 404
    assert requests.post(f"{live_stack}/api/action/do", json={"actionId": action_id}, headers=owner).status_code == 200
    _settle(app)
    before = snapshot(app)
    for headers in (owner, thief, owner):
        r = requests.post(f"{live_stack}/api/action/do", json={"actionId": action_id}, headers=headers)
        assert r.status_code in (404, 409)
    assert snapshot(app) == before


@pytest.mark.live
def test_parallel_completions_never_exceed_the_daily_cap(app, live_stack, service_headers):
    def record(_):
        return requests.post(
            f"{live_stack}/api/actions/completions",
            json={"userId": "capped", "action": "share-result"},
            headers=service_headers,
            timeout=30,
        )

    responses = _parallel(20, record)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 5, 429: 15}, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"action_daily_cap"}
    with app.app_context():
        assert (
            db.session.scalar(select(func.count()).select_from(Completion).where(Completion.user_id == "capped")) == 5
        )


@pytest.mark.live
def test_parallel_completions_respect_the_cooldown(app, live_stack, service_headers):
    responses = _parallel(
        10,
        lambda _: requests.post(
            f"{live_stack}/api/actions/completions",
            json={"userId": "quick", "action": "pass-quiz"},
            headers=service_headers,
            timeout=30,
        ),
    )
    assert Counter(r.status_code for r in responses) == {201: 1, 429: 9}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "action_cooldown" and refused.json()["error"]["retryAfter"] >= 1


@pytest.mark.live
def test_rate_limits_hold_across_two_web_processes(stack_env, tmp_path, mint):
    env = {
        **stack_env,
        "SCOREBOARD_RATE_LIMIT_ENABLED": "true",
        "SCOREBOARD_RATE_LIMIT_USER": "20/minute",
        "SCOREBOARD_RATE_LIMIT_LOGIN": "5/minute",
        "SCOREBOARD_RATE_LIMIT_IP": "1000/minute",
    }
    web_a, base_a = start_web(env, tmp_path, name="limited-a", workers=1)
    web_b, base_b = start_web(env, tmp_path, name="limited-b", workers=1)
    try:
        headers = bearer(mint("hammer"))
        answers = [
            requests.post(f"{base}/api/action/do", json={"actionId": "no-such-action-id"}, headers=headers, timeout=10)
            for base in [base_a, base_b] * 15
        ]
        assert Counter(r.status_code for r in answers) == {404: 20, 429: 10}
        limited = next(r for r in answers if r.status_code == 429)
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.headers["X-RateLimit-Limit"] == "20"
        # Another user has their own budget.
        other = requests.post(
            f"{base_b}/api/action/do", json={"actionId": "x"}, headers=bearer(mint("calm")), timeout=10
        )
        assert other.status_code == 404

        logins = [
            requests.post(
                f"{base}/api/auth/login", json={"username": "guess", "password": f"pw{i}"}, timeout=10
            ).status_code
            for i, base in enumerate([base_a, base_b] * 4)
        ]
        assert Counter(logins) == {401: 5, 429: 3}
    finally:
        web_a.stop()
        web_b.stop()


def test_expired_completions_are_marked_and_refused(app, client, mint, record):
    from workers.maintenance import expire_completions

    stale = record("u1")["actionId"]
    fresh = record("u1", "win-challenge")["actionId"]
    with app.app_context():
        db.session.execute(
            update(Completion).where(Completion.id == stale).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
        assert expire_completions.apply().get() == 1
        assert db.session.get(Completion, stale).status == "expired"
        assert db.session.get(Completion, fresh).status == "pending"
    r = client.post("/api/action/do", json={"actionId": stale}, headers=bearer(mint("u1")))
    assert r.status_code == 410 and r.get_json()["error"]["code"] == "action_expired"


def test_api_answers_are_not_cached_or_sniffed(client, mint):
    r = client.get("/api/score/top", headers=bearer(mint("u1")))
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.unit
def test_cors_allows_only_the_listed_origin():
    from scoreboard import create_app

    app = create_app({"TESTING": True, "ALLOWED_ORIGINS": ["https://game.example"]})
    client = app.test_client()
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Authorization"}
    allowed = client.options("/api/action/do", headers={"Origin": "https://game.example", **preflight})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://game.example"
    denied = client.options("/api/action/do", headers={"Origin": "https://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in denied.headers
