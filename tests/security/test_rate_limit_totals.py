"""Rate limits hold across processes: two gunicorn servers sharing one Redis admit, between them, what the limit
allows (within 5%) under real concurrent requests; a limit string's windows are counted in one round trip."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle

import redis
import requests
from flask import Flask
from limits import parse
from limits.storage import storage_from_string

from scoreboard.security.rate_limits import OneTripFixedWindow
from tests.conftest import REDIS_URL
from tests.support import bearer, start_web

LIMIT = 60  # per minute: the test runs well inside one window


def test_two_processes_admit_the_limit_between_them(stack_env, tmp_path, mint):
    prefix = f"sbtest:limits:{uuid.uuid4().hex[:8]}:"
    env = {
        **stack_env,
        "SCOREBOARD_REDIS_PREFIX": prefix,
        "SCOREBOARD_RATE_LIMIT_ENABLED": "true",
        "SCOREBOARD_RATE_LIMIT_IP": f"{LIMIT}/minute;{LIMIT * 3}/hour;{LIMIT * 10}/day",
    }
    client = redis.Redis.from_url(REDIS_URL)
    web_a, base_a = start_web(env, tmp_path, name="limits-a", workers=1)
    web_b, base_b = start_web(env, tmp_path, name="limits-b", workers=1)
    try:
        # start_web's readiness probes counted too; start from empty windows.
        for key in client.scan_iter(f"{prefix}*ratelimit*"):
            client.delete(key)
        headers = bearer(mint("limited-reader"))
        sessions = {base: requests.Session() for base in (base_a, base_b)}
        targets = [base for _, base in zip(range(240), cycle((base_a, base_b)), strict=False)]

        def get(base):
            answer = sessions[base].get(f"{base}/api/score/top", headers=headers, timeout=10)
            return base, answer.status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(get, targets))

        statuses = [status for _, status in answers]
        assert set(statuses) <= {200, 429}, set(statuses)
        admitted = statuses.count(200)
        assert abs(admitted - LIMIT) <= LIMIT * 0.05, admitted
        assert statuses.count(429) == len(targets) - admitted
        # Both processes served and refused: the total is shared, not per process.
        for base in (base_a, base_b):
            mine = [status for where, status in answers if where == base]
            assert 200 in mine and 429 in mine
        # The windows stop counting at the first breached, as Flask-Limiter stops checking: the hour and the day
        # counted only the admitted requests, the minute every one.
        counters = {
            key.decode().split("/", 2)[-1]: int(client.get(key)) for key in client.scan_iter(f"{prefix}*ratelimit*")
        }
        by_window = {key.rsplit("/", 3)[-1]: count for key, count in counters.items()}
        assert by_window == {"minute": len(targets), "hour": admitted, "day": admitted}, counters
        # A refusal says so as before: the JSON error with Retry-After.
        refused = requests.get(f"{base_a}/api/score/top", headers=headers, timeout=10)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
    finally:
        web_a.stop()
        web_b.stop()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def test_a_limit_strings_windows_are_counted_in_one_script():
    prefix = f"sbtest:onetrip:{uuid.uuid4().hex[:8]}"
    storage = storage_from_string(REDIS_URL, key_prefix=prefix)
    strategy = OneTripFixedWindow(storage)
    script, calls = strategy._script, []
    strategy._script = lambda **kwargs: calls.append(kwargs) or script(**kwargs)
    app = Flask(__name__)
    app.config.update(RATELIMIT_APPLICATION="2/second;3/minute", RATE_LIMIT_USER="1/second;5/hour")
    ip_windows = [parse("2/second"), parse("3/minute")]
    user_windows = [parse("1/second"), parse("5/hour")]

    def request(windows, key, scope):
        """One request's checks, as Flask-Limiter makes them: shortest window first, stop at the first refusal."""
        with app.test_request_context("/"):
            return all(strategy.hit(window, key, scope) for window in windows)

    try:
        assert [request(ip_windows, "1.2.3.4", "global") for _ in range(4)] == [True, True, False, False]
        assert len(calls) == 4  # one round trip a request, not one a window
        assert strategy.get_window_stats(ip_windows[1], "1.2.3.4", "global").remaining == 1  # refusals not counted
        assert strategy.get_window_stats(ip_windows[0], "1.2.3.4", "global").remaining == 0
        # A route's limit string (another scope) the same way; another caller has windows of their own.
        assert request(user_windows, "user:a", "claims.claim") and not request(user_windows, "user:a", "claims.claim")
        assert request(user_windows, "user:b", "claims.claim")
        assert len(calls) == 7
        # A single window is limits' own fixed window.
        assert strategy.hit(parse("1/minute"), "x", "global") and not strategy.hit(parse("1/minute"), "x", "global")
        assert len(calls) == 7
    finally:
        storage.reset()
