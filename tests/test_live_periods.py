"""Live boards per period: the timed boards' caches and messages, the relay's routing by board, ``me`` messages,
the handshake's ``?period=``, a midnight crossed with an injected clock, and the whole flow on the production stack
with a real WebSocket client."""

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import count, pairwise

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from scoreboard.periods import KINDS, TIMED, period_at
from scoreboard.stores import get_stores, memory_stores, redis_stores
from scoreboard.stores.board_cache import board_message, dumps, message_parts, parse_message
from tests.conftest import REDIS_URL
from tests.support import bearer, receive_until, record_and_claim_over_http, start_web, wait_until, ws_url
from tests.test_relay import Peer, read_frames

TTL = 300
WEEK = "week:2026-W49"


@pytest.fixture(params=[pytest.param("memory", marks=pytest.mark.unit), "redis"])
def stores(request):
    """The stores on one backend, empty."""
    if request.param == "memory":
        yield memory_stores()
        return
    prefix = f"sbperiods:{uuid.uuid4().hex[:10]}:"
    made = redis_stores(REDIS_URL, prefix, TTL)
    yield made
    for key in made.ranking.redis.scan_iter(f"{prefix}*"):
        made.ranking.redis.delete(key)


class Heard:
    """What a listener on the stores' channels hears, in a thread of its own."""

    def __init__(self, stores):
        self.messages: list[str] = []
        self.subscribed = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=stores.channels.listen, args=(self.on_message, self.stop), daemon=True)

    def on_message(self, kind, payload):
        if kind == "subscribed":
            self.subscribed.set()
        elif kind == "board":
            self.messages.append(payload)

    def __enter__(self):
        self.thread.start()
        assert self.subscribed.wait(5)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)

    def wait_for(self, count):
        return wait_until(lambda: self.messages if len(self.messages) >= count else None, 5, interval=0.01)


# The message format.


@pytest.mark.unit
def test_a_timed_message_names_its_board_and_keeps_top_last():
    message = board_message("update", 7, '[{"userId":"a"}]', 99, period="week", key=WEEK)
    assert message == (
        '{"type":"update","version":7,"period":"week","key":"week:2026-W49","changedAt":99,"top":[{"userId":"a"}]}'
    )
    parsed = parse_message(message)
    assert parsed == ("update", 7, 99, '[{"userId":"a"}]')
    assert (parsed.period, parsed.key) == ("week", WEEK)
    head, tail = message_parts("snapshot", "[]", period="day", key="day:2026-12-02")
    assert json.loads(head + "3" + tail) == {
        "type": "snapshot",
        "version": 3,
        "period": "day",
        "key": "day:2026-12-02",
        "top": [],
    }


@pytest.mark.unit
def test_all_time_messages_are_as_they_were():
    assert board_message("update", 5, "[]") == '{"type":"update","version":5,"top":[]}'
    assert board_message("update", 5, "[]", period="all", key="all") == '{"type":"update","version":5,"top":[]}'
    parsed = parse_message('{"type":"update","version":5,"top":[]}')
    assert (parsed.period, parsed.key) == ("all", None)


# The caches, on both backends.


def test_each_kind_has_its_own_cache_and_the_all_time_one_is_unchanged(stores):
    assert stores.board_cache_for("all") is stores.board_cache
    caches = {kind: stores.board_cache_for(kind) for kind in TIMED}
    assert len({id(cache) for cache in caches.values()}) == 3
    with pytest.raises(ValueError):
        stores.board_cache_for("year")
    top = dumps([{"userId": "a", "score": 1}])
    week_version = caches["week"].publish_if_changed(top, key=WEEK)
    assert week_version > 0
    # The week's publish touches neither the day's nor the all-time board.
    assert stores.board_cache.cached() is None and caches["day"].cached() is None
    assert caches["week"].cached() == {
        "type": "update",
        "version": week_version,
        "period": "week",
        "key": WEEK,
        "top": [{"userId": "a", "score": 1}],
    }
    assert stores.board_cache.publish_if_changed(top) > 0  # the same list on another board is news there
    assert caches["week"].publish_if_changed(top, key=WEEK) == 0
    assert caches["week"].consistent()


def test_a_new_period_is_broadcast_even_when_its_board_is_as_empty_as_the_last(stores):
    day = stores.board_cache_for("day")
    first = day.publish_if_changed("[]", key="day:2026-12-01")
    assert first > 0
    assert day.publish_if_changed("[]", key="day:2026-12-01") == 0
    rolled = day.publish_if_changed("[]", key="day:2026-12-02")
    assert rolled > first
    assert day.cached()["key"] == "day:2026-12-02" and day.cached()["top"] == []


def test_cache_if_absent_and_invalidate_keep_the_period(stores):
    month = stores.board_cache_for("month")
    month.cache_if_absent(4, "[]", key="month:2026-12")
    assert month.cached() == {"type": "update", "version": 4, "period": "month", "key": "month:2026-12", "top": []}
    month.publish_if_changed("[]", key="month:2026-12")
    month.invalidate()
    assert month.publish_if_changed("[]", key="month:2026-12") > 0


def test_every_kind_reaches_one_listener_and_none_hides_another(stores):
    with Heard(stores) as heard:
        # Published back to back: a listener keeps the newest of each board, never one board for another.
        for kind in KINDS:
            key = None if kind == "all" else period_at(kind, datetime(2026, 12, 2, tzinfo=UTC)).key
            stores.board_cache_for(kind).publish_if_changed(dumps([{"userId": kind}]), key=key)
        messages = heard.wait_for(4)
    assert sorted(parse_message(m).period for m in messages) == sorted(KINDS)
    by_kind = {parse_message(m).period: json.loads(m) for m in messages}
    assert by_kind["all"] == {"type": "update", "version": by_kind["all"]["version"], "top": [{"userId": "all"}]}
    assert by_kind["month"]["key"] == "month:2026-12" and by_kind["month"]["top"] == [{"userId": "month"}]


# A midnight crossed in-process, with the periods' clock injected (app config CLOCK).


@pytest.fixture
def clock(app):
    """``clock("2026-12-01T23:59:59Z")`` sets the periods' clock (ticking 1 ms a read); the system clock after."""

    def _set(moment: str) -> datetime:
        ticks = count()
        start = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        app.config["CLOCK"] = lambda: start + timedelta(milliseconds=next(ticks))
        return start

    yield _set
    app.config["CLOCK"] = None


@pytest.fixture
def relay(app):
    """The app's relay, its boards as they were put back after the test (in-process tests share them)."""
    from scoreboard.live.relay import get_relay

    relay = get_relay(app)
    saved = {kind: board._board for kind, board in relay.boards.items()}
    yield relay
    relay._set_current(False)
    for kind, board in relay.boards.items():
        board._board = saved[kind]


def test_after_midnight_the_day_board_is_the_new_empty_day(app, clock, record_and_claim):
    from scoreboard.board.reads import current_board
    from scoreboard.board.refresh import refresh_board

    clock("2026-12-01T23:59:58Z")  # a Tuesday in ISO week 49
    record_and_claim("ann")  # the eager worker refreshes: every board shows ann
    with app.app_context():
        day = get_stores().board_cache_for("day")
        before = day.cached()
        assert before["key"] == "day:2026-12-01" and [e["userId"] for e in before["top"]] == ["ann"]

        clock("2026-12-02T00:00:01Z")  # Wednesday: a new day, the same week and month
        # Until the worker runs, a read shows the new day, never yesterday's board.
        held = current_board("day")
        assert held.key == "day:2026-12-02" and json.loads(held.top_json) == [] and held.version > before["version"]
        assert current_board("week").key == "week:2026-W49"
        assert [e["userId"] for e in json.loads(current_board("week").top_json)] == ["ann"]

        with Heard(get_stores()) as heard:
            refresh_board()  # nothing pending: only the rollover changed
            (message,) = heard.wait_for(1)
        after = day.cached()
    assert json.loads(message) == after
    assert after == {"type": "update", "version": after["version"], "period": "day", "key": "day:2026-12-02", "top": []}
    assert after["version"] > before["version"]


def test_the_relay_routes_each_board_to_its_sockets_and_rolls_the_day_over(app, clock, record_and_claim, relay):
    clock("2026-12-01T23:59:58Z")
    record_and_claim("ann")
    with app.app_context():
        relay._on_message("subscribed", None)  # the re-sync loads every board
    assert {kind: board.key for kind, board in relay.boards.items()} == {
        "all": None,
        "day": "day:2026-12-01",
        "week": "week:2026-W49",
        "month": "month:2026-12",
    }
    pairs = {kind: socket.socketpair() for kind in ("all", "day")}
    try:
        subscribers = {kind: relay.subscribe(Peer(server), 2, period=kind) for kind, (server, _) in pairs.items()}
        for subscriber in subscribers.values():
            subscriber.send_text('{"type":"snapshot"}', relay.boards[subscriber.period].version)
        # A broadcast of the week reaches neither; one of the day reaches the day's socket only.
        week = relay.boards["week"].version + 1
        assert relay.deliver(board_message("update", week, "[]", period="week", key="week:2026-W49"))
        with app.app_context():  # as the worker would broadcast it
            day_cache = get_stores().board_cache_for("day")
            day = day_cache.publish_if_changed('[{"userId":"x"}]', key="day:2026-12-01")
            assert relay.deliver(board_message("update", day, '[{"userId":"x"}]', period="day", key="day:2026-12-01"))
        frames = read_frames(pairs["day"][1], 2)
        assert json.loads(frames[1])["top"] == [{"userId": "x"}]

        clock("2026-12-02T00:00:01Z")
        with app.app_context():
            assert relay.roll_over() == ["day"]
            assert relay.roll_over() == []  # once
        (rolled,) = read_frames(pairs["day"][1], 1)
        assert json.loads(rolled) == {
            "type": "update",
            "version": day + 1,
            "period": "day",
            "key": "day:2026-12-02",
            "top": [],
        }
        # The all-time socket got nothing but its snapshot.
        assert read_frames(pairs["all"][1], 1) == [b'{"type":"snapshot"}']
        pairs["all"][1].setblocking(False)
        with pytest.raises(BlockingIOError):
            pairs["all"][1].recv(1)
        for subscriber in subscribers.values():
            relay.unsubscribe(subscriber)
        assert relay.socket_count == 0
    finally:
        for server, client in pairs.values():
            server.close()
            client.close()


# The production stack: gunicorn, a Celery worker, Redis pub/sub, real sockets.


def showing(user, score=None):
    """A predicate on board messages: ``user`` is on the board (with ``score``, if given)."""
    return lambda m: "top" in m and any(e["userId"] == user and score in (None, e["score"]) for e in m["top"])


def is_me(message):
    return message.get("type") == "me"


def current_key(kind):
    """The current period's key (the stack's periods are in UTC)."""
    return period_at(kind, datetime.now(UTC)).key


@pytest.mark.live
def test_a_week_socket_gets_the_week_snapshot_then_its_updates(live_stack, mint, service_headers):
    token = mint("wk1")
    week = current_key("week")
    with (
        connect(ws_url(live_stack, "?period=week"), additional_headers=bearer(token), open_timeout=5) as ws,
        connect(ws_url(live_stack), additional_headers=bearer(token), open_timeout=5) as all_time,
    ):
        snapshot = json.loads(ws.recv(timeout=5))
        assert snapshot["type"] == "snapshot" and snapshot["period"] == "week" and snapshot["key"] == week
        assert list(snapshot) == ["type", "version", "period", "key", "top"]
        all_snapshot = json.loads(all_time.recv(timeout=5))
        assert "period" not in all_snapshot and "key" not in all_snapshot

        record_and_claim_over_http(live_stack, service_headers, token, "wk1", "win-challenge")
        update, waited = receive_until(ws, showing("wk1", 250), 2.0)
        assert update["type"] == "update" and update["period"] == "week" and update["key"] == week
        assert update["version"] > snapshot["version"]
        assert update["top"][0] == {"rank": 1, "userId": "wk1", "displayName": "wk1", "score": 250}
        print(f"\nthe week socket showed the claim after {waited * 1000:.0f} ms")
        all_update, _ = receive_until(all_time, showing("wk1", 250), 2.0)
        assert "period" not in all_update

        # A second claim: the week's socket sees only week messages, in growing versions.
        record_and_claim_over_http(live_stack, service_headers, token, "wk1")
        second, _ = receive_until(ws, showing("wk1", 300), 2.0)
        assert second["period"] == "week" and second["version"] > update["version"]
        ws.send('{"type":"resync"}')
        fresh, _ = receive_until(ws, lambda m: m["type"] == "snapshot", 2.0)
        assert fresh["period"] == "week" and fresh["key"] == week and fresh["top"] == second["top"]


@pytest.mark.live
@pytest.mark.parametrize("query", ["?period=year", "?period=Week", "?period=week&at=2026-01-01"])
def test_an_unknown_period_is_refused_at_the_handshake(live_stack, mint, query):
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(live_stack, query), additional_headers=bearer(mint("nobody")), open_timeout=5)
    response = refused.value.response
    assert response.status_code == 400
    assert json.loads(response.body)["error"]["code"] == "bad_period"


@pytest.mark.live
def test_a_watching_socket_gets_its_own_standing_only_when_it_changes(live_stack, mint, service_headers):
    tokens = {user: mint(user) for user in ("me1", "ot1", "ot2")}
    day = current_key("day")

    def claim(user, action="complete-lesson"):
        record_and_claim_over_http(live_stack, service_headers, tokens[user], user, action)

    claim("ot1")  # ot1: 50, on the board before the socket opens
    with connect(ws_url(live_stack, "?period=day"), additional_headers=bearer(tokens["me1"]), open_timeout=5) as ws:
        receive_until(ws, showing("ot1", 50), 5.0)  # the snapshot (or the update after it)
        ws.send('{"type":"watch"}')
        seen = []

        def next_me(rank, score, total):
            message, _ = receive_until(ws, is_me, 5.0)
            seen.append((message, time.monotonic()))
            assert (message["rank"], message["score"], message["total"]) == (rank, score, total), message
            assert message["period"] == "day" and message["key"] == day
            return message

        first = next_me(None, None, 1)  # at once: not ranked yet, one player today
        assert list(first) == ["type", "version", "period", "key", "rank", "score", "total"]
        claim("me1", "win-challenge")  # me1: 250, first
        next_me(1, 250, 2)
        claim("ot1", "win-challenge")  # ot1: 300, passes me1
        next_me(2, 250, 2)
        claim("ot1")  # ot1: 350; me1 still 2nd of 2, 250: no message
        receive_until(ws, showing("ot1", 350), 5.0)
        claim("ot2")  # a third player: the total changed
        last = next_me(2, 250, 3)
        assert last["version"] >= first["version"]
        # Each "me" followed a change (none repeats the one before), at most one a second.
        gaps = [b[1] - a[1] for a, b in pairwise(seen)]
        assert all(gap > 0.9 for gap in gaps), gaps


@pytest.fixture(scope="module")
def public_web(app, stack_env, tmp_path_factory):
    """One gunicorn process serving a public board (no worker: nothing here scores). Yields the base URL."""
    web, base = start_web(
        {**stack_env, "SCOREBOARD_PUBLIC_BOARD": "true"}, tmp_path_factory.mktemp("public-web"), workers=1
    )
    yield base
    web.stop()


@pytest.mark.live
def test_a_socket_without_a_viewer_is_told_to_sign_in_to_watch(public_web):
    with connect(ws_url(public_web, "?period=month"), open_timeout=5) as ws:
        snapshot = json.loads(ws.recv(timeout=5))
        assert snapshot["type"] == "snapshot" and snapshot["period"] == "month"
        ws.send('{"type":"watch"}')
        refusal, _ = receive_until(ws, lambda m: m["type"] == "error", 5.0)
        assert refusal["code"] == "sign_in_required"
        ws.send('{"type":"resync"}')  # the socket stays open
        again, _ = receive_until(ws, lambda m: m["type"] == "snapshot", 5.0)
        assert again["period"] == "month"
