"""``make bench-anomalies`` / ``python -m bench.anomalies``: the anomaly detection's benchmark.

Simulates a population (``bench.anomalies.simulate``: ordinary people and 1% automated players
of five kinds), writes it into a fresh PostgreSQL database migrated with the real migrations,
runs the scan the service runs (``scoreboard.integrity``: features, then the forest) and prints
a Markdown table: recall per kind, false positives among ordinary users, users judged, the
scan's time. Tuned with ``--seed 1``; the figures quoted in docs/anomalies.md are ``--seed 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from .. import dataset, stack
from ..progress import log
from . import load
from .simulate import KINDS, ORDINARY, simulate

DB = "scoreboard_bench_anomalies"
OUT = Path(__file__).resolve().parent.parent / "out" / "anomalies"
# The scan's moment: a fixed instant, so that a seed always makes the same ledger.
END = datetime(2026, 11, 30, 13, 37, tzinfo=UTC)
TTL = 3600.0  # the service's default completion time to live (SCOREBOARD_COMPLETION_TTL)
TARGETS = {"recall": 0.90, "false_positives": 0.005, "scan_seconds": 60.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.anomalies", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000, help="ordinary users (automated ones are added: 1%%)")
    parser.add_argument("--seed", type=int, default=2, help="the simulation's seed (tuned on 1, reported on 2)")
    parser.add_argument("--forest-seed", type=int, default=0, help="the forest's random_state (the service's: 0)")
    parser.add_argument("--threshold", type=float, default=None, help="the score flagged (default: the detector's)")
    parser.add_argument("--window-hours", type=float, default=24.0, help="the window judged")
    parser.add_argument("--sweep", default="", help="also report these thresholds, e.g. 0.55,0.6,0.65")
    parser.add_argument("--keep-db", action="store_true", help=f"keep the database {DB} afterwards")
    return parser.parse_args(argv)


def bots_for(users: int) -> int:
    """Automated players for ``users`` ordinary ones: 1% of everybody, a multiple of the five kinds."""
    return max(len(KINDS), len(KINDS) * round(users / 99 / len(KINDS)))


def scan(window: timedelta, threshold: float | None, forest_seed: int) -> dict:
    """The service's scan on the bench database, timed: ``population`` (features), then ``judge`` (the forest)."""
    for name, value in stack.stack_env(DB, "bench:anomalies:", 0).items():
        if name.startswith("SCOREBOARD_"):
            os.environ[name] = value
    from scoreboard import create_app
    from scoreboard.extensions import db
    from scoreboard.integrity.detector import DEFAULT_THRESHOLD, judge
    from scoreboard.integrity.features import population

    bar = DEFAULT_THRESHOLD if threshold is None else threshold
    app = create_app()
    with app.app_context():
        t0 = time.perf_counter()
        judged = population(END, window)
        t1 = time.perf_counter()
        verdicts = judge(judged, bar, seed=forest_seed)
        t2 = time.perf_counter()
        db.session.rollback()
        db.engine.dispose()
    return {"threshold": bar, "verdicts": verdicts, "features_s": t1 - t0, "fit_s": t2 - t1}


def tally(kinds: list[str], verdicts: list, bar: float) -> dict[str, dict[str, int]]:
    """Per kind: users, users judged, users flagged at ``bar``."""
    index = {load.user_id(n): kind for n, kind in enumerate(kinds)}
    result = {kind: {"users": 0, "judged": 0, "flagged": 0} for kind in (*KINDS, ORDINARY)}
    for kind in kinds:
        result[kind]["users"] += 1
    for verdict in verdicts:
        row = result[index[verdict.user_id]]
        row["judged"] += 1
        row["flagged"] += verdict.score >= bar
    return result


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def table(args: argparse.Namespace, counts: dict, result: dict, seconds: dict, stamp: datetime) -> str:
    """The Markdown report."""
    t = result["tally"]
    ordinary = t[ORDINARY]
    fp = ordinary["flagged"] / ordinary["judged"] if ordinary["judged"] else 0.0
    scan_s = seconds["features_s"] + seconds["fit_s"]
    judged = sum(row["judged"] for row in t.values())
    lines = [
        f"Anomaly detection benchmark, {stamp:%Y-%m-%d %H:%M} UTC: `python -m bench.anomalies --users {args.users}"
        f" --seed {args.seed}`; simulation seed **{args.seed}**, forest seed {args.forest_seed}, threshold"
        f" {result['threshold']:.3f}, window {args.window_hours:g} h ending {END:%Y-%m-%d %H:%M} UTC;"
        f" {counts['users']:,} users ({args.users:,} ordinary, {counts['users'] - args.users:,} automated),"
        f" {counts['claims_in_window']:,} claims in the window ({counts['completions']:,} completions in all).",
        "",
        "| measure | result | target | met |",
        "|---|---|---|---|",
    ]
    for kind in KINDS:
        row = t[kind]
        recall = row["flagged"] / row["users"] if row["users"] else 0.0
        lines.append(
            f"| recall: {kind} | {row['flagged']} of {row['users']} = **{_pct(row['flagged'], row['users'])}**"
            f" ({row['judged']} judged) | ≥ 90% | {'yes' if recall >= TARGETS['recall'] else '**no**'} |"
        )
    lines += [
        f"| false positives: ordinary users flagged | {ordinary['flagged']} of {ordinary['judged']:,} judged ="
        f" **{100 * fp:.2f}%** ({ordinary['users']:,} ordinary users, {ordinary['users'] - ordinary['judged']:,}"
        f" with fewer than 6 claims) | ≤ 0.5% | {'yes' if fp <= TARGETS['false_positives'] else '**no**'} |",
        f"| users judged (≥ 6 claims in the window) | {judged:,} | — | — |",
        f"| scan time: features (SQL + numpy) | {seconds['features_s']:.2f} s | — | — |",
        f"| scan time: fit and score (Isolation Forest) | {seconds['fit_s']:.2f} s | — | — |",
        f"| scan time, all | **{scan_s:.2f} s** | < 60 s at 100,000 users | "
        + ("yes" if scan_s < TARGETS["scan_seconds"] else "**no**")
        + (" (at this size)" if args.users < 100_000 else "")
        + " |",
    ]
    if args.sweep:
        lines += ["", "| threshold | " + " | ".join(KINDS) + " | false positives |", "|---" * (len(KINDS) + 2) + "|"]
        for bar in (float(x) for x in args.sweep.split(",") if x):
            swept = tally(result["kinds"], result["verdicts"], bar)
            cells = [_pct(swept[k]["flagged"], swept[k]["users"]) for k in KINDS]
            cells.append(f"{100 * swept[ORDINARY]['flagged'] / max(swept[ORDINARY]['judged'], 1):.2f}%")
            lines.append(f"| {bar:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Simulate, write, scan, report."""
    args = parse_args(argv)
    stamp = datetime.now(UTC)
    window = timedelta(hours=args.window_hours)
    bots = bots_for(args.users)
    t0 = time.monotonic()
    log(f"anomalies: simulating {args.users:,} ordinary and {bots} automated users (seed {args.seed})")
    ledger = simulate(args.seed, args.users, bots, (END - window).timestamp(), END.timestamp())
    log(f"anomalies: writing {sum(len(a) for a in ledger.created):,} completions into {DB}")
    stack.create_database(DB)
    try:
        dataset.migrate(DB)
        engine = dataset.engine(DB)
        counts = load.write(engine, ledger, TTL, args.seed)
        with engine.connect() as conn:
            counts["claims_in_window"] = int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM completions WHERE claimed_at >= %(s)s AND claimed_at < %(e)s",
                    {"s": END - window, "e": END},
                ).scalar()
            )
        engine.dispose()
        log(f"anomalies: {counts['claims_in_window']:,} claims in the window; scanning")
        result = scan(window, args.threshold, args.forest_seed)
    finally:
        if not args.keep_db:
            stack.drop_database(DB)
    result["kinds"] = ledger.kinds
    result["tally"] = tally(ledger.kinds, result["verdicts"], result["threshold"])
    report = table(args, counts, result, result, stamp)
    print(report, end="")
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"{stamp:%Y%m%dT%H%M%SZ}-seed{args.seed}-{args.users}"
    (OUT / f"{name}.md").write_text(report)
    scores = {kind: [] for kind in (*KINDS, ORDINARY)}
    kind_of = {load.user_id(n): kind for n, kind in enumerate(ledger.kinds)}
    for verdict in result["verdicts"]:
        scores[kind_of[verdict.user_id]].append(verdict.score)
    summary = {
        "args": vars(args),
        "counts": counts,
        "threshold": result["threshold"],
        "tally": result["tally"],
        "features_s": result["features_s"],
        "fit_s": result["fit_s"],
        "score_quantiles": {
            kind: [float(q) for q in np.quantile(values, [0.01, 0.1, 0.5, 0.9, 0.99, 0.999])] if values else []
            for kind, values in scores.items()
        },
        "seconds": time.monotonic() - t0,
    }
    (OUT / f"{name}.json").write_text(json.dumps(summary, indent=1))
    log(f"anomalies: done in {summary['seconds']:.0f} s; {OUT / name}.md")


if __name__ == "__main__":
    main()
