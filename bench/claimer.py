"""Open-loop claim driver and broadcast observer, run as its own process.

``python -m bench.claimer URL CLAIMS_FILE RATE SECONDS REDIS_URL CHANNEL OUT``

Claim ``i`` is due at ``start + i / RATE`` whether or not earlier claims have
answered (open loop: a slow server does not slow the offered load, and waiting
for a free connection counts in the claim's time). Each claim is a real
``POST /api/action/do`` on a pre-recorded completion over keep-alive HTTP/1.1.
Alongside, a Redis subscriber records every broadcast on the board channel with
the version and the scores it carries, so the bench can tell which broadcast
first carried each claim. Times are ``time.monotonic()``, shared by every
process on the machine.
"""

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import redis.asyncio as aioredis

try:
    import uvloop
except ImportError:  # the plain loop only makes the generator a little heavier
    uvloop = None

MAX_CONNECTIONS = 128
# gunicorn closes a keep-alive connection idle for its ``keepalive`` (5 s, gunicorn.conf.py): one idle nearly that
# long is closed here instead of being sent a claim the server may already have hung up on.
IDLE_LIMIT = 4.0


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.used = time.monotonic()

    async def post(self, host, path, token, body):
        """Send one POST and read the answer; returns ``(status, body bytes)``."""
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)


class Pool:
    """Keep-alive connections handed out one request at a time, opened on demand up to a bound."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.idle = []
        self.opened = 0
        self.waiters = []

    async def acquire(self):
        """An idle connection, a new one, or the next one freed."""
        while self.idle:
            conn = self.idle.pop()
            if time.monotonic() - conn.used < IDLE_LIMIT:
                return conn
            conn.writer.close()
            self.opened -= 1
        if self.opened < MAX_CONNECTIONS:
            self.opened += 1
            return Connection(*await asyncio.open_connection(self.host, self.port))
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def release(self, conn):
        """Give a connection back (to a waiter first)."""
        conn.used = time.monotonic()
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def discard(self):
        """Forget a broken connection."""
        self.opened -= 1


async def observe(redis_url, channel, broadcasts, ready, stop):
    """Record ``(time, version, {user: score})`` for every broadcast until ``stop`` is set."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    ready.set()
    while not stop.is_set():
        message = await pubsub.get_message(timeout=0.2)
        if message and message["type"] == "message":
            now = time.monotonic()
            board = json.loads(message["data"])
            broadcasts.append((now, board["version"], {e["userId"]: e["score"] for e in board["top"]}))
    await pubsub.aclose()
    await client.aclose()


async def run(url, claims_file, rate, seconds, redis_url, channel):
    """Drive the claims and observe broadcasts; returns the raw records."""
    parts = urlsplit(url)
    pool = Pool(parts.hostname, parts.port)
    with open(claims_file) as f:
        items = [line.split() for line in f if line.strip()]
    total = int(rate * seconds)
    if total > len(items):
        raise SystemExit(f"need {total} completions, the file has {len(items)}")
    broadcasts, results = [], []
    ready, stop = asyncio.Event(), asyncio.Event()
    observer = asyncio.create_task(observe(redis_url, channel, broadcasts, ready, stop))
    await ready.wait()
    # Warm a few connections so the first claims do not all pay for a handshake.
    warm = [await pool.acquire() for _ in range(min(16, MAX_CONNECTIONS))]
    for conn in warm:
        pool.release(conn)

    async def claim(due, action_id, token, user):
        body = json.dumps({"actionId": action_id}).encode()
        for _attempt in range(2):
            conn = await pool.acquire()
            try:
                status, answer = await conn.post(parts.netloc, "/api/action/do", token, body)
            except (OSError, asyncio.IncompleteReadError):
                pool.discard()  # a keep-alive connection the server closed: the request never reached it
                continue
            pool.release(conn)
            score = json.loads(answer).get("newScore") if status == 200 else None
            results.append((due, time.monotonic(), status, user, score))
            return
        results.append((due, time.monotonic(), 0, user, None))

    tasks = []
    start = time.monotonic() + 0.05
    for i in range(total):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        action_id, token, user = items[i][:3]
        tasks.append(asyncio.create_task(claim(due, action_id, token, user)))
    sent_until = time.monotonic()
    await asyncio.wait(tasks, timeout=20)
    # Let the last broadcasts arrive before the observer stops.
    await asyncio.sleep(1.5)
    stop.set()
    await observer
    return {
        "start": start,
        "sent_until": sent_until,
        "rate": rate,
        "seconds": seconds,
        "claims": results,
        "broadcasts": broadcasts,
        "connections": pool.opened,
    }


def main(argv):
    """Entry point: run one open-loop claim phase and write its records as JSON."""
    url, claims_file, rate, seconds, redis_url, channel, out = argv
    if uvloop is not None:
        uvloop.install()
    records = asyncio.run(run(url, claims_file, float(rate), float(seconds), redis_url, channel))
    with open(out, "w") as f:
        json.dump(records, f)


if __name__ == "__main__":
    main(sys.argv[1:])
