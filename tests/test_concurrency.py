"""Exactness under real concurrent HTTP requests against the production stack."""

from collections import Counter, defaultdict
from itertools import accumulate

import pytest
from sqlalchemy import select

from scoreboard.extensions import db
from scoreboard.models import Completion, Score
from tests.support import bearer, claim_together, peak_in_flight, round_peaks

pytestmark = pytest.mark.live


def test_fifty_concurrent_claims_of_one_action_id_succeed_once(app, live_stack, mint, record):
    action_id = record("racer", "win-challenge")["actionId"]
    headers = bearer(mint("racer"))

    answers = claim_together(live_stack, [(headers, action_id)] * 50, workers=50)

    # A race only if they really ran together: most were in flight at once.
    assert peak_in_flight(answers) >= 25, f"at most {peak_in_flight(answers)} of 50 claims were in flight at once"
    statuses = Counter(a.status for a in answers)
    assert statuses == {200: 1, 409: 49}, statuses
    assert [a.body for a in answers if a.status == 200] == [{"success": True, "newScore": 250}]
    assert all(a.body["error"]["code"] == "already_claimed" for a in answers if a.status == 409)
    with app.app_context():
        assert db.session.scalar(select(Score.score).where(Score.user_id == "racer")) == 250
        assert db.session.scalar(select(Completion.status).where(Completion.id == action_id)) == "claimed"


def test_five_hundred_concurrent_claims_by_fifty_users_are_exact(app, live_stack, mint, record):
    actions = ["complete-lesson", "pass-quiz", "win-challenge", "share-result"]
    jobs, points, expected = [], [], defaultdict(int)
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
            points.append((user, completion["points"]))

    # Rounds of 50: each user's ten claims are in the same round, racing for the same score row.
    answers = claim_together(live_stack, jobs, workers=50)

    peaks = round_peaks(answers, 50)
    assert min(peaks) >= 25, f"claims in flight at once, by round: {peaks}"
    assert Counter(a.status for a in answers) == {200: 500}
    with app.app_context():
        scores = dict(db.session.execute(select(Score.user_id, Score.score)).all())
    assert scores == dict(expected)
    # Each user's answers saw every intermediate total exactly once: no lost or doubled increment. Ordered
    # by total (the order the claims committed in), each total is the one before plus that claim's points.
    applied = defaultdict(list)
    for (user, gained), answer in zip(points, answers, strict=True):
        applied[user].append((answer.body["newScore"], gained))
    for user, totals in applied.items():
        totals.sort()
        assert [total for total, _ in totals] == list(accumulate(gained for _, gained in totals)), (user, totals)
        assert totals[-1][0] == expected[user]
