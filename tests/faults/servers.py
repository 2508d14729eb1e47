"""Throwaway PostgreSQL and Redis servers on spare ports, which fault tests may stop and restart.

PostgreSQL refuses to run as root. When the tests run as root (CI containers do), the cluster
directory belongs to the ``postgres`` OS user and ``initdb``/``pg_ctl`` run through
``runuser -u postgres --``; as any other user they run directly.
"""

import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port, pid_alive

PG_DIR_PREFIX = "scoreboard-faults-pg-"


def _port_open(port):
    """Whether 127.0.0.1:``port`` accepts a connection."""
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port, up=True, timeout=30):
    """Wait until 127.0.0.1:``port`` accepts connections (or, with ``up=False``, refuses them)."""
    deadline = time.monotonic() + timeout
    while _port_open(port) != up:
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} still {'closed' if up else 'open'} after {timeout}s")
        time.sleep(0.05)


def pg_tool(name):
    """Path of a PostgreSQL server tool (``initdb``, ``pg_ctl``): on PATH, else the newest Debian install."""
    found = shutil.which(name)
    if found:
        return found
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(directory, name), os.X_OK):
            return os.path.join(directory, name)
    raise RuntimeError(f"{name} not found: install the PostgreSQL server (apt-get install postgresql)")


def _as_postgres():
    """The command prefix that runs a PostgreSQL tool as the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "PostgreSQL refuses to run as root and there is no 'postgres' OS user to run it as: "
            "install the PostgreSQL server package or run the tests as another user"
        ) from None
    return ["runuser", "-u", "postgres", "--"]


def remove_abandoned_clusters():
    """Stop and delete clusters left by test runs that died before their teardown (pg_ctl daemonizes)."""
    for root in glob.glob(os.path.join(tempfile.gettempdir(), PG_DIR_PREFIX + "*")):
        try:
            owner = int(Path(root, "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(owner):
            continue
        if Path(root, "data", "postmaster.pid").exists():
            subprocess.run(
                [
                    *_as_postgres(),
                    pg_tool("pg_ctl"),
                    "-D",
                    os.path.join(root, "data"),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only."""

    def __init__(self):
        """Create the cluster (initdb) on a spare port; it is not started yet."""
        remove_abandoned_clusters()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix=PG_DIR_PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as = _as_postgres()
        if self._as:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool, *args, timeout=60, check=True):
        """Run a PostgreSQL tool, as the ``postgres`` user when we are root."""
        return subprocess.run(
            [*self._as, pg_tool(tool), *args], capture_output=True, text=True, timeout=timeout, check=check
        )

    def url(self, database="postgres"):
        """A SQLAlchemy URL for ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self):
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start")
        wait_port(self.port)

    def stop(self, mode="fast"):
        """Stop the server (``fast`` ends every session, as a restart in production does)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop", check=False)
        wait_port(self.port, up=False)

    def destroy(self):
        """Stop the server for good and delete its files."""
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _die_with_parent():
    """In the child, before exec: get SIGTERM when the test process dies, however it dies (Linux)."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class RedisServer:
    """A redis-server without persistence: a restart loses every key, the worst case for the board."""

    def __init__(self, log_dir):
        """Pick a spare port; logs go to ``log_dir``."""
        self.port = free_port()
        self.log_dir = log_dir
        self.process = None
        self.starts = 0

    def url(self, db=0):
        """A Redis URL for database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self):
        """Start redis-server on this server's port and wait until it answers."""
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not found: install it (apt-get install redis-server)")
        self.starts += 1
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        with open(Path(self.log_dir) / f"redis-{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        wait_port(self.port)

    def freeze(self):
        """SIGSTOP: the port still accepts connections but nothing answers (a hung or partitioned Redis)."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self):
        """SIGCONT: answer again, with every key intact."""
        self.process.send_signal(signal.SIGCONT)

    def stop(self):
        """Stop redis-server (its data is gone) and wait until the port refuses connections."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None
        wait_port(self.port, up=False)


CLUSTER_DIR_PREFIX = "scoreboard-faults-cluster-"


def _bindable(port):
    """Whether 127.0.0.1:``port`` can be bound right now."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count):
    """``count`` spare ports below 55535, each with its cluster bus port (``port + 10000``) spare as well."""
    import random

    ports = []
    while len(ports) < count:
        port = random.randrange(20000, 55535)
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


def remove_abandoned_cluster_dirs():
    """Delete the directories of clusters whose test run died before its teardown (the nodes died with it)."""
    for root in glob.glob(os.path.join(tempfile.gettempdir(), CLUSTER_DIR_PREFIX + "*")):
        try:
            owner = int(Path(root, "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not pid_alive(owner):
            shutil.rmtree(root, ignore_errors=True)


class RedisClusterServer:
    """A Redis Cluster of real redis-server processes: three primaries and a replica each, without persistence.

    Every node listens on 127.0.0.1 on its port and on port + 10000 (the cluster bus). The node timeout
    is 2 s (Redis's default is 15 s): a primary that stops answering is marked failed after 2 s and its
    replica takes its slots a moment later, so a failover takes seconds, not tens of seconds.
    """

    NODE_TIMEOUT_MS = 2000

    def __init__(self, log_dir, primaries=3):
        """Pick spare ports and a directory for the nodes' cluster files; nothing is started yet."""
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server and redis-cli not found: install them (apt-get install redis-server)")
        remove_abandoned_cluster_dirs()
        self.log_dir = Path(log_dir)
        self.root = Path(tempfile.mkdtemp(prefix=CLUSTER_DIR_PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self.ports = cluster_ports(primaries * 2)
        self.processes = {}
        self.starts = 0

    def url(self):
        """The service's ``SCOREBOARD_REDIS_URL`` for this cluster: every node, as startup nodes."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self):
        """Start every node, join them into a cluster (``redis-cli --cluster create``) and wait until it is ok."""
        for port in self.ports:
            self.start_node(port)
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert created.returncode == 0, f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}"
        self.wait_ok()

    def start_node(self, port):
        """Start (or restart, with its cluster file: it rejoins) the node on ``port``; wait until it listens."""
        self.starts += 1
        argv = [
            "redis-server",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.root / f"nodes-{port}.conf"),
            "--cluster-node-timeout",
            str(self.NODE_TIMEOUT_MS),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ]
        with open(self.log_dir / f"redis-cluster-{port}-{self.starts}.log", "wb") as log:
            self.processes[port] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        wait_port(port)

    def node(self, port):
        """A plain client on one node (it answers for itself, it does not follow redirections)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2)

    def running(self):
        """The ports of the nodes whose process runs."""
        return [port for port, process in self.processes.items() if process.poll() is None]

    def nodes(self, port=None):
        """``CLUSTER NODES`` as one node sees it: ``{"127.0.0.1:<port>": {"node_id", "flags", "master_id", ...}}``."""
        return self.node(port or self.running()[0]).execute_command("CLUSTER NODES")

    def state(self, port):
        """``cluster_state`` as the node on ``port`` reports it (``ok`` when every slot is served)."""
        return self.node(port).execute_command("CLUSTER INFO")["cluster_state"]

    def primary_for(self, key):
        """The port of the primary that serves ``key``'s slot now."""
        slot = int(self.node(self.running()[0]).execute_command("CLUSTER KEYSLOT", key))
        for start, end, primary, *_ in self.node(self.running()[0]).execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
        raise AssertionError(f"slot {slot} is served by no node")

    def replica_of(self, port):
        """The port of a replica of the primary on ``port``."""
        nodes = self.nodes()
        primary_id = nodes[f"127.0.0.1:{port}"]["node_id"]
        return next(int(name.rsplit(":", 1)[1]) for name, n in nodes.items() if n["master_id"] == primary_id)

    def role(self, port):
        """``master`` or ``slave``, as the node on ``port`` reports its own role."""
        return self.node(port).info("replication")["role"]

    def is_ok(self):
        """Whether every running node reports ``cluster_state:ok`` now."""
        try:
            return all(self.state(port) == "ok" for port in self.running())
        except Exception:  # a node still starting or just killed: not ok yet
            return False

    def wait_ok(self, timeout=60):
        """Wait until every running node reports ``cluster_state:ok``; returns the seconds it took."""
        started = time.monotonic()
        while True:
            if self.is_ok():
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"redis cluster not ok after {timeout}s: {self.nodes()}")
            time.sleep(0.05)

    def kill(self, port):
        """SIGKILL the node on ``port`` (no goodbye to the cluster) and wait until its port refuses connections."""
        process = self.processes[port]
        process.kill()
        process.wait(10)
        wait_port(port, up=False)

    def stop(self):
        """Stop every node and delete the cluster's files."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self.processes = {}
        shutil.rmtree(self.root, ignore_errors=True)


_shared_cluster = {}


def shared_redis_cluster(request, tmp_path_factory):
    """The test run's one Redis Cluster, for a session-scoped fixture: started by the first one to ask, stopped
    (and its files deleted) when the session ends. The contract tests and the cluster fault test share it."""
    cluster = _shared_cluster.get("cluster")
    if cluster is None:
        cluster = RedisClusterServer(tmp_path_factory.mktemp("redis-cluster"))
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        _shared_cluster["cluster"] = cluster

        def stop():
            _shared_cluster.pop("cluster", None)
            cluster.stop()

        request.addfinalizer(stop)
    return cluster
