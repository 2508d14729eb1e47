"""The Celery worker killed with SIGKILL mid-stream (no warm shutdown, tasks in flight lost), then restarted."""

import signal
import time

from .conftest import USERS
from .stack import account, wait_converged, watched_claims


def test_worker_sigkill_loses_nothing(stack, tokens, reader, service_headers):
    items = stack.record(service_headers, USERS, 40)
    with watched_claims(stack, items, tokens, reader) as (stream, watchers):
        stream.wait_answered(20, status=200)  # the stream is flowing, recomputes with it
        stack.processes["worker"].stop(sig=signal.SIGKILL)  # the main process and its pool, at once
        killed_at = time.monotonic()
        stream.wait_answered(20, since=killed_at)  # claims go on with no worker: their recomputes wait
        stream.stop()
        stack.start_worker()
        converged_in = wait_converged(stack, reader, watchers, timeout=10)

    assert stream.statuses() == {200: len(stream.outcomes)}, stream.statuses()
    counts = account(stack, stream, "worker SIGKILL", converged_in)
    print(f"[worker SIGKILL] restart -> converged in {converged_in:.2f}s (after the worker was ready)")
    assert counts["lost"] == 0 and counts["acknowledged_not_committed"] == 0
    assert counts["committed"] == counts["on_board"] == len(stream.outcomes)
