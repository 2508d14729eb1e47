"""The relay writes nothing after a socket's close frame, nor once the socket has closed; it ends the sockets of a
revoked token, and only those."""

import socket
import threading

import pytest

from scoreboard.live.relay import Relay, Subscriber, carries_close_frame, text_frame
from scoreboard.security.socket_tickets import SocketHolder

pytestmark = pytest.mark.unit

CLOSE_1000 = b"\x88\x02\x03\xe8"  # a server's close frame, code 1000, as wsproto writes it


class Peer:
    """What the relay needs of a WebSocket: its socket, its wake-up event and whether it is still connected."""

    def __init__(self, sock):
        self.sock = sock
        self.event = threading.Event()
        self.connected = True


def wire(sock):
    """Everything written to the other end so far."""
    sock.setblocking(False)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def test_close_frames_are_recognised_among_the_frames_of_one_write():
    assert carries_close_frame(CLOSE_1000)
    assert carries_close_frame(text_frame(b"x" * 300) + CLOSE_1000)  # a 16-bit length before it
    assert carries_close_frame(b"\x8a\x00" + CLOSE_1000)  # after a pong
    assert not carries_close_frame(text_frame(b"\x88" * 200))  # 0x88 inside a payload is no close frame
    assert not carries_close_frame(b"\x89\x00")  # a ping


def test_nothing_goes_out_after_the_close_frame():
    server, client = socket.socketpair()
    with server, client:
        peer = Peer(server)
        sub = Subscriber(peer, timeout=2)
        sub.send_text('{"version":1}', 1)
        # simple-websocket writes its close frame through ws.sock, and marks itself closed only after the write,
        # outside the subscriber's lock: a broadcast arriving in between must not follow the close frame.
        peer.sock.send(CLOSE_1000)
        assert peer.connected  # not yet
        sub.offer(2, text_frame(b'{"version":2}'))
        sub.flush()
        sub.send_text('{"version":3}', 3)
        assert wire(client) == text_frame(b'{"version":1}') + CLOSE_1000


def test_nothing_goes_out_once_the_socket_has_closed():
    server, client = socket.socketpair()
    with server, client:
        peer = Peer(server)
        sub = Subscriber(peer, timeout=2)
        sub.send_text('{"version":1}', 1)
        peer.connected = False  # the client went away (simple-websocket's reader saw it)
        sub.offer(2, text_frame(b'{"version":2}'))
        sub.flush()
        assert sub.pending is None and sub.rest is None
        assert wire(client) == text_frame(b'{"version":1}')


def test_a_revocation_ends_every_socket_of_that_token_and_no_other(offline_app):
    relay = Relay(offline_app)
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        holders = [
            SocketHolder("u1", "jti-1", 2e9),
            SocketHolder("u1", "jti-1", 2e9),  # the same token in a second tab
            SocketHolder("u2", "jti-2", 2e9),
            None,  # a public board's socket, opened without a token
        ]
        subs = [relay.subscribe(Peer(server), 2, holder) for (server, _), holder in zip(pairs, holders, strict=True)]
        assert relay.end_revoked(["jti-1"]) == 2
        assert [sub.ending for sub in subs] == [(4001, "token revoked")] * 2 + [None, None]
        assert all(sub.ws.event.is_set() for sub in subs[:2])  # their threads are woken to close them
        relay.unsubscribe(subs[0])
        relay.unsubscribe(subs[1])
        assert relay.end_revoked(["jti-1"]) == 0
        assert relay.end_revoked(["jti-3"]) == 0
    finally:
        for server, client in pairs:
            server.close()
            client.close()
