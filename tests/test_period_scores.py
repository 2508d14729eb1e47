"""The day, week and month boards against real PostgreSQL and Redis: what a claim, an adjustment and a void
add to which period, midnights crossed with an injected clock, the mirrors rebuilt, old periods pruned."""

from datetime import datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError

from scoreboard.periods import UnknownPeriod, from_key, resolve
from scoreboard.stores import get_stores
from tests.conftest import PREFIX
from tests.support import bearer

POINTS = 50  # complete-lesson in the default catalog


@pytest.fixture
def clock(app):
    """``clock("2026-03-31T23:59:59Z")`` sets the periods' clock, which then ticks 1 ms each time it is read
    (so claims in a row reach their scores one after the other); the system clock is back after the test."""

    def _set(moment: str) -> None:
        ticks = count()
        start = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        app.config["CLOCK"] = lambda: start + timedelta(milliseconds=next(ticks))

    yield _set
    app.config["CLOCK"] = None


def period_table(app, key):
    """``{user: score}`` of one period as the database holds it."""
    from scoreboard.extensions import db

    with app.app_context():
        rows = db.session.execute(
            text("SELECT user_id, score FROM period_scores WHERE period = :key"), {"key": key}
        ).all()
        db.session.rollback()
    return {user: int(score) for user, score in rows}


def board(app, key):
    """The period's ranking as its mirror holds it: ``[(user, score)]``, best first."""
    with app.app_context():
        return get_stores().ranking_for(key).top(100)


def test_a_claim_counts_in_its_own_day_week_and_month_across_midnights(app, clock, record_and_claim):
    clock("2026-03-31T23:59:59.250Z")  # a Tuesday, the last day of March, ISO week 14
    record_and_claim("ann")
    clock("2026-04-01T00:00:00.500Z")  # the next instant that matters: a new day and month, the same week
    record_and_claim("ann")
    record_and_claim("bob")

    assert period_table(app, "day:2026-03-31") == {"ann": POINTS}
    assert period_table(app, "day:2026-04-01") == {"ann": POINTS, "bob": POINTS}
    assert period_table(app, "week:2026-W14") == {"ann": 2 * POINTS, "bob": POINTS}
    assert period_table(app, "month:2026-03") == {"ann": POINTS}
    assert period_table(app, "month:2026-04") == {"ann": POINTS, "bob": POINTS}
    # The mirrors agree, ties ordered by who reached the score first (ann claimed before bob).
    assert board(app, "day:2026-04-01") == [("ann", POINTS), ("bob", POINTS)]
    assert board(app, "week:2026-W14") == [("ann", 2 * POINTS), ("bob", POINTS)]
    assert board(app, "month:2026-03") == [("ann", POINTS)]

    clock("2026-04-05T23:59:59.900Z")  # Sunday: still week 14
    record_and_claim("cat")
    clock("2026-04-06T00:00:00.100Z")  # Monday: week 15
    record_and_claim("cat")
    assert period_table(app, "week:2026-W14")["cat"] == POINTS
    assert period_table(app, "week:2026-W15") == {"cat": POINTS}
    assert board(app, "week:2026-W15") == [("cat", POINTS)]

    # Closed periods still answer, for as long as they are kept.
    with app.app_context():
        assert resolve("day", "2026-03-31").key == "day:2026-03-31"
        assert resolve("week", "2026-04-01").key == "week:2026-W14"
        assert resolve("week").key == "week:2026-W15"
        with pytest.raises(UnknownPeriod):
            resolve("day", "2026-04-07")  # tomorrow
        with pytest.raises(UnknownPeriod):
            resolve("day", "2026-02-01")  # older than the 30 days kept
    assert board(app, "day:2026-03-31") == [("ann", POINTS)]


def test_iso_weeks_cross_the_new_year(app, clock, record_and_claim):
    clock("2025-12-28T12:00:00Z")  # Sunday: ISO week 2025-W52
    record_and_claim("ann")
    clock("2025-12-31T12:00:00Z")  # Wednesday of ISO week 2026-W01, which began on Monday the 29th
    record_and_claim("ann")
    clock("2026-01-01T12:00:00Z")  # the same ISO week, a new month (and year)
    record_and_claim("ann")
    assert period_table(app, "week:2025-W52") == {"ann": POINTS}
    assert period_table(app, "week:2026-W01") == {"ann": 2 * POINTS}
    assert period_table(app, "month:2025-12") == {"ann": 2 * POINTS}
    assert period_table(app, "month:2026-01") == {"ann": POINTS}
    with app.app_context():
        assert from_key("week:2026-W01").start.isoformat() == "2025-12-29T00:00:00+00:00"
        assert from_key("week:2026-W01").end.isoformat() == "2026-01-05T00:00:00+00:00"


def test_the_periods_follow_the_configured_zone(app, clock, record_and_claim):
    app.config["PERIOD_TZ"] = "America/New_York"
    try:
        clock("2026-04-01T03:00:00Z")  # still March 31st in New York
        record_and_claim("ann")
        clock("2026-04-01T04:00:01Z")  # just past midnight there (EDT, UTC-4)
        record_and_claim("bob")
    finally:
        app.config["PERIOD_TZ"] = "UTC"
    assert period_table(app, "day:2026-03-31") == {"ann": POINTS}
    assert period_table(app, "day:2026-04-01") == {"bob": POINTS}
    assert period_table(app, "month:2026-03") == {"ann": POINTS}


def test_adjustments_count_now_and_voids_leave_the_period_claimed_in(app, client, clock, mint, record_and_claim):
    admin = bearer(mint("mod", "admin"))
    clock("2026-05-10T10:00:00Z")
    first = record_and_claim("ann")
    record_and_claim("ann")
    clock("2026-05-11T10:00:00Z")
    response = client.post("/api/admin/users/ann/adjustments", json={"delta": 7, "reason": "bonus"}, headers=admin)
    assert response.status_code == 201, response.get_json()
    assert period_table(app, "day:2026-05-11") == {"ann": 7}
    assert period_table(app, "month:2026-05") == {"ann": 2 * POINTS + 7}

    # Voided a day later: the points leave May 10th (and the week and month), not May 11th.
    response = client.post(f"/api/admin/completions/{first['actionId']}/void", json={"reason": "cheat"}, headers=admin)
    assert response.status_code == 200, response.get_json()
    assert period_table(app, "day:2026-05-10") == {"ann": POINTS}
    assert period_table(app, "day:2026-05-11") == {"ann": 7}
    assert period_table(app, "month:2026-05") == {"ann": POINTS + 7}
    assert board(app, "day:2026-05-10") == [("ann", POINTS)]
    assert board(app, "month:2026-05") == [("ann", POINTS + 7)]


def test_hidden_users_leave_every_period_board_and_come_back(app, client, clock, mint, record_and_claim):
    admin = bearer(mint("mod", "admin"))
    clock("2026-06-02T08:00:00Z")
    record_and_claim("ann")
    record_and_claim("bob")
    response = client.post(
        "/api/admin/users/ann/status", json={"status": "hidden", "reason": "spam account"}, headers=admin
    )
    assert response.status_code == 200, response.get_json()
    for key in ("day:2026-06-02", "week:2026-W23", "month:2026-06"):
        assert board(app, key) == [("bob", POINTS)]
    response = client.post(
        "/api/admin/users/ann/status", json={"status": "active", "reason": "appeal accepted"}, headers=admin
    )
    assert response.status_code == 200, response.get_json()
    assert board(app, "day:2026-06-02") == [("ann", POINTS), ("bob", POINTS)]


def test_a_rebuild_restores_every_kept_period_from_the_database(app, clock, record_and_claim, redis_client):
    from scoreboard.board.refresh import refresh_board

    clock("2026-07-14T09:00:00Z")
    record_and_claim("ann")
    clock("2026-07-15T09:00:00Z")
    record_and_claim("bob")
    record_and_claim("bob")
    before = {key: board(app, key) for key in ("day:2026-07-14", "day:2026-07-15", "week:2026-W29", "month:2026-07")}
    for key in redis_client.scan_iter(f"{PREFIX}*"):
        redis_client.delete(key)  # Redis lost everything
    with app.app_context():
        refresh_board()
    after = {key: board(app, key) for key in before}
    assert after == before
    assert after["week:2026-W29"] == [("bob", 2 * POINTS), ("ann", POINTS)]


def test_changes_made_while_redis_was_away_reach_the_period_boards(app, clock, record_and_claim):
    """The period rows stay flagged in the outbox until mirrored, as the all-time rows do."""
    from scoreboard.extensions import db
    from workers.board import sweep

    clock("2026-08-03T09:00:00Z")
    record_and_claim("ann")
    with app.app_context():
        # As if the claim had committed while the worker was down: flagged, never mirrored.
        db.session.execute(
            text("UPDATE period_scores SET score = score + 5, version = version + 1, board_pending = true")
        )
        db.session.commit()
        pending = db.session.scalar(text("SELECT count(*) FROM period_scores WHERE board_pending"))
        db.session.rollback()
        assert pending == 3
        sweep()
        assert db.session.scalar(text("SELECT count(*) FROM period_scores WHERE board_pending")) == 0
        db.session.rollback()
    assert board(app, "day:2026-08-03") == [("ann", POINTS + 5)]


def test_periods_older_than_those_kept_are_pruned(app, clock, record_and_claim):
    from workers.maintenance import prune_periods

    app.config["PERIODS_KEPT"] = {"day": 2, "week": 12, "month": 12}
    try:
        for day in ("2026-09-01", "2026-09-02", "2026-09-03"):
            clock(f"{day}T12:00:00Z")
            record_and_claim("ann")
        assert board(app, "day:2026-09-01") == [("ann", POINTS)]
        with app.app_context():
            assert prune_periods() == 1
            with pytest.raises(UnknownPeriod):
                resolve("day", "2026-09-01")
            assert resolve("day", "2026-09-02").key == "day:2026-09-02"
        assert period_table(app, "day:2026-09-01") == {}
        assert board(app, "day:2026-09-01") == []
        assert period_table(app, "day:2026-09-02") == {"ann": POINTS}
        assert period_table(app, "month:2026-09") == {"ann": 3 * POINTS}
    finally:
        app.config["PERIODS_KEPT"] = {"day": 30, "week": 12, "month": 12}


def test_reconcile_counts_and_repairs_drift_on_the_period_boards(app, clock, record_and_claim, redis_client):
    from tests.support import sample

    clock("2026-10-06T09:00:00Z")
    record_and_claim("ann")
    record_and_claim("bob")
    key = f"{PREFIX}rank:week:2026-W41"
    member = next(m for m in redis_client.zrange(key, 0, -1) if m.endswith(":ann"))
    redis_client.zrem(key, member)  # a member lost from this week's board only
    assert board(app, "week:2026-W41") == [("bob", POINTS)]
    before = sample("scoreboard_reconcile_drift_total")
    with app.app_context():
        app.extensions["celery"].tasks["workers.board.reconcile"]()
    assert sample("scoreboard_reconcile_drift_total") - before == 1
    assert board(app, "week:2026-W41") == [("ann", POINTS), ("bob", POINTS)]


def test_claims_wait_in_the_period_outbox_until_the_worker_folds_them_once(app, clock, record_and_claim, redis_client):
    """A claim marks its completion for the periods; the worker adds it to the day, week and month of its own time,
    once, even when its first try fails halfway or the periods have turned over since."""
    import scoreboard.board.refresh as refresh
    from scoreboard.extensions import db
    from workers.board import sweep

    redis_client.set(f"{PREFIX}refresh:pending", "1")  # as if a recompute were queued: the claims queue none
    clock("2026-11-30T23:59:59.900Z")  # Monday, the last day of November
    record_and_claim("ann")
    clock("2026-12-01T00:00:00.100Z")  # a new day and month, the same week
    record_and_claim("ann")
    record_and_claim("bob")
    assert period_table(app, "week:2026-W49") == {}  # nothing folded yet: the worker has not run

    with app.app_context():
        adding = refresh._ADD_TO_PERIODS
        # The worker fails while adding the points, after it took the claims (and cleared their flags).
        refresh._ADD_TO_PERIODS = text("SELECT 1 / 0 WHERE CAST(:periods AS text) IS NOT NULL")
        try:
            with pytest.raises(DataError):
                refresh.fold_claims()
        finally:
            refresh._ADD_TO_PERIODS = adding
            db.session.rollback()
        assert db.session.scalar(text("SELECT count(*) FROM completions WHERE period_pending")) == 3
        db.session.rollback()
    assert period_table(app, "week:2026-W49") == {}  # the failed try added nothing

    clock("2026-12-01T00:00:05Z")
    with app.app_context():
        sweep()  # finds the flagged claims (the outbox's size counts them) and folds them
        assert db.session.scalar(text("SELECT count(*) FROM completions WHERE period_pending")) == 0
        db.session.rollback()
        assert refresh.fold_claims() == 0  # nothing left: a second run adds nothing
    assert period_table(app, "day:2026-11-30") == {"ann": POINTS}
    assert period_table(app, "day:2026-12-01") == {"ann": POINTS, "bob": POINTS}
    assert period_table(app, "week:2026-W49") == {"ann": 2 * POINTS, "bob": POINTS}
    assert period_table(app, "month:2026-11") == {"ann": POINTS}
    assert period_table(app, "month:2026-12") == {"ann": POINTS, "bob": POINTS}
    assert board(app, "week:2026-W49") == [("ann", 2 * POINTS), ("bob", POINTS)]


def test_a_claim_voided_before_it_was_folded_never_reaches_its_periods(
    app, client, clock, mint, record_and_claim, redis_client
):
    from scoreboard.extensions import db
    from workers.board import sweep

    admin = bearer(mint("mod", "admin"))
    clock("2026-11-25T10:00:00Z")
    record_and_claim("ann")  # folded at once (the eager worker)
    redis_client.set(f"{PREFIX}refresh:pending", "1")  # from here the claims queue no recompute
    second = record_and_claim("ann")
    third = record_and_claim("ann")
    response = client.post(f"/api/admin/completions/{second['actionId']}/void", json={"reason": "cheat"}, headers=admin)
    assert response.status_code == 200, response.get_json()
    # Voided in one go with the folded one, by the review's confirm path.
    with app.app_context():
        from scoreboard.scoring.moderation import void_claims

        voided, taken, score = void_claims(
            "ann", datetime.fromisoformat("2026-11-25T09:00:00+00:00"), "bot", "mod", None
        )
        db.session.commit()
    assert (voided, taken, score) == (2, 2 * POINTS, 0)  # the first and the third (the second was void already)
    assert third["newScore"] == 3 * POINTS
    redis_client.delete(f"{PREFIX}refresh:pending")
    with app.app_context():
        sweep()
    for key in ("day:2026-11-25", "week:2026-W48", "month:2026-11"):
        assert period_table(app, key) == {"ann": 0}
        assert board(app, key) == []
