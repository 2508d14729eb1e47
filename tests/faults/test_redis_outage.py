"""Redis stopped for 5 s during a stream of claims (it comes back empty: no persistence), and Redis
frozen for 5 s (connections hang instead of being refused: only client timeouts help).

``SCOREBOARD_FAULT_REDIS_OUTAGE=40`` makes the outage longer (it must still converge within 10 s).
"""

import os
import time

import requests

from .conftest import USERS
from .stack import account, wait_converged, watched_claims

OUTAGE = float(os.environ.get("SCOREBOARD_FAULT_REDIS_OUTAGE", 5))


def test_redis_outage_loses_nothing(stack, tokens, reader, service_headers):
    items = stack.record(service_headers, USERS, int(12 * OUTAGE))
    with watched_claims(stack, items, tokens, reader) as (stream, watchers):
        stream.wait_answered(20, status=200)  # the stream is flowing through both instances
        stack.redis.stop()
        down_at = time.monotonic()
        ready = requests.get(f"{stack.base_a}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["error"]["failing"] == ["redis", "broker"]
        # Down for OUTAGE s, and until claims sent while it was down have been answered.
        stream.wait_answered(10, since=down_at, at_least=OUTAGE, timeout=OUTAGE + 30)
        # Stop claiming as Redis returns: only the outbox sweep can bring the outage's claims to the board.
        stream.stop()
        stack.redis.start()
        back_at = time.monotonic()
        converged_in = wait_converged(stack, reader, watchers, timeout=10)
        assert requests.get(f"{stack.base_a}/readyz", timeout=10).status_code == 200

    outage = [o for o in stream.outcomes if down_at <= o.at < back_at]
    assert outage, "no claim was sent while Redis was down"
    assert set(stream.statuses()) <= {200, 503}, stream.statuses()
    assert all(o.code in ("ok", "redis_unavailable", "broker_unavailable") for o in stream.outcomes), {
        o.code for o in stream.outcomes
    }
    counts = account(stack, stream, "redis outage", converged_in)
    assert counts["acknowledged_not_committed"] == 0
    assert counts["lost"] == 0
    assert counts["committed"] == counts["on_board"] > 0


def test_frozen_redis_answers_in_bounded_time_and_loses_nothing(stack, tokens, reader, service_headers):
    items = stack.record(service_headers, USERS, 40)
    with watched_claims(stack, items, tokens, reader, threads=4) as (stream, watchers):
        try:
            stream.wait_answered(20, status=200)  # the stream is flowing through both instances
            stack.redis.freeze()
            frozen_at = time.monotonic()
            ready = requests.get(f"{stack.base_b}/readyz", timeout=15)
            assert ready.status_code == 503 and "redis" in ready.json()["error"]["failing"]
            # Frozen for OUTAGE s, and until a claim from each thread sent while it was frozen has been answered.
            stream.wait_answered(4, since=frozen_at, at_least=OUTAGE, timeout=OUTAGE + 30)
            stream.stop()
            stack.redis.thaw()
            converged_in = wait_converged(stack, reader, watchers, timeout=10)
        finally:
            stack.redis.thaw()

    during = [o for o in stream.outcomes if o.at >= frozen_at]
    assert during, "no claim was sent while Redis was frozen"
    assert set(stream.statuses()) <= {200, 503}, stream.statuses()
    slowest = max(o.took for o in stream.outcomes)
    assert slowest < 8, f"a claim took {slowest:.1f}s: a Redis call waited without a timeout"
    counts = account(stack, stream, "redis frozen", converged_in)
    print(f"[redis frozen] slowest claim answer {slowest:.2f}s")
    assert counts["acknowledged_not_committed"] == 0
    assert counts["lost"] == 0
    assert counts["committed"] == counts["on_board"] > 0
