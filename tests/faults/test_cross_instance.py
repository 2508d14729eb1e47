"""Two web instances: a claim made through one reaches a socket held open on the other."""

import time

import requests

from tests.support import bearer

from .conftest import USERS
from .stack import POINTS, BoardWatcher


def test_socket_on_b_receives_claim_made_through_a(stack, tokens, service_headers):
    user = USERS[0]
    [(_, action_id)] = stack.record(service_headers, [user], 1)
    watcher = BoardWatcher(stack.base_b, tokens[user]).start()
    try:
        assert all(entry[0] != user for entry in watcher.top)
        claimed_at = time.monotonic()
        r = requests.post(
            f"{stack.base_a}/api/action/do", json={"actionId": action_id}, headers=bearer(tokens[user]), timeout=5
        )
        assert r.status_code == 200 and r.json() == {"success": True, "newScore": POINTS}
        while watcher.top != [(user, POINTS)]:
            assert time.monotonic() - claimed_at < 1.0, f"instance B's socket still shows {watcher.top}"
            time.sleep(0.005)
        print(f"\n[cross-instance] claim on A -> socket on B in {time.monotonic() - claimed_at:.3f}s")
        assert watcher.closes == []
    finally:
        watcher.stop()
