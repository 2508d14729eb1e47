"""The recompute's database work on PostgreSQL (``board.refresh.sync_outbox``: take the period outbox, add it and
read both board outboxes, clear the flags mirrored), against real PostgreSQL and Redis: every claim counted once
in its periods and mirrored while claims and folds run at the same time; a failure at any step loses nothing and
leaves no connection inside a transaction; a pooled connection the server dropped is replaced."""

import threading

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text
from sqlalchemy.exc import DataError, OperationalError

from scoreboard.stores import get_stores
from tests.conftest import PREFIX
from tests.support import bearer, wait_until

POINTS = 50  # complete-lesson in the default catalog
USERS = [f"ob{n}" for n in range(5)]


def scalar(app, sql, **params):
    from scoreboard.extensions import db

    with app.app_context():
        value = db.session.scalar(text(sql), params)
        db.session.rollback()
    return value


def pending(app):
    """Flags still set: ``(completions for their periods, scores, period rows)``."""
    return (
        scalar(app, "SELECT count(*) FROM completions WHERE period_pending"),
        scalar(app, "SELECT count(*) FROM scores WHERE board_pending"),
        scalar(app, "SELECT count(*) FROM period_scores WHERE board_pending"),
    )


def current_keys(app):
    from scoreboard.periods import current_periods

    with app.app_context():
        return [p.key for p in current_periods()]


def period_table(app, key):
    from scoreboard.extensions import db

    with app.app_context():
        rows = db.session.execute(text("SELECT user_id, score FROM period_scores WHERE period = :k"), {"k": key}).all()
        db.session.rollback()
    return {user: int(score) for user, score in rows}


def mirrored(app, board=""):
    with app.app_context():
        return dict(get_stores().ranking_for(board).top(100))


def in_transaction(app):
    """Sessions on the test database left inside a transaction (none may be, between recomputes)."""
    return scalar(
        app,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND state LIKE 'idle in transaction%'",
    )


@pytest.fixture
def hold_slot(redis_client):
    """``hold_slot()``: as if a recompute were queued, claims queue none, so only the test runs the worker's work
    (a recompute releases the slot: held again after each)."""

    def _hold():
        redis_client.set(f"{PREFIX}refresh:pending", "1")

    _hold()
    return _hold


def claim_all(app, mint, record, per_user):
    """Record ``per_user`` completions for each user, then claim them all from four threads at once."""
    items = [(user, record(user)["actionId"]) for user in USERS for _ in range(per_user)]
    tokens = {user: bearer(mint(user)) for user in USERS}
    errors = []

    def claimer(share):
        client = app.test_client()
        for user, action_id in share:
            response = client.post("/api/action/do", json={"actionId": action_id}, headers=tokens[user])
            if response.status_code != 200:
                errors.append(response.get_json())

    threads = [threading.Thread(target=claimer, args=(items[n::4],)) for n in range(4)]
    return threads, errors


def test_concurrent_claims_and_folds_count_each_claim_once(app, mint, record, hold_slot):
    from scoreboard.board import refresh
    from scoreboard.periods import all_kept

    with app.app_context():
        refresh.refresh_board()  # the mirrors built, empty
    hold_slot()
    per_user = 8
    threads, errors = claim_all(app, mint, record, per_user)
    done = threading.Event()
    fold_errors = []

    def folder():
        # Two folds at once, without the recompute lock: SKIP LOCKED keeps them from taking the same claim.
        with app.app_context():
            kept = {p.key for p in all_kept()}
            try:
                while not done.is_set():
                    refresh.sync_outbox(get_stores(), kept)
                refresh.sync_outbox(get_stores(), kept)
            except Exception as exc:  # reported below, not lost in the thread
                fold_errors.append(exc)

    folders = [threading.Thread(target=folder) for _ in range(2)]
    for thread in folders + threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    done.set()
    for thread in folders:
        thread.join(60)
    assert errors == [] and fold_errors == []
    with app.app_context():
        refresh.refresh_board()

    expected = dict.fromkeys(USERS, per_user * POINTS)
    assert pending(app) == (0, 0, 0)
    for key in current_keys(app):
        assert period_table(app, key) == expected, key
        assert mirrored(app, key) == expected, key
    assert mirrored(app) == expected
    assert in_transaction(app) == 0


def test_a_failed_add_takes_nothing_and_leaves_no_transaction_open(app, mint, record, hold_slot):
    from scoreboard.board import refresh
    from scoreboard.extensions import db

    threads, errors = claim_all(app, mint, record, 1)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and pending(app)[0] == len(USERS)
    statements = refresh._PG_STATEMENTS
    # Fails after the take, before its commit. Fresh connections, so that this is the text they prepare.
    failing = "SELECT 1 / 0 WHERE CAST(%(periods)s AS varchar[]) IS NOT NULL"
    refresh._PG_STATEMENTS = {**statements, "board_fold": failing}
    with app.app_context():
        db.engines["claims"].dispose()
    try:
        with app.app_context(), pytest.raises(DataError):
            refresh.refresh_board()
    finally:
        refresh._PG_STATEMENTS = statements
        with app.app_context():
            db.engines["claims"].dispose()
    assert pending(app)[0] == len(USERS)  # the take was rolled back with the add
    assert in_transaction(app) == 0  # and its connection was not pooled inside its transaction
    week = current_keys(app)[1]
    assert period_table(app, week) == {}
    with app.app_context():
        refresh.refresh_board()
    assert pending(app) == (0, 0, 0)
    assert period_table(app, week) == mirrored(app, week) == dict.fromkeys(USERS, POINTS)


def test_redis_failing_after_the_fold_loses_nothing_and_adds_nothing_twice(app, mint, record, hold_slot, monkeypatch):
    from scoreboard.board import refresh

    with app.app_context():
        refresh.refresh_board()
    hold_slot()
    threads, errors = claim_all(app, mint, record, 2)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []

    def redis_gone(batches):
        raise RedisConnectionError("redis went away")

    monkeypatch.setattr(refresh, "apply_each", redis_gone)
    with app.app_context(), pytest.raises(RedisConnectionError):
        refresh.refresh_board()
    folded, scores_flagged, periods_flagged = pending(app)
    # The claims were folded (committed with their take), and every board row still waits to be mirrored.
    assert folded == 0 and scores_flagged == len(USERS) and periods_flagged == 3 * len(USERS)
    monkeypatch.undo()
    with app.app_context():
        refresh.refresh_board()
    expected = dict.fromkeys(USERS, 2 * POINTS)
    assert pending(app) == (0, 0, 0)
    for key in current_keys(app):
        assert period_table(app, key) == mirrored(app, key) == expected
    assert mirrored(app) == expected
    assert in_transaction(app) == 0


def test_a_pooled_connection_the_server_dropped_is_replaced(app, mint, record, hold_slot):
    from scoreboard.board import refresh
    from scoreboard.extensions import db

    with app.app_context():
        refresh.refresh_board()  # a connection of the claims pool is pooled now
        engine = db.engines["claims"]
        assert engine.pool.checkedin() >= 1
    hold_slot()
    threads, errors = claim_all(app, mint, record, 1)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    # The server drops every other session on the database (a restart, as the pool sees it).
    scalar(
        app,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    with app.app_context():
        refresh.refresh_board()
    assert pending(app) == (0, 0, 0)
    assert mirrored(app) == dict.fromkeys(USERS, POINTS)


def test_a_draining_recompute_reads_each_claim_within_a_second_and_claims_queue_no_task(
    app, client, mint, record, redis_client, monkeypatch
):
    """The worker's task drains: while claims keep coming it holds the refresh slot (claims find it taken and
    queue nothing) and recomputes at the broadcast rate, each claim on the board within a second, counted once."""
    import time

    from scoreboard.board import refresh
    from scoreboard.stores.coordination import RedisCoordination

    with app.app_context():
        refresh.refresh_board()
    queued = []
    claim_slot = RedisCoordination.claim_refresh_slot
    monkeypatch.setattr(
        RedisCoordination, "claim_refresh_slot", lambda self: queued.append(claim_slot(self)) or queued[-1]
    )
    items = [(user, record(user)["actionId"]) for _ in range(3) for user in USERS]
    tokens = {user: bearer(mint(user)) for user in USERS}
    failures = []

    def drain():
        with app.app_context():
            try:
                refresh.refresh_board(drain=2.5)
            except Exception as exc:
                failures.append(exc)

    expected = dict.fromkeys(USERS, 0)
    waits = []
    redis_client.set(f"{PREFIX}refresh:pending", "1")  # the first claim's task, queued
    for n, (user, action_id) in enumerate(items):
        response = client.post("/api/action/do", json={"actionId": action_id}, headers=tokens[user])
        assert response.status_code == 200
        expected[user] += POINTS
        sent = time.monotonic()
        if n == 0:
            drainer = threading.Thread(target=drain)  # the worker takes the queued task
            drainer.start()
        while mirrored(app).get(user) != expected[user]:
            assert time.monotonic() - sent < 1.0, f"{user}'s claim not on the board within a second"
            time.sleep(0.005)
        waits.append(time.monotonic() - sent)
    drainer.join(10)
    assert not drainer.is_alive() and failures == []
    # Nearly every claim found the slot held by the drain (one may land while it is released for a read).
    assert queued[0] is False and sum(queued) <= 2, queued
    assert redis_client.get(f"{PREFIX}refresh:pending") in (None, "1")  # never left held by a finished drain
    assert pending(app) == (0, 0, 0)
    for key in current_keys(app):
        assert period_table(app, key) == mirrored(app, key) == expected
    print(f"[drain] {len(waits)} claims, on the board after {max(waits) * 1000:.0f} ms at most")


def test_the_score_clear_locks_rows_in_user_order_as_claim_batches_do(app, record):
    """Given the users in reverse order, the clear still takes their score rows' locks in user_id order (a batch of
    claims locks them so; two orders could each wait for the other until both time out), and clears each row."""
    from scoreboard.board import refresh
    from scoreboard.extensions import db

    users = ["lk-a", "lk-b", "lk-c"]
    for user in reversed(users):  # rows laid out, and handed to the clear, against the users' order
        record(user)
    versions = {user: scalar(app, "SELECT version FROM scores WHERE user_id = :u", u=user) for user in users}
    with app.app_context():
        for user in reversed(users):
            db.session.execute(text("UPDATE scores SET board_pending = true WHERE user_id = :u"), {"u": user})
        db.session.commit()
        holder = db.engine.connect()
        held = holder.begin()
        holder.execute(text("SELECT 1 FROM scores WHERE user_id = 'lk-b' FOR UPDATE"))
        failed = []

        def clear():
            try:
                with app.app_context(), db.engines["claims"].connect() as conn:
                    sql = refresh.prepared.statements(conn, refresh._PG_STATEMENTS)["board_clear_scores"]
                    order = list(reversed(users))
                    conn.exec_driver_sql(sql, {"s_users": order, "s_versions": [versions[u] for u in order]})
            except Exception as exc:  # reported below
                failed.append(exc)

        clearing = threading.Thread(target=clear)
        clearing.start()
        try:
            wait_until(lambda: lock_waiters(app) >= 1, message="the clear never waited on the held row")

            def locked(user):
                probe = db.engine.connect()
                try:
                    probe.execute(text("SELECT 1 FROM scores WHERE user_id = :u FOR UPDATE NOWAIT"), {"u": user})
                    return False
                except OperationalError:
                    return True
                finally:
                    probe.close()

            assert (locked("lk-a"), locked("lk-c")) == (True, False)
        finally:
            held.rollback()
            holder.close()
            clearing.join(30)
    assert failed == [] and not clearing.is_alive()
    assert [scalar(app, "SELECT board_pending FROM scores WHERE user_id = :u", u=u) for u in users] == [False] * 3


def lock_waiters(app):
    return scalar(
        app,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
