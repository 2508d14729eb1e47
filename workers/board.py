"""Board tasks: recompute after claims, sweep the outbox, reconcile with the database."""

from celery import shared_task
from sqlalchemy import func, select

from scoreboard.board.pipeline import refresh_board
from scoreboard.extensions import db
from scoreboard.models import Score
from scoreboard.ops import metrics


def outbox_size():
    """Committed score changes not yet mirrored to the board (served by a partial index)."""
    size = db.session.scalar(select(func.count()).select_from(Score).where(Score.board_pending))
    db.session.commit()
    return int(size)


@shared_task(name="workers.board.refresh", ignore_result=True)
def refresh():
    """Mirror pending score changes and broadcast the top list if it changed."""
    return refresh_board()


@shared_task(name="workers.board.sweep", ignore_result=True)
def sweep():
    """Beat: pick up changes whose recompute was never queued (Redis or broker was down)."""
    pending = outbox_size()
    metrics.OUTBOX_PENDING.set(pending)
    return refresh_board() if pending else 0


@shared_task(name="workers.board.reconcile", ignore_result=True)
def reconcile():
    """Beat: rebuild the mirror and cached top list from the database; drift found is counted in metrics."""
    metrics.RECONCILE_RUNS.inc()
    return refresh_board(rebuild=True)
