"""The analytics on a ledger of 10 million rows: the rollup, each range's latency, and the claim's cost.

``python -m bench.analytics [--rows 10000000] [--users 200000] [--calls 30] [--claims 2000]`` (``make
bench-analytics``). In a database of its own (``scoreboard_bench_analytics`` on the local PostgreSQL,
dropped at the end):

1. Migrates it, loads the catalog and writes the ledger with ``INSERT ... SELECT FROM generate_series``
   (the ledger's indexes are dropped during the load and built after it, as a restore would): completions
   recorded evenly over the 35 days before now, 70% claimed after 0-50 minutes (skewed short), 5% voided
   (half of them after their claim), the rest expired or, in the last hour, claimable; refusals.
2. Runs the rollup from nothing (the first run after an upgrade) and times it, then once more (nothing to do).
3. Times ``GET /api/admin/analytics`` for each range through the Flask test client, ``--calls`` times each,
   the ranges in turn (p50 and p99 of the calls after three warm-ups).
4. Times the claim statement (``scoring.claims``' own, on the claims bind) over fresh completions, in blocks:
   with the analytics indexes while the rollup runs over and over in another process, and without the
   indexes and the rollup; two blocks of each, alternating. Medians of each block and of all.

Prints a table and writes ``bench/results/analytics.json``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("SCOREBOARD_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB = "scoreboard_bench_analytics"
URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB}"
RESULTS = ROOT / "bench" / "results" / "analytics.json"
ANALYTICS_INDEXES = ("ix_completions_unclaimed_created", "ix_completions_voided")
DAYS = 35

# Action keys and their share of completions.
ACTIONS = (
    ("daily-login", 0.35),
    ("complete-lesson", 0.3),
    ("pass-quiz", 0.2),
    ("share-result", 0.1),
    ("win-challenge", 0.05),
)


def _env() -> dict:
    return {
        "SCOREBOARD_DATABASE_URL": URL,
        "SCOREBOARD_JWT_SECRET_KEY": "bench-analytics-secret-0123456789-abcdefghij",
        "SCOREBOARD_LOG_LEVEL": "WARNING",
        "SCOREBOARD_RATE_LIMIT_ENABLED": "false",
    }


def _action_case() -> str:
    """A SQL CASE picking an action key from ``r`` (a uniform random number) by the shares above."""
    whens, upto = [], 0.0
    for key, share in ACTIONS[:-1]:
        upto += share
        whens.append(f"WHEN r < {upto:.4f} THEN '{key}'")
    return f"CASE {' '.join(whens)} ELSE '{ACTIONS[-1][0]}' END"


LEDGER_CHUNK = """
INSERT INTO completions (id, user_id, action_key, points, status, created_at, expires_at, claimed_at, voided_at)
SELECT id, user_id, action_key, a.points,
       CASE WHEN fate < 0.70 THEN (CASE WHEN fate < 0.025 THEN 'void' ELSE 'claimed' END)
            WHEN fate < 0.725 THEN 'void'
            WHEN created_at + interval '1 hour' <= :now THEN 'expired'
            ELSE 'pending' END,
       created_at, created_at + interval '1 hour',
       CASE WHEN fate < 0.70 AND created_at + delay < :now THEN created_at + delay END,
       CASE WHEN fate < 0.025 OR fate >= 0.70 AND fate < 0.725
            THEN least(created_at + delay + interval '1 hour', :now) END
FROM (
    SELECT md5('c' || i::text) AS id,
           'u' || (1 + floor(power(random(), 2) * :users))::bigint AS user_id,
           {action} AS action_key,
           :now - (random() * interval '{days} days') AS created_at,
           random() AS fate,
           power(random(), 3) * interval '50 minutes' AS delay
    FROM (SELECT i, random() AS r FROM generate_series(:lo, :hi - 1) AS i) s
) c JOIN actions a ON a.key = c.action_key
"""
REFUSALS = """
INSERT INTO claim_refusals (user_id, at, reason)
SELECT 'u' || (1 + floor(random() * :users))::bigint, :now - random() * interval '{days} days',
       (ARRAY['already_claimed', 'action_expired', 'action_not_found', 'action_void'])[1 + floor(random() * 4)::int]
FROM generate_series(1, :n)
"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _create_database() -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB}"'))
    admin.dispose()


def _drop_database() -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
    admin.dispose()


def _load(engine, rows: int, users: int, now: datetime) -> float:
    """Write the users, scores and ledger; the ledger's indexes are dropped for the load and built after it."""
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        conn.execute(
            text(
                "INSERT INTO users (id, display_name, status, roles, created_at) SELECT 'u' || i, 'Player ' || i, "
                "'active', '', :now - interval '40 days' + i * interval '1 second' FROM generate_series(1, :n) i"
            ),
            {"n": users, "now": now},
        )
        conn.execute(text("INSERT INTO scores (user_id, score, reached_at) SELECT id, 0, created_at FROM users"))
        indexes = conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'completions' AND indexname LIKE 'ix_%'")
        ).all()
        for name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
        conn.execute(text("ALTER TABLE completions DROP CONSTRAINT pk_completions"))
    chunk = 1_000_000
    statement = text(LEDGER_CHUNK.format(action=_action_case(), days=DAYS))
    for lo in range(0, rows, chunk):
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # no per-row foreign key checks
            conn.execute(statement, {"lo": lo, "hi": min(lo + chunk, rows), "users": users, "now": now})
        print(f"  ledger rows: {min(lo + chunk, rows):,}", flush=True)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        conn.execute(text(REFUSALS.format(days=DAYS)), {"users": users, "now": now, "n": rows // 100})
    with engine.connect() as conn:
        conn.execute(text("SET statement_timeout = 0"))
        conn.execute(text("SET maintenance_work_mem = '512MB'"))
        conn.execute(text("ALTER TABLE completions ADD CONSTRAINT pk_completions PRIMARY KEY (id)"))
        for _, definition in indexes:
            conn.execute(text(definition))
        conn.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET statement_timeout = 0"))
        conn.execute(text("VACUUM ANALYZE"))
    return time.monotonic() - started


# The other process of the claim-cost blocks: the rollup's windows over and over, rewinding its watermarks.
ROLLUP_LOOP = """
import sys, time
from datetime import timedelta
from sqlalchemy import create_engine, text
from scoreboard.analytics.rollup import run_rollup, floor_hour
from scoreboard.periods import clock
engine = create_engine(sys.argv[1])
while True:
    now = clock()
    with engine.begin() as conn:
        conn.execute(text("UPDATE analytics_state SET at = :at"), {"at": floor_hour(now) - timedelta(hours=3)})
    run_rollup(engine, now, timedelta(minutes=5))
"""


def _claim_blocks(app, engine, claims: int, users: int) -> dict:
    """The claim statement's time per claim, in blocks with and without the analytics indexes and rollup."""
    from scoreboard.extensions import db
    from scoreboard.periods import clock, current_periods
    from scoreboard.scoring.claims import _compiled_claim

    # Indexes with and without, alternating; then the rollup running meanwhile, over and over (a stress: beat
    # runs it every 5 minutes, and it has work once an hour).
    blocks = ("indexes", "none", "indexes", "none", "indexes", "none", "rollup", "rollup")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO completions (id, user_id, action_key, points, status, created_at, expires_at) "
                "SELECT 'claim' || i, 'u' || (1 + (i * 7919) % :m), 'pass-quiz', 100, 'pending', now(), "
                "now() + interval '1 hour' FROM generate_series(1, :n) i"
            ),
            {"n": claims * len(blocks), "m": min(users, 50000)},
        )
    definitions = {}
    with engine.connect() as conn:
        for name in ANALYTICS_INDEXES:
            definitions[name] = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}
            ).scalar()
    results = {"indexes": [], "none": [], "rollup": []}
    per_block = []
    with app.app_context():
        claims_engine = db.engines["claims"]
        keys = [p.key for p in current_periods()]
        for b, kind in enumerate(blocks):
            loop = None
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("SET statement_timeout = 0"))
                for name, definition in definitions.items():
                    present = conn.execute(text("SELECT 1 FROM pg_indexes WHERE indexname = :n"), {"n": name}).scalar()
                    if kind != "none" and not present:
                        conn.execute(text(definition.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY")))
                    if kind == "none" and present:
                        conn.execute(text(f'DROP INDEX "{name}"'))
            if kind == "rollup":
                loop = subprocess.Popen(
                    [sys.executable, "-c", ROLLUP_LOOP, URL], cwd=ROOT, env={**os.environ, **_env()}
                )
                time.sleep(2)
            times = []
            try:
                with claims_engine.connect() as conn:
                    compiled = _compiled_claim(conn.dialect)
                    for i in range(b * claims + 1, (b + 1) * claims + 1):
                        params = {
                            "p_action": f"claim{i}",
                            "p_user": f"u{1 + (i * 7919) % min(users, 50000)}",
                            "p_now": clock(),
                            "p_ip": "127.0.0.1",
                            "p_agent": "bench",
                            "p_periods": keys,
                        }
                        started = time.perf_counter()
                        score = conn.exec_driver_sql(compiled.string, compiled.construct_params(params)).scalar()
                        times.append(time.perf_counter() - started)
                        assert score is not None, f"claim{i} failed"
            finally:
                if loop is not None:
                    loop.terminate()
                    loop.wait(timeout=30)
            kept = times[50:]  # warm-up
            results[kind] += kept
            per_block.append(
                {"kind": kind, "p50_ms": statistics.median(kept) * 1000, "p99_ms": _pct(kept, 0.99) * 1000}
            )
            print(f"  claims {kind} analytics: p50 {per_block[-1]['p50_ms']:.3f} ms", flush=True)
    summary = {k: {"p50_ms": statistics.median(v) * 1000, "p99_ms": _pct(v, 0.99) * 1000} for k, v in results.items()}
    return {
        "blocks": per_block,
        "all": summary,
        "indexes_over_none_p50": summary["indexes"]["p50_ms"] / summary["none"]["p50_ms"],
        "rollup_over_indexes_p50": summary["rollup"]["p50_ms"] / summary["indexes"]["p50_ms"],
    }


def main() -> None:
    """Build the ledger, roll it up, time the ranges and the claim; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--claims", type=int, default=2000, help="claims per block (four blocks)")
    parser.add_argument("--keep", action="store_true", help="leave the database in place")
    parser.add_argument("--skip-claims", action="store_true", help="leave out the claim statement's blocks")
    args = parser.parse_args()
    os.environ.update(_env())
    for name in ("SCOREBOARD_REDIS_URL", "SCOREBOARD_BROKER_URL"):
        os.environ.pop(name, None)  # in-process stand-ins: the bench measures PostgreSQL's part

    started_at = datetime.now(UTC)
    _create_database()
    try:
        from flask_migrate import upgrade

        from scoreboard import create_app
        from scoreboard.analytics.rollup import run_rollup
        from scoreboard.extensions import db
        from scoreboard.scoring.catalog import load_catalog
        from scoreboard.security.tokens import mint_token

        app = create_app({"TESTING": True})
        with app.app_context():
            upgrade()
            load_catalog(ROOT / "scoreboard" / "default_catalog.json")
        engine = create_engine(URL)
        now = datetime.now(UTC)
        print(f"writing {args.rows:,} ledger rows for {args.users:,} users ...", flush=True)
        load_seconds = _load(engine, args.rows, args.users, now)
        with engine.connect() as conn:
            counted = conn.execute(text("SELECT count(*) FROM completions")).scalar()
            size = conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('completions'))")).scalar()

        print("rolling up ...", flush=True)
        with app.app_context():
            rolled = time.monotonic()
            first = run_rollup(engine, datetime.now(UTC), app.config["ANALYTICS_LAG"])
            rollup_seconds = time.monotonic() - rolled
            again = time.monotonic()
            second = run_rollup(engine, datetime.now(UTC), app.config["ANALYTICS_LAG"])
            again_seconds = time.monotonic() - again
            token = mint_token("ops", ["admin"], None)
            lag = app.config["ANALYTICS_LAG"]
        with engine.connect() as conn:
            rollup_rows = {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("analytics_hours", "analytics_delays", "analytics_players", "analytics_activity")
            }

        print("timing the ranges ...", flush=True)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        ranges = ("24h", "7d", "30d")
        latencies = {r: [] for r in ranges}
        answers = {}
        for call in range(args.calls + 3):
            for range_key in ranges:
                t0 = time.perf_counter()
                response = client.get(f"/api/admin/analytics?range={range_key}", headers=headers)
                elapsed = time.perf_counter() - t0
                assert response.status_code == 200, response.get_json()
                if call >= 3:
                    latencies[range_key].append(elapsed)
                answers[range_key] = response.get_json()
        timing = {
            r: {"p50_ms": statistics.median(v) * 1000, "p99_ms": _pct(v, 0.99) * 1000, "calls": len(v)}
            for r, v in latencies.items()
        }

        # (It adds that hour's claims to their recording hours twice: the figures above are read already.)
        # What beat's run does once an hour: one hour's window (rewound by an hour, rolled up again).
        hour_runs = []
        for _ in range(3):
            with engine.begin() as conn:
                conn.execute(text("UPDATE analytics_state SET at = at - interval '1 hour'"))
            t0 = time.monotonic()
            run_rollup(engine, datetime.now(UTC), lag)
            hour_runs.append(time.monotonic() - t0)
        hour_seconds = statistics.median(hour_runs)
        for r, t in timing.items():
            print(f"  {r}: p50 {t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms", flush=True)
        print(f"  rollup from nothing {rollup_seconds:.1f} s, {first.windows} windows", flush=True)
        print("timing the claim statement ...", flush=True)
        claims = None if args.skip_claims else _claim_blocks(app, engine, args.claims, args.users)
        engine.dispose()
        with app.app_context():
            db.engine.dispose()
            for bound in db.engines.values():
                bound.dispose()
    finally:
        if not args.keep:
            _drop_database()

    result = {
        "when": started_at.isoformat(timespec="minutes"),
        "command": "python -m bench.analytics " + " ".join(sys.argv[1:]),
        "rows": counted,
        "users": args.users,
        "ledger_size": size,
        "load_seconds": round(load_seconds, 1),
        "rollup": {
            "first_seconds": round(rollup_seconds, 1),
            "windows": first.windows,
            "second_seconds": round(again_seconds, 3),
            "second_windows": second.windows,
            "hour_window_seconds": round(hour_seconds, 3),
            "rows": rollup_rows,
        },
        "ranges": timing,
        "figures_30d": {
            k: answers["30d"][k] for k in ("completions", "newPlayers", "medianClaimSeconds", "activeUsers")
        },
        "claims": claims,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print()
    print(f"ledger: {counted:,} rows ({size}), {args.users:,} users, written in {load_seconds:.0f} s")
    print(
        f"rollup from nothing: {rollup_seconds:.1f} s ({first.windows} windows); again: {again_seconds * 1000:.0f} ms"
    )
    print()
    print("| range | p50 | p99 | calls |")
    print("|---|---|---|---|")
    for r in ranges:
        print(f"| {r} | {timing[r]['p50_ms']:.1f} ms | {timing[r]['p99_ms']:.1f} ms | {timing[r]['calls']} |")
    print()
    if claims is not None:
        print("| claim statement | p50 | p99 |")
        print("|---|---|---|")
        for kind, label in (
            ("none", "without the analytics indexes"),
            ("indexes", "with them"),
            ("rollup", "with them, the rollup re-running 3 hours meanwhile without pause"),
        ):
            print(f"| {label} | {claims['all'][kind]['p50_ms']:.3f} ms | {claims['all'][kind]['p99_ms']:.3f} ms |")
        ratios = claims["indexes_over_none_p50"], claims["rollup_over_indexes_p50"]
        print(f"indexes / none (p50): {ratios[0]:.3f}; rollup / indexes: {ratios[1]:.3f}")
    print(f"an hour's rollup window: {hour_seconds:.2f} s (once an hour)")
    print(f"saved in {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
