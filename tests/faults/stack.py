"""The production stack on private PostgreSQL and Redis servers, and the tools fault tests drive it with.

Two web instances (gunicorn with the production ``gunicorn.conf.py``), one Celery worker and one
Celery beat, all on a PostgreSQL cluster and a redis-server that only these tests use, so the
tests may stop, kill and restart any of them.
"""

import itertools
import json
import queue
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from websockets.sync.client import connect

from tests.support import (
    ROOT,
    Process,
    bearer,
    free_port,
    python_bin,
    record_over_http,
    start_web,
    start_worker,
    wait_until,
    ws_url,
)

from .servers import PostgresServer, RedisServer

POINTS = 50  # "complete-lesson" in the default catalog: every claim in these tests is worth this
ACTION = "complete-lesson"


class Stack:
    """PostgreSQL, Redis, web instances A and B, a worker and beat; every part can be stopped and restarted."""

    def __init__(self, base_env, log_dir):
        """Create the servers (not started) and the environment every process gets."""
        self.log_dir = log_dir
        self.pg = PostgresServer()
        self.redis = RedisServer(log_dir)
        self.processes = {}
        self.env = {
            **base_env,
            "SCOREBOARD_DATABASE_URL": self.pg.url("scoreboard"),
            "SCOREBOARD_REDIS_URL": self.redis.url(),
            "SCOREBOARD_REDIS_PREFIX": "sbfaults:",
            "SCOREBOARD_CELERY_QUEUE": "board",
            "SCOREBOARD_LOG_LEVEL": "INFO",
            # The production bounds on PostgreSQL, which the fault tests exercise.
            "SCOREBOARD_DB_STATEMENT_TIMEOUT": "2s",
            "SCOREBOARD_DB_LOCK_TIMEOUT": "1s",
            "SCOREBOARD_DB_WAIT_TIMEOUT": "1.5s",
            # Limits on, so their Redis-down fallback is exercised; high, so the stream stays under them.
            "SCOREBOARD_RATE_LIMIT_ENABLED": "true",
            "SCOREBOARD_RATE_LIMIT_IP": "100000/second",
            "SCOREBOARD_RATE_LIMIT_USER": "100000/second",
            "SCOREBOARD_RATE_LIMIT_SERVICE": "100000/second",
        }
        self.engine = None
        self.base_a = self.base_b = None

    # Lifecycle.
    def start(self):
        """Start everything: the servers, the schema and catalog, the worker, beat and both web instances."""
        self.pg.start()
        self.redis.start()
        admin = create_engine(self.pg.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE scoreboard"))
        admin.dispose()
        self.engine = create_engine(self.pg.url("scoreboard"), poolclass=NullPool)
        self.flask("db", "upgrade")
        self.flask("actions", "load", "scoreboard/default_catalog.json")
        self.start_worker()
        self.start_beat()
        self.processes["web-a"], self.base_a = start_web(self._env_for("web-a"), self.log_dir, name="web-a")
        self.processes["web-b"], self.base_b = start_web(self._env_for("web-b"), self.log_dir, name="web-b", workers=1)

    def _env_for(self, name):
        """Each process group gets its own Prometheus multiprocess directory."""
        directory = self.log_dir / f"metrics-{name}"
        directory.mkdir(exist_ok=True)
        return {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}

    def flask(self, *args):
        """Run a ``flask`` command against the stack's database and Redis."""
        result = subprocess.run(
            [python_bin(), "-m", "flask", "--app", "wsgi", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def start_worker(self):
        """Start (or restart) the Celery worker, with its metrics endpoint; returns when it is ready."""
        self.worker_metrics_port = free_port()
        env = {
            **self._env_for("worker"),
            "SCOREBOARD_WORKER_METRICS_PORT": str(self.worker_metrics_port),
            "SCOREBOARD_WORKER_METRICS_ADDR": "127.0.0.1",
        }
        self.processes["worker"] = start_worker(env, self.log_dir, name=f"worker-{time.monotonic_ns()}")
        return self.processes["worker"]

    def start_beat(self):
        """Start Celery beat (the sweep every 2 s) and wait until it has sent its first task."""
        schedule = self.log_dir / "beat-schedule"
        argv = [python_bin(), "-m", "celery", "-A", "celery_app", "beat", "--loglevel=INFO", "-s", str(schedule)]
        beat = self.processes["beat"] = Process("beat", argv, self.env, self.log_dir)
        deadline = time.monotonic() + 60
        while "Sending due task" not in beat.output():
            assert beat.proc.poll() is None and time.monotonic() < deadline, f"beat did not start:\n{beat.output()}"
            time.sleep(0.2)

    def stop(self):
        """Stop every process and server and delete the cluster."""
        for process in self.processes.values():
            process.stop()
        if self.engine is not None:
            self.engine.dispose()
        self.redis.stop()
        self.pg.destroy()

    def logs(self, *names):
        """The tail of the named processes' logs, for failure messages."""
        return "\n".join(f"--- {n} ---\n{self.processes[n].output()[-3000:]}" for n in names if n in self.processes)

    # Data.
    def reset(self):
        """Empty the tables and Redis, then rebuild the (now empty) board so every relay shows it."""
        with self.engine.begin() as conn:
            conn.execute(text("TRUNCATE completions, scores, users CASCADE"))
        import redis

        redis.Redis.from_url(self.redis.url()).flushdb()
        self.flask("board", "rebuild")

    def record(self, service_headers, users, per_user):
        """Record ``per_user`` completions for each user through instance A; returns ``[(user, actionId)]``."""
        items = []
        with requests.Session() as http:
            for _ in range(per_user):
                for user in users:
                    completion = record_over_http(
                        self.base_a, service_headers, user, ACTION, http=http, displayName=user.upper()
                    )
                    items.append((user, completion["actionId"]))
        return items

    def truth(self):
        """The top 10 by the database, the source of truth: ``[(userId, score)]`` in board order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT s.user_id, s.score FROM scores s JOIN users u ON u.id = s.user_id "
                    "WHERE s.score > 0 AND u.status = 'active' "
                    "ORDER BY s.score DESC, s.reached_at ASC, s.user_id DESC LIMIT 10"
                )
            ).all()
        return [(user, int(score)) for user, score in rows]

    def committed_ids(self):
        """The actionIds whose claim is committed in the database."""
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(text("SELECT id FROM completions WHERE status = 'claimed'"))}

    def pending_rows(self):
        """Score changes committed but not yet mirrored to the board (the outbox)."""
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM scores WHERE board_pending")).scalar_one()


@dataclass
class Outcome:
    """One claim request as the client saw it."""

    action_id: str
    status: int  # 0: no answer (connection error or timeout)
    code: str | None
    at: float
    took: float = 0.0


class ClaimStream:
    """Claims the given completions from a few threads, alternating between instances, at a steady pace."""

    def __init__(self, bases, items, tokens, interval=0.02, threads=2):
        """Queue ``items`` (``(user, actionId)``) to claim with ``tokens``, one every ``interval`` s per thread."""
        self.bases = bases
        self.tokens = tokens
        self.interval = interval
        self.outcomes = []
        self._queue = queue.Queue()
        for item in items:
            self._queue.put(item)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self):
        """Start sending."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        """Stop sending and wait for the requests in flight."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self):
        """One sending thread: claim until the queue is empty or the stream is stopped."""
        with requests.Session() as http:
            while not self._stop.is_set():
                try:
                    user, action_id = self._queue.get_nowait()
                except queue.Empty:
                    return
                base = self.bases[next(self._turn) % len(self.bases)]
                outcome = Outcome(action_id, 0, None, time.monotonic())
                try:
                    r = http.post(
                        f"{base}/api/action/do",
                        json={"actionId": action_id},
                        headers=bearer(self.tokens[user]),
                        timeout=10,
                    )
                    outcome.status = r.status_code
                    try:
                        body = r.json()
                        outcome.code = "ok" if r.status_code == 200 else body["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        outcome.code = f"not-json: {r.text[:120]!r}"
                except requests.RequestException as exc:
                    outcome.code = exc.__class__.__name__
                outcome.took = time.monotonic() - outcome.at
                with self._lock:
                    self.outcomes.append(outcome)
                self._stop.wait(self.interval)

    def statuses(self):
        """How many answers of each status."""
        return Counter(o.status for o in self.outcomes)

    def answered(self, since=None, status=None):
        """How many claims sent at or after ``since`` (monotonic) were answered so far (with ``status``, if given)."""
        with self._lock:
            return sum(
                1
                for o in self.outcomes
                if o.status and (since is None or o.at >= since) and (status is None or o.status == status)
            )

    def wait_answered(self, count, since=None, status=None, timeout=30, at_least=0.0):
        """Wait until ``count`` claims sent at or after ``since`` have been answered (with ``status``, if given),
        and at least ``at_least`` seconds have passed since ``since``.

        Fails after ``timeout`` seconds, or as soon as the stream has run out of claims to send.
        """
        started = since if since is not None else time.monotonic()

        def reached():
            if self.answered(since, status) >= count and time.monotonic() - started >= at_least:
                return True
            assert any(t.is_alive() for t in self._threads), (
                f"the stream ran out of claims: {self.answered(since, status)} of {count} answered; {self.statuses()}"
            )
            return False

        wait_until(
            reached,
            timeout,
            interval=0.01,
            message=lambda: f"{self.answered(since, status)} of {count} claims answered; {self.statuses()}",
        )


@dataclass
class BoardWatcher:
    """A widget: holds a socket open on one instance and remembers the last board it was sent.

    If the socket closes it reconnects, as the widget does, and counts the close.
    """

    base: str
    token: str
    top: list = field(default_factory=list)
    version: int = -1
    messages: int = 0
    closes: list = field(default_factory=list)

    def __post_init__(self):
        """Prepare the reading thread."""
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        """Connect and wait for the first (snapshot) message."""
        self._thread.start()
        assert self._ready.wait(10), f"no snapshot from {self.base}"
        return self

    def stop(self):
        """Close the socket."""
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        """Read messages, reconnecting after a close, until stopped."""
        while not self._stop.is_set():
            try:
                with connect(ws_url(self.base), additional_headers=bearer(self.token), open_timeout=5) as ws:
                    while not self._stop.is_set():
                        try:
                            message = json.loads(ws.recv(timeout=0.5))
                        except TimeoutError:
                            continue
                        if message["version"] >= self.version:
                            self.version = message["version"]
                            self.top = [(e["userId"], e["score"]) for e in message["top"]]
                        self.messages += 1
                        self._ready.set()
            except Exception as exc:  # closed or refused: note it, retry like the widget
                self.closes.append(exc.__class__.__name__)
                self._stop.wait(0.5)


def board_via_get(base, token):
    """The top list by ``GET /api/score/top`` on one instance, or None if it did not answer 200."""
    try:
        r = requests.get(f"{base}/api/score/top", headers=bearer(token), timeout=5)
    except requests.RequestException:
        return None
    if r.status_code != 200:
        return None
    return [(e["userId"], e["score"]) for e in r.json()]


@contextmanager
def watched_claims(stack, items, tokens, reader, **options):
    """A claim stream through A and B and a board socket on each; yields ``(stream, watchers)``, stops all three."""
    watchers = [BoardWatcher(base, reader).start() for base in (stack.base_a, stack.base_b)]
    stream = ClaimStream([stack.base_a, stack.base_b], items, tokens, **options).start()
    try:
        yield stream, watchers
    finally:
        stream.stop()
        for watcher in watchers:
            watcher.stop()


def wait_converged(stack, token, watchers, timeout):
    """Wait until every socket and ``GET /api/score/top`` on A and B show the database's top 10.

    Returns the seconds it took; fails with what each view showed if ``timeout`` passes first.
    """
    start = time.monotonic()
    truth = stack.truth()
    while True:
        views = {f"socket@{w.base}": w.top for w in watchers}
        views.update({f"GET@{b}": board_via_get(b, token) for b in (stack.base_a, stack.base_b)})
        if all(view == truth for view in views.values()):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(
                f"board did not converge in {timeout}s\ntruth: {truth}\n"
                + "\n".join(f"{k}: {v}" for k, v in views.items())
                + f"\npending rows: {stack.pending_rows()}\n"
                + stack.logs("worker", "beat", "web-a", "web-b")
            )
        time.sleep(0.1)


def account(stack, stream, label, converged_in):
    """Count claims sent, acknowledged, committed, on the board and lost; print and return the counts.

    "On the board" adds up the scores the converged board shows (every claim is worth ``POINTS``).
    """
    committed = stack.committed_ids()
    acknowledged = {o.action_id for o in stream.outcomes if o.status == 200}
    board = board_via_get(stack.base_b, stream.tokens[next(iter(stream.tokens))]) or []
    on_board = sum(score for _, score in board) // POINTS
    counts = {
        "sent": len(stream.outcomes),
        "answered_200": len(acknowledged),
        "answered_503": sum(1 for o in stream.outcomes if o.status == 503),
        "committed": len(committed),
        "on_board": on_board,
        "lost": len(committed) - on_board,
        "acknowledged_not_committed": len(acknowledged - committed),
        "converged_s": round(converged_in, 2),
    }
    print(f"\n[{label}] " + " ".join(f"{k}={v}" for k, v in counts.items()))
    return counts
