"""The rollup job: exactly once (a second run changes nothing), catching up after downtime and after a run
cut short, a claim committed late into an hour, the current hour merged live, statuses that change after
their hour was rolled up, the beat entry."""

from datetime import timedelta

import pytest
from sqlalchemy import text, update

from scoreboard.analytics import figures
from scoreboard.analytics.rollup import run_rollup, watermarks
from scoreboard.extensions import db
from scoreboard.models import Completion

from .ledger import HOURS, NOW, assert_figures, build, clear_rollups, expected, floor_hour, write

LAG = timedelta(minutes=5)


@pytest.fixture
def ledger(app):
    made = build(seed=3, completions=900)
    with app.app_context():
        clear_rollups()
        write(made)
    yield made
    with app.app_context():
        clear_rollups()


def rollup_rows():
    tables = ("analytics_hours", "analytics_delays", "analytics_refusals", "analytics_players", "analytics_days")
    return {t: db.session.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2")).all() for t in tables}


def check(made, now=NOW):
    for range_key in HOURS:
        assert_figures(figures(db.engine, range_key, now), expected(made, range_key, now))


def test_a_second_run_changes_nothing(app, ledger):
    with app.app_context():
        first = run_rollup(db.engine, NOW, LAG)
        rows = rollup_rows()
        again = run_rollup(db.engine, NOW, LAG)
        assert first.windows > 0 and again.windows == 0
        assert again.claims_to == first.claims_to and again.settled_to == first.settled_to
        db.session.rollback()
        assert rollup_rows() == rows
        check(ledger)


def test_catching_up_after_downtime_and_after_a_run_cut_short(app, ledger):
    with app.app_context():
        # A run three days ago, then nothing: the figures of now are still exact (the gap is read live) ...
        run_rollup(db.engine, NOW - timedelta(days=3), LAG)
        assert watermarks(db.session.connection()).claims == floor_hour(NOW - timedelta(days=3) - LAG)
        db.session.rollback()
        check(ledger)
        # ... a run killed after two windows leaves its committed windows in place ...
        cut_short = run_rollup(db.engine, NOW, LAG, max_windows=2)
        assert cut_short.windows == 2
        check(ledger)
        # ... and the next run picks up where it stopped.
        resumed = run_rollup(db.engine, NOW, LAG)
        assert resumed.claims_from == cut_short.claims_to and resumed.claims_to == floor_hour(NOW - LAG)
        check(ledger)


def test_a_claim_committed_late_into_its_hour_is_counted_once(app, ledger):
    # Two minutes into an hour: the hour before ends within the lag, so it is not rolled up yet.
    now = floor_hour(NOW) + timedelta(minutes=2)
    hour_before = floor_hour(NOW) - timedelta(hours=1)
    with app.app_context():
        run_rollup(db.engine, now, LAG)
        assert watermarks(db.session.connection()).claims == hour_before
        db.session.rollback()
        # A claim taken a second before the hour's end commits now, after that run.
        late = ledger.completion(
            "u01", "win-challenge", hour_before + timedelta(minutes=30), floor_hour(NOW) - timedelta(seconds=1)
        )
        write(ledger, [late])
        check(ledger, now)
        # Once the lag has passed the hour is rolled up, the late claim with it, and counted once.
        later = floor_hour(NOW) + timedelta(minutes=6)
        assert run_rollup(db.engine, later, LAG).claims_to == floor_hour(NOW)
        check(ledger, later)
        hour_claims = db.session.execute(
            text("SELECT claims FROM analytics_hours WHERE hour = :h AND action_key = 'win-challenge'"),
            {"h": hour_before},
        ).scalar()
        assert hour_claims == sum(
            1
            for r in ledger.completions
            if r["action_key"] == "win-challenge" and r["claimed_at"] and floor_hour(r["claimed_at"]) == hour_before
        )


def test_the_current_hour_is_live_and_statuses_follow_after_the_rollup(app, ledger):
    with app.app_context():
        run_rollup(db.engine, NOW, LAG)
        # A claim of the current hour shows at once, without another run.
        fresh = ledger.completion("u07", "share-result", NOW - timedelta(minutes=9), NOW - timedelta(seconds=30))
        write(ledger, [fresh])
        # The claimable completion is claimed now; one claimed days ago (a rolled-up hour) is voided.
        pending = next(r for r in ledger.completions if r["status"] == "pending" and r["expires_at"] > NOW)
        old = next(
            r for r in ledger.completions if r["status"] == "claimed" and r["claimed_at"] < NOW - timedelta(days=2)
        )
        for row, values in (
            (pending, {"status": "claimed", "claimed_at": NOW - timedelta(seconds=5)}),
            (old, {"status": "void", "voided_at": NOW - timedelta(seconds=4)}),
        ):
            db.session.execute(update(Completion).where(Completion.id == row["id"]).values(**values))
            row.update(values)
        db.session.commit()
        check(ledger)
        # The expiry job's update at now marks what is past its expiry: "expired" counted them already.
        expired = db.session.execute(
            update(Completion)
            .where(Completion.status == "pending", Completion.expires_at <= NOW)
            .values(status="expired")
        ).rowcount
        db.session.commit()
        assert expired > 0
        for row in ledger.completions:
            if row["status"] == "pending" and row["expires_at"] <= NOW:
                row["status"] = "expired"
        check(ledger)


def test_beat_rolls_up_on_the_maintenance_queue(app):
    import workers

    schedule = workers.beat_schedule(app.config)["rollup-analytics"]
    assert schedule == {"task": "workers.analytics.rollup", "schedule": 300.0}
    assert workers.task_routes(app.config)["workers.analytics.rollup"] == {
        "queue": app.config["CELERY_MAINTENANCE_QUEUE"]
    }
    assert app.config["ANALYTICS_LAG"] == timedelta(minutes=5)
