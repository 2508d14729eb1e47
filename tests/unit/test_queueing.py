"""Queueing a recompute: the object Celery hands back takes what Celery writes to it."""

import pytest
from celery import Celery

from workers.board import _Queued

pytestmark = pytest.mark.unit


def test_send_task_accepts_the_queued_result():
    celery = Celery("probe", broker="memory://localhost/")
    queued = celery.send_task("workers.board.refresh", ignore_result=True, result_cls=_Queued)
    assert queued.ignored is True and queued.id
