"""The production stack for the benchmark: its databases, gunicorn and a Celery worker, started and stopped here."""

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("SCOREBOARD_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SCOREBOARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
JWT_SECRET = "bench-only-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
# Every origin a bench socket may send, for the Origin allow-list.
ORIGIN = "http://bench.localhost"


def database_url(name):
    """The SQLAlchemy URL of database ``name`` on the bench's PostgreSQL server."""
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def stack_env(db_name, prefix, port, extra=None):
    """Environment for the server processes: production settings, bench databases, limits out of the way.

    The rate limiter stays on (its Redis round trips are part of every request's
    cost) with the same number of limits as the defaults, only set too high to trip.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        {
            "SCOREBOARD_DATABASE_URL": database_url(db_name),
            "SCOREBOARD_REDIS_URL": REDIS_URL,
            "SCOREBOARD_REDIS_PREFIX": prefix,
            "SCOREBOARD_CELERY_QUEUE": f"{prefix}board",
            "SCOREBOARD_JWT_SECRET_KEY": JWT_SECRET,
            "SCOREBOARD_LOG_LEVEL": "WARNING",
            "SCOREBOARD_BIND": f"127.0.0.1:{port}",
            "SCOREBOARD_WEB_WORKERS": "2",
            # Two workers share PostgreSQL's 100 connections with whatever else runs here.
            "SCOREBOARD_DB_POOL_SIZE": "8",
            "SCOREBOARD_DB_MAX_OVERFLOW": "0",
            "SCOREBOARD_RATE_LIMIT_IP": "1000000/second;100000000/minute",
            "SCOREBOARD_RATE_LIMIT_USER": "1000000/second;100000000/minute;1000000000/hour",
            # Every bench socket comes from 127.0.0.1 and one origin.
            "SCOREBOARD_WS_MAX_PER_IP": "100000",
            "SCOREBOARD_ALLOWED_ORIGINS": ORIGIN,
            "SCOREBOARD_WS_ALLOWED_ORIGINS": ORIGIN,
        }
    )
    env.update(extra or {})
    return env


def raise_open_files():
    """Lift this process's open-file limit as far as allowed (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (65536, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(target, soft), max(target, hard)))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_engine():
    """An autocommit engine on the server's maintenance database."""
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def drop_database(name):
    """Drop database ``name`` (ending its sessions first)."""
    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    engine.dispose()


def database_exists(name):
    """Whether database ``name`` exists."""
    engine = admin_engine()
    with engine.connect() as conn:
        found = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": name})
    engine.dispose()
    return bool(found)


def create_database(name):
    """Create an empty database ``name``, replacing any of that name."""
    drop_database(name)
    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


class Process:
    """A child process in its own session with its output in a log file; stopped cleanly."""

    def __init__(self, name, argv, env, log_dir):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self):
        """The process id."""
        return self.proc.pid

    def alive(self):
        """Whether it still runs."""
        return self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM the process group, then SIGKILL it if it lingers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()

    def output(self):
        """What it has printed so far."""
        return self.log_path.read_text(errors="replace")


def children(pid):
    """Pids of the direct children of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces or parentheses: the parent pid follows the last ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rss_kib(pid):
    """Resident memory of ``pid`` in KiB."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


class Stack:
    """gunicorn (the production config) and one Celery worker on the board queue."""

    def __init__(self, env, log_dir, worker_class=None):
        self.env = dict(env)
        if worker_class:
            self.env["SCOREBOARD_WORKER_CLASS"] = worker_class
        self.log_dir = log_dir
        self.base = "http://" + self.env["SCOREBOARD_BIND"]
        self.web = self.worker = None

    def start(self, worker_timeout=60):
        """Start the worker, then gunicorn; wait until both answer (the first recompute builds the mirror)."""
        py = sys.executable
        self.worker = Process(
            "worker",
            [
                py,
                "-m",
                "celery",
                "-A",
                "celery_app",
                "worker",
                "--loglevel=WARNING",
                "-Q",
                self.env["SCOREBOARD_CELERY_QUEUE"],
                "--concurrency=1",
                "--prefetch-multiplier=1",
                "-O",
                "fair",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"bench-{os.getpid()}@%h",
            ],
            self.env,
            self.log_dir,
        )
        self.web = Process(
            "web", [py, "-m", "gunicorn", "-c", "gunicorn.conf.py", "bench.app:app"], self.env, self.log_dir
        )
        deadline = time.monotonic() + 60
        while True:
            if not self.web.alive() or not self.worker.alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the stack did not start; see {self.log_dir}")
            try:
                if requests.get(self.base + "/bench/empty", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.wait_worker(worker_timeout)
        return self

    def wait_worker(self, timeout=60):
        """Queue a recompute and wait until the worker has run it (its counter moves)."""
        import redis
        from celery import Celery

        client = redis.Redis.from_url(REDIS_URL)
        key = self.env["SCOREBOARD_REDIS_PREFIX"] + "stats:recomputes"
        before = int(client.get(key) or 0)
        sender = Celery(broker=REDIS_URL)
        sender.send_task("workers.board.refresh", queue=self.env["SCOREBOARD_CELERY_QUEUE"])
        built = self.env["SCOREBOARD_REDIS_PREFIX"] + "rank:built"
        deadline = time.monotonic() + timeout
        # The counter moves as a recompute starts; the first one also rebuilds the mirror, then marks it built.
        while int(client.get(key) or 0) <= before or not client.exists(built):
            if time.monotonic() > deadline or not self.worker.alive():
                self.stop()
                raise RuntimeError(f"the worker did not run a recompute; see {self.log_dir}")
            time.sleep(0.1)
        sender.close()
        client.close()

    def web_workers(self):
        """Pids of gunicorn's worker processes."""
        return children(self.web.pid) if self.web and self.web.alive() else []

    def process_groups(self):
        """Pids by role: the web workers, the Celery worker, PostgreSQL's and Redis's server processes."""
        by_name = {"postgres": [], "redis-server": []}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    name = (entry / "comm").read_text().strip()
                except OSError:
                    continue
                if name in by_name:
                    by_name[name].append(int(entry.name))
        worker = [self.worker.pid, *children(self.worker.pid)] if self.worker and self.worker.alive() else []
        return {
            "web": self.web_workers(),
            "worker": worker,
            "postgres": by_name["postgres"],
            "redis": by_name["redis-server"],
        }

    def web_rss_kib(self):
        """Resident memory of all gunicorn workers together, in KiB."""
        return sum(rss_kib(pid) for pid in self.web_workers())

    def stop(self):
        """Stop gunicorn and the worker."""
        for proc in (self.web, self.worker):
            if proc is not None:
                proc.stop()
