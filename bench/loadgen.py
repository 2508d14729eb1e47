"""The load generators, driven from the bench: wrk, the open-loop claimer, the socket client."""

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import stack
from .progress import log

WRK_SCRIPTS = Path(__file__).resolve().parent / "wrk"


def ensure_wrk() -> None:
    """Install wrk from Debian's packages when it is missing."""
    if shutil.which("wrk"):
        return
    log("wrk is missing: installing it with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def wrk(
    url: str, script: str, args: Sequence[object] = (), seconds: int = 8, connections: int = 32, threads: int = 1
) -> dict[str, Any]:
    """Run wrk with one of bench/wrk's scripts; returns its JSON summary plus ``rps``."""
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPTS / script),
        url,
        "--",
        *[str(a) for a in args],
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


def run_claimer(base: str, claims_file: str | Path, rate: int, seconds: int, channel: str, out: Path) -> dict[str, Any]:
    """Run ``bench.claimer`` (open-loop claims, broadcasts observed on ``channel``); returns its records."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.claimer",
            base,
            str(claims_file),
            str(rate),
            str(seconds),
            stack.REDIS_URL,
            channel,
            str(out),
        ],
        cwd=stack.ROOT,
        check=True,
        timeout=seconds + 90,
    )
    return json.loads(out.read_text())


class SocketFleet:
    """The socket client process (``bench.sockets``), driven line by line; a context manager that stops it."""

    def __init__(self, base: str, token: str, log_dir: Path) -> None:
        url = base.replace("http://", "ws://") + "/ws/scoreboard"
        self.log_path = Path(log_dir) / "sockets.log"
        # The child gets its own copy of the log's descriptor: ours can close once it has started.
        with self.log_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.sockets", url, token, stack.ORIGIN],
                cwd=stack.ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )

    def __enter__(self) -> "SocketFleet":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def ask(self, line: str, timeout: float = 180) -> str:
        """Send one command; return its answer (the client is killed if it does not answer in time)."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        done = threading.Event()
        timer = threading.Timer(timeout, lambda: done.is_set() or self.proc.kill())
        timer.start()
        answer = self.proc.stdout.readline().strip()
        done.set()
        timer.cancel()
        if not answer:
            raise RuntimeError(f"the socket client died (see {self.log_path})")
        return answer

    def stop(self) -> None:
        """Quit the client (kill it if it lingers)."""
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait(5)
