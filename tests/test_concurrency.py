"""Exactness under real concurrent HTTP requests against the production stack."""

import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import select

from scoreboard.extensions import db
from scoreboard.models import Completion, Score
from tests.support import bearer


def _claim_all(base, jobs, workers):
    """Fire ``(headers, action_id)`` claims from ``workers`` threads released at once."""
    gate = threading.Barrier(min(workers, len(jobs)))
    session_local = threading.local()

    def claim(job):
        headers, action_id = job
        session = getattr(session_local, "s", None) or requests.Session()
        session_local.s = session
        try:
            gate.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass
        response = session.post(f"{base}/api/action/do", json={"actionId": action_id}, headers=headers, timeout=30)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(claim, jobs))


def test_fifty_concurrent_claims_of_one_action_id_succeed_once(app, live_stack, mint, record):
    action_id = record("racer", "win-challenge")["actionId"]
    headers = bearer(mint("racer"))

    results = _claim_all(live_stack, [(headers, action_id)] * 50, workers=50)

    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 1, 409: 49}, statuses
    assert [body for status, body in results if status == 200] == [{"success": True, "newScore": 250}]
    assert all(body["error"]["code"] == "already_claimed" for status, body in results if status == 409)
    with app.app_context():
        assert db.session.scalar(select(Score.score).where(Score.user_id == "racer")) == 250
        assert db.session.scalar(select(Completion.status).where(Completion.id == action_id)) == "claimed"


def test_five_hundred_concurrent_claims_by_fifty_users_are_exact(app, live_stack, mint, record):
    actions = ["complete-lesson", "pass-quiz", "win-challenge", "share-result"]
    jobs, expected = [], defaultdict(int)
    for u in range(50):
        user = f"user{u:02d}"
        headers = bearer(mint(user))
        for i in range(10):
            action = actions[(u + i) % len(actions)]
            if action == "pass-quiz":  # has a cooldown; alternate with one that has none
                action = "complete-lesson"
            if action == "share-result" and i >= 5:  # capped at 5 a day
                action = "win-challenge"
            completion = record(user, action)
            expected[user] += completion["points"]
            jobs.append((headers, completion["actionId"]))

    results = _claim_all(live_stack, jobs, workers=50)

    assert Counter(status for status, _ in results) == {200: 500}
    with app.app_context():
        scores = dict(db.session.execute(select(Score.user_id, Score.score)).all())
    assert scores == dict(expected)
    # Each user's answers saw every intermediate total exactly once: no lost or doubled increment.
    seen = defaultdict(list)
    for (headers, _), (_, body) in zip(jobs, results):
        seen[headers["Authorization"]].append(body["newScore"])
    for totals in seen.values():
        assert len(set(totals)) == len(totals) == 10
