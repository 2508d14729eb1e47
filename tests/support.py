"""Test helpers: tokens, database snapshots, waiting, sockets, metrics, claims over HTTP and real server processes.

Only the helpers that start processes or open connections need services; importing this module needs none.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
# What a refused request must leave as it was. Not ``claim_refusals``: a refused claim is logged there on
# purpose, as a signal for the anomaly scan (tests/integrity checks those rows).
TABLES = (
    "users",
    "scores",
    "period_scores",
    "actions",
    "completions",
    "audit_log",
    "suspects",
    # Written by the analytics rollup job only.
    "analytics_activity",
    "analytics_days",
    "analytics_delays",
    "analytics_hours",
    "analytics_players",
    "analytics_refusals",
    "analytics_state",
)


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


def wait_until(predicate, timeout=5.0, interval=0.05, message="condition not met"):
    """Poll ``predicate`` until it returns something true and return that; fail after ``timeout`` seconds.

    ``message`` (a string, or a callable for details known only at the end) says what was awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message() if callable(message) else message} (waited {timeout}s)")
        time.sleep(interval)


# --- the board socket --------------------------------------------------------------------------


def ws_url(base, query=""):
    """The board socket's URL on the server at ``base`` (``http://host:port``), with an optional ``?query``."""
    return base.replace("http://", "ws://", 1) + "/ws/scoreboard" + query


def receive_until(ws, predicate, timeout):
    """Read socket messages until one satisfies ``predicate``; returns it and the seconds waited.

    Fails if no such message arrives within ``timeout`` seconds.
    """
    start = time.monotonic()
    seen = []
    while True:
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            raise AssertionError(f"no matching socket message within {timeout}s; got {seen}")
        try:
            message = json.loads(ws.recv(timeout=remaining))
        except TimeoutError:
            continue
        if predicate(message):
            return message, time.monotonic() - start
        seen.append(message)


# --- metrics -----------------------------------------------------------------------------------


def sample(name, **labels):
    """A metric's current value in this process's default registry (0 if never recorded)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(url):
    """``{(sample name, sorted labels): value}`` from a Prometheus endpoint such as ``<base>/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    r = requests.get(url, timeout=5)
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def scraped(samples, name, **labels):
    """One sample's value in a :func:`scrape` (0 if absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(after, before, name, **labels):
    """How much a sample grew between two scrapes."""
    return scraped(after, name, **labels) - scraped(before, name, **labels)


# --- recording and claiming over HTTP ----------------------------------------------------------


def record_over_http(base, service_headers, user, action="complete-lesson", http=requests, **extra):
    """Record a completion for ``user`` with the service token on the server at ``base``; returns its JSON.

    ``http`` may be a ``requests.Session`` to reuse connections.
    """
    r = http.post(
        f"{base}/api/actions/completions",
        json={"userId": user, "action": action, **extra},
        headers=service_headers,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return r.json()


def record_and_claim_over_http(base, service_headers, token, user, action="complete-lesson", **extra):
    """Record a completion for ``user``, then claim it with the user's ``token``; returns the claim's JSON
    with the ``actionId``. Fails unless both are accepted."""
    action_id = record_over_http(base, service_headers, user, action, **extra)["actionId"]
    r = requests.post(f"{base}/api/action/do", json={"actionId": action_id}, headers=bearer(token), timeout=10)
    assert r.status_code == 200, r.text
    return {**r.json(), "actionId": action_id}


@dataclass
class Answer:
    """One claim sent by :func:`claim_together`: its answer and when it was in flight (monotonic seconds)."""

    status: int
    body: dict
    sent_at: float
    answered_at: float


def peak_in_flight(answers):
    """The largest number of requests that were sent and not yet answered at one instant."""
    events = sorted([(a.sent_at, 1) for a in answers] + [(a.answered_at, -1) for a in answers])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def claim_together(base, jobs, workers):
    """Claim ``(headers, action_id)`` jobs over HTTP from ``workers`` threads, in rounds released at once.

    Thread ``i`` sends jobs ``i``, ``i + workers``, ...; before each one it waits at a barrier for every
    other thread, so each round of ``workers`` claims starts together. A thread that fails, or a round
    whose threads do not all arrive within 30 s, fails the call (``BrokenBarrierError``). Returns the
    :class:`Answer` of each job, in job order.
    """
    assert jobs and len(jobs) % workers == 0, f"{len(jobs)} jobs do not make whole rounds of {workers}"
    gate = threading.Barrier(workers, timeout=30)
    answers = [None] * len(jobs)

    def run(worker):
        try:
            with requests.Session() as http:
                for index in range(worker, len(jobs), workers):
                    headers, action_id = jobs[index]
                    gate.wait()
                    sent_at = time.monotonic()
                    r = http.post(f"{base}/api/action/do", json={"actionId": action_id}, headers=headers, timeout=30)
                    answers[index] = Answer(r.status_code, r.json(), sent_at, time.monotonic())
        except BaseException:
            gate.abort()  # the others stop waiting for this thread
            raise

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, worker) for worker in range(workers)]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:  # the cause first: the others only saw the barrier broken
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    return answers


def round_peaks(answers, workers):
    """:func:`peak_in_flight` of each round of ``workers`` consecutive claims sent by :func:`claim_together`."""
    return [peak_in_flight(answers[i : i + workers]) for i in range(0, len(answers), workers)]


# --- server processes --------------------------------------------------------------------------


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
