"""Metrics from the real processes: gunicorn workers aggregated through PROMETHEUS_MULTIPROC_DIR, and the
Celery worker's own endpoint."""

import requests
from websockets.sync.client import connect

from tests.support import bearer, delta, scrape, scraped, wait_until, ws_url

from .conftest import USERS
from .stack import BoardWatcher


def test_metrics_add_up_across_processes(stack, tokens, reader, service_headers):
    web_a, web_b = f"{stack.base_a}/metrics", f"{stack.base_b}/metrics"
    worker = f"http://127.0.0.1:{stack.worker_metrics_port}/metrics"
    items = stack.record(service_headers, USERS[:4], 5)
    watcher = BoardWatcher(stack.base_b, reader).start()  # B's relay is listening
    before_a, before_b, before_worker = scrape(web_a), scrape(web_b), scrape(worker)
    try:
        # Fresh connections, so instance A's two gunicorn workers both take claims.
        for user, action_id in items:
            r = requests.post(
                f"{stack.base_a}/api/action/do", json={"actionId": action_id}, headers=bearer(tokens[user]), timeout=5
            )
            assert r.status_code == 200
        repeat = requests.post(
            f"{stack.base_a}/api/action/do",
            json={"actionId": items[0][1]},
            headers=bearer(tokens[items[0][0]]),
            timeout=5,
        )
        assert repeat.status_code == 409
        wait_until(lambda: sum(score for _, score in watcher.top) == 50 * len(items), message="the board on B")
    finally:
        watcher.stop()
    after_a = scrape(web_a)
    assert delta(after_a, before_a, "scoreboard_claims_total", outcome="claimed") == len(items)
    assert delta(after_a, before_a, "scoreboard_claims_total", outcome="already_claimed") == 1
    assert delta(after_a, before_a, "scoreboard_claim_duration_seconds_count") == len(items) + 1
    # Each broadcast reached B's relay, which measured how long after the claim.
    wait_until(
        lambda: delta(scrape(web_b), before_b, "scoreboard_broadcast_lag_seconds_count") >= 1,
        message="no broadcast lag observed on B",
    )
    # B's one worker holds the board in memory (its relay is subscribed): reads are answered from there.
    before_reads = scrape(web_b)
    for _ in range(3):
        assert requests.get(f"{stack.base_b}/api/score/top", headers=bearer(reader), timeout=5).status_code == 200
    assert delta(scrape(web_b), before_reads, "scoreboard_top_cache_total", result="memory") == 3
    after_worker = scrape(worker)
    recomputes = delta(after_worker, before_worker, "scoreboard_board_recomputes_total")
    broadcasts = delta(after_worker, before_worker, "scoreboard_board_broadcasts_total", board="all")
    assert 1 <= broadcasts <= recomputes <= len(items) + 5  # coalesced: never more than one per claim (+ sweeps)


def test_open_sockets_gauge_sums_workers_and_drops_closed_ones(stack, reader):
    url = f"{stack.base_a}/metrics"

    def open_sockets():
        """The gauge as instance A reports it."""
        return scraped(scrape(url), "scoreboard_open_sockets")

    sockets = [connect(ws_url(stack.base_a), additional_headers=bearer(reader), open_timeout=5) for _ in range(4)]
    try:
        for ws in sockets:
            ws.recv(timeout=5)
        assert open_sockets() == 4
    finally:
        for ws in sockets:
            ws.close()
    wait_until(lambda: open_sockets() == 0, message="closed sockets still counted")


def test_rate_limit_refusals_are_counted(stack):
    url = f"{stack.base_a}/metrics"
    before = scrape(url)
    statuses = [
        requests.post(
            f"{stack.base_a}/api/auth/login", json={"username": "nobody", "password": "x"}, timeout=5
        ).status_code
        for _ in range(7)
    ]
    assert statuses.count(429) >= 1  # the login limit is 5 a minute per address
    refused = delta(scrape(url), before, "scoreboard_rate_limit_refusals_total", endpoint="auth.login")
    assert refused == statuses.count(429)
