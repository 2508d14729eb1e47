"""Redis stopped for 5 s during a stream of claims (it comes back empty: no persistence), and Redis
frozen for 5 s (connections hang instead of being refused: only client timeouts help, and the circuit
breaker that stops waiting after the first).

``SCOREBOARD_FAULT_REDIS_OUTAGE=40`` makes the outage longer (it must still converge within 10 s).
"""

import os
import time

import requests

from tests.support import scrape, scraped, wait_until

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


def breaker_open(base):
    """``scoreboard_redis_breaker_open`` on one web instance (the largest over its worker processes)."""
    return scraped(scrape(f"{base}/metrics"), "scoreboard_redis_breaker_open")


def percentile(values, fraction):
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def test_frozen_redis_answers_fast_through_the_breaker_and_loses_nothing(stack, tokens, reader, service_headers):
    """After the first timeout each process stops waiting on Redis (its circuit breaker opens), so claims keep
    answering 200 at once while Redis hangs; the board catches up once it thaws."""
    items = stack.record(service_headers, USERS, int(12 * OUTAGE))
    with watched_claims(stack, items, tokens, reader, interval=0.05, threads=4) as (stream, watchers):
        try:
            stream.wait_answered(20, status=200)  # the stream is flowing through both instances
            assert breaker_open(stack.base_a) == breaker_open(stack.base_b) == 0
            stack.redis.freeze()
            frozen_at = time.monotonic()
            ready = requests.get(f"{stack.base_b}/readyz", timeout=15)
            assert ready.status_code == 503 and "redis" in ready.json()["error"]["failing"]
            wait_until(
                lambda: breaker_open(stack.base_a) == breaker_open(stack.base_b) == 1,
                timeout=10,
                message="the breakers did not open",
            )
            opened_in = time.monotonic() - frozen_at
            # Frozen for OUTAGE s, and until claims sent while it was frozen have been answered.
            stream.wait_answered(40, since=frozen_at, at_least=OUTAGE, timeout=OUTAGE + 30)
            stream.stop()
            stack.redis.thaw()
            thawed_at = time.monotonic()
            converged_in = wait_converged(stack, reader, watchers, timeout=10)
            wait_until(
                lambda: breaker_open(stack.base_a) == breaker_open(stack.base_b) == 0,
                timeout=15,
                message="the breakers did not close after Redis thawed",
            )
            closed_in = time.monotonic() - thawed_at
        finally:
            stack.redis.thaw()

    during = [o for o in stream.outcomes if frozen_at <= o.at < thawed_at]
    assert len(during) >= 40, f"only {len(during)} claims sent while Redis was frozen"
    assert all(o.status == 200 for o in stream.outcomes), stream.statuses()
    # The claims in flight at the freeze, and the first of each process, wait out one timeout; later ones do not
    # wait (but a trial, one per process every SCOREBOARD_REDIS_BREAKER_OPEN, meets a still frozen Redis).
    after_first = [o for o in during if o.at >= frozen_at + 1.0]
    p95 = percentile([o.took for o in after_first], 0.95)
    slowest = max(o.took for o in stream.outcomes)
    counts = account(stack, stream, "redis frozen", converged_in)
    print(
        f"[redis frozen] during={len(during)} p50_s={percentile([o.took for o in during], 0.5):.3f} "
        f"p95_after_first_s={p95:.3f} p95_all_s={percentile([o.took for o in during], 0.95):.3f} "
        f"slowest_s={slowest:.2f} over_0.5s={sum(1 for o in during if o.took >= 0.5)} "
        f"breakers_open_after_s={opened_in:.2f} closed_after_thaw_s={closed_in:.2f}"
    )
    assert p95 < 0.5, f"claims answered p95 {p95:.3f}s while Redis was frozen"
    assert slowest < 2.5, f"a claim took {slowest:.2f}s: it waited out more than one Redis timeout"
    assert counts["acknowledged_not_committed"] == 0
    assert counts["lost"] == 0
    assert counts["committed"] == counts["on_board"] > 0
