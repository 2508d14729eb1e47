"""Celery tasks: board recomputes and maintenance. Importing this package registers them."""

from scoreboard.ops import worker as _worker_ops  # noqa: F401  (metrics endpoint and pool bookkeeping)

from . import board, maintenance  # noqa: F401
