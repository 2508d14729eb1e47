"""Whole-table jobs (a rebuild, reconcile, a migration) are not cut by the requests' statement timeout."""

from sqlalchemy import text

from scoreboard.board.source import unbounded_statement
from scoreboard.extensions import db


def test_the_timeout_is_lifted_for_the_jobs_transaction_only(app):
    with app.app_context():
        assert db.session.scalar(text("SHOW statement_timeout")) == "2s"  # every session of the service
        unbounded_statement()
        assert db.session.scalar(text("SHOW statement_timeout")) == "0"
        db.session.commit()
        assert db.session.scalar(text("SHOW statement_timeout")) == "2s"
        db.session.rollback()


def test_a_rebuild_still_finishes_when_statements_are_slower_than_the_timeout(app, record_and_claim):
    from scoreboard.board.refresh import refresh_board

    record_and_claim("slow")
    with app.app_context():
        # A statement timeout far below what a whole-table read takes; the rebuild lifts it for its reads.
        db.session.execute(text("SET statement_timeout = 1"))
        try:
            assert refresh_board(rebuild=True) >= 0
        finally:
            db.session.rollback()
