"""Celery tasks: board recomputes and maintenance. Importing this package registers them."""

from . import board, maintenance  # noqa: F401
