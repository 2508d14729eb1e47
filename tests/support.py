"""Test helpers: tokens, database snapshots, and real server processes."""

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("users", "scores", "actions", "completions", "audit_log")


def bearer(token):
    """An Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def snapshot(app):
    """Every row of every table, for asserting that a refused request changed nothing."""
    from scoreboard.extensions import db

    with app.app_context():
        state = {t: sorted(map(tuple, db.session.execute(text(f"SELECT * FROM {t}")).all()), key=repr) for t in TABLES}
        db.session.rollback()
    return state


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30, proc=None):
    """Wait until ``url`` answers; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class Process:
    """A child process with its output in a log file, stopped cleanly at the end."""

    def __init__(self, name, argv, env, log_dir):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signal the process group and wait; kill it if it lingers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()

    def output(self):
        """What the process has printed so far."""
        return self.log_path.read_text(errors="replace")


def python_bin():
    """The interpreter running the tests (the project's virtualenv)."""
    return str(Path(sys.executable))


def start_web(env, log_dir, name="web", workers=2, extra=(), port=None):
    """Start gunicorn with the production config on ``port`` (default: a free one); returns ``(process, base_url)``."""
    port = port or free_port()
    env = {**env, "SCOREBOARD_BIND": f"127.0.0.1:{port}", "SCOREBOARD_WEB_WORKERS": str(workers)}
    argv = [python_bin(), "-m", "gunicorn", "-c", "gunicorn.conf.py", *extra, "wsgi:app"]
    proc = Process(name, argv, env, log_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/api/actions", proc=proc.proc)
    except Exception:
        proc.stop()
        raise RuntimeError(f"{name} failed to start:\n{proc.output()}") from None
    return proc, base


def start_worker(env, log_dir, name="worker", concurrency=2):
    """Start a Celery worker on the board queue and wait until it is ready."""
    argv = [
        python_bin(),
        "-m",
        "celery",
        "-A",
        "celery_app",
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        "-Q",
        env.get("SCOREBOARD_CELERY_QUEUE", "board"),
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"{name}-{os.getpid()}@%h",
    ]
    proc = Process(name, argv, env, log_dir)
    deadline = time.monotonic() + 60
    while "ready." not in proc.output():
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"{name} failed to start:\n{proc.output()}")
        time.sleep(0.2)
    return proc


@contextmanager
def running_stack(env, log_dir, name="", concurrency=2):
    """A Celery worker and gunicorn started together and stopped together; yields the base URL."""
    prefix = f"{name}-" if name else ""
    worker = start_worker(env, log_dir, name=f"{prefix}worker", concurrency=concurrency)
    try:
        web, base = start_web(env, log_dir, name=f"{prefix}web")
    except Exception:
        worker.stop()
        raise
    try:
        yield base
    finally:
        web.stop()
        worker.stop()


def pid_alive(pid):
    """Whether a process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
