"""Rate-limit leases: a busy caller's hits are reserved a share of a window at a time and admitted with no round
trip; never more than the limit is admitted across processes, and what leases leave unused stays within 5%."""

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import cycle

import pytest
import redis
import requests
from flask import Flask
from limits import parse_many
from limits.storage import storage_from_string

from scoreboard.security.rate_limits import OneTripFixedWindow, lease_size
from tests.conftest import REDIS_URL
from tests.support import bearer, start_web, wait_until


def counted(prefix: str) -> tuple[Flask, object, list]:
    """An app holding the limit settings, and the storage under ``prefix``."""
    app = Flask(__name__)
    storage = storage_from_string(REDIS_URL, key_prefix=prefix)
    return app, storage, []


def process(storage, calls: list) -> OneTripFixedWindow:
    """A web process's strategy (its own leases), counting its scripts (lease or one hit) in ``calls``."""
    strategy = OneTripFixedWindow(storage)
    lease, one = strategy._lease_script, strategy._script
    strategy._lease_script = lambda **kwargs: calls.append("lease") or lease(**kwargs)
    strategy._script = lambda **kwargs: calls.append("hit") or one(**kwargs)
    return strategy


def hit(app, strategy, text, key="10.0.0.1", scope="global") -> bool:
    """One request's checks of a limit string, as Flask-Limiter makes them (shortest first, stop at a refusal)."""
    windows = sorted(parse_many(text), key=lambda w: w.GRANULARITY.seconds)
    with app.test_request_context("/"):
        return all(strategy.hit(window, key, scope) for window in windows)


def counter(storage, text, window_index=0, key="10.0.0.1", scope="global") -> int:
    windows = sorted(parse_many(text), key=lambda w: w.GRANULARITY.seconds)
    return int(storage.get(windows[window_index].key_for(key, scope)))


def test_the_lease_is_a_share_of_the_smallest_window():
    assert lease_size(tuple(parse_many("50/second;2000/minute")), 0.02) == 1  # the default per-IP: no lease
    assert lease_size(tuple(parse_many("10/second;300/minute;5000/hour")), 0.02) == 1
    assert lease_size(tuple(parse_many("500/second")), 0.02) == 10
    assert lease_size(tuple(parse_many("10000/second;600000/minute")), 0.02) == 200
    # A longer window's share is of what it allows in the smallest window's time: the hour allows ~28 a second.
    assert lease_size(tuple(parse_many("500/second;30000/minute;100000/hour")), 0.02) == 1
    assert lease_size(tuple(parse_many("1000/minute;360/hour")), 0.5) == 3
    assert lease_size(tuple(parse_many("10000/second")), 0) == 1


def test_one_process_admits_exactly_the_limit_a_lease_at_a_time():
    app, storage, calls = counted(f"sbtest:lease:{uuid.uuid4().hex[:8]}")
    app.config.update(RATELIMIT_APPLICATION="100/minute", RATE_LIMIT_LEASE_SHARE=0.1)
    strategy = process(storage, calls)
    try:
        answers = [hit(app, strategy, "100/minute") for _ in range(100)]
        assert answers == [True] * 100 and counter(storage, "100/minute") == 100
        assert calls == ["lease"] * 10  # ten leases of ten
        # Refused from the first hit past the counter's limit; each refusal asks Redis (a refused caller holds
        # no lease).
        assert [hit(app, strategy, "100/minute") for _ in range(3)] == [False] * 3
        assert len(calls) == 10 + 3
        # A refusal is counted once, as one hit is; the refused lease's other nine are given back.
        assert counter(storage, "100/minute") == 103
    finally:
        storage.reset()


def test_a_partial_lease_admits_what_the_window_has_left():
    app, storage, calls = counted(f"sbtest:lease:{uuid.uuid4().hex[:8]}")
    app.config.update(RATELIMIT_APPLICATION="95/minute", RATE_LIMIT_LEASE_SHARE=0.1)
    strategy = process(storage, calls)
    try:
        answers = [hit(app, strategy, "95/minute") for _ in range(97)]
        assert answers == [True] * 95 + [False] * 2
        assert counter(storage, "95/minute") == 97
    finally:
        storage.reset()


def test_with_no_share_every_hit_is_a_script():
    text = "1000/second;60000/minute"
    app, storage, calls = counted(f"sbtest:lease:{uuid.uuid4().hex[:8]}")
    app.config.update(RATELIMIT_APPLICATION=text, RATE_LIMIT_LEASE_SHARE=0)
    strategy = process(storage, calls)
    try:
        assert all(hit(app, strategy, text) for _ in range(50))
        assert calls == ["hit"] * 50 and counter(storage, text, 1) == 50
        app.config.update(RATE_LIMIT_LEASE_SHARE=0.02)  # a lease of 20
        assert all(hit(app, strategy, text) for _ in range(100))
        assert calls[50:] == ["lease"] * 5 and counter(storage, text, 1) == 150
    finally:
        storage.reset()


def test_every_window_of_the_string_gives_back_what_a_later_one_refused():
    text = "1000/minute;360/hour"  # the lease is 3: half what the hour allows a minute
    app, storage, calls = counted(f"sbtest:lease:{uuid.uuid4().hex[:8]}")
    app.config.update(RATELIMIT_APPLICATION=text, RATE_LIMIT_LEASE_SHARE=0.5)
    strategy = process(storage, calls)
    try:
        answers = [hit(app, strategy, text) for _ in range(361)]
        assert answers == [True] * 360 + [False]
        assert calls == ["lease"] * (120 + 1)
        # The minute's window counted the refused lease once too, not the three it reserved.
        assert counter(storage, text, 0) == counter(storage, text, 1) == 361
    finally:
        storage.reset()


def test_two_processes_never_admit_more_and_an_idle_lease_is_the_only_shortfall():
    app, storage, calls = counted(f"sbtest:lease:{uuid.uuid4().hex[:8]}")
    app.config.update(RATELIMIT_APPLICATION="100/minute", RATE_LIMIT_LEASE_SHARE=0.1)
    a, b = process(storage, calls), process(storage, calls)
    try:
        assert hit(app, a, "100/minute")  # a reserves ten and uses one
        from_b = 0
        while hit(app, b, "100/minute"):
            from_b += 1
        # b has what a did not reserve; a's nine unused are the whole shortfall, and still a's to admit.
        assert from_b == 90
        assert [hit(app, a, "100/minute") for _ in range(10)] == [True] * 9 + [False]
    finally:
        storage.reset()


def test_a_lease_ends_with_its_window():
    text = "1000/second"  # a lease of ten
    app, storage, calls = counted(f"sbtest:lease:{uuid.uuid4().hex[:8]}")
    app.config.update(RATELIMIT_APPLICATION=text, RATE_LIMIT_LEASE_SHARE=0.01)
    strategy = process(storage, calls)
    key = parse_many(text)[0].key_for("10.0.0.1", "global")
    try:
        assert hit(app, strategy, text) and hit(app, strategy, text)
        assert len(calls) == 1 and counter(storage, text) == 10
        lease_until = strategy._leases[key][1]
        wait_until(lambda: storage.get(key) == 0 and time.monotonic() > lease_until, timeout=5)
        # The old lease's eight are not spent in the new window: the next hit reserves in it.
        assert hit(app, strategy, text)
        assert len(calls) == 2 and counter(storage, text) == 10
    finally:
        storage.reset()


@contextmanager
def scripts_under(prefix: str) -> Iterator[list]:
    """The scripts run on rate-limit keys under ``prefix`` while the block runs, as Redis MONITOR sees them (the
    server-wide command counts would take in whatever else uses this Redis meanwhile)."""
    seen, watching, stop = [], threading.Event(), f"{prefix}monitor-stop"

    def watch():
        with redis.Redis.from_url(REDIS_URL).monitor() as monitor:
            watching.set()
            for command in monitor.listen():
                text = command["command"]
                if stop in text:
                    return
                if text.upper().startswith("EVALSHA") and f"{prefix}ratelimit" in text:
                    seen.append(text)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert watching.wait(5)
    try:
        yield seen
    finally:
        redis.Redis.from_url(REDIS_URL).get(stop)
        watcher.join(10)


LIMIT = 1000  # per minute, on two servers with leases of 20 (2% each): the run stays inside one window


@pytest.mark.live
def test_two_servers_with_leases_admit_the_limit_within_five_percent(stack_env, tmp_path, mint):
    prefix = f"sbtest:leases:{uuid.uuid4().hex[:8]}:"
    env = {
        **stack_env,
        "SCOREBOARD_REDIS_PREFIX": prefix,
        "SCOREBOARD_RATE_LIMIT_ENABLED": "true",
        "SCOREBOARD_RATE_LIMIT_IP": f"{LIMIT}/minute",
        "SCOREBOARD_RATE_LIMIT_LEASE_SHARE": "0.02",
        # The requests below come from an address of their own (the servers' readiness probes, from 127.0.0.1,
        # hold leases of their own window).
        "SCOREBOARD_PROXY_HOPS": "1",
    }
    client = redis.Redis.from_url(REDIS_URL)
    web_a, base_a = start_web(env, tmp_path, name="leases-a", workers=1)
    web_b, base_b = start_web(env, tmp_path, name="leases-b", workers=1)
    try:
        headers = {**bearer(mint("leased-reader")), "X-Forwarded-For": "10.77.0.1"}
        sessions = {base: requests.Session() for base in (base_a, base_b)}

        def get(base):
            answer = sessions[base].get(f"{base}/api/score/top", headers=headers, timeout=10)
            return base, answer.status_code

        def spread(count: int) -> list[str]:
            return [base for _, base in zip(range(count), cycle((base_a, base_b)), strict=False)]

        # Within the limit, less its worst shortfall (2 x 19): every request admitted, a round trip per lease.
        within = 960
        with scripts_under(prefix) as scripts, ThreadPoolExecutor(max_workers=16) as pool:
            first = list(pool.map(get, spread(within)))
        assert [status for _, status in first] == [200] * within
        # About one a lease of 20 (48), not one a request; a process reserves once at a time per caller.
        assert within / 20 <= len(scripts) <= within / 10, len(scripts)
        with ThreadPoolExecutor(max_workers=16) as pool:
            rest = list(pool.map(get, spread(300)))
        statuses = [status for _, status in first + rest]
        assert set(statuses) <= {200, 429}, set(statuses)
        admitted = statuses.count(200)
        assert LIMIT * 0.95 <= admitted <= LIMIT, admitted
        # Both processes served and refused: the limit is shared, not per process.
        for base in (base_a, base_b):
            mine = [status for where, status in first + rest if where == base]
            assert 200 in mine and 429 in mine
        # Redis counted every admitted request before it was admitted, the unused leases (at most 19 each) and
        # each refusal once.
        window = parse_many(f"{LIMIT}/minute")[0].key_for("10.77.0.1", "global")
        refused = statuses.count(429)
        assert admitted + refused <= int(client.get(f"{prefix}ratelimit:{window}")) <= admitted + refused + 2 * 19
    finally:
        web_a.stop()
        web_b.stop()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
