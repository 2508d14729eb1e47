"""One setting against another, by the machine's CPU per claim under the same fixed load: an A/B in one run.

``python -m bench.ab SETTING=A SETTING=B [--runs 3] [--rate 200] [--seconds 10]``

Each side is the production stack (``bench.stack``) on the bench's 1,000-user database with one
``SCOREBOARD_<SETTING>`` set (``DB_PREPARED_STATEMENTS=false``, say; several ``NAME=value`` joined by
commas for one side), started afresh for every run, the sides taking turns (A B, B A, A B...) so a slow
spell of the machine falls on both. Each run offers ``--rate`` claims a second of ordinary users (the top
10 does not change) for ``--seconds``, open loop, and reads every process's CPU before and after
(``CpuSampler``), divided by the claims committed in the database. Printed: each run, then the medians
by process and the ratio B ÷ A. Where PostgreSQL has ``pg_stat_statements`` loaded, each run's
statement times (execution and planning, per call) are kept beside it in ``bench/out/ab-<UTC time>/``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from . import dataset, stack
from .loadgen import run_claimer
from .progress import log
from .samplers import CpuSampler

ROLES = ("web", "worker", "postgres", "redis")
_STATEMENTS = text(
    """
    SELECT s.calls, s.total_exec_time, s.total_plan_time, s.rows, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 160)
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
    WHERE d.datname = :db ORDER BY s.total_exec_time + s.total_plan_time DESC LIMIT 20
    """
)


def side_env(side: str) -> dict[str, str]:
    """``NAME=value[,NAME=value]`` as the stack's ``SCOREBOARD_*`` variables."""
    pairs = (item.partition("=") for item in side.split(","))
    return {"SCOREBOARD_" + name.strip().removeprefix("SCOREBOARD_"): value for name, _, value in pairs}


def _statement_stats(reset: bool) -> list[dict[str, Any]] | None:
    """Reset (``reset``) or read this database's ``pg_stat_statements``; None where the extension is not loaded."""
    try:
        with stack.admin_engine().connect() as conn:
            if reset:
                conn.execute(text("SELECT pg_stat_statements_reset()"))
                return []
            rows = conn.execute(_STATEMENTS, {"db": dataset.SMALL_DB}).all()
    except DBAPIError:
        return None
    return [
        {"calls": c, "exec_ms": round(e, 1), "plan_ms": round(p, 1), "rows": r, "query": q} for c, e, p, r, q in rows
    ]


def one_run(side: str, rate: int, seconds: int, tokens: dict[str, str], out_dir: Path) -> dict[str, Any]:
    """Start the stack with ``side``'s settings, offer the fixed load, stop it; the CPU per claim by process."""
    run_id = uuid.uuid4().hex[:8]
    tag = f"ab{run_id[:4]}x"
    pool = dataset.add_completions(dataset.SMALL_DB, tag, rate * seconds + 10, users=1000, spread=7)
    claims_file = dataset.write_claims_file(out_dir / f"claims-{run_id}.txt", pool, tokens)
    prefix = f"bench:{run_id}:"
    env = stack.stack_env(dataset.SMALL_DB, prefix, stack.free_port(), side_env(side))
    (out_dir / run_id).mkdir()
    st = stack.Stack(env, out_dir / run_id)
    try:
        st.start()
        time.sleep(2)  # past the start-up's own recomputes
        before = dataset.claimed_count(dataset.SMALL_DB, tag)
        stats = _statement_stats(reset=True)
        sampler = CpuSampler(st.process_groups)
        try:
            claims = run_claimer(st.base, claims_file, rate, seconds, prefix + "board", out_dir / f"run-{run_id}.json")
        finally:
            sampler.close()
        done = dataset.claimed_count(dataset.SMALL_DB, tag) - before
        end = max([c[1] for c in claims["claims"]] + [b[0] for b in claims["broadcasts"]], default=claims["start"])
        cpu = sampler.between(claims["start"], end)
        if stats is not None:
            stats = _statement_stats(reset=False)
    finally:
        st.stop()
        stack.clear_prefix(prefix)
    per_claim = {role: cpu[role] * 1e6 / max(1, done) for role in (*ROLES, "other")}
    per_claim["server"] = sum(per_claim[role] for role in ROLES)
    return {"side": side, "committed": done, "offered": rate * seconds, "us_per_claim": per_claim, "statements": stats}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="side A: NAME=value (SCOREBOARD_ left off), several joined by commas")
    parser.add_argument("b", help="side B, the same way")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side, taking turns")
    parser.add_argument("--rate", type=int, default=200, help="claims offered a second")
    parser.add_argument("--seconds", type=int, default=10, help="length of each run")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC)
    out_dir = stack.ROOT / "bench" / "out" / f"ab-{stamp:%Y%m%dT%H%M%SZ}"
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset.prepare(dataset.SMALL_DB, 1000)
    tokens = dataset.mint_tokens([dataset.user_id(n) for n in range(1, 1001)])
    results: dict[str, list[dict[str, Any]]] = {args.a: [], args.b: []}
    for run in range(args.runs):
        for side in (args.a, args.b) if run % 2 == 0 else (args.b, args.a):
            found = one_run(side, args.rate, args.seconds, tokens, out_dir)
            results[side].append(found)
            figures = ", ".join(f"{role} {v:.0f}" for role, v in found["us_per_claim"].items())
            log(f"  run {run + 1}, {side}: {found['committed']} of {found['offered']} committed; µs a claim: {figures}")
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    medians = {
        side: {role: statistics.median(r["us_per_claim"][role] for r in runs) for role in (*ROLES, "server", "other")}
        for side, runs in results.items()
    }
    print(
        f"Machine CPU per claim, µs (median of {args.runs} runs each, {args.rate} claims/s for {args.seconds} s, "
        f"{stamp:%Y-%m-%d %H:%M} UTC):\n"
    )
    print("| process | " + " | ".join(results) + " | B ÷ A |")
    print("|---|---|---|---|")
    for role in (*ROLES, "server", "other"):
        a, b = medians[args.a][role], medians[args.b][role]
        print(f"| {role} | {a:.0f} | {b:.0f} | {b / a if a else float('nan'):.2f} |")
    print("\n(server = web + worker + postgres + redis; other = the load generator, the kernel and the rest)")
    print(f"Raw results: {out_dir}")


if __name__ == "__main__":
    main()
