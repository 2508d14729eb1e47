"""Board tasks: recompute after claims, sweep the outbox, reconcile with the database."""

from celery import shared_task

from scoreboard.board.pipeline import has_pending, refresh_board


@shared_task(name="workers.board.refresh", ignore_result=True)
def refresh():
    """Mirror pending score changes and broadcast the top list if it changed."""
    return refresh_board()


@shared_task(name="workers.board.sweep", ignore_result=True)
def sweep():
    """Beat: pick up changes whose recompute was never queued (Redis or broker was down)."""
    if has_pending():
        return refresh_board()
    return 0


@shared_task(name="workers.board.reconcile", ignore_result=True)
def reconcile():
    """Beat: rebuild the mirror from the database, in case Redis lost or skewed it."""
    return refresh_board(rebuild=True)
