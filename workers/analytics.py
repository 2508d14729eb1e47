"""The analytics rollup, run by beat on the maintenance queue (``scoreboard.analytics.rollup``)."""

from celery import shared_task
from flask import current_app

from scoreboard.analytics.rollup import run_rollup
from scoreboard.extensions import db
from scoreboard.periods import clock


@shared_task(name="workers.analytics.rollup", ignore_result=True)
def rollup() -> dict:
    """Roll the ledger up to ``SCOREBOARD_ANALYTICS_LAG`` before now, catching up whatever a downtime left;
    returns what it did. Reads the ledger by its indexed timestamps only and writes only the analytics tables."""
    return run_rollup(db.engine, clock(), current_app.config["ANALYTICS_LAG"]).as_dict()
