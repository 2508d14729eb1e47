"""The relay's frame budget: a process writes at most its budget of board frames a second, each socket
still gets the newest board, never more than a second behind, and with few sockets every broadcast
goes out as it comes."""

import asyncio
import json
import threading
import time

import pytest
from websockets.asyncio.client import connect

from scoreboard.live.relay import LAG_LIMIT, Relay
from scoreboard.stores import get_stores
from scoreboard.stores.channels import RedisChannels
from tests.support import start_web, wait_until, ws_url

pytestmark = pytest.mark.live

# Tight enough that 200 sockets get about two boards a second out of a burst of forty.
BUDGET = 400


def top(score):
    """A one-entry top list whose entry's score tells the broadcasts apart."""
    return json.dumps([{"rank": 1, "userId": "fan", "displayName": "Fan", "score": score}], separators=(",", ":"))


@pytest.fixture
def one_worker(app, stack_env, tmp_path):
    """gunicorn with one web worker (so the budget is the process's) on a public board, with a small frame budget."""
    env = {
        **stack_env,
        "SCOREBOARD_PUBLIC_BOARD": "true",
        "SCOREBOARD_WS_MAX_PER_IP": "1000",
        "SCOREBOARD_FANOUT_FRAMES_PER_SECOND": str(BUDGET),
    }
    web, base = start_web(env, tmp_path, workers=1)
    try:
        yield base
    finally:
        web.stop()


class Fleet:
    """``count`` real WebSocket clients on one event loop (its own thread), recording each board frame's arrival."""

    def __init__(self, base, count):
        self.url = ws_url(base)
        self.count = count
        self.frames = [[] for _ in range(count)]  # per socket: (monotonic arrival, type, version)
        self.opened = 0
        self._loop = asyncio.new_event_loop()
        self._done = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        self._done = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        wait_until(
            lambda: self.opened == self.count or self._done.done(),
            timeout=30,
            message=lambda: f"{self.opened} of {self.count} sockets open",
        )
        if self._done.done():
            self._done.result()  # a failed connect raises here
        wait_until(lambda: all(self.frames), timeout=10, message="every socket's snapshot")
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._done.result(timeout=20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _run(self):
        self._stop = asyncio.Event()
        clients = []
        try:
            for _ in range(self.count):
                clients.append(await connect(self.url, open_timeout=10, compression=None))
                self.opened += 1
            readers = [asyncio.create_task(self._read(ws, self.frames[i])) for i, ws in enumerate(clients)]
            await self._stop.wait()
            for reader in readers:
                reader.cancel()
        finally:
            await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)

    @staticmethod
    async def _read(ws, frames):
        async for text in ws:
            message = json.loads(text)
            frames.append((time.monotonic(), message["type"], message["version"]))

    def updates(self):
        """Every board update received, as (arrival, version), over all sockets."""
        return [(t, v) for frames in self.frames for t, kind, v in frames if kind == "update"]


def publish_burst(app, count, every):
    """Broadcast ``count`` changed boards ``every`` seconds apart; returns (monotonic time, version) of each."""
    cache = get_stores(app).board_cache_for("all")
    base = int(time.time() * 1000)
    sent = []
    for i in range(count):
        with app.app_context():
            version = cache.publish_if_changed(top(base + i))
        sent.append((time.monotonic(), version))
        time.sleep(every)
    return sent


def worst_lag(frames, sent):
    """The longest any broadcast waited until this socket held it (or a newer one), in seconds."""
    worst = 0.0
    for published_at, version in sent:
        arrival = next((t for t, _kind, v in frames if v >= version), None)
        assert arrival is not None, f"version {version} never reached the socket"
        worst = max(worst, arrival - published_at)
    return worst


def test_a_burst_to_many_sockets_stays_within_the_frame_budget_and_ends_on_the_newest(app, one_worker):
    sockets, broadcasts, every = 200, 40, 0.025
    with Fleet(one_worker, sockets) as fleet:
        sent = publish_burst(app, broadcasts, every)
        last = sent[-1][1]
        wait_until(
            lambda: all(frames[-1][2] == last for frames in fleet.frames),
            timeout=5,
            message=lambda: f"{sum(f[-1][2] != last for f in fleet.frames)} sockets short of the newest board",
        )
        time.sleep(0.3)  # nothing may follow the newest (nor arrive twice)
        updates = fleet.updates()
        for frames in fleet.frames:
            versions = [v for _t, _kind, v in frames]
            assert versions == sorted(set(versions)), "versions went backwards or repeated"
            assert frames[0][1] == "snapshot"
            assert frames[-1][2] == last
        # Without the budget every socket would get every board: 8,000 frames in a second.
        span = max(t for t, _v in updates) - sent[0][0]
        assert len(updates) <= BUDGET * span + sockets, f"{len(updates)} frames in {span:.2f}s"
        assert len(updates) < broadcasts * sockets / 4
        # In any one second the process wrote at most its budget, plus the fan-out that began it.
        times = sorted(t for t, _v in updates)
        busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        assert busiest <= BUDGET + sockets, f"{busiest} frames in one second"
        lag = max(worst_lag(frames, sent) for frames in fleet.frames)
        print(
            f"\n[fan-out] {len(updates)} frames for {broadcasts} broadcasts to {sockets} sockets; worst lag {lag:.3f}s"
        )
        assert lag <= 1.0, f"a socket was {lag:.3f}s behind the newest broadcast"


def test_with_few_sockets_every_broadcast_goes_out_as_it_comes(app, one_worker):
    sockets, broadcasts, every = 5, 20, 0.05  # 100 frames a second: well inside the budget
    with Fleet(one_worker, sockets) as fleet:
        sent = publish_burst(app, broadcasts, every)
        last = sent[-1][1]
        wait_until(lambda: all(frames[-1][2] == last for frames in fleet.frames), timeout=5, message="newest board")
        for frames in fleet.frames:
            got = {v for _t, kind, v in frames if kind == "update"}
            assert got == {v for _t, v in sent}, "a broadcast was held back though the budget had room"
            lag = worst_lag(frames, sent)
            assert lag < 0.2, f"{lag:.3f}s from broadcast to socket"


def test_hold_after_follows_the_budget_and_never_past_the_lag_limit(offline_app):
    relay = Relay(offline_app)
    relay.frames_per_second = 1000
    now = time.monotonic()
    assert relay.hold_after(0, now, 0.0) == 0.0  # nothing was written
    assert 0.45 < relay.hold_after(500, now, 0.001) <= 0.5  # 500 frames at 1,000 a second
    assert relay.hold_after(10, now, 0.001) <= 0.01  # well inside the budget: at once
    # More sockets than a second's budget: held no longer than the promise allows.
    assert relay.hold_after(100_000, now, 0.2) <= LAG_LIMIT - 0.2
    # However cheap the frames, a slow fan-out rests as long as it took.
    relay.frames_per_second = 10**9
    assert 0.09 < relay.hold_after(10, now, 0.1) <= 0.2


def test_held_boards_collapse_to_the_newest_while_revocations_pass(app, redis_client):
    prefix = app.config["REDIS_PREFIX"]
    channels = RedisChannels(redis_client, prefix)
    heard, stop = [], threading.Event()

    def on_message(kind, payload):
        heard.append((time.monotonic(), kind, payload))
        return 0.6 if kind == "board" else None

    listener = threading.Thread(target=channels.listen, args=(on_message, stop), daemon=True)
    listener.start()
    try:
        wait_until(lambda: any(kind == "subscribed" for _t, kind, _p in heard), message="subscribed")
        redis_client.publish(channels.board_channel, "b1")
        wait_until(lambda: any(p == "b1" for _t, _k, p in heard), message="the first board")
        first = next(t for t, _k, p in heard if p == "b1")
        for name in ("b2", "b3", "b4"):
            redis_client.publish(channels.board_channel, name)
        redis_client.publish(channels.revocations_channel, "r1")
        wait_until(lambda: any(p == "r1" for _t, _k, p in heard), message="the revocation")
        revoked = next(t for t, _k, p in heard if p == "r1")
        assert revoked - first < 0.3, "a revocation waited for the held board"
        wait_until(lambda: any(p == "b4" for _t, _k, p in heard), timeout=3, message="the newest board")
        boards = [(t, p) for t, kind, p in heard if kind == "board"]
        assert [p for _t, p in boards] == ["b1", "b4"]  # b2 and b3 collapsed into b4
        assert boards[1][0] - first >= 0.55  # held as long as asked
    finally:
        stop.set()
        listener.join(3)
