"""Every web process keeps a copy of the revoked token ids, kept current over pub/sub: a revocation made
through one process is refused by the others within milliseconds, a process started later loads the
revocations in force, and checking a token then costs no Redis round trip."""

import time

import pytest
import requests

from tests.support import bearer, scrape, scraped, start_web, wait_until

pytestmark = pytest.mark.live


def _zscore_calls(redis_client):
    """How many ZSCOREs (the revocation lookup in Redis) the server has run so far."""
    return int(redis_client.info("commandstats").get("cmdstat_zscore", {}).get("calls", 0))


def _top(base, token):
    return requests.get(f"{base}/api/score/top", headers=bearer(token), timeout=10)


def _settled(base, token):
    """Read the board until the process's relay has subscribed (its first request starts it): a read is then
    answered from the process's memory, and token checks from its revocation copy, current from the same moment.
    """

    def from_memory():
        before = scraped(scrape(f"{base}/metrics"), "scoreboard_top_cache_total", result="memory")
        assert _top(base, token).status_code == 200
        return scraped(scrape(f"{base}/metrics"), "scoreboard_top_cache_total", result="memory") > before

    wait_until(from_memory, timeout=10, interval=0.02, message=f"the relay of {base} never subscribed")


def test_revocations_reach_every_process_and_cost_no_redis_call(stack_env, tmp_path, mint, redis_client):
    web_a, base_a = start_web(stack_env, tmp_path, name="revoke-a", workers=1)
    web_b, base_b = start_web(stack_env, tmp_path, name="revoke-b", workers=1)
    web_c = None
    try:
        reader, victim, early = mint("reader"), mint("victim"), mint("early")
        _settled(base_a, reader)
        _settled(base_b, reader)

        # A token in good standing is checked from memory: no lookup in Redis.
        before = _zscore_calls(redis_client)
        assert all(_top(base_b, victim).status_code == 200 for _ in range(30))
        assert _zscore_calls(redis_client) == before

        # Logged out through A, refused by B as soon as the revocation reaches it.
        assert requests.post(f"{base_a}/api/auth/logout", headers=bearer(victim), timeout=10).json() == {
            "revoked": True
        }
        logged_out = time.monotonic()
        refused_after = None
        while time.monotonic() - logged_out < 2:
            answer = _top(base_b, victim)
            if answer.status_code == 401:
                assert answer.json()["error"]["code"] == "token_revoked"
                refused_after = time.monotonic() - logged_out
                break
        assert refused_after is not None and refused_after < 1.0, refused_after
        assert _top(base_a, victim).status_code == 401

        # A process started after a revocation loads the revocations in force when it subscribes.
        assert requests.post(f"{base_a}/api/auth/logout", headers=bearer(early), timeout=10).status_code == 200
        web_c, base_c = start_web(stack_env, tmp_path, name="revoke-c", workers=1)
        _settled(base_c, reader)
        before = _zscore_calls(redis_client)
        answer = _top(base_c, early)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "token_revoked"
        assert _top(base_c, victim).status_code == 401
        assert _zscore_calls(redis_client) == before
        assert _top(base_c, reader).status_code == 200
    finally:
        for web in (web_a, web_b, web_c):
            if web is not None:
                web.stop()
