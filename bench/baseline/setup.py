"""The baseline's database (a copy of the bench's users and pending completions) and its server, as a stack."""

import io
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import text

from .. import dataset, stack

DB_NAME = "scoreboard_bench_baseline"
SCHEMA = (
    "CREATE TABLE baseline_users (id text PRIMARY KEY, display_name text NOT NULL, score bigint NOT NULL, "
    "reached_at timestamptz NOT NULL)",
    "CREATE INDEX baseline_users_rank ON baseline_users (score DESC, reached_at)",
    "CREATE TABLE baseline_completions (id text PRIMARY KEY, user_id text NOT NULL, points integer NOT NULL, "
    "status text NOT NULL, expires_at timestamptz NOT NULL, claimed_at timestamptz)",
    "CREATE SEQUENCE baseline_board_version",
)
USERS = "SELECT u.id, u.display_name, s.score, s.reached_at FROM users u JOIN scores s ON s.user_id = u.id"
PENDING = "SELECT id, user_id, points, status, expires_at FROM completions WHERE status = 'pending'"


def _copy(source, target, query: str, table: str, columns: str) -> int:
    """Stream ``query``'s rows from ``source`` into ``table`` of ``target`` (psycopg2 COPY); returns the rows."""
    buf = io.StringIO()
    with source.cursor() as cur:
        cur.copy_expert(f"COPY ({query}) TO STDOUT", buf)
    buf.seek(0)
    with target.cursor() as cur:
        cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buf)
        return cur.rowcount


def prepare(source_db: str = dataset.SMALL_DB) -> dict[str, int]:
    """Recreate the baseline's database from ``source_db``: every user with their score, every pending completion.

    Called once the run's claim pools are recorded, so the baseline claims the same completions
    (its own copies of them) with the same claim files and tokens.
    """
    stack.create_database(DB_NAME)
    eng = dataset.engine(DB_NAME)
    with eng.begin() as conn:
        for statement in SCHEMA:
            conn.execute(text(statement))
    eng.dispose()
    src, dst = dataset.engine(source_db), dataset.engine(DB_NAME)
    source, target = src.raw_connection(), dst.raw_connection()
    try:
        users = _copy(source, target, USERS, "baseline_users", "id, display_name, score, reached_at")
        pending = _copy(source, target, PENDING, "baseline_completions", "id, user_id, points, status, expires_at")
        target.commit()
        with target.cursor() as cur:
            cur.execute("ANALYZE")
        target.commit()
    finally:
        source.close()
        target.close()
        src.dispose()
        dst.dispose()
    return {"users": users, "pending": pending}


class BaselineStack(stack.Stack):
    """The baseline app under gunicorn (2 gevent workers, the production settings); no Celery worker.

    It has what the phases use of a ``Stack``: ``base``, ``env["SCOREBOARD_REDIS_PREFIX"]`` (its
    board channel is ``<prefix>board``, as the scoreboard's, so the claim driver observes it alike),
    ``process_groups``, ``web_rss_kib`` and ``recomputes`` (0: a claim recomputes in its own request).
    """

    def __init__(self, prefix: str, log_dir: Path) -> None:
        port = stack.free_port()
        env = stack.stack_env(DB_NAME, prefix, port)
        env.update(
            {
                "BASELINE_DATABASE_URL": stack.database_url(DB_NAME),
                "BASELINE_REDIS_URL": stack.REDIS_URL,
                "BASELINE_CHANNEL": prefix + "board",
                "BASELINE_JWT_SECRET": stack.JWT_SECRET,
            }
        )
        super().__init__(env, log_dir)

    def start(self, worker_timeout: float = 60) -> "BaselineStack":
        """Start gunicorn; wait until ``/healthz`` answers."""
        argv = [sys.executable, "-m", "gunicorn", "-c", "bench/baseline/gunicorn_conf.py", "bench.baseline.app:app"]
        self.web = stack.Process("baseline-web", argv, self.env, self.log_dir)
        deadline = time.monotonic() + worker_timeout
        while not healthy(self.base):
            if not self.web.alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the baseline did not start; see {self.log_dir}")
            time.sleep(0.2)
        return self

    def recomputes(self) -> int:
        """No worker, no recomputes counted apart from the claims."""
        return 0

    def process_groups(self) -> dict[str, list[int]]:
        """The same roles as the scoreboard's stack; the worker's is empty."""
        return {**super().process_groups(), "worker": []}


def healthy(base: str) -> bool:
    """Whether the baseline answers its probe."""
    try:
        return requests.get(base + "/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def claimed_count(tag: str) -> int:
    """How many completions of pool ``tag`` the baseline has claimed (each a committed transaction)."""
    eng = dataset.engine(DB_NAME)
    with eng.connect() as conn:
        found = conn.scalar(
            text("SELECT count(*) FROM baseline_completions WHERE id LIKE :p AND status = 'claimed'"),
            {"p": tag + "%"},
        )
    eng.dispose()
    return int(found)
