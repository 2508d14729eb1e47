"""The request path: ``GET /api/score/top`` (a valid token) against ``GET /healthz`` on the production stack.

``python -m bench.request_path`` starts the stack (gunicorn with ``gunicorn.conf.py``, 2 gevent
workers, and a Celery worker) on a small database of its own, with the production defaults
where they bear on a request: JSON logs at INFO, token checks on, rate limits on with as many
windows as the defaults (only set too high to trip, as the bench does). Then ``wrk -t1 -c32``
runs against ``/healthz`` and ``/api/score/top`` in turn, ``--rounds`` times, and the medians and
the ratio (the median of each round's, whose two runs were back to back) are printed, with the
web workers' and Redis's CPU time per request.

``--baseline REV`` (repeatable) also serves the same database from a git worktree of ``REV``
(another gunicorn beside the first), and every round measures each tree in turn, so a change is
compared with what it replaced under the same load. ``--profile`` records one web worker with
py-spy during each ``/api/score/top`` run of the current tree and prints the frames holding the
most samples.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from . import dataset, loadgen, profile, samplers, stack
from .progress import log

DB_NAME = "scoreboard_request_path"
USERS = 1000


class TreeProcess(stack.Process):
    """The bench's process handle, for a process run from another checkout (a baseline worktree)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_web(tree: Path, env: dict[str, str], port: int, log_dir: Path, name: str) -> stack.Process:
    """gunicorn with the production config, serving ``bench.app:app`` from ``tree`` on ``port``."""
    argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "bench.app:app"]
    return TreeProcess(name, argv, {**env, "SCOREBOARD_BIND": f"127.0.0.1:{port}"}, log_dir, tree)


def wait_ready(base: str, token: str, timeout: float = 60) -> None:
    """Until the top list answers 200 from this server's memory (its relay subscribed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/api/score/top", headers={"Authorization": f"Bearer {token}"}, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} did not answer")


def web_pids(web: stack.Process) -> list[int]:
    """gunicorn's worker processes."""
    return stack.children(web.proc.pid)


def memory_reads(base: str) -> float:
    """``scoreboard_top_cache_total{result="memory"}`` summed over the web workers."""
    body = requests.get(base + "/metrics", timeout=2).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("scoreboard_top_cache_total") and 'result="memory"' in line
    )


def measure(
    base: str, web: stack.Process, path: str, token: str, seconds: int, connections: int, redis_pids: list[int]
) -> dict:
    """One wrk run of ``path``; its requests per second, the web workers' and Redis's CPU µs per request."""
    pids = web_pids(web)
    cpu_before, redis_before = samplers.cpu_seconds(pids), samplers.cpu_seconds(redis_pids)
    result = loadgen.wrk(base + path, "get.lua", [token], seconds=seconds, connections=connections)
    cpu = samplers.cpu_seconds(pids) - cpu_before
    redis_cpu = samplers.cpu_seconds(redis_pids) - redis_before
    if result["status_errors"] or result["connect_errors"] or result["timeouts"]:
        raise RuntimeError(f"{path} on {base} answered errors: {result}")
    served = max(1, result["requests"])
    return {
        "rps": result["rps"],
        "cpu_us": 1e6 * cpu / served,
        "redis_us": 1e6 * redis_cpu / served,
        "p50_us": result["p50_us"],
    }


def record_busy(pid: int, seconds: int, out_path: Path) -> subprocess.Popen:
    """py-spy on ``pid`` for ``seconds``, busy samples only (threads waiting are left out, unlike the bench's)."""
    argv = [profile.py_spy(), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
    argv += ["--format", "raw", "--nonblocking", "-o", str(out_path)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; print the medians and the ratio of each tree."""
    parser = argparse.ArgumentParser(prog="python -m bench.request_path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--baseline", metavar="REV", action="append", default=[], help="also serve a worktree of REV alike (repeatable)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy one web worker during each top-list run")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the stack")
    args = parser.parse_args(argv)
    loadgen.ensure_wrk()
    stack.raise_open_files()

    out_dir = Path(tempfile.mkdtemp(prefix="bench-request-path-"))
    log(f"logs in {out_dir}; preparing {DB_NAME} ({USERS} users)")
    dataset.prepare(DB_NAME, USERS, fresh=False)
    prefix = f"bench:rp:{os.getpid()}:"
    extra = dict(item.split("=", 1) for item in args.env)
    # As the production unit runs it: JSON logs at INFO, multiprocess metrics (set here as well, so a baseline
    # tree whose bench stack predates them is measured the same way).
    metrics_dirs = [Path(tempfile.mkdtemp(prefix="bench-web-metrics-"))]
    overrides = {"SCOREBOARD_LOG_LEVEL": "INFO", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dirs[0]), **extra}
    env = stack.stack_env(DB_NAME, prefix, stack.free_port(), overrides)
    token = dataset.mint_tokens([dataset.user_id(1)])[dataset.user_id(1)]

    servers: dict[str, tuple[str, stack.Process]] = {}
    current = stack.Stack(env, out_dir).start()
    worktrees: list[Path] = []
    try:
        servers["current"] = (current.base, current.web)
        for rev in args.baseline:
            worktree = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "tree"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(worktree), rev],
                cwd=stack.ROOT,
                check=True,
                capture_output=True,
            )
            worktrees.append(worktree)
            port = stack.free_port()
            metrics_dir = Path(tempfile.mkdtemp(prefix="bench-web-metrics-"))
            metrics_dirs.append(metrics_dir)
            tree_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
            name = f"at {rev[:10]}"
            servers[name] = (
                f"http://127.0.0.1:{port}",
                start_web(worktree, tree_env, port, out_dir, f"baseline-{rev[:10]}"),
            )
        for base, _web in servers.values():
            wait_ready(base, token)
        time.sleep(1)  # the relays subscribed: the board is held in memory
        before = {name: memory_reads(base) for name, (base, _web) in servers.items()}

        redis_pids = current.process_groups()["redis"]  # shared by every tree (and by anything else using it)
        runs: dict[str, dict[str, list[dict]]] = {name: {"/healthz": [], "/api/score/top": []} for name in servers}
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        load_before = os.getloadavg()
        for round_no in range(args.rounds):
            order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
            for name in order:
                base, web = servers[name]
                for path, tok in (("/healthz", "-"), ("/api/score/top", token)):
                    spy = None
                    if args.profile and name == "current" and path != "/healthz":
                        spy_out = out_dir / f"profile-top-{round_no}.txt"
                        spy = record_busy(web_pids(web)[0], max(1, args.seconds - 1), spy_out)
                    result = measure(base, web, path, tok, args.seconds, args.connections, redis_pids)
                    if spy is not None:
                        spy.wait(30)
                        print(f"\n## profile, {name} {path}, round {round_no + 1}\n{profile.summarise(spy_out)}\n")
                    runs[name][path].append(result)
                    rps, cpu = result["rps"], result["cpu_us"]
                    log(f"round {round_no + 1} {name:8} {path:16} {rps:8.0f} req/s {cpu:6.0f} µs")
        finished = time.strftime("%H:%M:%S UTC", time.gmtime())
        load_after = os.getloadavg()

        print(f"request path, {started} to {finished}; load average {load_before[0]:.2f} before, {load_after[0]:.2f}")
        print(f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds alternating, medians\n")
        print(
            "| tree | /healthz req/s (web µs/req) | /api/score/top req/s (web µs/req, redis µs/req) "
            "| ratio: median of the rounds' (each round's) | ratio by web CPU | top from memory |"
        )
        print("|---|---|---|---|---|---|")
        summary = {}
        for name, (base, _web) in servers.items():
            health, top = runs[name]["/healthz"], runs[name]["/api/score/top"]
            # Each round's pair ran back to back, so its ratio is what a round's load does to both alike.
            ratios = [t["rps"] / h["rps"] for h, t in zip(health, top, strict=True)]
            h_cpu = statistics.median(r["cpu_us"] for r in health)
            t_cpu = statistics.median(r["cpu_us"] for r in top)
            t_redis = statistics.median(r["redis_us"] for r in top)
            served = sum(r["rps"] * args.seconds for r in top)
            from_memory = (memory_reads(base) - before[name]) / max(1, served)
            ratio = statistics.median(ratios)
            summary[name] = {"healthz": health, "top": top, "ratio": ratio, "cpu_ratio": h_cpu / t_cpu}
            print(
                f"| {name} | {statistics.median(r['rps'] for r in health):,.0f} ({h_cpu:,.0f}) | "
                f"{statistics.median(r['rps'] for r in top):,.0f} ({t_cpu:,.0f}, {t_redis:,.0f}) | "
                f"**{ratio:.2f}** ({', '.join(f'{r:.2f}' for r in ratios)}) | {h_cpu / t_cpu:.2f} | "
                f"{100 * from_memory:.0f}% |"
            )
        (out_dir / "results.json").write_text(json.dumps(summary, indent=1))
        print(f"\nraw results: {out_dir / 'results.json'}")
    finally:
        for name, (_base, web) in servers.items():
            if name != "current":
                web.stop()
        current.stop()
        stack.clear_prefix(prefix)
        for path in metrics_dirs:
            shutil.rmtree(path, ignore_errors=True)
        for worktree in worktrees:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=stack.ROOT, check=False)
            shutil.rmtree(worktree.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
