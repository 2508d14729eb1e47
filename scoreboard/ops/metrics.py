"""Prometheus metrics: the metric objects every module records into, and their exposition.

With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn with several workers, the Celery prefork
pool), each process writes its samples to files there and a scrape aggregates them all;
without it the default in-process registry is served.
"""

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CLAIMS = Counter(
    "scoreboard_claims_total",
    "Claims answered by POST /api/action/do, by outcome (claimed, or the error code answered).",
    ["outcome"],
)
CLAIM_SECONDS = Histogram(
    "scoreboard_claim_duration_seconds",
    "Time to answer POST /api/action/do, from the request's arrival to its response.",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CLAIM_BATCH_SIZE = Histogram(
    "scoreboard_claim_batch_size",
    "Claims sent to PostgreSQL in one statement by a web process (1: a claim that found no statement in flight).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
CLAIM_BATCH_RETRIES = Counter(
    "scoreboard_claim_batch_retries_total",
    "Claim statements sent again after they rolled back, by reason (deadlock, or reconnect: a pooled connection "
    "found dead).",
    ["reason"],
)
BROADCAST_LAG = Histogram(
    "scoreboard_broadcast_lag_seconds",
    "From the claim of the oldest change in a broadcast until this web process has sent it to its sockets.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
OPEN_SOCKETS = Gauge(
    "scoreboard_open_sockets",
    "WebSockets open on /ws/scoreboard.",
    multiprocess_mode="livesum",
)
RECOMPUTES = Counter(
    "scoreboard_board_recomputes_total",
    "Board recomputes run (mirror pending changes, recompute the top list).",
)
BROADCASTS = Counter(
    "scoreboard_board_broadcasts_total",
    "Top lists that changed and were broadcast, by board (all, day, week, month).",
    ["board"],
)
REBUILDS = Counter(
    "scoreboard_board_rebuilds_total",
    "Rebuilds of the Redis mirror from the database (each reloads every board found missing, or all of them on a"
    " reconcile), by reason (reconcile, or mirror_missing).",
    ["reason"],
)
CACHE = Counter(
    "scoreboard_top_cache_total",
    "Top-list reads by where they were answered from: memory (the web process's copy), hit (Redis), "
    "miss (the database).",
    ["result"],
)
RATE_LIMITED = Counter(
    "scoreboard_rate_limit_refusals_total",
    "Requests refused with 429 by the rate limiter, by endpoint.",
    ["endpoint"],
)
RECONCILE_RUNS = Counter(
    "scoreboard_reconcile_runs_total",
    "Reconcile runs (full rebuild of the mirror and cached top list from the database).",
)
RECONCILE_DRIFT = Counter(
    "scoreboard_reconcile_drift_total",
    "Mirror entries (and cached top lists) that reconcile found differing from the database, and fixed.",
)
READINESS_CHECKS = Counter(
    "scoreboard_readiness_checks_total",
    "Readiness checks run against the database, Redis and the broker (GET /readyz reuses one for a second).",
)
OUTBOX_PENDING = Gauge(
    "scoreboard_outbox_pending",
    "Committed score changes not yet mirrored to the board, as last counted by the sweep.",
    multiprocess_mode="mostrecent",
)
REDIS_BREAKER_OPEN = Gauge(
    "scoreboard_redis_breaker_open",
    "1 while a process does not wait on Redis (its circuit breaker opened after a timeout or refused "
    "connection; one trial request later decides), else 0. The largest over live processes.",
    multiprocess_mode="livemax",
)

ANOMALY_SCANS = Counter(
    "scoreboard_anomaly_scans_total",
    "Anomaly scans run (not dry runs), by outcome: judged, population_too_small (too few users to judge, nobody "
    "flagged), or failed.",
    ["outcome"],
)
ANOMALY_SCAN_SECONDS = Histogram(
    "scoreboard_anomaly_scan_duration_seconds",
    "Time an anomaly scan took: reading the window's features, judging them and recording the suspects.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
ANOMALY_USERS_SCORED = Counter(
    "scoreboard_anomaly_users_scored_total",
    "Users judged by anomaly scans (each scan adds its population).",
)
ANOMALY_SUSPECTS = Counter(
    "scoreboard_anomaly_suspects_total",
    "Suspects by event: flagged (a new suspect, whatever the action), held (taken off the boards), then reviewed: "
    "cleared or confirmed.",
    ["event"],
)


def multiprocess_dir():
    """The multiprocess directory, or None in single-process mode."""
    return os.environ.get(MULTIPROC_ENV) or None


def registry():
    """The registry to expose: every process's samples in multiprocess mode, else this process's."""
    if multiprocess_dir() is None:
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    return collected


def exposition():
    """``(body, content type)`` of a scrape in the Prometheus text format."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def reset_multiprocess_dir():
    """Empty the multiprocess directory before a server starts: stale files would add old counts."""
    path = multiprocess_dir()
    if path is None:
        return
    Path(path).mkdir(parents=True, exist_ok=True)
    for entry in Path(path).glob("*.db"):
        entry.unlink(missing_ok=True)


def mark_dead(pid):
    """Drop a dead process's live gauges (open sockets) from the aggregate."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


def serve(port, addr="0.0.0.0"):
    """Serve ``/metrics`` on ``port`` from a background thread (for the Celery worker)."""
    return start_http_server(int(port), addr=addr, registry=registry())
