"""The stores on a Redis Cluster: the client, the key layout's hash tags, pub/sub and readiness.

``SCOREBOARD_REDIS_URL=redis+cluster://host:port[,host:port...]`` (the form the ``limits``
library reads for the rate limits) selects it. Any node of the cluster will do (the client
learns every node from the first that answers); listing more matters only while the first is
down as a process starts. What changes against one Redis:

- Keys: the scripts and the multi-key commands of one board touch several keys at once, and a
  cluster runs those only when every key is in one hash slot. Each board's keys carry a hash
  tag (``<p>{board}:rank``, ``<p>{board}:top`` ...; :func:`board_tag`); the others are each used
  alone and keep their names.
- Errors: a cluster that cannot serve a command (a primary down until its replica takes over,
  no node reachable) raises :class:`redis.exceptions.ConnectionError`, as a lone Redis that is
  down does, so callers handle both the same (503 ``redis_unavailable``, or the outbox waits).
- Pub/sub: a plain ``PUBLISH`` reaches the subscribers of every node, so the subscription may
  be on any node; it is opened on the node serving the board's keys (the one that runs the
  publish script) or, when that one does not answer, on the next node that does.
- Readiness: a node answers and reports ``cluster_state:ok`` (every slot served).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from redis.cluster import ClusterNode, NodesManager, RedisCluster
from redis.exceptions import ClusterError, RedisClusterException, RedisError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .channels import RedisChannels


def board_tag(board: str = "") -> str:
    """The hash tag of one board's keys on a cluster: ``{board}`` (all time) or ``{board:<name>}``."""
    return "{board" + (f":{board}" if board else "") + "}"


def on_cluster(client) -> bool:
    """Whether ``client`` talks to a Redis Cluster (its adapters then name their keys with hash tags)."""
    return isinstance(client, RedisCluster)


def read_layout_apart(manager: NodesManager) -> None:
    """Have ``manager`` read the cluster's layout on connections of its own, never on those of the commands.

    redis-py 6.4 reads the layout (``CLUSTER SLOTS``) from a startup node, then disconnects that node's
    whole connection pool. With dynamic startup nodes (its default) those are the very nodes the commands
    run on, so every re-read after an error (each request that met a failed primary makes one) cut the
    commands in flight on a healthy node, and they failed with errors that are not even Redis errors
    ("I/O operation on closed file" under gevent). After each read the startup nodes are replaced by copies
    without a connection: the next read opens one of its own and closes only that.
    """

    def detach() -> None:
        nodes = manager.startup_nodes.items()
        manager.startup_nodes = {name: ClusterNode(node.host, node.port, node.server_type) for name, node in nodes}

    read = manager.initialize

    def initialize() -> None:
        read()
        detach()

    detach()
    manager.initialize = initialize


class ClusterClient(RedisCluster):
    """A ``RedisCluster`` whose "cannot serve now" errors are connection errors, as on a lone Redis.

    redis-py retries a command that failed on a lost connection or a cluster in failover (after
    reading the cluster's layout again, see :func:`read_layout_apart`); what still fails is reported
    here as :class:`~redis.exceptions.ConnectionError`. Other errors (a bug such as keys in two
    slots) are left as they are. ``DEL`` and ``EXISTS`` are sent as one command, as on one Redis
    (redis-py would split them into one pipeline per slot): the stores give them keys of one slot
    only, so they stay atomic, and keys of two slots fail instead of being split.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        read_layout_apart(self.nodes_manager)

    def delete(self, *keys):
        """``DEL`` of keys in one slot, as one command."""
        return self.execute_command("DEL", *keys)

    def exists(self, *keys):
        """``EXISTS`` of keys in one slot, as one command."""
        return self.execute_command("EXISTS", *keys)

    def execute_command(self, *args, **kwargs):
        """Run one command on the node serving its keys; see the class for the errors it raises."""
        try:
            return super().execute_command(*args, **kwargs)
        except (ClusterError, SlotNotCoveredError) as exc:  # CLUSTERDOWN, a slot without a node, TTL exhausted
            raise RedisConnectionError(f"redis cluster cannot serve {args[0]}: {exc}") from exc
        except RedisClusterException as exc:  # no node reachable while reading the layout again
            if isinstance(exc.__cause__ or exc.__context__, RedisConnectionError | RedisTimeoutError):
                raise RedisConnectionError(f"redis cluster unreachable: {exc}") from exc
            raise


def cluster_from_url(url: str, **options) -> ClusterClient:
    """A client on the cluster at ``redis+cluster://[user:password@]host:port[,host:port...]``.

    The first node goes to :meth:`RedisCluster.from_url` (as ``redis://``), the others become
    further startup nodes; ``options`` are passed on (timeouts, ``decode_responses``).
    """
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    first, *others = hosts.split(",")
    node_url = urlunsplit(("redis", f"{auth}@{first}" if auth else first, parts.path, parts.query, ""))
    startup = []
    for other in others:
        host, _, port = other.strip().rpartition(":")
        startup.append(ClusterNode(host.strip("[]"), int(port)))
    return ClusterClient.from_url(node_url, startup_nodes=startup, **options)


def answering_node(client: RedisCluster, near_key: str) -> ClusterNode:
    """A node that answers a ``PING`` now: the primary serving ``near_key`` first, else any other.

    The cluster's layout is read again first, so a primary replaced by its replica is no
    longer tried once the replica has taken over.
    """
    try:
        client.nodes_manager.initialize()
    except RedisClusterException as exc:  # no node reachable
        raise RedisConnectionError(f"redis cluster unreachable: {exc}") from exc
    first = client.get_node_from_key(near_key)
    others = [node for node in [*client.get_primaries(), *client.get_replicas()] if node.name != first.name]
    failures = []
    for node in [first, *others]:
        try:
            client.get_redis_connection(node).ping()
            return node
        except RedisError as exc:
            failures.append(f"{node.name}: {exc}")
    raise RedisConnectionError("no redis cluster node answers: " + "; ".join(failures))


class ClusterChannels(RedisChannels):
    """The board and revocation channels on a cluster: subscribed on a node that answers."""

    def __init__(self, client: RedisCluster, prefix: str, near_key: str) -> None:
        super().__init__(client, prefix)
        self.near_key = near_key

    def _open(self):
        """A pub/sub connection on the node serving ``near_key``, or another node if that one is down."""
        node = answering_node(self.redis, self.near_key)
        return self.redis.pubsub(node=node, ignore_subscribe_messages=True)


def check_cluster(client: RedisCluster) -> None:
    """Readiness on a cluster: a node answers and reports every slot served; raises otherwise."""
    state = client.cluster_info().get("cluster_state")
    if state != "ok":
        raise RedisConnectionError(f"redis cluster state is {state!r}, not 'ok': some slots are not served")
