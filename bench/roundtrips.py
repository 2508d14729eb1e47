"""PostgreSQL and Redis round trips of each read, counted in-process: ``python -m bench.roundtrips``.

Starts the production stack on the small bench database (``make bench`` leaves it behind; its
worker builds the Redis mirrors), then builds the app in this process with the same settings and
sends each read ten times through Flask's test client with a player's token, counting: Redis
commands sent (redis-py's ``send_packed_command``; a pipeline or a script is one), PostgreSQL
statements (SQLAlchemy's ``before_cursor_execute``), pool checkouts (each one a pre-ping
``SELECT 1`` on the main pool), commits, and connection resets at check-in (a ``ROLLBACK`` when a
transaction is open; psycopg2 also sends a ``BEGIN`` of its own before a transaction's first
statement, not counted). Prints the counts per request. The rate limits' Redis commands are
counted too: they are part of every request.
"""

import collections
import os
import sys
from datetime import timedelta
from pathlib import Path

from . import dataset, stack

# The top-10 GET is left out: a server answers it from its relay's memory, which this process does not run.
READS = {
    "rank lookup": "/api/scores/me?radius=0",
    "around-me": "/api/scores/me?radius=5",
    "page": "/api/scores?limit=50",
    "history": "/api/scores/{user}/history",
    "this week": "/api/scores/me?period=week&radius=0",
    "chosen users": "/api/scores/users?ids=u0000001,u0000002,u0000003",
}


def main() -> None:
    """Count and print."""
    if not dataset.count_users(dataset.SMALL_DB):
        sys.exit(f"{dataset.SMALL_DB} is missing: run make bench (or python -m bench --quick) first")
    prefix = f"bench:roundtrips{os.getpid()}:"
    env = stack.stack_env(dataset.SMALL_DB, prefix, stack.free_port())
    log_dir = Path(__file__).resolve().parent / "out" / "roundtrips"
    log_dir.mkdir(parents=True, exist_ok=True)
    st = stack.Stack(env, log_dir)
    st.start()
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("SCOREBOARD_")})
        import redis.connection
        from sqlalchemy import event

        from scoreboard import create_app
        from scoreboard.extensions import db
        from scoreboard.security.tokens import mint_token

        counts: collections.Counter = collections.Counter()
        connection = redis.connection.AbstractConnection
        send = connection.send_packed_command

        def counting_send(self, command, check_health=True):
            counts["redis commands"] += 1
            return send(self, command, check_health)

        connection.send_packed_command = counting_send
        app = create_app()
        with app.app_context():
            engines = {id(e): e for e in (db.engine, *db.engines.values())}.values()
            for engine in engines:
                event.listen(engine, "before_cursor_execute", lambda *_a: counts.update(["pg statements"]))
                event.listen(engine, "commit", lambda *_a: counts.update(["pg commits"]))
                event.listen(engine.pool, "checkout", lambda *_a: counts.update(["pg checkouts"]))
                event.listen(engine.pool, "reset", lambda *_a: counts.update(["pg resets"]))
            user = dataset.user_id(42)
            headers = {"Authorization": "Bearer " + mint_token(user, expires=timedelta(hours=1))}
        client = app.test_client()
        for name, path in READS.items():
            path = path.format(user=user)
            client.get(path, headers=headers)  # the first request of each loads scripts and plans
            counts.clear()
            for _ in range(10):
                answer = client.get(path, headers=headers)
                if answer.status_code != 200:
                    sys.exit(f"{path}: {answer.status_code} {answer.get_data(as_text=True)[:200]}")
            print(f"{name:14s} " + ", ".join(f"{key} {value / 10:g}" for key, value in sorted(counts.items())))
    finally:
        st.stop()
        stack.clear_prefix(prefix)


if __name__ == "__main__":
    main()
