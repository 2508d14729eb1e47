"""PostgreSQL stopped and started again under a stream of claims: 503s while it is down, then recovery
without restarting any process (the connection pools replace their dead connections)."""

import time

import requests

from .conftest import USERS
from .stack import account, wait_converged, watched_claims

DOWN_FOR = 3.0


def test_postgres_restart_answers_503_then_recovers(stack, tokens, reader, service_headers):
    items = stack.record(service_headers, USERS, 50)
    with watched_claims(stack, items, tokens, reader) as (stream, watchers):
        time.sleep(1.5)
        stack.pg.stop(mode="fast")
        down_at = time.monotonic()
        ready = requests.get(f"{stack.base_b}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "database_unavailable"
        assert ready.json()["error"]["failing"] == ["database"]
        time.sleep(max(0.0, DOWN_FOR - (time.monotonic() - down_at)))
        starting_at = time.monotonic()
        stack.pg.start()
        up_at = time.monotonic()
        time.sleep(2.0)  # claims go on after the return: they must succeed on the same processes
        stream.stop()
        converged_in = wait_converged(stack, reader, watchers, timeout=10)
        assert requests.get(f"{stack.base_b}/readyz", timeout=10).status_code == 200

    statuses = stream.statuses()
    assert set(statuses) <= {200, 503}, statuses
    down = [o for o in stream.outcomes if down_at + 0.2 <= o.at < starting_at]
    assert down and all(o.status == 503 and o.code == "database_unavailable" for o in down), \
        [(round(o.at - down_at, 2), o.status, o.code) for o in down if o.status != 503]
    after = [o for o in stream.outcomes if o.at >= up_at + 1.0]
    assert after and all(o.status == 200 for o in after), [(o.status, o.code) for o in after]
    counts = account(stack, stream, "postgres restart", converged_in)
    assert counts["acknowledged_not_committed"] == 0
    assert counts["lost"] == 0 and counts["committed"] == counts["on_board"]
    assert counts["answered_503"] > 0
