"""Revoking every token of a user (``POST /api/admin/users/<id>/tokens/revoke``) on the production server:
tokens issued before the cutoff are refused on REST and at the socket handshake, by every process within a
second and by a process started afterwards (its copy loaded from Redis), with no Redis round trip per check;
tokens issued from the cutoff on work; the user's open sockets of older tokens close and their tickets open nothing."""

import json
import time
from datetime import datetime

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.security.test_revocation_copies import _settled, _top, _zscore_calls
from tests.security.test_socket_findings import close_of, ticket_for
from tests.security.test_socket_findings import refused as refused_socket
from tests.support import bearer, start_web, wait_until, ws_url

pytestmark = pytest.mark.live


def handshake(base, token):
    """The socket handshake with ``token``: ``(200, "snapshot")`` when accepted, else the refusal's status and code."""
    try:
        with connect(ws_url(base, f"?token={token}"), open_timeout=5) as ws:
            return 200, json.loads(ws.recv(timeout=5))["type"]
    except InvalidStatus as refused:
        return refused.response.status_code, json.loads(refused.response.body)["error"]["code"]


def refused(base, token):
    answer = _top(base, token)
    return answer.status_code == 401 and answer.json()["error"]["code"] == "token_revoked"


def test_a_users_tokens_issued_before_are_refused_everywhere_and_after_a_restart(
    stack_env, tmp_path, mint, record, redis_client
):
    record("victim")
    web_a, base_a = start_web(stack_env, tmp_path, name="user-revoke-a", workers=1)
    web_b, base_b = start_web(stack_env, tmp_path, name="user-revoke-b", workers=1)
    web_c = None
    try:
        reader, old, admin = mint("reader"), mint("victim"), mint("boss", "admin")
        _settled(base_a, reader)
        _settled(base_b, reader)
        assert _top(base_b, old).status_code == 200
        assert handshake(base_b, old) == (200, "snapshot")

        answer = requests.post(
            f"{base_a}/api/admin/users/victim/tokens/revoke",
            json={"reason": "account taken over"},
            headers=bearer(admin),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        revoked = time.monotonic()
        cutoff = datetime.fromisoformat(answer.json()["revokedBefore"]).timestamp()

        assert refused(base_a, old)  # the process that revoked, at once
        wait_until(lambda: refused(base_b, old), timeout=1, interval=0.01, message="B still accepts the old token")
        assert time.monotonic() - revoked < 1.0
        assert handshake(base_b, old) == (401, "token_revoked")
        assert _top(base_b, reader).status_code == 200  # another user's token is untouched

        # Issued from the cutoff on (iat counts whole seconds): accepted, on REST and at the handshake.
        wait_until(lambda: time.time() >= cutoff, timeout=3, message="the cutoff never passed")
        new = mint("victim")
        assert _top(base_b, new).status_code == 200
        assert handshake(base_a, new) == (200, "snapshot")

        # A process started afterwards loads the cutoff with the revocations in force, and checks from memory.
        web_a.stop()
        web_b.stop()
        web_a = web_b = None
        web_c, base_c = start_web(stack_env, tmp_path, name="user-revoke-c", workers=1)
        _settled(base_c, reader)
        before = _zscore_calls(redis_client)
        assert refused(base_c, old)
        assert handshake(base_c, old) == (401, "token_revoked")
        assert _top(base_c, new).status_code == 200
        assert handshake(base_c, new) == (200, "snapshot")
        assert _zscore_calls(redis_client) == before
    finally:
        for web in (web_a, web_b, web_c):
            if web is not None:
                web.stop()


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_a_cutoff_is_kept_announced_and_loaded_like_a_jti(app, redis_client, backend):
    """Both stores: a cutoff only moves later, one check answers the jti and the cutoff, it is announced on
    the revocations channel as a jti would be and listed among the revocations in force, and a process copy
    takes it from either."""
    from scoreboard.security.revocations import RevocationCopy
    from scoreboard.stores import get_stores, memory_stores
    from scoreboard.stores.revocation_list import read_user_mark
    from tests.conftest import PREFIX

    stores = get_stores(app) if backend == "redis" else memory_stores()
    revocations = stores.revocations
    heard = []
    if backend == "redis":
        pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(f"{PREFIX}revoked")
    else:
        stores.channels._listeners.append(lambda kind, payload: heard.append(payload))
    now = int(time.time())
    assert revocations.revoke_user("victim", now + 1, 60) == now + 1
    assert revocations.revoke_user("victim", now - 100, 60) == now + 1  # never moved back
    revocations.revoke("jti-1", 60)
    assert revocations.check("jti-1", "victim") == (True, now + 1)
    assert revocations.check("jti-2", "bystander") == (False, None)
    assert revocations.check(None, "victim") == (False, now + 1)

    if backend == "redis":

        def three_heard():
            message = pubsub.get_message(timeout=0.1)  # the first call only takes the subscription's reply
            if message is not None:
                heard.append(message["data"])
            return len(heard) == 3

        wait_until(three_heard, timeout=5, message=lambda: f"announcements heard: {heard}")
        pubsub.close()
    announced = RevocationCopy()
    announced.current = True
    for payload in heard:
        message = json.loads(payload)
        announced.note(message["jti"], float(message["exp"]))
    assert announced.cutoff("victim") == now + 1 and announced.is_revoked("jti-1")

    loaded = RevocationCopy()
    loaded.current = True
    loaded.load(revocations.in_force())
    assert loaded.cutoff("victim") == now + 1 and loaded.cutoff("bystander") == 0
    assert loaded.is_revoked("jti-1") and not loaded.is_revoked("jti-2")
    marks = [read_user_mark(name) for name in revocations.in_force() if read_user_mark(name)]
    assert marks == [("victim", now + 1)]
    # A jti that merely looks like one is a jti: only names led by NUL (which no request carries) are cutoffs.
    assert read_user_mark("user:victim:123") is None


def test_revoking_a_users_tokens_closes_their_open_sockets_and_spends_their_tickets(stack_env, tmp_path, mint, record):
    record("victim")
    web_a, base_a = start_web(stack_env, tmp_path, name="user-sockets-a", workers=1)
    web_b, base_b = start_web(stack_env, tmp_path, name="user-sockets-b", workers=1)
    try:
        old, bystander, admin = mint("victim"), mint("bystander"), mint("boss", "admin")
        _settled(base_a, bystander)
        _settled(base_b, bystander)
        # On B: the victim's sockets opened with a ticket and with the token, a ticket not yet redeemed, and a
        # bystander's socket.
        ticketed = connect(ws_url(base_b, f"?ticket={ticket_for(base_b, old)['ticket']}"), open_timeout=5)
        by_token = connect(ws_url(base_b, f"?token={old}"), open_timeout=5)
        other = connect(ws_url(base_b, f"?ticket={ticket_for(base_b, bystander)['ticket']}"), open_timeout=5)
        unspent = ticket_for(base_b, old)["ticket"]
        victims = (ticketed, by_token)
        try:
            for ws in (*victims, other):
                assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
            started = time.time()
            answer = requests.post(
                f"{base_a}/api/admin/users/victim/tokens/revoke",
                json={"reason": "account taken over"},
                headers=bearer(admin),
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            for ws in victims:
                code, reason, at = close_of(ws, timeout=3)
                assert (code, reason) == (4001, "token revoked")
                assert at - started < 1.0, at - started
            # A ticket bought with the old token opens nothing now.
            assert refused_socket(ws_url(base_b, f"?ticket={unspent}")) == (401, "token_revoked")
            other.send(json.dumps({"type": "resync"}))
            assert json.loads(other.recv(timeout=5))["type"] == "snapshot"

            cutoff = datetime.fromisoformat(answer.json()["revokedBefore"]).timestamp()
            wait_until(lambda: time.time() >= cutoff, timeout=3, message="the cutoff never passed")
            new = mint("victim")
            with connect(ws_url(base_b, f"?ticket={ticket_for(base_b, new)['ticket']}"), open_timeout=5) as fresh:
                assert json.loads(fresh.recv(timeout=5))["type"] == "snapshot"
        finally:
            for ws in (*victims, other):
                ws.close()
    finally:
        web_a.stop()
        web_b.stop()
