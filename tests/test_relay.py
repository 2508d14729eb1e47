"""The relay's fan-out over real sockets: frames built once, latest only, and a slow client holds up nobody."""

import socket
import threading

import pytest

from scoreboard.live.relay import Subscriber, text_frame

pytestmark = pytest.mark.unit


class Peer:
    """What the relay needs of a WebSocket: its socket and its wake-up event."""

    def __init__(self, sock):
        self.sock = sock
        self.event = threading.Event()


def pair(buffer=None):
    """A connected stream pair; ``buffer`` shrinks the server side's send buffer to make a slow client."""
    server, client = socket.socketpair()
    if buffer:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    return server, client


def read_frames(sock, count):
    """Read ``count`` unmasked text frames; returns their payloads."""
    sock.settimeout(2)
    data, frames = b"", []
    while len(frames) < count:
        data += sock.recv(65536)
        while len(data) >= 2:
            size, head = data[1] & 0x7F, 2
            if size == 126:
                size, head = int.from_bytes(data[2:4], "big"), 4
            elif size == 127:
                size, head = int.from_bytes(data[2:10], "big"), 10
            if len(data) < head + size:
                break
            assert data[0] == 0x81
            frames.append(data[head : head + size])
            data = data[head + size :]
    return frames


@pytest.mark.parametrize("size", [10, 300, 70000])
def test_text_frame_lengths(size):
    server, client = pair()
    with server, client:
        server.sendall(text_frame(b"x" * size))
        assert read_frames(client, 1) == [b"x" * size]


def test_nothing_overtakes_the_snapshot_and_updates_follow_in_order():
    server, client = pair()
    with server, client:
        sub = Subscriber(Peer(server), timeout=2)
        sub.offer(5, text_frame(b'{"version":5}'))  # arrives before the snapshot went out: held back
        assert sub.pending is not None
        sub.send_text('{"type":"snapshot","version":4}', 4)
        sub.flush()
        sub.offer(6, text_frame(b'{"version":6}'))
        sub.offer(6, text_frame(b'{"version":6}'))  # a repeat is never sent twice
        assert read_frames(client, 3) == [b'{"type":"snapshot","version":4}', b'{"version":5}', b'{"version":6}']


def test_a_client_that_stops_reading_delays_nobody_and_keeps_only_the_latest():
    slow_server, slow_client = pair(buffer=4096)
    fast_server, fast_client = pair()
    with slow_server, slow_client, fast_server, fast_client:
        slow = Subscriber(Peer(slow_server), timeout=0.3)
        fast = Subscriber(Peer(fast_server), timeout=0.3)
        for sub in (slow, fast):
            sub.send_text('{"version":0}', 0)
        payload = b"y" * 3000
        for version in range(1, 41):
            frame = text_frame(b"%d:" % version + payload)
            for sub in (slow, fast):
                sub.offer(version, frame)  # non-blocking: returns even though the slow side is full
        # The fast client got every frame, in order.
        got = read_frames(fast_client, 41)
        assert [f.split(b":")[0] for f in got[1:]] == [str(v).encode() for v in range(1, 41)]
        # The slow one was handed to its own thread, with only the newest frame waiting.
        assert slow.ws.event.is_set()
        assert slow.pending is not None and slow.pending[0] == 40
        # Its thread gives up after the send timeout instead of waiting for ever.
        with pytest.raises(TimeoutError):
            slow.flush()


def test_a_frame_half_written_is_finished_before_anything_else():
    server, client = pair(buffer=4096)
    with server, client:
        sub = Subscriber(Peer(server), timeout=2)
        sub.send_text('{"version":0}', 0)
        big = text_frame(b"z" * 200000)
        sub.offer(1, big)  # only part fits: the rest waits for the socket's thread
        assert sub.rest is not None
        sub.offer(2, text_frame(b'{"version":2}'))
        reader = threading.Thread(target=lambda: frames.extend(read_frames(client, 3)))
        frames = []
        reader.start()
        sub.flush()
        sub.flush()
        reader.join(5)
        assert frames[1] == b"z" * 200000 and frames[2] == b'{"version":2}'
