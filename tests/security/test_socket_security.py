"""The board socket: origin allow-list, token before accept, message policy, per-IP cap."""

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support import bearer, start_web, ws_url

pytestmark = pytest.mark.live

FLOOD_LIMIT = 10  # SCOREBOARD_WS_MAX_CLIENT_MESSAGES' default: messages a client may send in 10 s


def refused_status(url, **kwargs):
    with pytest.raises(InvalidStatus) as refused, connect(url, open_timeout=5, **kwargs):
        pass
    return refused.value.response.status_code, json.loads(refused.value.response.body)["error"]["code"]


def closed_with(ws, timeout=5):
    """Read until the server closes; the close code it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)
    return closed.value.rcvd.code


def test_cross_origin_handshake_is_refused(live_stack, mint):
    headers = bearer(mint("u1"))
    assert refused_status(ws_url(live_stack), origin="https://evil.example", additional_headers=headers) == (
        403,
        "origin_forbidden",
    )
    same_origin = live_stack.replace("http://", "http://")
    with connect(ws_url(live_stack), origin=same_origin, additional_headers=headers, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"


def test_token_is_checked_before_the_socket_is_accepted(live_stack, mint):
    assert refused_status(ws_url(live_stack)) == (401, "token_missing")
    assert refused_status(ws_url(live_stack, "?token=forged.token.value")) == (401, "token_invalid")
    with connect(ws_url(live_stack, f"?token={mint('u1')}"), open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"


def test_resync_is_answered_and_junk_closes_the_socket(live_stack, mint):
    with connect(ws_url(live_stack), additional_headers=bearer(mint("u1")), open_timeout=5) as ws:
        first = json.loads(ws.recv(timeout=5))
        ws.send(json.dumps({"type": "resync"}))
        again = json.loads(ws.recv(timeout=5))
        assert again["type"] == "snapshot" and again["version"] >= first["version"]
        ws.send("give me points")
        assert closed_with(ws) == 1003


def test_a_flooding_client_is_closed(live_stack, mint):
    with connect(ws_url(live_stack), additional_headers=bearer(mint("u1")), open_timeout=5) as ws:
        ws.recv(timeout=5)
        # One over the limit, and no more: frames sent after the server closed would sit unread there and
        # make its kernel reset the connection, losing the close frame on the way.
        for _ in range(FLOOD_LIMIT + 1):
            ws.send(json.dumps({"type": "resync"}))
        assert closed_with(ws) == 1008


def test_an_oversized_frame_closes_the_socket(live_stack, mint):
    with connect(ws_url(live_stack), additional_headers=bearer(mint("u1")), open_timeout=5, max_size=None) as ws:
        ws.recv(timeout=5)
        ws.send("x" * 100_000)
        assert closed_with(ws) == 1009


def test_open_sockets_per_ip_are_capped(stack_env, tmp_path, mint):
    web, base = start_web({**stack_env, "SCOREBOARD_WS_MAX_PER_IP": "2"}, tmp_path, name="capped", workers=1)
    try:
        headers = bearer(mint("u1"))
        first = connect(ws_url(base), additional_headers=headers, open_timeout=5)
        second = connect(ws_url(base), additional_headers=headers, open_timeout=5)
        first.recv(timeout=5), second.recv(timeout=5)
        assert refused_status(ws_url(base), additional_headers=headers) == (429, "too_many_sockets")
        first.close()
        second.close()
    finally:
        web.stop()
