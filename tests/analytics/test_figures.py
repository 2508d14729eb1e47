"""Every figure of every range against the same figures worked out from the rows the test wrote: on
PostgreSQL straight from the ledger, then from the rollups merged with the live hours; on SQLite (the
embedded mode) straight from the ledger."""

import json
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import insert, text

from scoreboard.analytics import figures
from scoreboard.analytics.buckets import bucket_of, median, width
from scoreboard.analytics.rollup import run_rollup
from scoreboard.extensions import db
from scoreboard.models import Action
from tests.conftest import DEFAULT_CATALOG

from .ledger import HOURS, NOW, assert_figures, build, clear_rollups, expected, write

LAG = timedelta(minutes=5)


@pytest.fixture
def ledger(app):
    made = build()
    with app.app_context():
        clear_rollups()
        write(made)
    yield made
    with app.app_context():
        clear_rollups()


def expected_claims(made, hour):
    return sum(1 for r in made.completions if r["claimed_at"] and hour <= r["claimed_at"] < hour + timedelta(hours=1))


def check_every_range(engine, made, now=NOW):
    for range_key in HOURS:
        assert_figures(figures(engine, range_key, now), expected(made, range_key, now))


def test_every_figure_straight_from_the_ledger_on_postgresql(app, ledger):
    with app.app_context():
        check_every_range(db.engine, ledger)


def test_every_figure_from_the_rollups_and_the_live_hours(app, ledger):
    with app.app_context():
        summary = run_rollup(db.engine, NOW, LAG)
        assert summary.windows > 0
        # Rolled up to the hour before now - lag; the current hour is live.
        assert summary.claims_to == (NOW - LAG).replace(minute=0, second=0, microsecond=0)
        check_every_range(db.engine, ledger)
        # The older hours really come from the rollups: a rolled-up hour changed by hand shows in the answer.
        hour = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
        db.session.execute(
            text("INSERT INTO analytics_hours (hour, action_key, claims) VALUES (:h, 'pass-quiz', 1000)"), {"h": hour}
        )
        db.session.commit()
        answer = {h["at"]: h["claims"] for h in figures(db.engine, "7d", NOW)["claimsPerHour"]}
        assert answer[hour.isoformat()] == 1000 + expected_claims(ledger, hour)


@pytest.fixture
def sqlite_app(tmp_path):
    """A bare app on SQLite with the models' schema and the default catalog (the embedded mode's database)."""
    app = Flask("analytics-sqlite")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    db.init_app(app)
    with app.app_context():
        db.create_all(bind_key=None)
        catalog = json.loads(DEFAULT_CATALOG.read_text())
        db.session.execute(insert(Action), [{"key": e["key"], "points": e["points"]} for e in catalog])
        db.session.commit()
    yield app
    with app.app_context():
        db.engine.dispose()


def test_every_figure_straight_from_the_ledger_on_sqlite(sqlite_app):
    made = build(seed=11)
    with sqlite_app.app_context():
        write(made)
        # There is no rollup on SQLite: the job does nothing and the figures come from the ledger.
        assert run_rollup(db.engine, NOW, LAG).windows == 0
        check_every_range(db.engine, made)


@pytest.mark.unit
def test_the_histogram_buckets_and_its_median():
    assert [bucket_of(s) for s in (-3, 0.4, 1.5, 59.9, 60, 61, 599, 600, 3599, 3600, 86399, 90001)] == [
        0, 0, 1, 59, 60, 60, 590, 600, 3540, 3600, 85800, 90000,
    ]  # fmt: skip
    assert [width(b) for b in (0, 59, 60, 590, 600, 3540, 3600, 86400)] == [1, 1, 10, 10, 60, 60, 600, 3600]
    assert median({}) is None
    assert median({5: 1}) == 5.5
    assert median({5: 1, 60: 1}) == (5.5 + 65) / 2
    assert median({0: 2, 10: 1}) == 0.5
