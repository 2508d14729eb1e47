"""Configuration read from ``SCOREBOARD_*`` environment variables.

Unset ``SCOREBOARD_DATABASE_URL`` / ``SCOREBOARD_REDIS_URL`` select the embedded
defaults: a SQLite file and in-process cache, pub/sub, rate-limit storage and
eager task execution, so ``make run`` needs no other service.
"""

import os
from datetime import timedelta
from pathlib import Path

from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent
# Good enough for `make run` on a laptop; a deployment on a real database refuses to start with it.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789"
MIN_HS256_SECRET_BYTES = 32


def env(name, default=None):
    """Return ``SCOREBOARD_<name>`` from the environment, or ``default``."""
    value = os.environ.get(f"SCOREBOARD_{name}")
    return default if value in (None, "") else value


def env_bool(name, default=False):
    """Return a boolean ``SCOREBOARD_<name>`` (1/true/yes/on)."""
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name, default):
    """Return an integer ``SCOREBOARD_<name>``."""
    return int(env(name, default))


def parse_duration(text):
    """Parse ``90``, ``90s``, ``15m``, ``1h`` or ``7d`` into a timedelta."""
    text = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    return timedelta(seconds=float(text))


def read_key(value):
    """Accept a PEM key inline or as a path to a file holding it."""
    if value and not value.lstrip().startswith("-----") and Path(value).is_file():
        return Path(value).read_text()
    return value


class Config:
    """Settings for one process; every field can be set from the environment."""

    def __init__(self):
        self.SECRET_KEY = env("SECRET_KEY", "dev-only-not-secret")
        self.DATABASE_URL = env("DATABASE_URL")
        self.SQLALCHEMY_DATABASE_URI = self.DATABASE_URL or "sqlite:///" + str(
            Path(env("SQLITE_PATH", BASE_DIR / "instance" / "scoreboard.sqlite3"))
        )
        self.EMBEDDED_DATABASE = self.DATABASE_URL is None
        self.SQLALCHEMY_ENGINE_OPTIONS = (
            {"connect_args": {"timeout": 30}}
            if self.EMBEDDED_DATABASE
            else {
                # A round trip per checkout, so that a request never meets a connection that died with a
                # restarted server. The claims pool below does without: a claim retries once instead.
                "pool_pre_ping": env_bool("DB_PRE_PING", True),
                "pool_recycle": env_int("DB_POOL_RECYCLE", 1800),
                "pool_size": env_int("DB_POOL_SIZE", 10),
                # No overflow by default: under steady load an overflow connection is opened for a request and
                # closed after it (a new server process each time); waiting for a pooled one is far cheaper.
                "max_overflow": env_int("DB_MAX_OVERFLOW", 0),
                "pool_timeout": 5,
                "connect_args": {"connect_timeout": 3},
            }
        )
        # Claims commit in one statement on connections kept in autocommit, so they pay no BEGIN or
        # COMMIT round trip (switching a pooled connection in and out of autocommit costs one too).
        self.SQLALCHEMY_BINDS = (
            {
                "claims": {
                    **self.SQLALCHEMY_ENGINE_OPTIONS,
                    "url": self.DATABASE_URL,
                    "isolation_level": "AUTOCOMMIT",
                    "pool_pre_ping": False,
                }
            }
            if self.SQLALCHEMY_DATABASE_URI.startswith("postgresql")
            else {}
        )

        # Redis: cache, sorted set, pub/sub, rate limits; unset means in-process.
        self.REDIS_URL = env("REDIS_URL")
        self.EMBEDDED_REDIS = self.REDIS_URL is None
        self.REDIS_PREFIX = env("REDIS_PREFIX", "scoreboard:")

        # Celery: the broker defaults to Redis; RabbitMQ works by URL (amqp://).
        self.BROKER_URL = env("BROKER_URL", self.REDIS_URL)
        self.CELERY = {
            "broker_url": self.BROKER_URL or "memory://localhost/",
            "task_always_eager": self.BROKER_URL is None or env_bool("CELERY_EAGER", False),
            "task_eager_propagates": True,
            "task_ignore_result": True,
            "result_backend": None,
            # Board work has a queue of its own, so housekeeping never sits in front of a recompute;
            # a worker started without -Q consumes both (see docs/performance.md for worker settings).
            "task_default_queue": env("CELERY_QUEUE", "board"),
            "task_queues": (Queue(env("CELERY_QUEUE", "board")), Queue(env("CELERY_MAINTENANCE_QUEUE", "maintenance"))),
            "task_routes": {"workers.maintenance.*": {"queue": env("CELERY_MAINTENANCE_QUEUE", "maintenance")}},
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
            "beat_schedule": {
                "sweep-board": {
                    "task": "workers.board.sweep",
                    "schedule": float(env("SWEEP_INTERVAL", 2.0)),
                },
                "reconcile-board": {
                    "task": "workers.board.reconcile",
                    "schedule": float(env("RECONCILE_INTERVAL", 300.0)),
                },
                "expire-completions": {
                    "task": "workers.maintenance.expire_completions",
                    "schedule": float(env("EXPIRE_INTERVAL", 60.0)),
                },
            },
        }

        # Auth: HS256 with a shared secret, or RS256 verified with the public key
        # of the site's own auth server (the private key is only needed to mint).
        public_key = read_key(env("JWT_PUBLIC_KEY"))
        if public_key:
            self.JWT_ALGORITHM = "RS256"
            self.JWT_PUBLIC_KEY = public_key
            self.JWT_PRIVATE_KEY = read_key(env("JWT_PRIVATE_KEY"))
        else:
            self.JWT_ALGORITHM = "HS256"
            self.JWT_SECRET_KEY = env("JWT_SECRET_KEY", DEV_JWT_SECRET)
        self.JWT_DECODE_ALGORITHMS = [self.JWT_ALGORITHM]
        self.JWT_TOKEN_LOCATION = ["headers"]
        self.JWT_QUERY_STRING_NAME = "token"  # only the board socket reads it
        self.JWT_ACCESS_TOKEN_EXPIRES = parse_duration(env("JWT_EXPIRES", "1h"))
        self.JWT_DECODE_LEEWAY = env_int("JWT_LEEWAY", 10)
        self.JWT_DECODE_ISSUER = env("JWT_ISSUER")
        self.JWT_ENCODE_ISSUER = env("JWT_ISSUER")
        self.JWT_DECODE_AUDIENCE = env("JWT_AUDIENCE")
        self.JWT_ENCODE_AUDIENCE = env("JWT_AUDIENCE")

        # Scoring rules.
        self.COMPLETION_TTL = parse_duration(env("COMPLETION_TTL", "1h"))
        self.MAX_ACTION_POINTS = env_int("MAX_ACTION_POINTS", 10_000)
        self.BOARD_SIZE = env_int("BOARD_SIZE", 10)
        self.TOP_CACHE_TTL = env_int("TOP_CACHE_TTL", 300)
        self.BROADCAST_MAX_RATE = float(env("BROADCAST_MAX_RATE", 20))
        self.PUBLIC_BOARD = env_bool("PUBLIC_BOARD", False)
        # Browser origins allowed to call the API (CORS) and open sockets; unset: same origin only.
        self.ALLOWED_ORIGINS = [o.strip().rstrip("/") for o in env("ALLOWED_ORIGINS", "").split(",") if o.strip()]
        # How long a revocation by jti is kept (covers the longest-lived token the site issues).
        self.REVOCATION_TTL = int(parse_duration(env("REVOCATION_TTL", "7d")).total_seconds())
        self.WS_MAX_PER_IP = env_int("WS_MAX_PER_IP", 50)
        self.WS_MAX_CLIENT_MESSAGES = env_int("WS_MAX_CLIENT_MESSAGES", 10)
        self.CATALOG_FILE = env("CATALOG_FILE", str(BASE_DIR / "scoreboard" / "default_catalog.json"))

        # Rate limits (Flask-Limiter); storage follows Redis.
        self.RATELIMIT_STORAGE_URI = self.REDIS_URL or "memory://"
        self.RATELIMIT_DEFAULT = env("RATE_LIMIT_IP", "50/second;2000/minute")
        # X-RateLimit-* on every response costs a Redis round trip each; off, they go on 429s only.
        self.RATELIMIT_HEADERS_ENABLED = env_bool("RATE_LIMIT_HEADERS", False)
        self.RATELIMIT_KEY_PREFIX = f"{self.REDIS_PREFIX}ratelimit"
        self.RATELIMIT_ENABLED = env_bool("RATE_LIMIT_ENABLED", True)
        self.RATE_LIMIT_USER = env("RATE_LIMIT_USER", "10/second;300/minute;5000/hour")
        self.RATE_LIMIT_LOGIN = env("RATE_LIMIT_LOGIN", "5/minute;50/hour")
        self.RATE_LIMIT_SERVICE = env("RATE_LIMIT_SERVICE", "500/second")
        # Redis down: limits keep holding per process (in-memory fallback) rather than failing requests.
        self.RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
        self.RATELIMIT_SWALLOW_ERRORS = True
        self.RATELIMIT_STORAGE_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}

        # WebSocket.
        self.SOCK_SERVER_OPTIONS = {
            "ping_interval": env_int("WS_PING_INTERVAL", 25),
            "max_message_size": env_int("WS_MAX_MESSAGE", 4096),
        }
        # A send that cannot finish in this many seconds drops the (slow) client.
        self.WS_SEND_TIMEOUT = float(env("WS_SEND_TIMEOUT", 5))
        # An idle socket's thread wakes this often; broadcasts and client frames wake it at once.
        self.WS_IDLE_WAKE = float(env("WS_IDLE_WAKE", 30))
        # GET /api/score/top answers from the board each web process keeps in memory (kept by pub/sub).
        self.BOARD_IN_MEMORY = env_bool("BOARD_IN_MEMORY", True)
        # Each web process also keeps the revoked token ids, so checking a token costs no Redis round trip.
        self.REVOCATIONS_IN_MEMORY = env_bool("REVOCATIONS_IN_MEMORY", True)

        self.MAX_CONTENT_LENGTH = env_int("MAX_BODY_BYTES", 16 * 1024)
        self.LOG_LEVEL = env("LOG_LEVEL", "INFO")
        self.PROXY_HOPS = env_int("PROXY_HOPS", 0)
        self.MIGRATIONS_DIR = BASE_DIR / "migrations"


def insecure_settings(config):
    """Reasons this configuration must not serve real users (empty when it is fine)."""
    problems = []
    if config["JWT_ALGORITHM"] == "HS256":
        secret = config["JWT_SECRET_KEY"]
        if secret == DEV_JWT_SECRET:
            problems.append("SCOREBOARD_JWT_SECRET_KEY is not set (the development secret is in use)")
        elif len(secret.encode()) < MIN_HS256_SECRET_BYTES:
            problems.append(f"SCOREBOARD_JWT_SECRET_KEY is shorter than {MIN_HS256_SECRET_BYTES} bytes")
    return problems
