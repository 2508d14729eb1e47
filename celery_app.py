"""The Celery app for ``celery -A celery_app worker`` and ``celery -A celery_app beat``."""

from celery.signals import worker_process_init

from scoreboard import create_app_for_process
from scoreboard.extensions import celery_app, db

flask_app = create_app_for_process()
celery = celery_app(flask_app)


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs):
    """A forked worker must not share the parent's database connections."""
    with flask_app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)
