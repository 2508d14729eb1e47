"""Housekeeping tasks run by beat: expiry, the prune of old periods, the anomaly scan."""

import logging

from celery import shared_task
from sqlalchemy import delete, update

from scoreboard.extensions import db
from scoreboard.models import Completion, CompletionStatus, PeriodScore, utcnow
from scoreboard.periods import dropped
from scoreboard.stores import get_stores

from .board import request_refresh

log = logging.getLogger(__name__)


@shared_task(name="workers.maintenance.expire_completions", ignore_result=True)
def expire_completions():
    """Mark pending completions past their expiry as expired; returns how many."""
    result = db.session.execute(
        update(Completion)
        .where(Completion.status == CompletionStatus.PENDING, Completion.expires_at <= utcnow())
        .values(status=CompletionStatus.EXPIRED)
    )
    db.session.commit()
    if result.rowcount:
        log.info("expired %d completions", result.rowcount)
    return result.rowcount


@shared_task(name="workers.maintenance.prune_periods", ignore_result=True)
def prune_periods() -> int:
    """Drop the boards of periods older than those kept (``SCOREBOARD_PERIODS_KEPT``); returns rows deleted.

    Each expired period is deleted by its key (an index range, never a table scan); the ledger keeps
    every completion, so a period's history stays readable.
    """
    keys = [period.key for period in dropped()]
    result = db.session.execute(delete(PeriodScore).where(PeriodScore.period.in_(keys)))
    db.session.commit()
    stores = get_stores()
    for key in keys:
        stores.ranking_for(key).reset()
    if result.rowcount:
        log.info("pruned %d period rows", result.rowcount)
    return result.rowcount


@shared_task(name="workers.maintenance.scan_anomalies", ignore_result=True)
def scan_anomalies() -> int:
    """Judge the window's players and hold (or flag) the anomalous ones (``scoreboard.integrity.scan``);
    returns how many new suspects. Runs on the maintenance queue, never in a web process."""
    # Imported here: the model's libraries (numpy, scikit-learn) load only in the process that scans,
    # never in the web processes that import the task list.
    from scoreboard.integrity.scan import run_scan

    summary = run_scan()
    if summary.held:
        request_refresh()  # the held leave the boards now, not at the next sweep
    return len(summary.flagged)
