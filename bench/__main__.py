"""``make bench`` / ``python -m bench``: start the production stack locally, load it, print one table.

See bench/README.md for the method. Everything started here is stopped here,
and the whole run is bounded (about 10 minutes with the defaults).
"""

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from . import dataset, phases, report, stack
from .baseline import setup as baseline
from .loadgen import ensure_wrk
from .progress import log

OUT = Path(__file__).resolve().parent / "out"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--quick`` sets one run of 4 s)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (medians are quoted)")
    parser.add_argument("--seconds", type=int, default=8, help="length of each load run")
    parser.add_argument("--quick", action="store_true", help="one short run of everything (a smoke test)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["http", "sockets", "users", "ranks", "baseline"],
        help="leave out a phase (baseline: the straightforward design's app, measured after the scoreboard)",
    )
    parser.add_argument(
        "--baseline-runs", type=int, default=1, help="runs of each measurement on the baseline (at most --runs)"
    )
    parser.add_argument(
        "--cpu-rate", type=int, default=phases.CPU_RATE, help="claims/s of the fixed load whose CPU is divided"
    )
    parser.add_argument(
        "--claim-cost-claims",
        type=int,
        default=2400,
        help="claims per run and pattern timed by the ranks phase, half with the period boards and half without",
    )
    parser.add_argument("--sockets", default="1000,10000", help="socket counts to measure")
    parser.add_argument("--rates", default="200,1000", help="open-loop claim rates to measure")
    parser.add_argument("--worker-class", default=None, help="override gunicorn's worker class (gevent, gthread)")
    parser.add_argument("--profile", action="store_true", help="record py-spy profiles of the web workers")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra SCOREBOARD_ setting for the servers, e.g. PUBLIC_BOARD=true (for experiments)",
    )
    parser.add_argument("--fresh-million", action="store_true", help="rebuild the 1,000,000-user database")
    args = parser.parse_args(argv)
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env {item}: expected NAME=VALUE")
    if args.quick:
        args.runs, args.seconds, args.claim_cost_claims = 1, 4, min(args.claim_cost_claims, 400)
    return args


def measure_baseline(
    args: argparse.Namespace,
    files: phases.ClaimFiles,
    tokens: dict[str, str],
    counts: list[int],
    rates: list[int],
    run_id: str,
    out_dir: Path,
) -> dict[str, object]:
    """The same HTTP, fixed-load and socket phases against the baseline app, on its own database."""
    runs = max(1, min(args.baseline_runs, args.runs))
    prefix = f"bench:{run_id}:baseline:"
    log_dir = out_dir / "baseline"
    log_dir.mkdir(exist_ok=True)
    bst = baseline.BaselineStack(prefix, log_dir)
    found: dict[str, object] = {"runs": runs}
    try:
        log("baseline: starting its gunicorn (the production settings, 2 gevent workers)")
        bst.start()
        if "http" not in args.skip:
            log("baseline HTTP: /healthz, top-10 GET, claims (wrk)")
            found["http"] = phases.http_phase(bst, files, tokens, runs, args.seconds, committed=baseline.claimed_count)
            found["cpu"] = phases.cpu_phase(
                bst, files, runs, args.seconds, log_dir, args.cpu_rate, baseline.claimed_count, "baseline "
            )
        if "sockets" not in args.skip:
            log("baseline sockets: claim -> socket delivery, memory per socket")
            results, memory = phases.socket_phase(
                bst, files, tokens["hot01"], runs, args.seconds, rates, counts, log_dir
            )
            found["sockets"] = results
            found["memory"] = {str(k): v for k, v in memory.items()}
    finally:
        bst.stop()
        stack.clear_prefix(prefix)
    return found


def main(argv: list[str] | None = None) -> None:
    """Run the suite and print the table."""
    args = parse_args(argv)
    counts = [int(x) for x in args.sockets.split(",") if x]
    rates = [int(x) for x in args.rates.split(",") if x]

    ensure_wrk()
    nofile = stack.raise_open_files()
    run_id = uuid.uuid4().hex[:8]
    stamp = datetime.now(UTC)
    out_dir = OUT / stamp.strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    if max(counts, default=0) * 2 + 1000 > nofile:
        log(f"open-file limit is {nofile}: fewer sockets than asked may open")
    out = {
        "date": stamp.isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "run_id": run_id,
        "env": args.env,
        "machine": {"cpus": os.cpu_count(), "nofile": nofile},
        "worker_class": args.worker_class or "gevent",
    }
    t0 = time.monotonic()

    log(f"preparing {dataset.SMALL_DB} (1,000 users) and minting tokens")
    dataset.prepare(dataset.SMALL_DB, 1000)
    tokens = dataset.mint_tokens([dataset.user_id(n) for n in range(1, 1001)] + dataset.HOT_USERS)
    files = phases.prepare_claims(
        run_id,
        args.runs,
        args.seconds,
        counts,
        rates,
        tokens,
        out_dir,
        args.profile,
        http="http" not in args.skip,
        sockets="sockets" not in args.skip,
        cpu_rate=args.cpu_rate,
    )
    with_baseline = "baseline" not in args.skip and not {"http", "sockets"} <= set(args.skip)
    if with_baseline:
        # Copied before any claim: the baseline claims its own copies of the same pools.
        copied = baseline.prepare()
        log(f"baseline database {baseline.DB_NAME}: {copied['users']:,} users, {copied['pending']:,} completions")

    prefix = f"bench:{run_id}:"
    extra = {"SCOREBOARD_" + name: value for name, _, value in (item.partition("=") for item in args.env)}
    st = stack.Stack(stack.stack_env(dataset.SMALL_DB, prefix, stack.free_port(), extra), out_dir, args.worker_class)
    try:
        log(f"starting gunicorn ({args.worker_class or 'gevent'}, 2 workers) and a Celery worker")
        st.start()
        if "http" not in args.skip:
            log("HTTP: /healthz, top-10 GET, claims (wrk)")
            prof_dir = out_dir / "profiles" if args.profile else None
            out["http"] = phases.http_phase(st, files, tokens, args.runs, args.seconds, prof_dir)
            log(f"CPU per claim: a fixed load of {args.cpu_rate} claims/s")
            out["cpu"] = phases.cpu_phase(st, files, args.runs, args.seconds, out_dir, args.cpu_rate)
        if "sockets" not in args.skip:
            log("sockets: claim -> socket delivery, memory per socket")
            results, memory = phases.socket_phase(
                st, files, tokens["hot01"], args.runs, args.seconds, rates, counts, out_dir
            )
            out["sockets"] = results
            out["memory"] = {str(k): v for k, v in memory.items()}
    finally:
        st.stop()
        stack.clear_prefix(prefix)

    if with_baseline:
        out["baseline"] = measure_baseline(args, files, tokens, counts, rates, run_id, out_dir)

    measure_users, measure_ranks = "users" not in args.skip, "ranks" not in args.skip
    if measure_users or measure_ranks:
        what = [
            ("users: read and claim latency", measure_users),
            ("ranks: ranking reads, the claim with periods", measure_ranks),
        ]
        log("; ".join(text for text, wanted in what if wanted) + " (1,000 and 1,000,000 users)")
        latency, rank_figures = phases.users_phase(
            run_id,
            out_dir,
            tokens,
            args.runs,
            max(3, args.seconds // 2),
            args.worker_class,
            args.fresh_million,
            measure_users,
            measure_ranks,
            args.claim_cost_claims,
        )
        if measure_users:
            out["latency"] = latency
        if measure_ranks:
            out["ranks"] = rank_figures

    out["seconds"] = time.monotonic() - t0
    report.publish(out, out_dir, stamp, args.runs, args.seconds)


if __name__ == "__main__":
    main()
