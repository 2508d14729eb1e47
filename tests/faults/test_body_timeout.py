"""A client that sends its request body a byte at a time: gunicorn (gevent and gthread workers, one process) answers
408 ``body_timeout`` once ``SCOREBOARD_BODY_TIMEOUT`` has passed and closes the connection, and serves other
requests meanwhile."""

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.support import start_web

pytestmark = [pytest.mark.faults, pytest.mark.live]

BODY_TIMEOUT = 2.0
SLACK = 1.0  # the answer must come within BODY_TIMEOUT + SLACK of the headers


@pytest.fixture(params=["gevent", "gthread"])
def web(request, stack_env, tmp_path):
    """One gunicorn worker process of the given class, with a short body deadline."""
    env = {
        **stack_env,
        "SCOREBOARD_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "SCOREBOARD_WORKER_CLASS": request.param,
        "SCOREBOARD_WEB_THREADS": "8",
    }
    process, base = start_web(env, tmp_path, name=f"web-{request.param}", workers=1)
    yield base
    process.stop()


class SlowClient:
    """A raw socket that sends a claim's headers at once, then its body one byte every ``pace`` seconds."""

    def __init__(self, base, token, length=64, pace=0.2):
        parts = urlsplit(base)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.length = length
        self.pace = pace
        self.sent = 0
        self.stopped = threading.Event()
        head = (
            "POST /api/action/do HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        self.headers_sent_at = time.monotonic()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self):
        body = b'{"actionId": "' + b"x" * (self.length - 17) + b'"}'
        while not self.stopped.wait(self.pace) and self.sent < len(body) - 1:  # never the last byte
            try:
                self.sock.send(body[self.sent : self.sent + 1])
            except OSError:
                return
            self.sent += 1

    def answer(self, timeout):
        """Everything the server sends until it closes the connection: ``(bytes, seconds after the headers when
        the first byte came, seconds when the connection closed)``."""
        self.sock.settimeout(timeout)
        data, first_at = b"", None
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
                first_at = first_at or time.monotonic()
        except ConnectionResetError:
            pass
        closed_at = time.monotonic()
        self.stopped.set()
        self.sock.close()
        first = (first_at or closed_at) - self.headers_sent_at
        return data, first, closed_at - self.headers_sent_at


def test_a_slow_body_is_answered_408_within_the_bound_while_others_are_served(web, mint):
    token = mint("slow-body")
    slow = [SlowClient(web, token) for _ in range(3)]
    # Others are served while the slow bodies trickle in, by the same worker process.
    with requests.Session() as http:
        took = []
        while time.monotonic() - slow[-1].headers_sent_at < BODY_TIMEOUT - 0.5:
            started = time.monotonic()
            assert http.get(f"{web}/healthz", timeout=5).status_code == 200
            took.append(time.monotonic() - started)
            time.sleep(0.05)
        served = http.get(f"{web}/api/score/top", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert served.status_code == 200, served.text
    assert all(s.sent > 0 for s in slow) and max(took) < 0.5, (max(took), [s.sent for s in slow])

    for client in slow:
        data, first, closed = client.answer(timeout=BODY_TIMEOUT + SLACK + 5)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), data[:200]
        assert json.loads(body)["error"]["code"] == "body_timeout", body
        assert BODY_TIMEOUT - 0.1 <= first <= BODY_TIMEOUT + SLACK, first
        assert closed <= BODY_TIMEOUT + SLACK, closed
        print(f"\n[slow body] bytes_sent={client.sent} answered_s={first:.2f} closed_s={closed:.2f}")
    print(f"[slow body] others served meanwhile: {len(took)} requests, slowest {max(took) * 1000:.1f} ms")
