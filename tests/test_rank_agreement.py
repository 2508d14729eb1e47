"""Every way of reading a rank agrees, after 300 users with many ties claimed concurrently through the
production stack: the top 10, every page walk, "me" with its neighbours, a friends list, the period
boards and the socket all give the ranking this test computes by itself from the ledger."""

import json
import random
from collections import Counter

import pytest
import requests
from sqlalchemy import text
from websockets.sync.client import connect

from tests.support import bearer, claim_together, receive_until, wait_until, ws_url

pytestmark = pytest.mark.live

USERS = [f"r{n:03d}" for n in range(300)]
WORKERS = 30


def ledger_ranking(app):
    """The ranking from the ledger alone: each user's claimed points summed, equal sums ordered by whose last
    claim came first, then by user id (descending, as the board breaks a tie of the same microsecond)."""
    from scoreboard.extensions import db

    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT user_id, sum(points) AS score, max(claimed_at) AS reached FROM completions"
                " WHERE status = 'claimed' GROUP BY user_id"
            )
        ).all()
        db.session.rollback()
    by_user = sorted(rows, key=lambda r: r.user_id.encode(), reverse=True)
    ranked = sorted(by_user, key=lambda r: (-r.score, r.reached))  # stable: the user order stays for full ties
    return [(rank, r.user_id, int(r.score)) for rank, r in enumerate(ranked, start=1)]


def triples(entries):
    return [(e["rank"], e["userId"], e["score"]) for e in entries]


def walk(base, headers, period, limit):
    """Every page of ``/api/scores`` in turn; returns the entries and the totals each page reported."""
    entries, totals, cursor = [], set(), None
    while True:
        params = {"period": period, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = requests.get(f"{base}/api/scores", params=params, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        entries += body["entries"]
        totals.add(body["total"])
        cursor = body["next"]
        if not cursor:
            return entries, totals


def test_every_endpoint_page_walk_and_socket_agree_with_the_ledger(app, live_stack, mint, record):
    rng = random.Random(13)
    tokens = {user: mint(user) for user in USERS}
    jobs = []
    for user in USERS:
        # One to four lessons of 50 points each: four possible scores, so almost every score is a tie.
        for _ in range(rng.randint(1, 4)):
            jobs.append((bearer(tokens[user]), record(user)["actionId"]))
    rng.shuffle(jobs)
    jobs = jobs[: len(jobs) - len(jobs) % WORKERS]  # whole rounds; a user may lose a claim, not the test
    answers = claim_together(live_stack, jobs, workers=WORKERS)
    assert Counter(a.status for a in answers) == {200: len(jobs)}

    expected = ledger_ranking(app)
    assert len(expected) > 250 and len({score for _, _, score in expected}) <= 4
    reader = bearer(mint("auditor"))
    top = expected[:10]

    seen = {}

    def quiet():
        r = requests.get(f"{live_stack}/api/scores", params={"limit": 100}, headers=reader, timeout=10)
        seen.update(status=r.status_code, body=r.json())
        return (
            r.status_code == 200
            and r.json()["total"] == len(expected)
            and triples(r.json()["entries"]) == expected[:100]
        )

    def unsettled():
        body = seen.get("body") or {}
        shown = triples(body.get("entries", []))
        first = next((i for i, (a, b) in enumerate(zip(shown, expected, strict=False)) if a != b), 0)
        return (
            f"the board did not settle on the ledger's ranking: {seen.get('status')}, total {body.get('total')}"
            f" of {len(expected)}; from rank {first + 1}: {shown[first : first + 3]} against"
            f" {expected[first : first + 3]}"
        )

    # Under load the worker may take a while to drain 700 claims into four boards.
    wait_until(quiet, timeout=60, message=unsettled)

    r = requests.get(f"{live_stack}/api/score/top", headers=reader, timeout=10)
    assert triples(r.json()) == top

    for period in ("all", "day", "week", "month"):  # every claim fell in today, this week and this month
        for limit in (7, 50, 100):
            entries, totals = walk(live_stack, reader, period, limit)
            assert triples(entries) == expected, (period, limit)
            assert totals == {len(expected)}
        r = requests.get(f"{live_stack}/api/score/top", params={"period": period}, headers=reader, timeout=10)
        assert triples(r.json()) == top, period

    by_user = {user: (rank, score) for rank, user, score in expected}
    for rank, user, score in rng.sample(expected, 25):
        r = requests.get(f"{live_stack}/api/scores/me", params={"radius": 3}, headers=bearer(tokens[user]), timeout=10)
        body = r.json()
        assert (body["userId"], body["rank"], body["score"], body["total"]) == (user, rank, score, len(expected))
        assert triples(body["around"]) == expected[max(0, rank - 4) : rank + 3]

    friends = rng.sample(USERS, 100)
    r = requests.get(f"{live_stack}/api/scores/users", params={"ids": ",".join(friends)}, headers=reader, timeout=10)
    assert triples(r.json()["entries"]) == sorted(
        ((by_user[u][0], u, by_user[u][1]) for u in friends if u in by_user), key=lambda t: t[0]
    )

    # The socket: this week's board, and a watching viewer's own place.
    rank, user, score = expected[137]
    with connect(ws_url(live_stack, "?period=week"), additional_headers=bearer(tokens[user]), open_timeout=5) as ws:
        snapshot = json.loads(ws.recv(timeout=5))
        assert snapshot["type"] == "snapshot" and snapshot["period"] == "week"
        assert triples(snapshot["top"]) == top
        ws.send(json.dumps({"type": "watch"}))
        me, _ = receive_until(ws, lambda m: m.get("type") == "me", 5)
        assert (me["period"], me["rank"], me["score"], me["total"]) == ("week", rank, score, len(expected))
