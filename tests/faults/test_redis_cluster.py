"""The service on a Redis Cluster: three primaries and three replicas (real redis-server processes), Celery on
RabbitMQ, PostgreSQL on a private server.

The flow first (a completion recorded with a service token, claimed, seen on ``GET /api/score/top`` and on a
real board socket), then a failover: the primary serving the board's keys (``<p>{board}:...``, which is also
where the web processes' relays subscribe) is killed with SIGKILL while claims stream in through two web
instances, and its replica takes over. Claims must keep answering 200 (or 503 JSON, never a 500), nothing
committed may be lost, and every socket must be sent the board after the failover. The killed node is then
started again and rejoins as a replica.

The cluster is the run's one (``servers.shared_redis_cluster``), shared with the contract tests in
``tests/stores``. RabbitMQ must run on 127.0.0.1:5672 (guest/guest); the test is skipped otherwise.
"""

import json
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest
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
    receive_until,
    start_web,
    start_worker,
    wait_until,
)

from .servers import PostgresServer, shared_redis_cluster
from .stack import POINTS, BoardWatcher, ClaimStream, Stack, account, board_via_get, wait_converged, ws_url

pytestmark = [pytest.mark.faults, pytest.mark.live]

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
PREFIX = "sbcluster:"
BOARD_KEY = f"{PREFIX}{{board}}:rank"  # the all-time ranking; every key of the board is in its slot
USERS = [f"c{i}" for i in range(8)]  # with "alice", fewer than 10: the board shows every claim
REFUSAL = "scoreboard: refusing to start: Celery cannot use a Redis Cluster (redis+cluster://) as its broker"


def shows(user, score):
    """A predicate on board messages: ``user`` is on the board with ``score``."""
    return lambda message: any(e["userId"] == user and e["score"] == score for e in message["top"])


@pytest.fixture(scope="session")
def redis_cluster(request, tmp_path_factory):
    """The run's Redis Cluster (three primaries, three replicas), shared with the contract tests."""
    return shared_redis_cluster(request, tmp_path_factory)


@pytest.fixture(scope="module")
def rabbitmq():
    """The broker URL, if RabbitMQ runs locally."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    return AMQP_URL


class ClusterStack(Stack):
    """Web instances A (2 workers) and B (1), a Celery worker and beat, on the cluster, RabbitMQ and a private
    PostgreSQL: ``stack.Stack``'s data and process helpers, started on the cluster instead of a private Redis."""

    def __init__(self, base_env, log_dir, cluster, broker):
        """Create the PostgreSQL server (not started) and the environment every process gets."""
        self.log_dir = log_dir
        self.pg = PostgresServer()
        run = uuid.uuid4().hex[:8]
        self.queues = [f"board-cluster-{run}", f"maintenance-cluster-{run}"]
        self.env = {
            **base_env,
            "SCOREBOARD_DATABASE_URL": self.pg.url("scoreboard"),
            "SCOREBOARD_REDIS_URL": cluster.url(),
            "SCOREBOARD_REDIS_PREFIX": PREFIX,
            "SCOREBOARD_BROKER_URL": broker,
            "SCOREBOARD_CELERY_QUEUE": self.queues[0],
            "SCOREBOARD_CELERY_MAINTENANCE_QUEUE": self.queues[1],
            "SCOREBOARD_EXPIRE_INTERVAL": "3600",  # not due while the test runs: nothing waits in that queue
            "SCOREBOARD_LOG_LEVEL": "INFO",
            # Limits on, so they are counted on the cluster; high, so the stream stays under them.
            "SCOREBOARD_RATE_LIMIT_ENABLED": "true",
            "SCOREBOARD_RATE_LIMIT_IP": "100000/second",
            "SCOREBOARD_RATE_LIMIT_USER": "100000/second",
            "SCOREBOARD_RATE_LIMIT_SERVICE": "100000/second",
        }
        self.processes = {}
        self.engine = None
        self.base_a = self.base_b = None

    def start(self):
        """PostgreSQL with the schema and catalog, then the worker, beat and both web instances."""
        self.pg.start()
        admin = create_engine(self.pg.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE scoreboard"))
        admin.dispose()
        self.engine = create_engine(self.pg.url("scoreboard"), poolclass=NullPool)
        self.flask("db", "upgrade")
        self.flask("actions", "load", "scoreboard/default_catalog.json")
        self.processes["worker"] = start_worker(self._env_for("worker"), self.log_dir, name="cluster-worker")
        beat_argv = [python_bin(), "-m", "celery", "-A", "celery_app", "beat", "--loglevel=INFO"]
        beat_argv += ["-s", str(self.log_dir / "beat-schedule")]
        beat = self.processes["beat"] = Process("cluster-beat", beat_argv, self.env, self.log_dir)
        wait_until(
            lambda: "Sending due task" in beat.output() or beat.proc.poll() is not None,
            60,
            message=lambda: f"beat did not start:\n{beat.output()}",
        )
        assert beat.proc.poll() is None, f"beat exited:\n{beat.output()}"
        self.processes["web-a"], self.base_a = start_web(self._env_for("web-a"), self.log_dir, name="cluster-web-a")
        self.processes["web-b"], self.base_b = start_web(
            self._env_for("web-b"), self.log_dir, name="cluster-web-b", workers=1
        )

    def stop(self):
        """Stop every process, delete the PostgreSQL server and this run's RabbitMQ queues."""
        for process in self.processes.values():
            process.stop()
        if self.engine is not None:
            self.engine.dispose()
        self.pg.destroy()
        from kombu import Connection

        try:
            with Connection(self.env["SCOREBOARD_BROKER_URL"], connect_timeout=2) as conn:
                channel = conn.channel()
                for queue in self.queues:
                    channel.queue_delete(queue)
        except Exception as exc:  # the queues are empty and harmless if they stay
            print(f"RabbitMQ queues {self.queues} not deleted: {exc}")

    def claimed_points(self):
        """``{userId: points of the user's claimed completions}``, from the completions themselves."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT user_id, sum(points) FROM completions WHERE status = 'claimed' GROUP BY user_id")
            ).all()
        return {user: int(points) for user, points in rows}


@pytest.fixture(scope="module")
def cluster_stack(redis_cluster, rabbitmq, stack_env, tmp_path_factory):
    """The stack on the cluster and RabbitMQ, started once for the module and stopped at its end."""
    stack = ClusterStack(stack_env, tmp_path_factory.mktemp("cluster-stack"), redis_cluster, rabbitmq)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    yield stack
    stack.stop()


class ReadinessWatch:
    """Polls ``GET /readyz`` on one instance in a thread, recording ``(monotonic time, status, failing)``."""

    def __init__(self, base):
        self.base = base
        self.seen = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with requests.Session() as http:
            while not self._stop.is_set():
                at, failing = time.monotonic(), None
                try:
                    r = http.get(f"{self.base}/readyz", timeout=5)
                    status = r.status_code
                    if status == 503:
                        failing = r.json()["error"]["failing"]
                except requests.RequestException:
                    status = 0
                self.seen.append((at, status, failing))
                self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def not_ready_for(self):
        """Seconds between the first and the last answer other than 200 (0 if there was none)."""
        bad = [at for at, status, _ in self.seen if status != 200]
        return round(bad[-1] - bad[0], 2) if bad else 0.0


def subscribers(cluster, port, channel):
    """How many connections subscribe to ``channel`` on the node on ``port`` (plain pub/sub counts per node)."""
    return dict(cluster.node(port).execute_command("PUBSUB NUMSUB", channel))[channel]


def relays_listening(cluster):
    """How many relays subscribe to the board channel, on every node that runs."""
    return sum(subscribers(cluster, port, f"{PREFIX}board") for port in cluster.running())


def cluster_client(cluster):
    """A client on the cluster, of the service's own kind, for looking at keys."""
    from scoreboard.stores.cluster import cluster_from_url

    return cluster_from_url(cluster.url(), decode_responses=True, socket_timeout=2, socket_connect_timeout=2)


def test_rate_limit_storage_on_the_cluster_takes_the_settings_options(redis_cluster):
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter

    import config

    settings = config.limit_settings(redis_cluster.url(), "sbcluster-limits:")
    assert settings["RATELIMIT_STORAGE_URI"] == redis_cluster.url()
    storage = storage_from_string(settings["RATELIMIT_STORAGE_URI"], **settings["RATELIMIT_STORAGE_OPTIONS"])
    assert storage.check()
    limiter, limit, key = FixedWindowRateLimiter(storage), parse("2/minute"), f"k-{uuid.uuid4().hex}"
    assert [limiter.hit(limit, key) for _ in range(3)] == [True, True, False]
    storage.clear(limit.key_for(key))


def test_a_cluster_without_a_broker_apart_refuses_to_start(redis_cluster, stack_env, tmp_path):
    env = {k: v for k, v in stack_env.items() if k != "SCOREBOARD_BROKER_URL"}
    env.update({"SCOREBOARD_REDIS_URL": redis_cluster.url(), "SCOREBOARD_BIND": f"127.0.0.1:{free_port()}"})
    # One web worker: with several, each refuses and gunicorn's master may be stopping already when the
    # second one's exit arrives, which changes its own exit status (it still stops).
    env["SCOREBOARD_WEB_WORKERS"] = "1"
    commands = {
        "worker": [python_bin(), "-m", "celery", "-A", "celery_app", "worker", "--loglevel=INFO"],
        "gunicorn": [python_bin(), "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        "flask": [python_bin(), "-m", "flask", "--app", "wsgi", "routes"],
    }
    for name, argv in commands.items():
        result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        # 4: gunicorn's "app failed to load", so its master stops instead of respawning workers.
        assert result.returncode == 4, f"{name} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        assert REFUSAL in result.stderr, f"{name}:\n{result.stderr}"
        assert "Traceback" not in result.stderr, f"{name}:\n{result.stderr}"
    env["SCOREBOARD_BROKER_URL"] = redis_cluster.url()  # a cluster as the broker itself: the same refusal
    result = subprocess.run(commands["flask"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 4 and REFUSAL in result.stderr, result.stderr


def test_the_flow_and_a_primary_failover_on_a_cluster(cluster_stack, redis_cluster, mint, service_headers):
    stack, cluster = cluster_stack, redis_cluster
    bases = [stack.base_a, stack.base_b]
    tokens = {user: mint(user) for user in USERS}
    reader = mint("cluster-reader")

    # Ready: the database, the cluster (every slot served) and RabbitMQ answer.
    for base in bases:
        ready = requests.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}

    # The flow: a completion recorded with the service token, claimed by the user, seen on the socket and GET.
    alice = mint("alice")
    with connect(ws_url(stack.base_a), additional_headers=bearer(alice), open_timeout=5) as ws:
        snapshot = json.loads(ws.recv(timeout=5))
        assert snapshot["type"] == "snapshot"
        (recorded,) = stack.record(service_headers, ["alice"], 1)
        claimed = requests.post(
            f"{stack.base_a}/api/action/do", json={"actionId": recorded[1]}, headers=bearer(alice), timeout=10
        )
        assert claimed.status_code == 200, claimed.text
        assert claimed.json() == {"success": True, "newScore": POINTS}
        update, _ = receive_until(ws, shows("alice", POINTS), 5)
        assert update["type"] == "update" and update["version"] > snapshot["version"]
    assert board_via_get(stack.base_b, reader) == [("alice", POINTS)]
    # The rate limits are counted on the cluster (limits' redis+cluster storage), not in process memory.
    client = cluster_client(cluster)
    try:
        assert any(True for _ in client.scan_iter(f"{PREFIX}ratelimit*")), "no rate-limit counter on the cluster"
    finally:
        client.close()

    # The failover: SIGKILL the primary serving the board's keys while claims stream through A and B.
    primary = cluster.primary_for(BOARD_KEY)
    replica = cluster.replica_of(primary)
    items = stack.record(service_headers, USERS, 60)
    watchers = [BoardWatcher(base, reader).start() for base in bases]
    stream = ClaimStream(bases, items, tokens).start()
    try:

        def answered(since=0.0, status=None):
            return sum(1 for o in list(stream.outcomes) if o.at >= since and (status is None or o.status == status))

        wait_until(
            lambda: answered(status=200) >= 20, 30, message=lambda: f"the stream did not flow: {stream.statuses()}"
        )
        listening = subscribers(cluster, primary, f"{PREFIX}board")
        relays = relays_listening(cluster)
        with ReadinessWatch(stack.base_b) as readiness:
            killed_at = time.monotonic()
            cluster.kill(primary)
            wait_until(
                lambda: cluster.role(replica) == "master" and cluster.is_ok(),
                60,
                message=lambda: f"replica {replica} not promoted: {cluster.nodes(replica)}",
            )
            promoted_at = time.monotonic()
            versions_at_promotion = [w.version for w in watchers]
            # The relays that were on the killed primary subscribe again on nodes that run (a relay's
            # re-sync reads the revocation list, whose slot may have been the killed primary's too).
            wait_until(
                lambda: relays_listening(cluster) >= listening,
                30,
                message=lambda: f"{relays_listening(cluster)} of {listening} relays subscribed again",
            )
            resubscribed_s = round(time.monotonic() - promoted_at, 2)
            wait_until(
                lambda: answered(promoted_at, 200) >= 40,
                60,
                message=lambda: f"claims did not resume after the failover: {stream.statuses()}",
            )
            wait_until(
                lambda: requests.get(f"{stack.base_b}/readyz", timeout=5).status_code == 200,
                30,
                message="not ready again",
            )
        stream.stop()
        converged_in = wait_converged(stack, reader, watchers, timeout=30)
        after = [w.version for w in watchers]
    finally:
        stream.stop()
        for watcher in watchers:
            watcher.stop()

    failover_s = round(promoted_at - killed_at, 2)
    during = [o for o in stream.outcomes if killed_at <= o.at < promoted_at]
    assert during, "no claim was sent during the failover"
    assert set(stream.statuses()) <= {200, 503}, stream.statuses()
    codes = Counter(o.code for o in stream.outcomes)
    assert set(codes) <= {"ok", "redis_unavailable", "broker_unavailable"}, codes
    # Every socket was sent a board after the failover, and shows the database's top 10 (wait_converged).
    assert all(a > v for a, v in zip(after, versions_at_promotion, strict=True)), (versions_at_promotion, after)
    # Every relay had subscribed on the killed primary: the node serving the board's slot.
    assert listening == relays > 0, (listening, relays)
    # Readiness said 503 (JSON, naming Redis) while the slots were not served, never anything else.
    assert {(status, tuple(failing or ())) for _, status, failing in readiness.seen} <= {(200, ()), (503, ("redis",))}

    counts = account(stack, stream, "redis cluster failover", converged_in)
    assert counts["acknowledged_not_committed"] == 0
    assert counts["lost"] == 0
    assert counts["committed"] == counts["on_board"] > 0
    # Every score exact: the database's scores, the completions they come from, and the board agree.
    points = stack.claimed_points()
    assert dict(stack.truth()) == points
    assert dict(board_via_get(stack.base_a, reader)) == points == dict(board_via_get(stack.base_b, reader))

    # The killed node starts again and rejoins, as a replica of the node that took its slots.
    restarted_at = time.monotonic()
    cluster.start_node(primary)
    wait_until(lambda: cluster.role(primary) == "slave", 60, message=f"node {primary} did not rejoin as a replica")
    cluster.wait_ok()
    rejoined_s = round(time.monotonic() - restarted_at, 2)

    print(
        f"\n[redis cluster failover] failover_s={failover_s} readyz_not_ready_s={readiness.not_ready_for()} "
        f"claims_during_failover={len(during)} during_statuses={dict(Counter(o.status for o in during))} "
        f"all_statuses={dict(stream.statuses())} slowest_claim_s={max(o.took for o in stream.outcomes):.2f} "
        f"relays_on_killed_primary={listening} relays_resubscribed_after_promotion_s={resubscribed_s} "
        f"converged_s={counts['converged_s']} lost={counts['lost']} rejoined_s={rejoined_s}"
    )
