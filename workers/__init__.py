"""Celery tasks: board recomputes and maintenance. Importing this package registers them."""

from typing import Any

from scoreboard.ops import worker as _worker_ops  # noqa: F401  (metrics endpoint and pool bookkeeping)

from . import analytics, board, maintenance


def beat_schedule(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Beat's jobs, with their periods from the settings."""
    return {
        "sweep-board": {"task": board.sweep.name, "schedule": config["SWEEP_INTERVAL"]},
        "reconcile-board": {"task": board.reconcile.name, "schedule": config["RECONCILE_INTERVAL"]},
        "expire-completions": {"task": maintenance.expire_completions.name, "schedule": config["EXPIRE_INTERVAL"]},
        "prune-periods": {"task": maintenance.prune_periods.name, "schedule": config["PRUNE_INTERVAL"]},
        "scan-anomalies": {"task": maintenance.scan_anomalies.name, "schedule": config["ANOMALY_INTERVAL"]},
        "rollup-analytics": {"task": analytics.rollup.name, "schedule": config["ANALYTICS_INTERVAL"]},
    }


def task_routes(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Housekeeping (the anomaly scan too) goes to its own queue, so it never sits in front of a recompute."""
    queue = {"queue": config["CELERY_MAINTENANCE_QUEUE"]}
    tasks = (maintenance.expire_completions, maintenance.prune_periods, maintenance.scan_anomalies, analytics.rollup)
    return {task.name: queue for task in tasks}
