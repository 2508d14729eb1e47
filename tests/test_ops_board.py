"""Beat jobs against real PostgreSQL and Redis: reconcile repairs and counts drift, the sweep drains the
outbox, stale completions expire, and the recompute lock survives long runs but not a killed holder."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from redis.exceptions import LockError
from sqlalchemy import text

from scoreboard.models import Completion, utcnow
from scoreboard.stores import get_stores
from scoreboard.stores.ranking import RankEntry, score_of, user_of
from tests.conftest import PREFIX, REDIS_URL
from tests.support import ROOT, bearer, sample


def run(app, task):
    """Run a beat task in this app's context (its Celery app's task, whichever Celery app is the default)."""
    return app.extensions["celery"].tasks[task]()


def mirror(redis_client):
    """The ranking as Redis holds it: ``{user: score}`` (each member carries its user's score)."""
    return {user_of(m): score_of(m) for m in redis_client.zrange(f"{PREFIX}rank", 0, -1)}


def database_scores(app):
    """Visible scores as the database holds them: ``{user: score}``."""
    from scoreboard.extensions import db

    with app.app_context():
        rows = db.session.execute(text("SELECT user_id, score FROM scores WHERE score > 0")).all()
        db.session.rollback()
    return {user: int(score) for user, score in rows}


def cached_top(redis_client):
    """The cached top list, as ``[(user, score)]``."""
    import json

    return [(e["userId"], e["score"]) for e in json.loads(redis_client.get(f"{PREFIX}top"))["top"]]


def test_reconcile_repairs_and_counts_drift(app, client, mint, record_and_claim, redis_client):
    for user, times in (("ann", 3), ("bob", 2), ("cat", 1)):
        for _ in range(times):
            record_and_claim(user)
    assert mirror(redis_client) == {"ann": 150, "bob": 100, "cat": 50}
    truth = [("ann", 150), ("bob", 100), ("cat", 50)]
    before = sample("scoreboard_reconcile_drift_total")
    with app.app_context():
        assert run(app, "workers.board.reconcile") == 0  # consistent: nothing republished
    assert sample("scoreboard_reconcile_drift_total") == before

    # Four kinds of drift: a ranking member lost, a state overwritten, a ghost user, a stale cached list.
    ann_member = next(m for m in redis_client.zrange(f"{PREFIX}rank", 0, -1) if m.endswith(":ann"))
    redis_client.zrem(f"{PREFIX}rank", ann_member)
    bogus = RankEntry("bob", 1, reached_us=0, version=999, visible=True)  # a state naming no ranked member
    redis_client.hset(f"{PREFIX}rank:state", "bob", f"999|{bogus.member}")
    redis_client.hset(f"{PREFIX}rank:state", "ghost", "1|")
    redis_client.set(f"{PREFIX}top", '{"type":"update","version":1,"top":[{"userId":"eve","score":9}]}')

    runs = sample("scoreboard_reconcile_runs_total")
    with app.app_context():
        version = run(app, "workers.board.reconcile")
    assert version > 0  # the repaired list was broadcast again
    assert sample("scoreboard_reconcile_drift_total") - before == 4
    assert sample("scoreboard_reconcile_runs_total") == runs + 1
    assert mirror(redis_client) == database_scores(app)
    assert redis_client.hget(f"{PREFIX}rank:state", "ghost") is None
    assert cached_top(redis_client) == truth
    assert [(e["userId"], e["score"]) for e in client.get("/api/score/top", headers=bearer(mint("ann"))).json] == truth


def test_changes_still_in_the_outbox_are_not_drift(app, record_and_claim, redis_client):
    from scoreboard.extensions import db

    record_and_claim("ann")
    with app.app_context():
        # A claim committed while the worker was away: the score moved, the board not yet.
        db.session.execute(
            text(
                "UPDATE scores SET score = score + 50, version = version + 1, board_pending = true,"
                " reached_at = now() WHERE user_id = 'ann'"
            )
        )
        db.session.commit()
        before = sample("scoreboard_reconcile_drift_total")
        run(app, "workers.board.reconcile")
    assert sample("scoreboard_reconcile_drift_total") == before
    assert mirror(redis_client) == {"ann": 100}


def test_sweep_drains_the_outbox_and_reports_its_size(app, record_and_claim, redis_client):
    from scoreboard.extensions import db

    record_and_claim("ann")
    record_and_claim("bob")
    with app.app_context():
        db.session.execute(text("UPDATE scores SET score = score + 500, version = version + 1, board_pending = true"))
        db.session.commit()
        assert run(app, "workers.board.sweep") > 0
        assert sample("scoreboard_outbox_pending") == 2
        assert run(app, "workers.board.sweep") == 0  # drained: nothing to do
        assert sample("scoreboard_outbox_pending") == 0
        assert db.session.execute(text("SELECT count(*) FROM scores WHERE board_pending")).scalar() == 0
        db.session.rollback()
    assert mirror(redis_client) == {"ann": 550, "bob": 550}
    assert sorted(cached_top(redis_client)) == [("ann", 550), ("bob", 550)]


def test_published_message_carries_the_claim_time(app, record_and_claim):
    from scoreboard.extensions import db

    record_and_claim("ann")
    with app.app_context():
        reached = db.session.execute(text("SELECT reached_at FROM scores WHERE user_id = 'ann'")).scalar()
        db.session.rollback()
    board = get_stores(app).board_cache.cached()
    assert board["changedAt"] == int(reached.timestamp() * 1000)


def test_expire_completions_marks_stale_ones(app, record):
    from scoreboard.extensions import db

    fresh = record("ann")["actionId"]
    stale = record("ann")["actionId"]
    with app.app_context():
        db.session.execute(
            text("UPDATE completions SET expires_at = :t WHERE id = :id"),
            {"t": utcnow() - timedelta(seconds=1), "id": stale},
        )
        db.session.commit()
        assert run(app, "workers.maintenance.expire_completions") == 1
        assert db.session.get(Completion, stale).status == "expired"
        assert db.session.get(Completion, fresh).status == "pending"
        db.session.rollback()


@pytest.mark.unit
def test_beat_schedule_runs_every_job(offline_app):
    celery = offline_app.extensions["celery"]
    schedule = {entry["task"]: entry["schedule"] for entry in celery.conf.beat_schedule.values()}
    assert schedule["workers.board.sweep"] <= 2.0
    assert "workers.board.reconcile" in schedule and "workers.maintenance.expire_completions" in schedule
    assert set(schedule) <= set(celery.tasks)


HOLD_LOCK = """
import sys, time
from scoreboard.stores import redis_stores
coordination = redis_stores(sys.argv[1], sys.argv[2], cache_ttl=300).coordination
with coordination.refresh_lock(timeout=1):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_refresh_lock_is_renewed_while_held_and_freed_soon_after_its_holder_dies(app):
    coordination = get_stores(app).coordination
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, REDIS_URL, PREFIX], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        # Refused at every try for over twice the 1 s TTL: only renewal keeps it held that long.
        held_since = time.monotonic()
        while time.monotonic() - held_since < 2.5:
            with pytest.raises(LockError), coordination.refresh_lock(timeout=1, wait=0.1):
                pass
        os.kill(holder.pid, signal.SIGKILL)  # no chance to release it
        killed = time.monotonic()
        with coordination.refresh_lock(timeout=1, wait=5):
            freed_after = time.monotonic() - killed
        assert freed_after <= 1.5
    finally:
        holder.kill()
        holder.wait()
