"""The production stack for the benchmark: its databases, gunicorn and a Celery worker, started and stopped here."""

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("SCOREBOARD_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SCOREBOARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
JWT_SECRET = "bench-only-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
# Every origin a bench socket may send, for the Origin allow-list.
ORIGIN = "http://bench.localhost"
# The worker's counter of board recomputes, in its Prometheus metrics.
RECOMPUTES_METRIC = "scoreboard_board_recomputes_total"
# The Celery task that recomputes the board.
REFRESH_TASK = "workers.board.refresh"


# The default limits' windows (per IP 50/second;2000/minute, per user 10/second;300/minute;5000/hour), each
# raised to a few times what the bench sends: from its one IP, wrk reaches ~4,000 requests/s (~240,000 in a
# minute); a hot user of the socket runs claims ~100/s (1,000 claims/s over 10 users), ~6,000 in a run.
# The site backend's limit (default 500/second) is raised past the users' 500/second: a window found in two limit
# strings cannot be told apart by the one-trip strategy (``scoreboard.security.rate_limits``), which then counts
# both strings window by window, three round trips a claim instead of one; the defaults share no window.
RATE_LIMITS = {
    "SCOREBOARD_RATE_LIMIT_IP": "10000/second;600000/minute",
    "SCOREBOARD_RATE_LIMIT_USER": "500/second;30000/minute;100000/hour",
    "SCOREBOARD_RATE_LIMIT_SERVICE": "5000/second",
}


def database_url(name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the bench's PostgreSQL server."""
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def stack_env(db_name: str, prefix: str, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the server processes: the production defaults, bench databases, limits sized to the load.

    Logs are the defaults (JSON lines at INFO, one per request), token checks are on, and the
    rate limiter stays on with the same windows as the defaults (so its Redis round trips are
    paid on every request), each raised only as far as the bench's load needs not to trip it:
    ``RATE_LIMITS`` below.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        {
            "SCOREBOARD_DATABASE_URL": database_url(db_name),
            "SCOREBOARD_REDIS_URL": REDIS_URL,
            "SCOREBOARD_REDIS_PREFIX": prefix,
            "SCOREBOARD_CELERY_QUEUE": f"{prefix}board",
            "SCOREBOARD_JWT_SECRET_KEY": JWT_SECRET,
            "SCOREBOARD_BIND": f"127.0.0.1:{port}",
            "SCOREBOARD_WEB_WORKERS": "2",
            # Two workers share PostgreSQL's 100 connections with whatever else runs here.
            "SCOREBOARD_DB_POOL_SIZE": "8",
            "SCOREBOARD_DB_MAX_OVERFLOW": "0",
            **RATE_LIMITS,
            # Every bench socket comes from 127.0.0.1 and one origin.
            "SCOREBOARD_WS_MAX_PER_IP": "100000",
            "SCOREBOARD_ALLOWED_ORIGINS": ORIGIN,
        }
    )
    env.update(extra or {})
    return env


def raise_open_files() -> int:
    """Lift this process's open-file limit as far as allowed (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (65536, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(target, soft), max(target, hard)))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_engine() -> Engine:
    """An autocommit engine on the server's maintenance database."""
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def drop_database(name: str) -> None:
    """Drop database ``name`` (ending its sessions first)."""
    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    engine.dispose()


def database_exists(name: str) -> bool:
    """Whether database ``name`` exists."""
    engine = admin_engine()
    with engine.connect() as conn:
        found = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": name})
    engine.dispose()
    return bool(found)


def create_database(name: str) -> None:
    """Create an empty database ``name``, replacing any of that name."""
    drop_database(name)
    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def clear_prefix(prefix: str) -> None:
    """Delete every Redis key of a bench run."""
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(prefix + "*", count=1000):
        client.delete(key)
    client.close()


class Process:
    """A child process in its own session with its output in a log file; stopped cleanly."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
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


def children(pid: int) -> list[int]:
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


def _parent(pid: int) -> int:
    """The parent pid of ``pid`` (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


_ACTIVITY: list[Engine] = []


def _activity_engine() -> Engine:
    """One small engine on the maintenance database, kept for reading ``pg_stat_activity``."""
    if not _ACTIVITY:
        _ACTIVITY.append(create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0))
    return _ACTIVITY[0]


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


class Stack:
    """gunicorn (the production config) and one Celery worker on the board queue.

    The worker serves its Prometheus metrics on a port of its own (``metrics_url``), with a
    multiprocess directory of its own (its pool process records there); the bench reads the
    worker's recompute counter from them.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, worker_class: str | None = None) -> None:
        self.env = dict(env)
        if worker_class:
            self.env["SCOREBOARD_WORKER_CLASS"] = worker_class
        self.log_dir = Path(log_dir)
        self.base = "http://" + self.env["SCOREBOARD_BIND"]
        self.metrics_url = ""
        self.web: Process | None = None
        self.worker: Process | None = None
        self._metrics_dir: str | None = None
        self._web_metrics_dir: str | None = None

    def start(self, worker_timeout: float = 60) -> "Stack":
        """Start the worker, then gunicorn; wait until both answer (the first recompute builds the mirror)."""
        py = sys.executable
        metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        # The directory must exist before the worker imports the metrics (prometheus-client opens its files then).
        self._metrics_dir = tempfile.mkdtemp(prefix="bench-worker-metrics-")
        worker_env = {
            **self.env,
            "SCOREBOARD_WORKER_METRICS_PORT": str(metrics_port),
            "SCOREBOARD_WORKER_METRICS_ADDR": "127.0.0.1",
            "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir,
        }
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
            worker_env,
            self.log_dir,
        )
        # As the production unit runs it: the web workers' metrics in a multiprocess directory of their own.
        web_env = dict(self.env)
        if "PROMETHEUS_MULTIPROC_DIR" not in web_env:
            self._web_metrics_dir = web_env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-web-metrics-")
        self.web = Process(
            "web", [py, "-m", "gunicorn", "-c", "gunicorn.conf.py", "bench.app:app"], web_env, self.log_dir
        )
        deadline = time.monotonic() + 60
        while True:
            if not self.web.alive() or not self.worker.alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the stack did not start; see {self.log_dir}")
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.wait_worker(worker_timeout)
        return self

    def recomputes(self) -> int:
        """Board recomputes the worker has started so far, from its ``/metrics``.

        The counter appears once the pool process has counted a recompute: until then it is 0.
        """
        body = requests.get(self.metrics_url, timeout=2).text
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == RECOMPUTES_METRIC:
                    return int(sample.value)
        return 0

    def wait_worker(self, timeout: float = 60) -> None:
        """Queue two recomputes and wait until the worker has started both.

        The worker runs one task at a time (``--concurrency 1``) and counts a recompute as it
        starts, so once the second has started the first, which also built the Redis mirror
        from the database, has finished.
        """
        deadline = time.monotonic() + timeout

        def waiting(what: str) -> None:
            if time.monotonic() > deadline or not self.worker.alive():
                self.stop()
                raise RuntimeError(f"{what}; see {self.log_dir}")
            time.sleep(0.1)

        before = None
        while before is None:
            try:
                before = self.recomputes()
            except requests.RequestException:
                waiting("the worker's metrics endpoint did not answer")
        sender = Celery(broker=REDIS_URL)
        for _ in range(2):
            sender.send_task(REFRESH_TASK, queue=self.env["SCOREBOARD_CELERY_QUEUE"])
        sender.close()
        while self.recomputes() < before + 2:
            waiting(f"the worker counted no recompute ({RECOMPUTES_METRIC} at {self.metrics_url})")

    def web_workers(self) -> list[int]:
        """Pids of gunicorn's worker processes."""
        return children(self.web.pid) if self.web and self.web.alive() else []

    def database_name(self) -> str:
        """The database this stack serves."""
        return self.env["SCOREBOARD_DATABASE_URL"].rsplit("/", 1)[1]

    def postgres_pids(self) -> list[int] | None:
        """PostgreSQL's processes that work for this stack: its database's sessions and the server's own.

        The server's own (WAL writer, checkpointer, background writer, ...) are shared with whatever
        else uses it; sessions on other databases (other people's tests) are left out. None if
        ``pg_stat_activity`` cannot be read.
        """
        try:
            with _activity_engine().connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = :d OR (datname IS NULL AND backend_type <> 'client backend')"
                    ),
                    {"d": self.database_name()},
                ).all()
        except Exception:
            return None
        return [row[0] for row in rows]

    def process_groups(self) -> dict[str, list[int]]:
        """Pids by role: the web workers, the Celery worker, PostgreSQL's (``postgres_pids``) and Redis's processes."""
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
        ours = self.postgres_pids()
        # The postmaster itself forks each session; it is not in pg_stat_activity.
        postmaster = [pid for pid in by_name["postgres"] if _parent(pid) not in by_name["postgres"]]
        return {
            "web": self.web_workers(),
            "worker": worker,
            "postgres": by_name["postgres"] if ours is None else sorted({*ours, *postmaster} & {*by_name["postgres"]}),
            "redis": by_name["redis-server"],
        }

    def web_rss_kib(self) -> int:
        """Resident memory of all gunicorn workers together, in KiB."""
        return sum(rss_kib(pid) for pid in self.web_workers())

    def stop(self) -> None:
        """Stop gunicorn and the worker; remove the worker's metrics directory."""
        for proc in (self.web, self.worker):
            if proc is not None:
                proc.stop()
        for path in (self._metrics_dir, self._web_metrics_dir):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        self._metrics_dir = self._web_metrics_dir = None
