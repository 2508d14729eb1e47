"""py-spy profiles of the web workers under load, summarised as where the time goes.

``python -m bench --profile`` records, during a claims run and a top-10 GET run,
one gunicorn worker with ``py-spy record --format raw`` (collapsed stacks), and
writes for each the functions with the largest share of samples, inclusive
(the function and what it calls) and by module.
"""

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy():
    """The py-spy executable (installed from requirements-bench.txt), or None."""
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def record(pid, seconds, out_path):
    """Start recording ``pid`` for ``seconds``; returns the py-spy process."""
    return subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "--idle",
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
            "celery",
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
