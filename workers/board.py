"""Board tasks: recompute after claims, sweep the outbox, reconcile with the database; and queueing a recompute."""

import logging

from celery import shared_task
from redis.exceptions import RedisError
from sqlalchemy import func, select

from scoreboard.board.refresh import refresh_board
from scoreboard.extensions import celery_app, db
from scoreboard.models import Completion, PeriodScore, Score
from scoreboard.ops import metrics
from scoreboard.periods import current_periods
from scoreboard.stores import get_stores

log = logging.getLogger(__name__)


class _Queued:
    """What ``send_task`` hands back for a recompute: nobody waits for its result."""

    # send_task sets ``ignored`` on the result it builds; without the slot the send raises after the
    # task went out, and the recompute would be counted as not queued.
    __slots__ = ("id", "ignored")

    def __init__(self, task_id):
        self.id = task_id


def outbox_size() -> int:
    """Committed score changes not yet mirrored to the boards, and claims not yet added to their periods (each
    count served by a partial index)."""
    size = db.session.scalar(select(func.count()).select_from(Score).where(Score.board_pending))
    size += db.session.scalar(select(func.count()).select_from(PeriodScore).where(PeriodScore.board_pending))
    size += db.session.scalar(select(func.count()).select_from(Completion).where(Completion.period_pending))
    db.session.commit()
    return int(size)


class _Rollover:
    """The period keys this process last swept with: a new day, week or month needs a recompute, which
    broadcasts the new period's (empty) board."""

    seen: tuple[str, ...] = ()

    @classmethod
    def happened(cls) -> bool:
        keys = tuple(p.key for p in current_periods())
        changed, cls.seen = keys != cls.seen, keys
        return changed


# How long one recompute task goes on recomputing while changes keep coming (see refresh_board): under a steady
# stream of claims a worker then takes about one task a second from the broker instead of one per recompute.
# Short, so that the sweep and reconcile queued behind it on the board queue wait little.
DRAIN_SECONDS = 1.0


@shared_task(name="workers.board.refresh", ignore_result=True)
def refresh() -> int:
    """Mirror pending score changes and broadcast the top list if it changed; go on while changes keep coming.

    Run in the request (eager, the embedded mode), it recomputes once: a claim must not wait on a drain.
    """
    return refresh_board(drain=0.0 if celery_app().conf.task_always_eager else DRAIN_SECONDS)


@shared_task(name="workers.board.sweep", ignore_result=True)
def sweep() -> int:
    """Beat: pick up changes whose recompute was never queued (Redis or broker was down), and roll the period
    boards over at their midnights."""
    pending = outbox_size()
    metrics.OUTBOX_PENDING.set(pending)
    return refresh_board() if pending or _Rollover.happened() else 0


@shared_task(name="workers.board.reconcile", ignore_result=True)
def reconcile() -> int:
    """Beat: rebuild the mirror and cached top list from the database; drift found is counted in metrics."""
    metrics.RECONCILE_RUNS.inc()
    return refresh_board(rebuild=True)


def request_refresh() -> bool:
    """After a score change commits: queue one recompute unless one is already queued (or a running one holds the
    slot while it drains, and reads this change next); never raises.

    Returns whether a recompute was queued. Redis or the broker down loses nothing: the change
    waits in the outbox for the beat's sweep.
    """
    coordination = get_stores().coordination
    try:
        if not coordination.claim_refresh_slot():
            return False
    except RedisError as exc:
        log.warning("board refresh not queued, redis unavailable (the sweep will catch up): %s", exc)
        return False
    try:
        celery = celery_app()
        if celery.conf.task_always_eager:
            # apply(), not delay(): Celery's eager delay() marks a process-wide flag ("inside a task") for its
            # run and restores what it found, so two threads' overlapping claims could leave it set for good.
            celery.tasks[refresh.name].apply()
        else:
            # No AsyncResult: building one looks up the result backend, which Celery caches per thread,
            # and under gevent every request is a new greenlet, so each send paid for a fresh lookup.
            celery.send_task(refresh.name, ignore_result=True, result_cls=_Queued)
        return True
    except Exception as exc:  # broker down: the outbox keeps the change for the sweep
        log.warning("board refresh not queued, broker unavailable (the sweep will catch up): %s", exc)
        try:
            coordination.release_refresh_slot()
        except RedisError:
            pass
        return False
