"""The limiter's per-endpoint plans (scoreboard.extensions.PlannedLimiter): the limits still refuse at exactly their
amount, in the same Redis counters as Flask-Limiter's own evaluation, per app and per setting; a storage error
still falls back to counting in memory, and counting returns to Redis once it recovers."""

from collections import Counter

from limits import parse_many
from redis.exceptions import ConnectionError as RedisConnectionError

from scoreboard.extensions import PLANS, limiter
from tests.conftest import PREFIX
from tests.support import bearer


def limited_app(**config):
    """An app with rate limits on (in Redis, under the tests' prefix)."""
    from scoreboard import create_app

    return create_app({"TESTING": True, "RATELIMIT_ENABLED": True, **config})


def from_ip(ip):
    return {"environ_base": {"REMOTE_ADDR": ip}}


def claim(client, headers, ip):
    """A claim of an actionId that does not exist: 404 when admitted (the limits counted it), 429 when refused."""
    return client.post("/api/action/do", json={"actionId": "none"}, headers=headers, **from_ip(ip))


def counter(redis_client, text, key, scope, index=0):
    """Flask-Limiter's counter of one window of ``text`` (shortest first) for ``key`` in ``scope``."""
    window = sorted(parse_many(text), key=lambda w: w.GRANULARITY.seconds)[index]
    value = redis_client.get(f"{PREFIX}ratelimit:{window.key_for(key, scope)}")
    return int(value) if value is not None else None


def test_a_claim_is_refused_at_exactly_the_per_user_limit_in_flask_limiters_counters(app, mint, redis_client):
    limited = limited_app(RATELIMIT_APPLICATION="1000/minute;5000/hour", RATE_LIMIT_USER="4/minute;100/hour")
    client = limited.test_client()
    alice, ip = bearer(mint("plan-alice")), "10.8.0.1"
    assert [claim(client, alice, ip).status_code for _ in range(6)] == [404] * 4 + [429] * 2
    refused = claim(client, alice, ip)
    assert refused.json["error"]["code"] == "rate_limited"
    assert refused.headers["X-RateLimit-Limit"] == "4" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["Retry-After"]) >= 1
    # The counters are Flask-Limiter's (same keys): the minute counted every request, the hour the admitted ones.
    assert counter(redis_client, "4/minute;100/hour", "user:plan-alice", "claims.do_action") == 7
    assert counter(redis_client, "4/minute;100/hour", "user:plan-alice", "claims.do_action", 1) == 4
    assert counter(redis_client, "1000/minute;5000/hour", ip, "global") == 7
    # Another user on the same IP has a budget of their own.
    assert claim(client, bearer(mint("plan-bob")), ip).status_code == 404
    # Planned once per check: before_request's (the per-IP limit) and the route decorator's (the per-user one).
    assert {(endpoint, in_middleware) for endpoint, _name, in_middleware in limited.extensions[PLANS]} == {
        ("claims.do_action", True),
        ("claims.do_action", False),
    }


def test_the_per_ip_and_the_per_user_limit_both_apply_on_the_claim_route(app, mint):
    limited = limited_app(RATELIMIT_APPLICATION="3/minute", RATE_LIMIT_USER="2/minute")
    client = limited.test_client()
    alice, bob, ip = bearer(mint("plan-carol")), bearer(mint("plan-dave")), "10.8.0.2"
    assert [claim(client, alice, ip).status_code for _ in range(2)] == [404, 404]
    by_user = claim(client, alice, ip)  # the per-IP limit admits a third request; the per-user one refuses it
    assert by_user.status_code == 429 and by_user.headers["X-RateLimit-Limit"] == "2"
    by_ip = claim(client, bob, ip)  # bob's first, but the IP's fourth
    assert by_ip.status_code == 429 and by_ip.headers["X-RateLimit-Limit"] == "3"
    assert claim(client, bob, "10.8.0.3").status_code == 404  # bob from another IP
    # Every route shares the IP's budget; liveness is exempt and counts nothing.
    assert client.get("/api/actions", headers=alice, **from_ip(ip)).status_code == 429
    assert [client.get("/healthz", **from_ip(ip)).status_code for _ in range(5)] == [200] * 5


def test_the_plans_follow_a_changed_setting_and_each_app_has_its_own(app, mint):
    first = limited_app(RATELIMIT_APPLICATION="100/minute", RATE_LIMIT_USER="5/minute")
    second = limited_app(RATELIMIT_APPLICATION="2/minute", RATE_LIMIT_USER="5/minute")
    erin = bearer(mint("plan-erin"))
    one, two = first.test_client(), second.test_client()
    assert [claim(two, erin, "10.8.0.4").status_code for _ in range(3)] == [404, 404, 429]
    # The first app keeps its own per-IP limit (another IP: the counters are shared through Redis).
    assert [claim(one, erin, "10.8.0.5").status_code for _ in range(3)] == [404] * 3
    # A setting changed on a running app: the next request is planned again with the new limit string.
    first.config["RATE_LIMIT_USER"] = "1/minute"
    frank = bearer(mint("plan-frank"))
    assert [claim(one, frank, "10.8.0.6").status_code for _ in range(2)] == [404, 429]
    first.config["RATELIMIT_APPLICATION"] = "1/minute"
    assert [claim(one, bearer(mint("plan-gina")), "10.8.0.7").status_code for _ in range(2)] == [404, 429]


def test_a_storage_error_falls_back_to_memory_and_redis_counts_again_once_it_answers(
    app, mint, redis_client, monkeypatch
):
    limited = limited_app(RATELIMIT_APPLICATION="1000/minute", RATE_LIMIT_USER="3/minute")
    client = limited.test_client()
    harry, ip = bearer(mint("plan-harry")), "10.8.0.8"
    assert claim(client, harry, ip).status_code == 404
    strategy = limiter._limiter

    def down(*_args, **_kwargs):
        raise RedisConnectionError("down")

    monkeypatch.setattr(strategy, "hit", down)
    try:
        # Limits still hold, per process, in memory (this process had not counted harry before).
        statuses = [claim(client, harry, ip).status_code for _ in range(5)]
        assert Counter(statuses) == {404: 3, 429: 2}, statuses
        assert limiter._storage_dead
    finally:
        monkeypatch.undo()
    # Flask-Limiter checks the storage again once its back-off has passed (2 s here), then counts in Redis: the
    # back-off is wound past rather than waited out.
    limiter._Limiter__last_check_backend = 0.0
    assert claim(client, harry, ip).status_code == 404
    assert not limiter._storage_dead
    assert counter(redis_client, "3/minute", "user:plan-harry", "claims.do_action") == 2
    # Redis's count goes on from where it was before the outage (the memory's hits were not Redis's).
    assert [claim(client, harry, ip).status_code for _ in range(2)] == [404, 429]
