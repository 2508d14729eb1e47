"""py-spy profiles of the web workers and the Celery worker under load, summarised as where the time goes.

``python -m bench --profile`` records, during a claims run and a top-10 GET run,
one gunicorn worker with ``py-spy record --format raw`` (collapsed stacks), and
writes for each the functions with the largest share of samples, inclusive
(the function and what it calls) and by module.

``python -m bench.profile worker --seconds 40 --out DIR`` records a running bench stack's Celery
worker (its main process and its pool process, each on its own) while a bench run loads it, for
example during ``python -m bench``'s CPU-per-claim runs (``--after`` waits for a line of the bench's
log first), and writes their stacks, summaries and the recomputes per second the worker counted.
"""

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from .stack import children


def py_spy():
    """The py-spy executable (installed from requirements-bench.txt), or None."""
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def record(pid, seconds, out_path, idle=True):
    """Record ``pid`` for ``seconds`` (``idle``: idle threads' samples too); returns the py-spy process."""
    return subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),  # py-spy takes whole seconds only
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            *(["--idle"] if idle else []),
            "-o",
            str(out_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarise(raw_path, top=25):
    """Text: the frames holding the most samples (inclusive), and samples per top-level module."""
    inclusive, by_area, total = Counter(), Counter(), 0
    idle = 0
    for line in Path(raw_path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        count = int(count)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        if (
            any(word in leaf for word in ("wait (", "poll (", "select (", "_wait (", "switch (", "sleep ("))
            and "hub" in stack.lower()
        ):
            idle += count
        for frame in set(frames):
            inclusive[frame] += count
        by_area[_area(frames)] += count
    lines = [f"{total} samples ({idle} idle in the gevent hub)", "", "inclusive share of samples, top frames:"]
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / max(1, total):5.1f}%  {frame}")
    lines += ["", "samples by where the innermost project/library frame is:"]
    for area, count in by_area.most_common(15):
        lines.append(f"  {100 * count / max(1, total):5.1f}%  {area}")
    return "\n".join(lines)


def _area(frames):
    """Classify a stack by the innermost frame that names a known package."""
    for frame in reversed(frames):
        for key in (
            "scoreboard/",
            "flask_limiter",
            "limits/",
            "flask_jwt_extended",
            "jwt/",
            "sqlalchemy",
            "psycopg2",
            "redis/",
            "kombu",
            "billiard",
            "amqp/",
            "celery",
            "prometheus_client",
            "werkzeug",
            "flask/",
            "pydantic",
            "gunicorn",
            "gevent",
            "simple_websocket",
            "wsproto",
            "json",
        ):
            if key in frame:
                return key.rstrip("/")
    return "other"


def capture_http(st, files, tokens, out_dir, wrk):
    """Profile one web worker during a claims run and a top-10 GET run; writes raw stacks and summaries."""
    if not py_spy():
        return
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pid = st.web_workers()[0]
    for name, url, script, args in (
        ("claims", st.base + "/api/action/do", "claims.lua", [files["prof"][0], 1]),
        ("top", st.base + "/api/score/top", "get.lua", [tokens["u0000001"]]),
        ("healthz", st.base + "/healthz", "get.lua", ["-"]),
    ):
        raw = out_dir / f"{name}.txt"
        spy = record(pid, 6, raw)
        wrk(url, script, args, seconds=6)
        spy.wait(30)
        if raw.exists():
            (out_dir / f"{name}-summary.txt").write_text(summarise(raw))


RECOMPUTES_METRIC = "scoreboard_board_recomputes_total"


def bench_worker() -> int | None:
    """The pid of the newest bench stack's Celery worker (named ``bench-<pid>@host``), or None."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if b"celery" in argv and any(a.startswith(b"bench-") for a in argv):
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            found.append((int(stat.rsplit(")", 1)[1].split()[19]), int(entry.name), parent))
    pids = {pid for _, pid, _ in found}
    # The main process, not its pool children (whose parent is a bench worker too).
    mains = sorted((start, pid) for start, pid, parent in found if parent not in pids)
    return mains[-1][1] if mains else None


def _metrics_url(pid: int) -> str | None:
    """The worker's metrics endpoint, from the port the bench gave it in its environment."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"SCOREBOARD_WORKER_METRICS_PORT="):
            return f"http://127.0.0.1:{item.split(b'=', 1)[1].decode()}/metrics"
    return None


def _recomputes(url: str | None) -> int | None:
    if not url:
        return None
    try:
        body = requests.get(url, timeout=2).text
    except requests.RequestException:
        return None
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == RECOMPUTES_METRIC:
                return int(sample.value)
    return 0


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / 100


def capture_worker(seconds: float, out_dir: Path, pid: int | None = None) -> str:
    """Record the bench worker's main and pool processes for ``seconds``; returns the summaries' text."""
    pid = pid or bench_worker()
    if pid is None:
        raise SystemExit("no bench Celery worker is running")
    out_dir.mkdir(parents=True, exist_ok=True)
    url = _metrics_url(pid)
    procs = {"main": pid, **{f"pool-{child}": child for child in children(pid)}}
    cpu_before = {name: _cpu_seconds(p) for name, p in procs.items()}
    before, started = _recomputes(url), time.monotonic()
    spies = {name: record(p, seconds, out_dir / f"worker-{name}.txt", idle=False) for name, p in procs.items()}
    for spy in spies.values():
        spy.wait(seconds + 30)
    after, elapsed = _recomputes(url), time.monotonic() - started
    lines = [f"worker pid {pid}, {elapsed:.1f} s"]
    if before is not None and after is not None:
        lines.append(f"recomputes: {after - before} ({(after - before) / elapsed:.1f}/s)")
    for name, p in procs.items():
        lines.append(f"{name} (pid {p}): {_cpu_seconds(p) - cpu_before[name]:.2f} s of CPU")
    for name in procs:
        raw = out_dir / f"worker-{name}.txt"
        if raw.exists():
            summary = summarise(raw, top=40)
            (out_dir / f"worker-{name}-summary.txt").write_text(summary)
            lines += ["", f"== {name}", summary]
    text = "\n".join(lines)
    (out_dir / "worker-summary.txt").write_text(text)
    return text


def _wait_for_line(log_path: Path, pattern: str, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.exists() and re.search(pattern, log_path.read_text(errors="replace")):
            return
        time.sleep(0.2)
    raise SystemExit(f"{pattern!r} did not appear in {log_path}")


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.profile worker``: record the running bench stack's Celery worker."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("what", choices=["worker"])
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--pid", type=int, default=None, help="the worker's main process (default: the newest bench one)"
    )
    parser.add_argument("--after", nargs=2, metavar=("LOG", "PATTERN"), help="wait until LOG holds PATTERN first")
    args = parser.parse_args(argv)
    if args.after:
        _wait_for_line(Path(args.after[0]), args.after[1])
    print(capture_worker(args.seconds, args.out, args.pid))


if __name__ == "__main__":
    main()
