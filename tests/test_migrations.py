"""The one migration runs up and down on an empty PostgreSQL and an empty SQLite."""

import os
import subprocess
import uuid

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.conftest import PG_ADMIN_URL
from tests.support import ROOT, python_bin

ANALYTICS_TABLES = {
    "analytics_state",
    "analytics_hours",
    "analytics_delays",
    "analytics_refusals",
    "analytics_players",
    "analytics_activity",
    "analytics_days",
}
TABLES = {
    "users",
    "scores",
    "period_scores",
    "actions",
    "completions",
    "audit_log",
    "claim_refusals",
    "suspects",
    *ANALYTICS_TABLES,
}


def flask_db(env, *args):
    """Run ``flask db ...`` in a fresh process, as ops would."""
    subprocess.run(
        [python_bin(), "-m", "flask", "db", *args],
        cwd=ROOT,
        env={**env, "FLASK_APP": "wsgi"},
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def empty_postgres():
    name = f"scoreboard_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _env(**overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("SCOREBOARD_DATABASE_URL",)}
    env.update(overrides)
    return env


def _check(url):
    engine = create_engine(url)
    inspector = inspect(engine)
    tables = set(inspector.get_table_names()) - {"alembic_version"}
    indexes = {ix["name"] for ix in inspector.get_indexes("scores")} if "scores" in tables else set()
    engine.dispose()
    return tables, indexes


def test_upgrade_and_downgrade_on_empty_postgres(empty_postgres):
    env = _env(SCOREBOARD_DATABASE_URL=empty_postgres)
    flask_db(env, "upgrade")
    tables, indexes = _check(empty_postgres)
    assert tables == TABLES
    assert {"ix_scores_rank", "ix_scores_board_pending"} <= indexes
    flask_db(env, "check")  # the models and the migration agree
    flask_db(env, "downgrade", "base")
    assert _check(empty_postgres)[0] == set()


@pytest.mark.unit  # `flask db` in a subprocess, on SQLite: no server, no PostgreSQL or Redis
def test_upgrade_and_downgrade_on_empty_sqlite(tmp_path):
    path = tmp_path / "fresh.sqlite3"
    env = _env(SCOREBOARD_SQLITE_PATH=str(path))
    flask_db(env, "upgrade")
    tables, indexes = _check(f"sqlite:///{path}")
    assert tables == TABLES and "ix_scores_rank" in indexes
    flask_db(env, "downgrade", "base")
    assert _check(f"sqlite:///{path}")[0] == set()
