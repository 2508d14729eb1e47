"""Configuration read from ``SCOREBOARD_*`` environment variables, grouped by the part that uses it.

Unset ``SCOREBOARD_DATABASE_URL`` / ``SCOREBOARD_REDIS_URL`` select the embedded
defaults: a SQLite file and in-process cache, pub/sub, rate-limit storage and
eager task execution, so ``make run`` needs no other service. Every variable is
listed in the README's settings table (a test checks that).
"""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent
# Good enough for `make run` on a laptop; a deployment on a real database refuses to start with it.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789"
MIN_HS256_SECRET_BYTES = 32
PREFIX = "SCOREBOARD_"


def env(name: str, default: Any = None) -> Any:
    """Return ``SCOREBOARD_<name>`` from the environment, or ``default`` when unset or empty."""
    value = os.environ.get(f"{PREFIX}{name}")
    return default if value in (None, "") else value


def env_bool(name: str, default: bool = False) -> bool:
    """Return a boolean ``SCOREBOARD_<name>`` (1/true/yes/on)."""
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """Return an integer ``SCOREBOARD_<name>``."""
    return int(env(name, default))


def env_float(name: str, default: float) -> float:
    """Return a number ``SCOREBOARD_<name>``."""
    return float(env(name, default))


def parse_duration(text: str) -> timedelta:
    """Parse ``90``, ``90s``, ``15m``, ``1h`` or ``7d`` into a timedelta."""
    text = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    return timedelta(seconds=float(text))


def read_key(value: str | None) -> str | None:
    """Accept a PEM key inline or as a path to a file holding it."""
    if value and not value.lstrip().startswith("-----") and Path(value).is_file():
        return Path(value).read_text()
    return value


def database_settings() -> dict[str, Any]:
    """PostgreSQL (or the embedded SQLite file) and its connection pools."""
    url = env("DATABASE_URL")
    uri = url or "sqlite:///" + str(Path(env("SQLITE_PATH", BASE_DIR / "instance" / "scoreboard.sqlite3")))
    if url is None:
        engine = {"connect_args": {"timeout": 30}}
    else:
        engine = {
            # A round trip per checkout, so that a request never meets a connection that died with a
            # restarted server. The claims pool below does without: a claim retries once instead.
            "pool_pre_ping": env_bool("DB_PRE_PING", True),
            "pool_recycle": env_int("DB_POOL_RECYCLE", 1800),
            "pool_size": env_int("DB_POOL_SIZE", 10),
            # No overflow by default: under steady load an overflow connection is opened for a request and
            # closed after it (a new server process each time); waiting for a pooled one is far cheaper.
            "max_overflow": env_int("DB_MAX_OVERFLOW", 0),
            "pool_timeout": 5,
            "connect_args": database_bounds(url),
        }
    # Claims commit in one statement on connections kept in autocommit, so they pay no BEGIN or
    # COMMIT round trip (switching a pooled connection in and out of autocommit costs one too).
    binds = (
        {"claims": {**engine, "url": url, "isolation_level": "AUTOCOMMIT", "pool_pre_ping": False}}
        if uri.startswith("postgresql")
        else {}
    )
    return {
        "DATABASE_URL": url,
        "EMBEDDED_DATABASE": url is None,
        "SQLALCHEMY_DATABASE_URI": uri,
        "SQLALCHEMY_ENGINE_OPTIONS": engine,
        "SQLALCHEMY_BINDS": binds,
        "MIGRATIONS_DIR": BASE_DIR / "migrations",
        # The claim and recompute statements prepared once per connection (scoreboard.ops.prepared); off for
        # PgBouncer in transaction mode, which does not keep a session's prepared statements.
        "DB_PREPARED_STATEMENTS": env_bool("DB_PREPARED_STATEMENTS", True),
        # The longest a web or worker process waits for PostgreSQL to answer one operation (scoreboard.ops.db_waits).
        "DB_WAIT_TIMEOUT": seconds(env("DB_WAIT_TIMEOUT", "1.5s")),
    }


def seconds(text: str) -> float:
    """A duration (``1.5``, ``2s``, ``1m``) in seconds; for the bounds below, ``0`` means none."""
    return parse_duration(text).total_seconds()


def database_bounds(url: str) -> dict[str, Any]:
    """libpq's parameters that bound a connection's waits: connecting, statements, locks, a silent peer.

    ``statement_timeout`` and ``lock_timeout`` are set for every session through ``options``
    (after any ``options`` in the URL's query); ``0`` turns one off, e.g. for a long migration.
    Keepalives and ``tcp_user_timeout`` drop a connection whose peer has vanished (a network
    partition); a server that is stopped but whose kernel still acknowledges packets is caught by
    the wait callback instead (``SCOREBOARD_DB_WAIT_TIMEOUT``).
    """
    from urllib.parse import parse_qs, urlsplit

    options = parse_qs(urlsplit(url).query).get("options", [])
    for name, value in (
        ("statement_timeout", seconds(env("DB_STATEMENT_TIMEOUT", "2s"))),
        ("lock_timeout", seconds(env("DB_LOCK_TIMEOUT", "1s"))),
    ):
        if value > 0:
            options.append(f"-c {name}={round(value * 1000)}")
    idle = env_int("DB_KEEPALIVES_IDLE", 10)
    bounds = {
        "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 2),
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": max(1, idle // 3),
        "keepalives_count": 3,
        "tcp_user_timeout": round(seconds(env("DB_TCP_USER_TIMEOUT", "10s")) * 1000),
    }
    return {**bounds, "options": " ".join(options)} if options else bounds


def is_redis_cluster(url: str | None) -> bool:
    """Whether ``url`` names a Redis Cluster: ``redis+cluster://host:port[,host:port...]`` (the form of ``limits``)."""
    return bool(url) and url.partition("://")[0].lower() == "redis+cluster"


def redis_settings() -> dict[str, Any]:
    """Redis (one server, or a cluster by ``redis+cluster://``) for the board stores, pub/sub and rate limits;
    unset means in-process."""
    url = env("REDIS_URL")
    return {
        "REDIS_URL": url,
        "EMBEDDED_REDIS": url is None,
        "REDIS_PREFIX": env("REDIS_PREFIX", "scoreboard:"),
        # After a Redis timeout a process stops waiting on Redis this long, then lets one request try
        # (scoreboard.ops.redis_breaker); after a refused connection, which costs no wait, 1 s at most.
        "REDIS_BREAKER_OPEN": seconds(env("REDIS_BREAKER_OPEN", "5s")),
    }


def celery_settings(redis_url: str | None) -> dict[str, Any]:
    """Celery: the broker defaults to Redis; RabbitMQ works by URL (amqp://). Beat's schedule.

    A Redis Cluster cannot be Celery's broker: with one as ``SCOREBOARD_REDIS_URL`` the broker
    must be set apart (RabbitMQ, or a plain Redis), or the process refuses to start
    (:class:`RefusedConfiguration`, one line from ``scoreboard.create_app_for_process``).
    """
    from kombu import Queue  # here, not at the top: gunicorn's config reads this module's env helpers

    broker = env("BROKER_URL", redis_url)
    if is_redis_cluster(broker):
        raise RefusedConfiguration(
            "refusing to start: Celery cannot use a Redis Cluster (redis+cluster://) as its broker: set "
            "SCOREBOARD_BROKER_URL to RabbitMQ (amqp://user:password@host:5672//) or to a separate plain Redis "
            "(redis://host:6379/0)"
        )
    board_queue = env("CELERY_QUEUE", "board")
    maintenance_queue = env("CELERY_MAINTENANCE_QUEUE", "maintenance")
    celery = {
        "broker_url": broker or "memory://localhost/",
        "task_always_eager": broker is None or env_bool("CELERY_EAGER", False),
        "task_eager_propagates": True,
        "task_ignore_result": True,
        "result_backend": None,
        # Board work has a queue of its own, so housekeeping never sits in front of a recompute;
        # a worker started without -Q consumes both (see docs/performance.md for worker settings).
        "task_default_queue": board_queue,
        "task_queues": (Queue(board_queue), Queue(maintenance_queue)),
        # One task reserved at a time: a queued recompute never waits behind a busy process.
        "worker_prefetch_multiplier": 1,
        "worker_disable_rate_limits": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "broker_connection_retry_on_startup": True,
        # A lost broker is retried forever, every second (see scoreboard.ops.worker), so the
        # worker is back within a second or two of the broker's return, however long it was gone.
        "broker_connection_max_retries": None,
        "worker_consumer": "scoreboard.ops.worker:QuickReconnectConsumer",
        # A hung broker (not just a refused one) must not hang a claim's enqueue or a readiness check.
        "broker_transport_options": {"socket_connect_timeout": 2, "socket_timeout": 2},
        "broker_connection_timeout": 2,
        "task_publish_retry": False,
        "worker_hijack_root_logger": False,
    }
    return {
        "CELERY": celery,
        "CELERY_MAINTENANCE_QUEUE": maintenance_queue,
        # Beat's periods, seconds (the schedule itself is in workers/__init__.py).
        "SWEEP_INTERVAL": env_float("SWEEP_INTERVAL", 2.0),
        "RECONCILE_INTERVAL": env_float("RECONCILE_INTERVAL", 300.0),
        "EXPIRE_INTERVAL": env_float("EXPIRE_INTERVAL", 60.0),
        "PRUNE_INTERVAL": env_float("PRUNE_INTERVAL", 3600.0),
        "ANOMALY_INTERVAL": parse_duration(env("ANOMALY_INTERVAL", "10m")).total_seconds(),
        # The analytics rollup (workers/analytics.py): how often, and how far behind now it stops (claims that
        # commit late, by at most their own timeouts, still land before it).
        "ANALYTICS_INTERVAL": parse_duration(env("ANALYTICS_INTERVAL", "5m")).total_seconds(),
        "ANALYTICS_LAG": parse_duration(env("ANALYTICS_LAG", "5m")),
        # The worker's own /metrics endpoint (it serves no HTTP otherwise); unset: not served.
        "WORKER_METRICS_PORT": env("WORKER_METRICS_PORT"),
        "WORKER_METRICS_ADDR": env("WORKER_METRICS_ADDR", "0.0.0.0"),
    }


def jwt_settings() -> dict[str, Any]:
    """Tokens: HS256 with a shared secret, or RS256 verified with the site's auth server's public key."""
    public_key = read_key(env("JWT_PUBLIC_KEY"))
    if public_key:
        # The private key is only needed to mint (flask tokens mint).
        previous = read_key(env("JWT_PREVIOUS_PUBLIC_KEY"))
        keys = {
            "JWT_ALGORITHM": "RS256",
            "JWT_PUBLIC_KEY": public_key,
            "JWT_PRIVATE_KEY": read_key(env("JWT_PRIVATE_KEY")),
            # During a key rotation: the key being retired still verifies the tokens that name it (kid).
            "JWT_PREVIOUS_KEYS": [previous] if previous else [],
        }
    else:
        keys = {
            "JWT_ALGORITHM": "HS256",
            "JWT_SECRET_KEY": env("JWT_SECRET_KEY", DEV_JWT_SECRET),
            "JWT_PREVIOUS_KEYS": [k.strip() for k in env("JWT_PREVIOUS_SECRET_KEYS", "").split(",") if k.strip()],
        }
    issuer, audience = env("JWT_ISSUER"), env("JWT_AUDIENCE")
    return {
        **keys,
        "JWT_DECODE_ALGORITHMS": [keys["JWT_ALGORITHM"]],
        "JWT_TOKEN_LOCATION": ["headers"],
        "JWT_QUERY_STRING_NAME": "token",  # only the board socket reads it
        "JWT_ACCESS_TOKEN_EXPIRES": parse_duration(env("JWT_EXPIRES", "1h")),
        "JWT_DECODE_LEEWAY": env_int("JWT_LEEWAY", 10),
        "JWT_DECODE_ISSUER": issuer,
        "JWT_ENCODE_ISSUER": issuer,
        "JWT_DECODE_AUDIENCE": audience,
        "JWT_ENCODE_AUDIENCE": audience,
        # Tokens whose signature and claims this process verified, remembered by their header (never past exp;
        # revocations still checked on every request); 0 verifies every request's token afresh.
        "TOKEN_CACHE_SIZE": env_int("TOKEN_CACHE_SIZE", 4096),
        # How long a revocation by jti is kept (covers the longest-lived token the site issues).
        "REVOCATION_TTL": int(parse_duration(env("REVOCATION_TTL", "7d")).total_seconds()),
    }


def limit_settings(redis_url: str | None, redis_prefix: str) -> dict[str, Any]:
    """Rate limits (Flask-Limiter, stored where Redis is) and request size."""
    return {
        "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        # Per client IP across every endpoint, counted before any token check and in addition to a
        # route's own limits (Flask-Limiter's application limits, one counter per IP for the whole app).
        "RATELIMIT_APPLICATION": env("RATE_LIMIT_IP", "50/second;2000/minute"),
        # X-RateLimit-* on every response costs a Redis round trip each; off, they go on 429s only.
        "RATELIMIT_HEADERS_ENABLED": env_bool("RATE_LIMIT_HEADERS", False),
        # Counters live under the prefix (limits' own "LIMITS" prefix replaced), so a prefix-scoped ACL covers them.
        "RATELIMIT_KEY_PREFIX": "",
        "RATELIMIT_ENABLED": env_bool("RATE_LIMIT_ENABLED", True),
        # Redis down: limits keep holding per process (in-memory fallback) rather than failing requests.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_STORAGE_OPTIONS": (
            {"socket_connect_timeout": 1, "socket_timeout": 1, "key_prefix": f"{redis_prefix}ratelimit"}
            if redis_url
            else {}
        ),
        "RATE_LIMIT_USER": env("RATE_LIMIT_USER", "10/second;300/minute;5000/hour"),
        "RATE_LIMIT_LOGIN": env("RATE_LIMIT_LOGIN", "5/minute;50/hour"),
        "RATE_LIMIT_SERVICE": env("RATE_LIMIT_SERVICE", "500/second"),
        # The share of a limit a process reserves at once for a busy caller, then admits with no round trip (0: every
        # hit asks Redis); with P processes a window may admit up to about P x share fewer, never more.
        "RATE_LIMIT_LEASE_SHARE": env_float("RATE_LIMIT_LEASE_SHARE", 0.02),
        "MAX_CONTENT_LENGTH": env_int("MAX_BODY_BYTES", 16 * 1024),
        # A request's body must have arrived this long after its headers, else 408 (scoreboard.ops.body_timeout).
        "BODY_TIMEOUT": seconds(env("BODY_TIMEOUT", "10s")),
    }


def scoring_settings() -> dict[str, Any]:
    """The rules for completions and claims."""
    return {
        "COMPLETION_TTL": parse_duration(env("COMPLETION_TTL", "1h")),
        "MAX_ACTION_POINTS": env_int("MAX_ACTION_POINTS", 10_000),
        # Claims arriving while one is in flight go together, up to this many (scoreboard.scoring.claim_batch).
        "CLAIM_BATCH_MAX": env_int("CLAIM_BATCH_MAX", 64),
    }


def board_settings() -> dict[str, Any]:
    """The top list, its cache and its broadcasts."""
    return {
        "BOARD_SIZE": env_int("BOARD_SIZE", 10),
        "TOP_CACHE_TTL": env_int("TOP_CACHE_TTL", 300),
        "BROADCAST_MAX_RATE": env_float("BROADCAST_MAX_RATE", 20),
        # Board frames a process writes per second at most (scoreboard.live.relay): at 12-19 us a frame, up to a
        # fifth of a core. Up to it (1,000 sockets over two processes at 20 boards a second: 10,000 frames per
        # process) every broadcast goes out as it comes; above it boards per second = budget / sockets, never
        # fewer than one a second. 10,000 rather than 20,000: with 10,000 sockets at 1,000 claims/s, 78% of
        # the claims were served instead of 50-63% (docs/performance.md).
        "FANOUT_FRAMES_PER_SECOND": env_int("FANOUT_FRAMES_PER_SECOND", 10_000),
        "PUBLIC_BOARD": env_bool("PUBLIC_BOARD", False),
        # The day, week and month boards roll over at midnight in this zone (scoreboard.periods).
        "PERIOD_TZ": period_zone(env("PERIOD_TZ", "UTC")),
        "PERIODS_KEPT": periods_kept(env("PERIODS_KEPT", "day=30,week=12,month=12")),
        # Tests replace the clock the periods are read from (a callable returning an aware datetime).
        "CLOCK": None,
    }


def period_zone(name: str) -> str:
    """An IANA time zone name (``UTC``, ``Europe/Paris``), checked."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RefusedConfiguration(f"SCOREBOARD_PERIOD_TZ: {name!r} is not a time zone") from None
    return name


def periods_kept(text: str) -> dict[str, int]:
    """How many periods of each kind stay queryable, the current one included: ``day=30,week=12,month=12``."""
    kept = {"day": 30, "week": 12, "month": 12}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, count = item.partition("=")
        if kind.strip() not in kept or not count.strip().isdigit() or int(count) < 1:
            raise RefusedConfiguration(f"SCOREBOARD_PERIODS_KEPT: {item!r} is not day|week|month=<count of 1 or more>")
        kept[kind.strip()] = int(count)
    return kept


ANOMALY_ACTIONS = ("hold", "flag")


def integrity_settings() -> dict[str, Any]:
    """The anomaly scan (scoreboard.integrity): the window it judges, how strict it is, what it does to a suspect.

    The scan's period is beat's, with the other beat periods (``ANOMALY_INTERVAL``).
    """
    action = env("ANOMALY_ACTION", "hold").strip().lower()
    if action not in ANOMALY_ACTIONS:
        raise RefusedConfiguration(f"SCOREBOARD_ANOMALY_ACTION: {action!r} is not hold or flag")
    threshold = env("ANOMALY_THRESHOLD")
    return {
        # The claims (and refusals) of this long before each scan are judged.
        "ANOMALY_WINDOW": parse_duration(env("ANOMALY_WINDOW", "24h")),
        # None: the detector's own default (scoreboard.integrity.detector.DEFAULT_THRESHOLD).
        "ANOMALY_THRESHOLD": None if threshold is None else float(threshold),
        # Fewer judged users than this and the scan flags nobody: "anomalous" means little in a small crowd.
        "ANOMALY_MIN_POPULATION": env_int("ANOMALY_MIN_POPULATION", 100),
        # A user is judged once they have this many claims in the window.
        "ANOMALY_MIN_CLAIMS": env_int("ANOMALY_MIN_CLAIMS", 6),
        # hold: a suspect leaves every public board until reviewed; flag: suspects are only reported.
        "ANOMALY_ACTION": action,
    }


def socket_settings() -> dict[str, Any]:
    """Browser origins (CORS and sockets) and the board socket's limits."""
    return {
        # Browser origins allowed to call the API (CORS) and open sockets; unset: same origin only.
        "ALLOWED_ORIGINS": [o.strip().rstrip("/") for o in env("ALLOWED_ORIGINS", "").split(",") if o.strip()],
        "WS_MAX_PER_IP": env_int("WS_MAX_PER_IP", 50),
        "WS_MAX_CLIENT_MESSAGES": env_int("WS_MAX_CLIENT_MESSAGES", 10),
        "SOCK_SERVER_OPTIONS": {
            "ping_interval": env_int("WS_PING_INTERVAL", 25),
            "max_message_size": env_int("WS_MAX_MESSAGE", 4096),
        },
        # A send that cannot finish in this many seconds drops the (slow) client.
        "WS_SEND_TIMEOUT": env_float("WS_SEND_TIMEOUT", 5),
        # An idle socket's thread wakes this often; broadcasts and client frames wake it at once.
        "WS_IDLE_WAKE": env_float("WS_IDLE_WAKE", 30),
    }


def ops_settings(embedded_database: bool) -> dict[str, Any]:
    """Logs, the proxy in front, and the demo page."""
    return {
        "LOG_LEVEL": env("LOG_LEVEL", "INFO"),
        "LOG_FORMAT": env("LOG_FORMAT", "json"),
        "PROXY_HOPS": env_int("PROXY_HOPS", 0),
        # The demo page at / and POST /demo/complete: on by default only on the embedded database. On a real
        # database it lets any signed-in user record their own completions, so it needs a second setting.
        "DEMO_ENABLED": env_bool("DEMO_ENABLED", embedded_database),
        "DEMO_ALLOW_REAL_DATABASE": env_bool("DEMO_ALLOW_REAL_DATABASE", False),
    }


def load() -> dict[str, Any]:
    """Every setting, read from the environment now."""
    database, redis = database_settings(), redis_settings()
    return {
        **database,
        **redis,
        **celery_settings(redis["REDIS_URL"]),
        **jwt_settings(),
        **limit_settings(redis["REDIS_URL"], redis["REDIS_PREFIX"]),
        **scoring_settings(),
        **board_settings(),
        **integrity_settings(),
        **socket_settings(),
        **ops_settings(database["EMBEDDED_DATABASE"]),
    }


class RefusedConfiguration(RuntimeError):
    """The settings must not serve real users; the message says which and how to fix them."""


DEMO_ON_DATABASE = (
    "SCOREBOARD_DEMO_ENABLED is on with a real database: any signed-in user can then record their own "
    "completions through POST /demo/complete"
)


def insecure_settings(config: dict[str, Any]) -> list[str]:
    """Reasons this configuration must not serve real users (empty when it is fine)."""
    problems = []
    if config["DEMO_ENABLED"] and not config["EMBEDDED_DATABASE"] and not config["DEMO_ALLOW_REAL_DATABASE"]:
        problems.append(f"{DEMO_ON_DATABASE}; set SCOREBOARD_DEMO_ALLOW_REAL_DATABASE=true as well if that is intended")
    if config["JWT_ALGORITHM"] == "HS256":
        secret = config["JWT_SECRET_KEY"]
        how = (
            f"set it to a random string of at least {MIN_HS256_SECRET_BYTES} bytes, for example the output of "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
        if secret == DEV_JWT_SECRET:
            problems.append(f"SCOREBOARD_JWT_SECRET_KEY is not set (the development secret is in use): {how}")
        elif len(secret.encode()) < MIN_HS256_SECRET_BYTES:
            problems.append(f"SCOREBOARD_JWT_SECRET_KEY is shorter than {MIN_HS256_SECRET_BYTES} bytes: {how}")
        if any(len(k.encode()) < MIN_HS256_SECRET_BYTES or k == DEV_JWT_SECRET for k in config["JWT_PREVIOUS_KEYS"]):
            problems.append("a key in SCOREBOARD_JWT_PREVIOUS_SECRET_KEYS is the development secret or too short")
    return problems
