"""Many WebSocket clients in one asyncio process, driven by line commands on stdin.

``python -m bench.sockets URL TOKEN ORIGIN``, then, one per line:

``open N``      open sockets until N are open; answers ``opened <open> <failed> <seconds>``
``close N``     close sockets until N are open; answers ``closed <open>``
``reset``       forget what was received so far; answers ``reset``
``dump PATH``   write what was received since the last reset as JSON; answers ``dumped``
``quit``        close everything and exit

Each socket records the arrival time (``time.monotonic()``) and version of every
board message. Frames are parsed by hand from an ``asyncio.Protocol`` rather than
through a WebSocket library so the client stays far cheaper than the server it
measures; it answers pings, as a browser does.
"""

import asyncio
import base64
import json
import os
import random
import sys
import time
from array import array
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:
    uvloop = None

VERSION_KEY = b'"version":'
PONG_EMPTY = bytes((0x8A, 0x80, 0, 0, 0, 0))  # masked with a zero key, as a client must mask
HANDSHAKES_AT_ONCE = 200


class Client(asyncio.Protocol):
    """One socket: handshake, then frames; records ``(time, version)`` of every board message."""

    __slots__ = ("buf", "closed", "handshaking", "opened", "request", "times", "transport", "versions")

    def __init__(self, request, opened):
        self.request = request
        self.opened = opened
        self.closed = False
        self.transport = None
        self.buf = b""
        self.handshaking = True
        self.times = array("d")
        self.versions = array("q")

    def connection_made(self, transport):
        """Send the upgrade request."""
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, _exc):
        """Note the close (and fail a pending handshake)."""
        self.closed = True
        if not self.opened.done():
            self.opened.set_result(False)

    def data_received(self, data):
        """Parse the handshake answer, then whole frames."""
        now = time.monotonic()
        buf = self.buf + data if self.buf else data
        if self.handshaking:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            self.handshaking = False
            if not self.opened.done():
                self.opened.set_result(buf.startswith(b"HTTP/1.1 101"))
            buf = buf[end + 4 :]
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length, head = buf[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            end = pos + head + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1:
                at = buf.find(VERSION_KEY, pos + head, end) + len(VERSION_KEY)
                self.versions.append(int(buf[at : buf.find(b",", at, end)]))
                self.times.append(now)
            elif opcode == 9:
                payload = buf[pos + head : end]
                self.transport.write(
                    bytes((0x8A, 0x80 | len(payload), 0, 0, 0, 0)) + payload if payload else PONG_EMPTY
                )
            elif opcode == 8:
                self.transport.close()
            pos = end
        self.buf = buf[pos:] if pos < size else b""


class Fleet:
    """All the sockets."""

    def __init__(self, url, token, origin):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        path = (parts.path or "/") + (f"?token={token}" if token else "")
        self.token, self.origin, self.path = token, origin, path
        self.clients = []
        self.failed = 0

    def _request(self):
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: {self.origin}",
        ]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _open_one(self, gate):
        loop = asyncio.get_running_loop()
        async with gate:
            opened = loop.create_future()
            try:
                _transport, client = await asyncio.wait_for(
                    loop.create_connection(lambda: Client(self._request(), opened), self.host, self.port), 10
                )
                ok = await asyncio.wait_for(opened, 10)
            except (TimeoutError, OSError):
                ok, client = False, None
            if ok:
                self.clients.append(client)
            else:
                self.failed += 1
                if client is not None and client.transport is not None:
                    client.transport.close()

    def live(self):
        """Sockets still open."""
        return [c for c in self.clients if not c.closed]

    async def open(self, target):
        """Open sockets until ``target`` are open (or the attempts run out)."""
        start = time.monotonic()
        gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
        self.failed = 0
        for _round in range(3):
            missing = target - len(self.live())
            if missing <= 0:
                break
            await asyncio.gather(*(self._open_one(gate) for _ in range(missing)))
        return len(self.live()), self.failed, time.monotonic() - start

    async def close(self, target):
        """Close sockets until ``target`` remain."""
        live = self.live()
        for client in live[target:]:
            client.transport.close()
        await asyncio.sleep(0.5)
        self.clients = [c for c in self.clients if not c.closed]
        return len(self.clients)

    def reset(self):
        """Forget what was received."""
        for client in self.clients:
            client.times = array("d")
            client.versions = array("q")

    def dump(self, path, sample=500):
        """Write every socket's last version and a random sample's full record."""
        live = self.live()
        picked = random.Random(7).sample(live, min(sample, len(live)))
        record = {
            "open": len(live),
            "last_versions": [c.versions[-1] if c.versions else -1 for c in live],
            "frames": sum(len(c.versions) for c in live),
            "sample": [[list(c.times), list(c.versions)] for c in picked],
        }
        with open(path, "w") as f:
            json.dump(record, f)


async def serve(url, token, origin):
    """Read commands from stdin until ``quit``."""
    fleet = Fleet(url, token, origin)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(text):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        command, _, arg = line.partition(" ")
        if command == "open":
            live, failed, seconds = await fleet.open(int(arg))
            answer(f"opened {live} {failed} {seconds:.2f}")
        elif command == "close":
            answer(f"closed {await fleet.close(int(arg))}")
        elif command == "reset":
            fleet.reset()
            answer("reset")
        elif command == "dump":
            fleet.dump(arg)
            answer("dumped")
    await fleet.close(0)


def main(argv):
    """Entry point."""
    url, token, origin = argv
    if uvloop is not None:
        uvloop.install()
    asyncio.run(serve(url, None if token == "-" else token, origin))


if __name__ == "__main__":
    main(sys.argv[1:])
