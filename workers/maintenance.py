"""Housekeeping tasks run by beat."""

import logging

from celery import shared_task
from sqlalchemy import update

from scoreboard.extensions import db
from scoreboard.models import Completion, CompletionStatus, utcnow

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
