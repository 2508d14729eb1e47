"""Graceful shutdown: a stopping web instance closes its sockets with 1001; a stopping worker shuts down warm."""

import os
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import bearer, start_web, start_worker, ws_url


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_sigterm_closes_sockets_with_1001(stack, reader, worker_class):
    env = {**stack.env, "SCOREBOARD_WORKER_CLASS": worker_class, "SCOREBOARD_GRACEFUL_TIMEOUT": "20"}
    web, base = start_web(env, stack.log_dir, name=f"web-stopping-{worker_class}", workers=1)
    try:
        sockets = [connect(ws_url(base), additional_headers=bearer(reader), open_timeout=5) for _ in range(2)]
        for ws in sockets:
            assert ws.recv(timeout=5)  # the snapshot: the socket is live
        os.killpg(web.proc.pid, signal.SIGTERM)
        stopped_at = time.monotonic()
        for ws in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=5)
            assert closed.value.rcvd is not None, "closed without a close frame (abnormal closure)"
            assert closed.value.rcvd.code == 1001
        waited = time.monotonic() - stopped_at
        # Well inside the 20 s graceful timeout: the sockets were closed, not left to be cut.
        web.proc.wait(10)
        assert waited < 3, f"sockets closed {waited:.1f}s after SIGTERM"
        print(
            f"\n[shutdown {worker_class}] sockets closed with 1001 {waited:.2f}s after SIGTERM; "
            f"gunicorn exited {time.monotonic() - stopped_at:.2f}s after it"
        )
    finally:
        web.stop()


def test_celery_worker_shuts_down_warm_on_sigterm(stack):
    worker = start_worker(stack.env, stack.log_dir, name="worker-warm")
    try:
        worker.proc.send_signal(signal.SIGTERM)  # to the main process only, as a supervisor does
        assert worker.proc.wait(20) == 0
        assert "Warm shutdown" in worker.output()
    finally:
        worker.stop()
