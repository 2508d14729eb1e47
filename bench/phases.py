"""The phases of a run: HTTP throughput, claim -> socket delivery with memory per socket, latency by user count, ranks.

Each phase returns its figures (plain JSON-able data) for ``results.json`` and the table.
"""

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import dataset, profile, ranks, stack
from .delivery import delivery
from .loadgen import SocketFleet, run_claimer, wrk
from .progress import log
from .samplers import BroadcastCounter, CpuSampler, CpuWindow, RecomputeSampler, median, pct

# Claim files by pool: ``{key: (path of the "actionId token user" file, the pool's tag)}``.
ClaimFiles = dict[str, tuple[Path, str]]
# How many claims of a pool (by its tag) are committed, on the database of the stack measured.
Committed = Callable[[str], int]
# The fixed claim load whose machine CPU is divided by its claims: claims per second, open loop.
CPU_RATE = 200
# Its two kinds of claims: ordinary users (the top 10 never changes), and hot users (every claim changes it).
CPU_PATTERNS = ("spread", "hot")


def small_db_committed(tag: str) -> int:
    """Claims of pool ``tag`` committed on the scoreboard's bench database."""
    return dataset.claimed_count(dataset.SMALL_DB, tag)


def prepare_claims(
    run_id: str,
    runs: int,
    seconds: int,
    counts: list[int],
    rates: list[int],
    tokens: dict[str, str],
    out_dir: Path,
    with_profile: bool = False,
    http: bool = True,
    sockets: bool = True,
    cpu_rate: int = CPU_RATE,
) -> ClaimFiles:
    """Record the completions every claim of the HTTP and socket phases will claim, one pool per run.

    Only the pools of the phases that run (``http``, ``sockets``) are recorded. The HTTP phase
    also gets the fixed claim load's pools, ordinary users (``cpu-spread``) and hot ones (``cpu-hot``).
    """
    db = dataset.SMALL_DB
    files = {}
    for run in range(runs if http else 0):
        tag = f"w{run_id[:4]}{run}x"
        pool = dataset.add_completions(db, tag, seconds * 4000, users=1000, spread=7)
        files[f"wrk{run}"] = (dataset.write_claims_file(out_dir / f"wrk{run}.txt", pool, tokens), tag)
        for pattern in CPU_PATTERNS:
            tag = f"c{run_id[:4]}{pattern[0]}{run}x"
            count = cpu_rate * seconds + 10
            pool = dataset.add_completions(db, tag, count, users=1000, spread=7, hot=pattern == "hot")
            key = f"cpu-{pattern}{run}"
            files[key] = (dataset.write_claims_file(out_dir / f"{key}.txt", pool, tokens), tag)
    if with_profile and http:
        tag = f"p{run_id[:4]}x"
        pool = dataset.add_completions(db, tag, 6 * 4000, users=1000, spread=7)
        files["prof"] = (dataset.write_claims_file(out_dir / "prof.txt", pool, tokens), tag)
    # Socket count 0: the reference runs, the same claims with no socket open (the fan-out's CPU is the difference).
    for count in [0, *counts] if sockets else []:
        for rate in rates:
            for run in range(runs):
                tag = f"h{run_id[:4]}{count}r{rate}n{run}x"
                pool = dataset.add_completions(db, tag, rate * seconds + 10, hot=True)
                key = f"hot-{count}-{rate}-{run}"
                files[key] = (dataset.write_claims_file(out_dir / f"{key}.txt", pool, tokens), tag)
    return files


# --- HTTP -----------------------------------------------------------------------------------------


def measured_wrk(st: stack.Stack, url: str, script: str, args: list[object], seconds: int) -> dict[str, Any]:
    """One wrk run, with the CPU time per request of every process taking part (``cpu_by_role_us``).

    CPU per request is steadier than req/s on a shared machine, and it shows where a request's
    cost lies beyond the web workers (the database, Redis, the load generator, the kernel).
    """
    window = CpuWindow(st.process_groups)
    result = wrk(url, script, args, seconds=seconds)
    result["cpu_by_role_us"] = window.per_request(result["requests"])
    result["cpu_us"] = result["cpu_by_role_us"]["web"]
    return result


def http_phase(
    st: stack.Stack,
    files: ClaimFiles,
    tokens: dict[str, str],
    runs: int,
    seconds: int,
    prof_dir: Path | None = None,
    committed: Committed = small_db_committed,
) -> dict[str, list[dict[str, Any]]]:
    """``GET /healthz`` (the yardstick), the top-10 GET with a token and claims, interleaved, ``runs`` times each.

    Each claims run's claims are counted in the database (``committed``): only committed claims count.
    """
    prefix = st.env["SCOREBOARD_REDIS_PREFIX"]
    reader = tokens["u0000001"]
    # Warm up: first requests pay for imports, pools and the relay's subscription.
    wrk(st.base + "/healthz", "get.lua", ["-"], seconds=2)
    wrk(st.base + "/api/score/top", "get.lua", [reader], seconds=2)
    rows = {"healthz": [], "top": [], "claims": []}
    for run in range(runs):
        rows["healthz"].append(measured_wrk(st, st.base + "/healthz", "get.lua", ["-"], seconds))
        rows["top"].append(measured_wrk(st, st.base + "/api/score/top", "get.lua", [reader], seconds))
        counter = BroadcastCounter(prefix)
        sampler = RecomputeSampler(st.recomputes)
        path, tag = files[f"wrk{run}"]
        claimed_before = committed(tag)
        start = time.monotonic()
        result = measured_wrk(st, st.base + "/api/action/do", "claims.lua", [path, 1], seconds)
        end = time.monotonic()
        counter.close()
        sampler.close()
        result["committed"] = committed(tag) - claimed_before
        result["committed_per_s"] = result["committed"] / (result["duration_us"] / 1e6)
        result["recomputes_per_s"], result["recomputes_peak_per_s"] = sampler.rates(start, end)
        result["broadcasts_per_s"] = counter.count / (end - start)
        rows["claims"].append(result)
        log(
            f"  run {run + 1}: healthz {rows['healthz'][-1]['rps']:.0f}/s, top {rows['top'][-1]['rps']:.0f}/s, "
            f"claims {result['rps']:.0f}/s ({result['committed']} committed, {result['status_errors']} non-2xx), "
            f"{result['recomputes_per_s']:.1f} recomputes/s"
        )
    if prof_dir is not None:
        profile.capture_http(st, files, tokens, prof_dir, wrk)
    return rows


def cpu_phase(
    st: stack.Stack,
    files: ClaimFiles,
    runs: int,
    seconds: int,
    out_dir: Path,
    rate: int = CPU_RATE,
    committed: Committed = small_db_committed,
    label: str = "",
) -> dict[str, list[dict[str, Any]]]:
    """Machine CPU per claim under a fixed open-loop load of ``rate`` claims/s, no sockets open.

    Every process's CPU time (``/proc/<pid>/stat``: the web workers, the Celery worker, this
    database's PostgreSQL sessions and the server's own processes, redis-server) is read before and
    after the load and divided by the claims committed in the database. Two patterns alternate:
    ``spread`` (ordinary users: the top 10 does not change) and ``hot`` (every claim changes the
    top 10, so recomputes and broadcasts follow, to no socket).
    """
    prefix = st.env["SCOREBOARD_REDIS_PREFIX"]
    rows: dict[str, list[dict[str, Any]]] = {pattern: [] for pattern in CPU_PATTERNS}
    for run in range(runs):
        for pattern in CPU_PATTERNS if run % 2 == 0 else tuple(reversed(CPU_PATTERNS)):
            path, tag = files[f"cpu-{pattern}{run}"]
            before = committed(tag)
            sampler = CpuSampler(st.process_groups)
            try:
                claims = run_claimer(
                    st.base, path, rate, seconds, prefix + "board", out_dir / f"cpu-{label}{pattern}{run}.json"
                )
            finally:
                sampler.close()
            done = committed(tag) - before
            answered = sum(1 for c in claims["claims"] if c[2] == 200)
            # From the first claim due to the last answered (and the broadcasts that followed it).
            end = max([c[1] for c in claims["claims"]] + [b[0] for b in claims["broadcasts"]], default=claims["start"])
            cpu = sampler.between(claims["start"], end)
            server = sum(cpu[role] for role in ("web", "worker", "postgres", "redis"))
            result = {
                "rate": rate,
                "offered": int(rate * seconds),
                "committed": done,
                "answered_200": answered,
                "cpu_s": cpu,
                "server_us_per_claim": server * 1e6 / max(1, done),
                "cpu_us_per_claim": {role: v * 1e6 / max(1, done) for role, v in cpu.items() if role != "seconds"},
            }
            rows[pattern].append(result)
            log(
                f"  {label}fixed load {rate}/s, {pattern}, run {run + 1}: {done} committed, "
                f"{result['server_us_per_claim']:.0f} µs of server CPU a claim ("
                + ", ".join(f"{role} {v:.0f}" for role, v in result["cpu_us_per_claim"].items())
                + ")"
            )
    return rows


# --- sockets --------------------------------------------------------------------------------------


def claim_run(
    st: stack.Stack, fleet: SocketFleet, claims_file: Path, rate: int, seconds: int, out_dir: Path, label: str
) -> dict[str, Any]:
    """One open-loop claim run against open sockets; returns its figures."""
    prefix = st.env["SCOREBOARD_REDIS_PREFIX"]
    fleet.ask("reset")
    sampler = RecomputeSampler(st.recomputes)
    cpu_sampler = CpuSampler(st.process_groups)
    try:
        claims = run_claimer(st.base, claims_file, rate, seconds, prefix + "board", out_dir / f"claims-{label}.json")
    finally:
        sampler.close()
    time.sleep(2)  # claims an overloaded server still holds finish here, not in the next run
    cpu_sampler.close()
    # The web CPU from the first claim due to the last broadcast seen plus the time to write it out.
    last = max([c[1] for c in claims["claims"]] + [b[0] for b in claims["broadcasts"]], default=claims["start"])
    cpu = cpu_sampler.between(claims["start"], min(last + 0.5, time.monotonic()))
    sockets_out = out_dir / f"sockets-{label}.json"
    fleet.ask(f"dump {sockets_out}")
    sockets = json.loads(sockets_out.read_text())
    latencies, after_answer, undelivered, missed = delivery(claims, sockets)
    answered = [c for c in claims["claims"] if c[2] == 200]
    waits = [c[1] - c[0] for c in answered]
    ok = len(answered)
    # Rates are taken while claims are being sent (an overloaded server keeps working after that).
    window = [b for b in claims["broadcasts"] if claims["start"] <= b[0] <= claims["sent_until"]]
    span = claims["sent_until"] - claims["start"]
    recompute_rate, recompute_peak = sampler.rates(claims["start"], claims["sent_until"])
    result = {
        "label": label,
        "rate": rate,
        "offered": int(rate * seconds),
        "cpu_s": cpu,
        "claims_ok": ok,
        "claims_failed": len(claims["claims"]) - ok,
        # Claims answered 200 per second, over the time from the first claim due to the last answer.
        "claims_per_s": ok / max(1e-9, max(c[1] for c in answered) - claims["start"]) if answered else 0,
        "p50_ms": pct(latencies, 50) * 1000,
        "p95_ms": pct(latencies, 95) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        # The same, counted from the claim's answer: the delivery pipeline alone, without the claim's own wait.
        "answer_p50_ms": pct(after_answer, 50) * 1000,
        "answer_p99_ms": pct(after_answer, 99) * 1000,
        "claim_p50_ms": pct(waits, 50) * 1000,
        "claim_p99_ms": pct(waits, 99) * 1000,
        "recomputes_per_s": recompute_rate,
        "recomputes_peak_per_s": recompute_peak,
        "broadcasts_per_s": len(window) / span if span > 0 else float("nan"),
        "undelivered_claims": undelivered,
        "missed_pairs": missed,
        "pairs": len(latencies),
        "sockets_open": sockets["open"],
        "frames": sockets["frames"],
    }
    log(
        f"  {label}: {ok} claims ({result['claims_failed']} failed) p50 {result['p50_ms']:.0f} ms, "
        f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms; "
        f"{result['recomputes_per_s']:.1f} recomputes/s, {result['broadcasts_per_s']:.1f} broadcasts/s"
    )
    return result


def socket_phase(
    st: stack.Stack,
    files: ClaimFiles,
    hot_token: str,
    runs: int,
    seconds: int,
    rates: list[int],
    counts: list[int],
    log_dir: Path,
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Delivery latency at each socket count and claim rate, after the same runs with no socket open (the
    reference of the fan-out's CPU); memory per idle socket.

    Returns the claim runs (``sockets`` 0 for the reference runs) and, by socket count, the web workers'
    memory before and after opening them.
    """
    results, memory = [], {}
    with SocketFleet(st.base, hot_token, log_dir) as fleet:
        # First with no socket open: the claims' own web CPU at each rate, which the fan-out's figure subtracts.
        for rate in rates:
            for run in range(runs):
                path, _tag = files[f"hot-0-{rate}-{run}"]
                results.append(claim_run(st, fleet, path, rate, seconds, log_dir, f"0-{rate}-{run}") | {"sockets": 0})
        open_before = 0
        for count in counts:
            base_rss = st.web_rss_kib()
            answer = fleet.ask(f"open {count}").split()
            time.sleep(3)  # let the workers settle before reading their memory
            rss = st.web_rss_kib()
            opened = int(answer[1])
            memory[count] = {
                "opened": opened,
                "failed": int(answer[2]),
                "open_seconds": float(answer[3]),
                "rss_before_kib": base_rss,
                "rss_after_kib": rss,
                "kib_per_socket": (rss - base_rss) / max(1, opened - open_before),
            }
            log(
                f"  {opened} sockets open ({answer[2]} failed, {float(answer[3]):.1f} s); web RSS "
                f"{base_rss / 1024:.0f} -> {rss / 1024:.0f} MiB: "
                f"{memory[count]['kib_per_socket']:.1f} KiB per added socket"
            )
            open_before = opened
            for rate in rates:
                for run in range(runs):
                    path, _tag = files[f"hot-{count}-{rate}-{run}"]
                    label = f"{count}-{rate}-{run}"
                    results.append(claim_run(st, fleet, path, rate, seconds, log_dir, label) | {"sockets": count})
    return results, memory


# --- users and ranks -----------------------------------------------------------------------------


def latency_run(st: stack.Stack, path: Path, reader: str, seconds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One top-10 GET run and one claims run of one request at a time (1 connection): their wrk summaries."""
    top = wrk(st.base + "/api/score/top", "get.lua", [reader], seconds=seconds, connections=1)
    claims = wrk(st.base + "/api/action/do", "claims.lua", [path, 1], seconds=seconds, connections=1)
    return top, claims


def _start(db_name: str, users: int, run_id: str, log_dir: Path, worker_class: str | None) -> tuple[stack.Stack, float]:
    """A stack on one bench database, started (its Redis mirrors built); returns it and the seconds that took."""
    env = stack.stack_env(db_name, f"bench:{run_id}:{db_name}:", stack.free_port())
    st = stack.Stack(env, log_dir / db_name, worker_class)
    st.log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        st.start(worker_timeout=600)
    except Exception:
        stack.clear_prefix(env["SCOREBOARD_REDIS_PREFIX"])
        raise
    build_seconds = time.monotonic() - started
    log(f"  {users:,} users: stack up and mirrors built in {build_seconds:.0f} s")
    return st, build_seconds


def _stop(st: stack.Stack) -> None:
    """Stop a stack and delete its Redis keys."""
    st.stop()
    stack.clear_prefix(st.env["SCOREBOARD_REDIS_PREFIX"])


def _latency_alternating(
    databases: tuple[tuple[str, int], ...],
    running: dict[str, tuple[stack.Stack, float]],
    paths: dict[str, Path | None],
    reader: str,
    runs: int,
    seconds: int,
) -> list[dict[str, Any]]:
    """The users phase on stacks running side by side: each run measures every side in turn (the order swapped
    every run); returns, by database, the top-10 GET and claim runs."""
    found: dict[str, dict[str, Any]] = {}
    for db_name, users in databases:
        st, build_seconds = running[db_name]
        wrk(st.base + "/api/score/top", "get.lua", [reader], seconds=2, connections=1)
        found[db_name] = {"users": users, "top": [], "claims": [], "startup_seconds": build_seconds}
    for run in range(runs):
        for db_name, _users in databases if run % 2 == 0 else tuple(reversed(databases)):
            top, claims = latency_run(running[db_name][0], paths[db_name], reader, seconds)
            found[db_name]["top"].append(top)
            found[db_name]["claims"].append(claims)
    for entry in found.values():
        log(
            f"  {entry['users']:,} users: top p50 {median([t['p50_us'] for t in entry['top']]):.0f} us, "
            f"claim p50 {median([c['p50_us'] for c in entry['claims']]):.0f} us"
        )
    return [found[db_name] for db_name, _users in databases]


def users_phase(
    run_id: str,
    log_dir: Path,
    tokens: dict[str, str],
    runs: int,
    seconds: int,
    worker_class: str | None,
    fresh_million: bool = False,
    measure_users: bool = True,
    measure_ranks: bool = True,
    claim_cost_claims: int = 2400,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The users and ranks phases with 1,000 and with 1,000,000 users; ``(latency, ranks)``, each by database.

    Each database gets a stack of its own. Before any starts, the ranks phase's database work runs
    (the current week's rows, the claim statement timed with and without the period boards), with
    nothing else of the bench running and so that the worker's first recompute mirrors it all. Then
    both stacks run side by side: the users phase's runs (top-10 GET and claim latency) and the ranks
    phase's reads alternate between the two, their order swapped every run, so that whatever else
    loads the machine falls on both sizes alike. The second database is built on first use, then kept.
    """
    if fresh_million or dataset.count_users(dataset.MILLION_DB) != 1_000_010:
        log(f"  building {dataset.MILLION_DB} with generate_series (about a minute, kept for later runs)")
        dataset.prepare(dataset.MILLION_DB, 1_000_000, fresh=True)
    databases = ((dataset.SMALL_DB, 1000), (dataset.MILLION_DB, 1_000_000))
    latency, prepared, running, paths = [], {}, {}, {}
    try:
        for db_name, users in databases:
            path = None
            if measure_users:
                claims_total = runs * seconds * 2500
                pool = dataset.add_completions(
                    db_name, f"lat{run_id[:4]}", claims_total, users=users, spread=7919 if users > 7919 else 1
                )
                missing = {uid for _a, uid in pool} - tokens.keys()
                if missing:
                    tokens.update(dataset.mint_tokens(sorted(missing)))
                path = dataset.write_claims_file(log_dir / f"lat-{db_name}.txt", pool, tokens)
            if measure_ranks:
                prepared[db_name] = ranks.prepare(db_name, users, run_id, runs, claim_cost_claims, log_dir)
            paths[db_name] = path
        for db_name, users in databases:
            _st, build_seconds = running[db_name] = _start(db_name, users, run_id, log_dir, worker_class)
            if measure_ranks:
                prepared[db_name]["startup_seconds"] = build_seconds
        if measure_users:
            latency = _latency_alternating(databases, running, paths, next(iter(tokens.values())), runs, seconds)
        if not measure_ranks:
            return latency, []
        sides = [ranks.Side(db_name, users, running[db_name][0], prepared[db_name]) for db_name, users in databases]
        return latency, ranks.measure(sides, tokens, runs, seconds, log_dir, run_id)
    finally:
        for st, _seconds in running.values():
            _stop(st)
