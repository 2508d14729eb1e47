"""``/metrics`` in one process (the default registry): each metric moves when what it counts happens.

The multiprocess aggregation under gunicorn is checked against the real stack in
``tests/faults/test_stack_metrics.py``.
"""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import bearer, sample

METRICS = (
    "scoreboard_claims",
    "scoreboard_claim_duration_seconds",
    "scoreboard_broadcast_lag_seconds",
    "scoreboard_open_sockets",
    "scoreboard_board_recomputes",
    "scoreboard_board_broadcasts",
    "scoreboard_board_rebuilds",
    "scoreboard_top_cache",
    "scoreboard_rate_limit_refusals",
    "scoreboard_reconcile_runs",
    "scoreboard_reconcile_drift",
    "scoreboard_outbox_pending",
)


def test_metrics_endpoint_speaks_prometheus(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    families = {family.name for family in text_string_to_metric_families(r.get_data(as_text=True))}
    assert set(METRICS) <= families


def test_claims_are_counted_by_outcome_and_timed(client, mint, record):
    alice = bearer(mint("alice"))
    action_id = record("alice")["actionId"]
    claimed, repeated = (
        sample("scoreboard_claims_total", outcome="claimed"),
        sample("scoreboard_claims_total", outcome="already_claimed"),
    )
    missing = sample("scoreboard_claims_total", outcome="action_not_found")
    timed = sample("scoreboard_claim_duration_seconds_count")
    assert client.post("/api/action/do", json={"actionId": action_id}, headers=alice).status_code == 200
    assert client.post("/api/action/do", json={"actionId": action_id}, headers=alice).status_code == 409
    assert client.post("/api/action/do", json={"actionId": "no-such-action"}, headers=alice).status_code == 404
    assert sample("scoreboard_claims_total", outcome="claimed") == claimed + 1
    assert sample("scoreboard_claims_total", outcome="already_claimed") == repeated + 1
    assert sample("scoreboard_claims_total", outcome="action_not_found") == missing + 1
    assert sample("scoreboard_claim_duration_seconds_count") == timed + 3
    # Not a claim: not counted as one.
    client.get("/api/score/top", headers=alice)
    assert sample("scoreboard_claim_duration_seconds_count") == timed + 3


def test_recomputes_broadcasts_and_cache_results(app, client, mint, record):
    from sqlalchemy import text

    from scoreboard.extensions import db

    alice = bearer(mint("alice"))
    recomputes = sample("scoreboard_board_recomputes_total")
    broadcasts = sample("scoreboard_board_broadcasts_total", board="all")
    rebuilds = sample("scoreboard_board_rebuilds_total", reason="mirror_missing")
    hits, misses = (
        sample("scoreboard_top_cache_total", result="hit"),
        sample("scoreboard_top_cache_total", result="miss"),
    )

    assert client.get("/api/score/top", headers=alice).status_code == 200  # empty cache: the database
    assert sample("scoreboard_top_cache_total", result="miss") == misses + 1
    client.get("/api/score/top", headers=alice)  # re-cached by the miss
    assert sample("scoreboard_top_cache_total", result="hit") == hits + 1

    client.post("/api/action/do", json={"actionId": record("alice")["actionId"]}, headers=alice)
    assert sample("scoreboard_board_recomputes_total") == recomputes + 1
    assert sample("scoreboard_board_broadcasts_total", board="all") == broadcasts + 1
    assert sample("scoreboard_board_rebuilds_total", reason="mirror_missing") == rebuilds + 1  # Redis was empty
    # A claim that leaves the top list as it was (a hidden user's) is recomputed but not broadcast.
    hidden = record("bob")["actionId"]
    with app.app_context():
        db.session.execute(text("UPDATE users SET status = 'hidden' WHERE id = 'bob'"))
        db.session.commit()
    assert client.post("/api/action/do", json={"actionId": hidden}, headers=bearer(mint("bob"))).status_code == 200
    assert sample("scoreboard_board_recomputes_total") == recomputes + 2
    assert sample("scoreboard_board_broadcasts_total", board="all") == broadcasts + 1


@pytest.mark.unit
def test_broadcast_lag_is_observed_when_a_relay_delivers(offline_app):
    import time

    from scoreboard.live.relay import Relay
    from scoreboard.stores.board_cache import board_message

    relay = Relay(offline_app)
    count, total = sample("scoreboard_broadcast_lag_seconds_count"), sample("scoreboard_broadcast_lag_seconds_sum")
    changed = int(time.time() * 1000) - 250
    relay.deliver(board_message("update", 5, "[]", changed))
    relay.deliver(board_message("update", 6, "[]"))  # a re-sync: no claim time, nothing to measure
    assert sample("scoreboard_broadcast_lag_seconds_count") == count + 1
    assert 0.25 <= sample("scoreboard_broadcast_lag_seconds_sum") - total < 5
