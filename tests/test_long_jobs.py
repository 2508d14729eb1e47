"""Whole-table jobs (a rebuild, reconcile, a migration) are not cut by the requests' statement timeout."""

import pytest
from sqlalchemy import text

from scoreboard.board.source import unbounded_statement
from scoreboard.extensions import db


def test_the_timeout_is_lifted_for_the_jobs_transaction_only(app):
    bound = "30s"  # the tests' SCOREBOARD_DB_STATEMENT_TIMEOUT (the service's default is 2 s)
    with app.app_context():
        assert db.session.scalar(text("SHOW statement_timeout")) == bound  # every session of the service
        unbounded_statement()
        assert db.session.scalar(text("SHOW statement_timeout")) == "0"
        db.session.commit()
        assert db.session.scalar(text("SHOW statement_timeout")) == bound
        db.session.rollback()


@pytest.mark.unit
def test_the_service_bounds_statements_and_locks_by_default(monkeypatch):
    from config import database_bounds

    for name in ("STATEMENT_TIMEOUT", "LOCK_TIMEOUT"):
        monkeypatch.delenv(f"SCOREBOARD_DB_{name}", raising=False)
    options = database_bounds("postgresql://db/scoreboard")["options"]
    assert options == "-c statement_timeout=2000 -c lock_timeout=1000"


def test_a_rebuild_still_finishes_when_statements_are_slower_than_the_timeout(app, record_and_claim):
    from scoreboard.board.refresh import refresh_board

    record_and_claim("slow")
    with app.app_context():
        # A statement timeout far below what a whole-table read takes; the rebuild lifts it for its reads.
        db.session.execute(text("SET statement_timeout = 1"))
        try:
            assert refresh_board(rebuild=True) >= 0
        finally:
            # The rebuild commits, which makes the SET stick to this pooled connection, and a RESET after the
            # rollback may run on another one (the pool hands out its oldest idle connection first): close
            # the pool's connections instead, or a later test's statement on this one is cancelled after 1 ms.
            db.session.rollback()
            db.engine.dispose()
        assert db.session.scalar(text("SHOW statement_timeout")) == "30s"
        db.session.rollback()
