"""The Redis circuit breaker on its own, against a private redis-server that is frozen, thawed and stopped:
one timeout opens it, then commands and subscriptions fail at once, one trial goes through per period, and the
first answer closes it. A refused connection opens it for 1 s only."""

import time

import pytest
import redis

from scoreboard.ops import redis_breaker
from scoreboard.ops.redis_breaker import CircuitOpen
from tests.support import wait_until

from .servers import RedisServer

pytestmark = [pytest.mark.faults, pytest.mark.live]

OPEN_FOR = 1.0
TIMEOUT = 0.5


def timed(call):
    """``(exception class or None, seconds)`` of one call."""
    started = time.monotonic()
    try:
        call()
    except redis.RedisError as exc:
        return type(exc), time.monotonic() - started
    return None, time.monotonic() - started


@pytest.fixture
def server(tmp_path):
    """A private redis-server, stopped (and thawed first, if frozen) at the end."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_one_timeout_opens_it_one_trial_per_period_and_an_answer_closes_it(server):
    client = redis.Redis.from_url(
        server.url(),
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        connection_class=redis_breaker.connection_class(server.url(), OPEN_FOR),
    )
    breaker = redis_breaker.breaker_for(f"127.0.0.1:{server.port}", OPEN_FOR)
    client.set("k", "v")
    assert not breaker.is_open

    server.freeze()
    error, took = timed(lambda: client.get("k"))
    assert error is redis.TimeoutError and took < 2 * TIMEOUT, (error, took)  # waited once, not retried
    assert breaker.is_open and redis_breaker.breaker_open()
    for call in (lambda: client.get("k"), lambda: client.pubsub().subscribe("channel"), client.ping):
        error, took = timed(call)
        assert error is CircuitOpen and took < 0.05, (error, took)

    # After the period one command goes through (and waits), the others are still refused meanwhile.
    wait_until(lambda: time.monotonic() - breaker._trial_at >= 0, timeout=OPEN_FOR + 1)
    error, took = timed(lambda: client.get("k"))
    assert error is redis.TimeoutError and TIMEOUT * 0.9 <= took < 2 * TIMEOUT, (error, took)
    error, took = timed(lambda: client.get("k"))
    assert error is CircuitOpen and took < 0.05, (error, took)

    server.thaw()
    assert wait_until(lambda: timed(lambda: client.get("k"))[0] is None, timeout=OPEN_FOR + 2, interval=0.1)
    assert not breaker.is_open and client.get("k") == b"v"


def test_a_refused_connection_opens_it_for_a_second_only(server):
    client = redis.Redis.from_url(
        server.url(),
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        connection_class=redis_breaker.connection_class(server.url(), 5.0),
    )
    breaker = redis_breaker.breaker_for(f"127.0.0.1:{server.port}", 5.0)
    client.ping()
    server.stop()
    error, took = timed(client.ping)  # the pooled connection is gone: one reconnect, refused
    assert error is redis.ConnectionError and took < 0.1, (error, took)
    assert breaker.is_open
    assert timed(client.ping)[0] is CircuitOpen
    server.start()  # on the same port, empty
    opened_at = time.monotonic()
    wait_until(lambda: timed(client.ping)[0] is None, timeout=3, interval=0.05)
    assert time.monotonic() - opened_at < 1.5 and not breaker.is_open
