"""Bench databases, filled in bulk with SQL (generate_series), and tokens minted in advance.

Users are ``u0000001`` ... with scores spread below one million; ten "hot" users
``hot01`` ... ``hot10`` sit far above them, so every claim of theirs changes the
top 10 (and so is broadcast). Completions are pre-recorded, pending, in pools
named by a tag, each claimable once.
"""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from . import stack

SMALL_DB = "scoreboard_bench"
MILLION_DB = "scoreboard_bench_1m"
HOT_USERS = [f"hot{i:02d}" for i in range(1, 11)]


def user_id(n: int) -> str:
    """The id of ordinary user ``n`` (1-based)."""
    return f"u{n:07d}"


def migrate(db_name: str) -> None:
    """Create the schema with the project's migrations (``flask db upgrade``)."""
    env = stack.stack_env(db_name, "bench:migrate:", 0)
    env["FLASK_APP"] = "wsgi"
    subprocess.run(
        [sys.executable, "-m", "flask", "db", "upgrade"],
        cwd=stack.ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    subprocess.run(
        [sys.executable, "-m", "flask", "actions", "load", "scoreboard/default_catalog.json"],
        cwd=stack.ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def engine(db_name: str) -> Engine:
    """An engine on a bench database."""
    return create_engine(stack.database_url(db_name))


def fill_users(db_name: str, users: int) -> None:
    """Insert ``users`` ordinary users and the hot ones, with their scores, in a few statements."""
    eng = engine(db_name)
    with eng.begin() as conn:
        conn.execute(text("SELECT setseed(0.42)"))
        conn.execute(
            text(
                "INSERT INTO users (id, display_name, status, roles, created_at) "
                "SELECT 'u' || lpad(g::text, 7, '0'), 'User ' || g, 'active', '', now() FROM generate_series(1, :n) g"
            ),
            {"n": users},
        )
        conn.execute(
            text(
                "INSERT INTO scores (user_id, score, reached_at, version, board_pending) "
                "SELECT 'u' || lpad(g::text, 7, '0'), floor(random() * 1000000)::bigint, "
                "now() - (g || ' milliseconds')::interval, 1, false FROM generate_series(1, :n) g"
            ),
            {"n": users},
        )
        for i, uid in enumerate(HOT_USERS):
            conn.execute(
                text(
                    "INSERT INTO users (id, display_name, status, roles, created_at) "
                    "VALUES (:u, :u, 'active', '', now())"
                ),
                {"u": uid},
            )
            conn.execute(
                text(
                    "INSERT INTO scores (user_id, score, reached_at, version, board_pending) "
                    "VALUES (:u, :s, now(), 1, false)"
                ),
                {"u": uid, "s": 10**9 + i * 1000},
            )
    with eng.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    eng.dispose()


def add_completions(
    db_name: str, tag: str, count: int, users: int | None = None, hot: bool = False, spread: int = 1
) -> list[tuple[str, str]]:
    """Record ``count`` pending completions (50 points each) tagged ``tag``; returns ``[(action_id, user_id)]``.

    Ordinary users are taken round-robin over ``users`` with stride ``spread``
    (a stride coprime to ``users`` visits them all in a scattered order); hot
    completions go round-robin over the hot users.
    """
    if hot:
        owner = "'hot' || lpad(((g - 1) % 10 + 1)::text, 2, '0')"
    else:
        owner = f"'u' || lpad((((g - 1)::bigint * {int(spread)}) % {int(users)} + 1)::text, 7, '0')"
    eng = engine(db_name)
    with eng.begin() as conn:
        rows = conn.execute(
            text(
                "INSERT INTO completions (id, user_id, action_key, points, status, created_at, expires_at) "
                f"SELECT :tag || lpad(g::text, 8, '0'), {owner}, 'complete-lesson', 50, 'pending', now(), "
                "now() + interval '1 day' FROM generate_series(1, :n) g RETURNING id, user_id"
            ),
            {"tag": tag, "n": count},
        ).all()
    eng.dispose()
    analyze_completions(db_name)
    return sorted(rows)


def claimed_count(db_name: str, tag: str) -> int:
    """How many completions of pool ``tag`` are claimed (each one a committed claim transaction)."""
    eng = engine(db_name)
    with eng.connect() as conn:
        found = conn.scalar(
            text("SELECT count(*) FROM completions WHERE id LIKE :p AND status = 'claimed'"), {"p": tag + "%"}
        )
    eng.dispose()
    return int(found)


def mint_tokens(user_ids: list[str]) -> dict[str, str]:
    """Players' access tokens for ``user_ids``, minted by the app with the bench secret.

    The app is imported here, not at the top, so that ``python -m bench --help`` does not load it.
    """
    os.environ["SCOREBOARD_JWT_SECRET_KEY"] = stack.JWT_SECRET
    from scoreboard import create_app
    from scoreboard.security.tokens import mint_token

    with create_app().app_context():
        return {uid: mint_token(uid, expires=timedelta(hours=6)) for uid in user_ids}


def write_claims_file(path: Path, completions: list[tuple[str, str]], tokens: dict[str, str]) -> Path:
    """One ``actionId token`` line per completion, for wrk's claim script and the open-loop claimer."""
    with open(path, "w") as out:
        for action_id, uid in completions:
            out.write(f"{action_id} {tokens[uid]} {uid}\n")
    return path


def prepare(db_name: str, users: int, fresh: bool = True) -> float:
    """Create (or reuse) a bench database with ``users`` users; returns seconds spent."""
    start = time.monotonic()
    if fresh or not stack.database_exists(db_name):
        stack.create_database(db_name)
        migrate(db_name)
        fill_users(db_name, users)
    else:
        migrate(db_name)  # a kept database gets the migrations added since it was built
    return time.monotonic() - start


def count_users(db_name: str) -> int:
    """How many users a bench database holds (0 if it does not exist)."""
    if not stack.database_exists(db_name):
        return 0
    eng = engine(db_name)
    try:
        with eng.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM users")))
    except Exception:
        return 0
    finally:
        eng.dispose()


def sample_users(users: int, count: int, seed: int) -> list[str]:
    """``count`` distinct ordinary users of a database of ``users``, drawn with ``seed`` (the same each run)."""
    import random

    rng = random.Random(seed)
    return [user_id(n) for n in rng.sample(range(1, users + 1), min(count, users))]


def add_completions_for(db_name: str, tag: str, owners: list[str], count: int) -> list[tuple[str, str]]:
    """Record ``count`` pending completions (50 points each) tagged ``tag``, round-robin over ``owners``.

    Returned ``[(action_id, user_id)]`` in id order, so claiming them in that order spreads each
    owner's claims over the whole run.
    """
    eng = engine(db_name)
    with eng.begin() as conn:
        rows = conn.execute(
            text(
                "INSERT INTO completions (id, user_id, action_key, points, status, created_at, expires_at) "
                "SELECT :tag || lpad(g::text, 8, '0'), (CAST(:owners AS text[]))[(g - 1) % :n + 1], "
                "'complete-lesson', 50, 'pending', now(), now() + interval '1 day' "
                "FROM generate_series(1, :count) g RETURNING id, user_id"
            ),
            {"tag": tag, "owners": owners, "n": len(owners), "count": count},
        ).all()
    eng.dispose()
    analyze_completions(db_name)
    return sorted(rows)


def fill_period(db_name: str, key: str, current: list[str]) -> tuple[int, float]:
    """Give period ``key`` (the current week) a row per scored user, a copy of ``scores``; returns (rows, seconds).

    Rows of periods not in ``current`` are deleted first: the worker rebuilds every period still
    kept when it starts, and a kept database (the million) would otherwise carry last week's
    million rows into every start. Users already in ``key`` (from an earlier run this week, or
    a claim) keep their row. ``VACUUM ANALYZE`` after a fill, as after the users'.
    """
    start = time.monotonic()
    eng = engine(db_name)
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM period_scores WHERE NOT period = ANY(CAST(:keep AS text[]))"), {"keep": current})
        have = int(conn.scalar(text("SELECT count(*) FROM period_scores WHERE period = :k"), {"k": key}))
        scored = int(conn.scalar(text("SELECT count(*) FROM scores WHERE score > 0")))
        filled = have < scored
        if filled:
            conn.execute(
                text(
                    "INSERT INTO period_scores (period, user_id, score, reached_at, version, board_pending) "
                    "SELECT :k, user_id, score, reached_at, 1, false FROM scores WHERE score > 0 "
                    "ON CONFLICT (period, user_id) DO NOTHING"
                ),
                {"k": key},
            )
        rows = int(conn.scalar(text("SELECT count(*) FROM period_scores WHERE period = :k"), {"k": key}))
    if filled:
        with eng.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE period_scores"))
    eng.dispose()
    return rows, time.monotonic() - start


def analyze(db_name: str, tables: tuple[str, ...] = ("completions",), vacuum: bool = False) -> None:
    """``ANALYZE`` (with ``vacuum``, ``VACUUM ANALYZE``) the tables the bench has just changed in bulk, as
    autovacuum would soon have.

    The bench does not rely on autovacuum (it may be off, as it is on the server the published
    figures come from), and plans follow the statistics: a pool can outnumber everything the
    table held when it was last analysed, and with statistics that still say almost nothing is
    pending the planner finds the claim's completion through the partial index of pending
    completions (every pending row with a later expiry scanned) rather than by its id; with
    statistics from before thousands of claims, a history page scans the index on ``claimed_at``
    (every claimed row) rather than the user's own rows. ``vacuum`` also clears the dead row versions
    that tens of thousands of claims just left (a claim's update is not a HOT one): index scans of
    the user's own rows would otherwise step over them, on whichever database the claims went to.
    """
    eng = engine(db_name)
    command = "VACUUM ANALYZE" if vacuum else "ANALYZE"
    with eng.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(f"{command} {', '.join(tables)}"))
    eng.dispose()


def analyze_completions(db_name: str) -> None:
    """``ANALYZE completions``, after a pool is recorded (see :func:`analyze`)."""
    analyze(db_name)


def ledgers(db_name: str, owners: list[str]) -> list[tuple[int, int]]:
    """Each owner's completions: ``(claimed, others)`` (what a history page walks through)."""
    eng = engine(db_name)
    with eng.connect() as conn:
        found = {
            uid: (int(claimed), int(others))
            for uid, claimed, others in conn.execute(
                text(
                    "SELECT user_id, count(*) FILTER (WHERE status = 'claimed'), "
                    "count(*) FILTER (WHERE status <> 'claimed') "
                    "FROM completions WHERE user_id = ANY(CAST(:u AS text[])) GROUP BY user_id"
                ),
                {"u": owners},
            )
        }
    eng.dispose()
    return [found.get(uid, (0, 0)) for uid in owners]


def pad_ledgers(db_name: str, tag: str, owners: list[str], claimed: int, others: int) -> int:
    """Give each owner at least ``claimed`` claimed and ``others`` pending completions; returns rows added.

    The padding is written straight into the ledger (claimed a minute apart, going back from
    now), without raising any score: it only gives a history page as many rows to walk as on
    the other database.
    """
    eng = engine(db_name)
    with eng.begin() as conn:
        added = conn.execute(
            text(
                "WITH have AS (SELECT u, count(c.id) FILTER (WHERE c.status = 'claimed') AS claimed, "
                "count(c.id) FILTER (WHERE c.status <> 'claimed') AS others "
                "FROM unnest(CAST(:owners AS text[])) u LEFT JOIN completions c ON c.user_id = u GROUP BY u) "
                "INSERT INTO completions (id, user_id, action_key, points, status, created_at, expires_at, claimed_at) "
                "SELECT :tag || u || 'c' || g, u, 'complete-lesson', 50, 'claimed', now() - g * interval '1 minute', "
                "now() + interval '1 day', now() - g * interval '1 minute' "
                "FROM have, generate_series(1, :claimed - have.claimed) g "
                "UNION ALL "
                "SELECT :tag || u || 'p' || g, u, 'complete-lesson', 50, 'pending', now(), "
                "now() + interval '1 day', NULL "
                "FROM have, generate_series(1, :others - have.others) g"
            ),
            {"tag": tag, "owners": owners, "claimed": claimed, "others": others},
        ).rowcount
    eng.dispose()
    analyze_completions(db_name)
    return int(added)


def page_cursors(members: list[str]) -> list[str]:
    """The API's page cursors (all-time board) resuming after each of ``members``, signed as the app signs them."""
    os.environ["SCOREBOARD_JWT_SECRET_KEY"] = stack.JWT_SECRET
    from scoreboard import create_app
    from scoreboard.api.scores import page_cursor
    from scoreboard.periods import ALL_TIME

    with create_app().app_context():
        return [page_cursor(ALL_TIME, member) for member in members]
