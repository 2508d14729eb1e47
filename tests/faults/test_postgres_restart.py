"""PostgreSQL stopped and started again under a stream of claims: 503s while it is down, then recovery
without restarting any process (the connection pools replace their dead connections)."""

import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import text

from .conftest import USERS, bearer
from .stack import account, wait_converged, watched_claims

DOWN_FOR = 3.0  # seconds PostgreSQL stays down at least


def test_postgres_restart_answers_503_then_recovers(stack, tokens, reader, service_headers):
    # Enough claims to keep the stream going past the restart (fast answers use them up quickly).
    items = stack.record(service_headers, USERS, 120)
    with watched_claims(stack, items, tokens, reader) as (stream, watchers):
        stream.wait_answered(20, status=200)  # the stream is flowing through both instances
        stack.pg.stop(mode="fast")
        down_at = time.monotonic()
        ready = requests.get(f"{stack.base_b}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "database_unavailable"
        assert ready.json()["error"]["failing"] == ["database"]
        # Down for DOWN_FOR s, and until claims sent while it was down have been answered.
        stream.wait_answered(10, since=down_at + 0.2, at_least=DOWN_FOR)
        starting_at = time.monotonic()
        stack.pg.start()
        up_at = time.monotonic()
        # Claims go on after the return: they must succeed on the same processes.
        stream.wait_answered(10, since=up_at + 1.0)
        stream.stop()
        converged_in = wait_converged(stack, reader, watchers, timeout=10)
        assert requests.get(f"{stack.base_b}/readyz", timeout=10).status_code == 200

    statuses = stream.statuses()
    assert set(statuses) <= {200, 503}, statuses
    down = [o for o in stream.outcomes if down_at + 0.2 <= o.at < starting_at]
    assert down and all(o.status == 503 and o.code == "database_unavailable" for o in down), [
        (round(o.at - down_at, 2), o.status, o.code) for o in down if o.status != 503
    ]
    after = [o for o in stream.outcomes if o.at >= up_at + 1.0]
    assert after and all(o.status == 200 for o in after), [(o.status, o.code) for o in after]
    counts = account(stack, stream, "postgres restart", converged_in)
    assert counts["acknowledged_not_committed"] == 0
    assert counts["lost"] == 0 and counts["committed"] == counts["on_board"]
    assert counts["answered_503"] > 0


def test_claims_right_after_a_quiet_restart_succeed(stack, tokens, service_headers):
    """Claims run on a pool that does not ping its connections: one left dead by a restart is replaced and the
    claim run again, so the first claims after a restart nobody noticed answer 200, not 503."""
    items = stack.record(service_headers, USERS, 6)
    before, after = items[: len(items) // 2], items[len(items) // 2 :]

    def claim_all(batch):
        # Several at once, on both instances, so every web worker holds pooled connections.
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(
                pool.map(
                    lambda item: requests.post(
                        f"{(stack.base_a, stack.base_b)[hash(item[1]) % 2]}/api/action/do",
                        json={"actionId": item[1]},
                        headers=bearer(tokens[item[0]]),
                        timeout=10,
                    ),
                    batch,
                )
            )

    assert {r.status_code for r in claim_all(before)} == {200}
    stack.pg.stop(mode="fast")  # every pooled connection dies; no request comes while it is down
    stack.pg.start()
    answers = claim_all(after)
    assert [r.status_code for r in answers] == [200] * len(after), [r.text for r in answers if r.status_code != 200]
    with stack.engine.connect() as conn:
        claimed = conn.execute(text("SELECT count(*) FROM completions WHERE status = 'claimed'")).scalar()
    assert claimed == len(items)
