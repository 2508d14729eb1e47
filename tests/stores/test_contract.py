"""One contract for both adapters of every store: each behaviour runs on Redis and in memory.

The Redis runs use the tests' Redis under a prefix of their own; the in-memory runs need no
service (``pytest -m unit`` runs them alone). The same behaviours run on a Redis Cluster too
(``faults``: it starts six redis-server processes, the cluster that
``tests/faults/test_redis_cluster.py`` uses as well, once per run).
"""

import json
import random
import threading
import time
import uuid

import pytest
import redis
from redis.cluster import key_slot
from redis.exceptions import LockError

from scoreboard.stores import Stores, memory_stores, redis_stores
from scoreboard.stores.board_cache import RedisBoardCache, board_message, dumps, message_parts, parse_message
from scoreboard.stores.ranking import MemoryRanking, RankEntry, RankingNotBuilt, RedisRanking, Standing, user_of
from tests.conftest import REDIS_URL
from tests.faults.servers import shared_redis_cluster
from tests.support import wait_until

TTL = 300


@pytest.fixture(scope="session")
def redis_cluster(request, tmp_path_factory):
    """The run's Redis Cluster (three primaries, three replicas), shared with the cluster fault test."""
    return shared_redis_cluster(request, tmp_path_factory)


@pytest.fixture(
    params=[pytest.param("memory", marks=pytest.mark.unit), "redis", pytest.param("cluster", marks=pytest.mark.faults)]
)
def stores(request) -> Stores:
    """The stores on one backend, empty."""
    if request.param == "memory":
        yield memory_stores()
        return
    url = request.getfixturevalue("redis_cluster").url() if request.param == "cluster" else REDIS_URL
    prefix = f"sbcontract:{uuid.uuid4().hex[:10]}:"
    made = redis_stores(url, prefix, TTL)
    yield made
    client = made.ranking.redis  # on a cluster, SCAN runs on every primary
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def entry(user, score, reached_us=1, version=1, visible=True):
    return RankEntry(user, score, reached_us, version=version, visible=visible)


class Listening:
    """A listener on the stores' channels, in a thread, recording what it hears."""

    def __init__(self, stores: Stores):
        self.heard: list[tuple[str, str | None]] = []
        self.subscribed = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=stores.channels.listen, args=(self.on_message, self.stop), daemon=True)

    def on_message(self, kind, payload):
        self.heard.append((kind, payload))
        if kind == "subscribed":
            self.subscribed.set()

    def __enter__(self):
        self.thread.start()
        assert self.subscribed.wait(5)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)

    def wait_for(self, kind, count=1, timeout=5):
        def heard_enough():
            found = [payload for k, payload in self.heard if k == kind]
            return found if len(found) >= count else None

        return wait_until(
            heard_enough, timeout, interval=0.01, message=lambda: f"heard {self.heard}, wanted {count} {kind}"
        )


# The ranking mirror.


def test_ranking_orders_by_score_then_who_reached_it_first(stores):
    ranking = stores.ranking
    assert (
        ranking.apply([entry("late", 100, reached_us=20), entry("early", 100, reached_us=10), entry("top", 300)]) == 3
    )
    assert ranking.top(10) == [("top", 300), ("early", 100), ("late", 100)]
    assert ranking.top(2) == [("top", 300), ("early", 100)]


def test_ranking_never_applies_an_older_or_repeated_state(stores):
    ranking = stores.ranking
    ranking.apply([entry("x", 300, version=5)])
    assert ranking.apply([entry("x", 100, version=4)]) == 0
    assert ranking.apply([entry("x", 100, version=5)]) == 0
    assert ranking.top(1) == [("x", 300)]
    assert ranking.apply([entry("x", 400, version=6)]) == 1
    assert ranking.top(5) == [("x", 400)]


def test_ranking_hides_invisible_users_but_remembers_their_version(stores):
    ranking = stores.ranking
    ranking.apply([entry("a", 10), entry("b", 20)])
    ranking.apply([entry("b", 20, version=2, visible=False)])
    assert ranking.top(5) == [("a", 10)]
    assert ranking.size() == (2, 1)
    assert ranking.apply([entry("b", 20, version=1)]) == 0  # an older visible state cannot bring it back
    assert ranking.top(5) == [("a", 10)]


def test_ranking_build_flag_and_reset(stores):
    ranking = stores.ranking
    assert not ranking.is_built()
    ranking.apply([entry("a", 10)])
    ranking.mark_built()
    assert ranking.is_built()
    ranking.reset()
    assert not ranking.is_built()
    assert ranking.top(5) == []
    assert ranking.size() == (0, 0)


def test_a_mirror_built_in_another_member_format_reads_as_not_built(stores):
    ranking = stores.ranking
    if not isinstance(ranking, RedisRanking):
        pytest.skip("only Redis outlives a release")
    ranking.redis.set(ranking.built_key, "1")  # an older release's flag, over members of its format
    assert not ranking.is_built()
    ranking.mark_built()
    assert ranking.is_built()


def test_ranking_compare_reports_what_is_mirrored(stores):
    ranking = stores.ranking
    shown, hidden = entry("a", 10, version=3), entry("b", 20, version=2, visible=False)
    ranking.apply([shown, hidden])
    stale = entry("a", 15, reached_us=5, version=4)  # the database moved on; the mirror still holds `shown`
    absent = entry("c", 30)
    a, b, c, same = ranking.compare([stale, hidden, absent, shown])
    assert a.state == f"3|{shown.member}" and a.state_member_ranked and not a.entry_member_ranked
    assert b.state == "2|" and not b.state_member_ranked and not b.entry_member_ranked
    assert c.state is None and not c.state_member_ranked and not c.entry_member_ranked
    assert same.state == f"3|{shown.member}" and same.state_member_ranked and same.entry_member_ranked
    # The member carries the score: the same time with another score is another member, not ranked.
    assert not ranking.compare([entry("a", 11, version=3)])[0].entry_member_ranked
    assert ranking.compare([]) == []


@pytest.mark.unit
def test_member_encodes_the_user_and_sorts_earlier_first():
    early, late = entry("u:1", 5, reached_us=10), entry("u:1", 5, reached_us=20)
    assert user_of(early.member) == "u:1"
    assert early.member > late.member
    assert early.member == f"{5:019d}{10**17 - 1 - 10:017d}:u:1"


@pytest.mark.unit
def test_members_sort_in_rank_order():
    ranked = [entry("b", 10, reached_us=1), entry("a", 10, reached_us=1), entry("z", 9, reached_us=0), entry("y", 1)]
    assert sorted((e.member for e in ranked), reverse=True) == [e.member for e in ranked]


def ranked_order(entries):
    """The user ids of the visible ``entries`` in the database's rank order, computed without members."""
    visible = sorted((e for e in entries if e.visible), key=lambda e: e.user_id, reverse=True)
    return [e.user_id for e in sorted(visible, key=lambda e: (-e.score, e.reached_us))]


def walk(ranking, size):
    """Every standing, read in pages of ``size`` following each page's last member."""
    seen, after = [], None
    while True:
        page, total = ranking.page(after, size)
        assert total == ranking.total()
        if not page:
            return seen
        assert len(page) <= size
        seen += page
        after = page[-1].member


def test_ranks_break_ties_by_time_reached_then_user_id(stores):
    ranking = stores.ranking
    ranking.apply(
        [
            entry("late", 100, reached_us=20),
            entry("early", 100, reached_us=10),
            entry("top", 300, reached_us=30),
            entry("b", 50, reached_us=5),  # same score and time: the higher user id ranks first
            entry("c", 50, reached_us=5),
            entry("a", 50, reached_us=5),
            entry("low", 1, reached_us=1),
        ]
    )
    expected = [("top", 300), ("early", 100), ("late", 100), ("c", 50), ("b", 50), ("a", 50), ("low", 1)]
    assert ranking.top(10) == expected
    standings = ranking.standings([user for user, _ in expected])
    assert [(s.rank, s.user_id, s.score) for s in standings.values()] == [
        (rank, user, score) for rank, (user, score) in enumerate(expected, start=1)
    ]
    assert ranking.standing("b") == Standing(5, "b", 50, entry("b", 50, reached_us=5).member)
    assert ranking.total() == 7
    assert ranking.top(0) == []


def test_standing_of_an_unknown_or_hidden_user_is_none(stores):
    ranking = stores.ranking
    assert ranking.standing("nobody") is None
    ranking.apply([entry("shown", 10), entry("hidden", 20, visible=False), entry("gone", 30)])
    ranking.apply([entry("gone", 30, version=2, visible=False)])  # was ranked, then hidden
    assert ranking.standing("shown") == Standing(1, "shown", 10, entry("shown", 10).member)
    assert ranking.standing("hidden") is None
    assert ranking.standing("gone") is None
    assert ranking.standing("nobody") is None
    assert ranking.total() == 1


def test_standings_of_a_mix_leave_out_the_unranked(stores):
    ranking = stores.ranking
    ranking.apply([entry(f"u{i}", 10 * i) for i in range(1, 6)] + [entry("hidden", 99, visible=False)])
    found = ranking.standings(["u2", "nobody", "u5", "hidden", "u2", "u1"])
    assert found == {
        "u2": Standing(4, "u2", 20, entry("u2", 20).member),
        "u5": Standing(1, "u5", 50, entry("u5", 50).member),
        "u1": Standing(5, "u1", 10, entry("u1", 10).member),
    }
    assert ranking.standings([]) == {}
    assert ranking.standings(["nobody"]) == {}


def test_every_read_returns_the_names_kept_beside_the_ranking(stores):
    ranking = stores.ranking_for("week:2026-W49")
    named = [RankEntry(f"u{i}", 10 * i, 1, version=1, visible=True, name=f"Name {i}") for i in range(1, 6)]
    ranking.apply([*named, RankEntry("nameless", 1, 1, version=1, visible=True)])
    ranking.mark_built()
    names = {s.user_id: s.name for s in ranking.page(None, 10, checked=True)[0]}
    assert names == {"u5": "Name 5", "u4": "Name 4", "u3": "Name 3", "u2": "Name 2", "u1": "Name 1", "nameless": None}
    assert ranking.standings(["u2"], checked=True)["u2"].name == "Name 2"
    me, near, _ = ranking.around("u3", 1, checked=True)
    assert me.name == "Name 3" and [s.name for s in near] == ["Name 4", "Name 3", "Name 2"]
    me, near, _ = ranking.around_as_if(entry("held", 35).member, 1, checked=True)
    assert me.name is None and [s.name for s in near] == ["Name 4", None, "Name 3"]
    # A rename arrives as a newer state of the same user; a hidden user's name leaves with them.
    ranking.apply([RankEntry("u2", 20, 1, version=2, visible=True, name="Renamed")])
    ranking.apply([RankEntry("u4", 40, 1, version=2, visible=False, name="Name 4")])
    assert ranking.standings(["u2"])["u2"].name == "Renamed"
    ranking.apply([RankEntry("u4", 40, 1, version=3, visible=True)])  # back, with no name given
    assert ranking.standings(["u4"])["u4"].name is None
    ranking.reset()
    ranking.apply([entry("u1", 10)])
    ranking.mark_built()
    assert ranking.standings(["u1"])["u1"].name is None  # a reset drops the names with the ranking


def test_checked_reads_refuse_a_ranking_that_is_not_built(stores):
    ranking = stores.ranking_for("day:2026-12-02")
    ranking.apply([entry("a", 10), entry("b", 20)])
    for read in (
        lambda: ranking.page(None, 5, checked=True),
        lambda: ranking.standings(["a"], checked=True),
        lambda: ranking.around("a", 2, checked=True),
        lambda: ranking.around_as_if(entry("c", 15).member, 2, checked=True),
    ):
        with pytest.raises(RankingNotBuilt) as raised:
            read()
        assert raised.value.board == "day:2026-12-02"
    assert [s.user_id for s in ranking.page(None, 5)[0]] == ["b", "a"]  # unchecked reads still answer
    ranking.mark_built()
    assert [s.user_id for s in ranking.page(None, 5, checked=True)[0]] == ["b", "a"]
    assert ranking.standings(["a"], checked=True)["a"].rank == 2


def test_pages_of_seven_walk_the_whole_ranking_in_order(stores):
    ranking = stores.ranking
    entries = [entry(f"u{i:02d}", 10 * (i % 6) + 10, reached_us=i % 4, version=1) for i in range(45)]
    entries += [entry("hidden", 500, visible=False), entry("zero", 0, visible=False)]
    ranking.apply(entries)
    seen = walk(ranking, 7)
    assert [s.user_id for s in seen] == ranked_order(entries)
    assert [s.rank for s in seen] == list(range(1, 46))
    by_user = {e.user_id: e for e in entries}
    assert all(s.score == by_user[s.user_id].score and s.member == by_user[s.user_id].member for s in seen)
    first, total = ranking.page(None, 7)
    assert total == 45 and first == seen[:7]
    assert ranking.page(seen[-1].member, 7) == ([], 45)
    assert ranking.page(None, 0) == ([], 45)
    assert ranking.page(seen[10].member, 3) == (seen[11:14], 45)


def test_a_page_after_a_member_that_has_moved_starts_where_it_would_sort(stores):
    ranking = stores.ranking
    ranking.apply([entry(f"u{score}", score, reached_us=score) for score in range(100, 0, -10)])  # u100 .. u10
    page, _ = ranking.page(None, 3)
    assert [s.user_id for s in page] == ["u100", "u90", "u80"]
    cursor = page[-1].member
    ranking.apply([entry("u80", 5, reached_us=200, version=2)])  # u80 falls to the bottom
    page, total = ranking.page(cursor, 3)
    assert [(s.rank, s.user_id) for s in page] == [(3, "u70"), (4, "u60"), (5, "u50")]
    assert total == 10
    ranking.apply([entry("u20", 95, reached_us=300, version=2)])  # u20 climbs above where the cursor was
    page, _ = ranking.page(cursor, 2)
    assert [(s.rank, s.user_id) for s in page] == [(4, "u70"), (5, "u60")]
    # A cursor below everyone ends the walk; one above everyone starts it.
    assert ranking.page(entry("x", 0).member, 5) == ([], 10)
    assert ranking.page(entry("x", 10**6).member, 1)[0] == ranking.page(None, 1)[0]


def test_around_clips_at_the_top_and_the_bottom(stores):
    ranking = stores.ranking
    assert ranking.around("nobody", 2) == (None, [], 0)
    ranking.apply([entry(f"u{rank}", 100 - rank) for rank in range(1, 11)])  # u1 ranks 1 ... u10 ranks 10
    ranking.apply([entry("hidden", 500, visible=False)])

    def around(user, radius):
        me, near, total = ranking.around(user, radius)
        assert total == 10 and me in near and me.user_id == user
        assert [s.rank for s in near] == list(range(near[0].rank, near[0].rank + len(near)))
        return me.rank, [s.user_id for s in near]

    assert around("u1", 2) == (1, ["u1", "u2", "u3"])
    assert around("u2", 2) == (2, ["u1", "u2", "u3", "u4"])
    assert around("u5", 2) == (5, ["u3", "u4", "u5", "u6", "u7"])
    assert around("u10", 2) == (10, ["u8", "u9", "u10"])
    assert around("u5", 0) == (5, ["u5"])
    assert around("u5", 50) == (5, [f"u{rank}" for rank in range(1, 11)])
    assert ranking.around("hidden", 2) == (None, [], 10)
    assert ranking.around("nobody", 2) == (None, [], 10)


def test_around_as_if_places_an_unranked_member_where_it_would_sort(stores):
    ranking = stores.ranking
    ranking.apply([entry(f"u{rank}", 100 - 10 * rank, reached_us=rank) for rank in range(1, 8)])  # 90 ... 30
    ranking.apply([entry("held", 65, reached_us=1, visible=False)])  # in the state, not in the ranking

    def as_if(score, radius, user="held", reached_us=1):
        me, near, total = ranking.around_as_if(entry(user, score, reached_us=reached_us).member, radius)
        assert me in near and (me.user_id, me.score) == (user, score)
        assert [s.rank for s in near] == list(range(near[0].rank, near[0].rank + len(near)))
        return me.rank, [s.user_id for s in near], total

    # Between u3 (70) and u4 (60): rank 4 of 8, the ones below it one rank lower than they are.
    assert as_if(65, 2) == (4, ["u2", "u3", "held", "u4", "u5"], 8)
    me, near, _ = ranking.around_as_if(entry("held", 65).member, 1)
    assert near == [Standing(3, "u3", 70, entry("u3", 70, reached_us=3).member), me,
                    Standing(5, "u4", 60, entry("u4", 60, reached_us=4).member)]  # fmt: skip
    assert as_if(65, 0) == (4, ["held"], 8)
    assert as_if(500, 2) == (1, ["held", "u1", "u2"], 8)  # above everyone
    assert as_if(1, 2) == (8, ["u6", "u7", "held"], 8)  # below everyone
    assert as_if(65, 50) == (4, ["u1", "u2", "u3", "held", "u4", "u5", "u6", "u7"], 8)
    # An equal score: who reached it first ranks first.
    assert as_if(70, 1, reached_us=2)[:2] == (3, ["u2", "held", "u3"])
    assert as_if(70, 1, reached_us=4)[:2] == (4, ["u3", "held", "u4"])
    # A member that is ranked gets its own place and the real total.
    assert as_if(60, 1, user="u4", reached_us=4) == (4, ["u3", "u4", "u5"], 7)
    # The real ranking is untouched.
    assert ranking.total() == 7 and ranking.standing("held") is None
    empty = stores.ranking_for("day:2026-12-02")
    assert empty.around_as_if(entry("held", 5).member, 3) == (
        Standing(1, "held", 5, entry("held", 5).member),
        [Standing(1, "held", 5, entry("held", 5).member)],
        1,
    )


def test_each_board_has_a_ranking_of_its_own(stores):
    assert stores.ranking_for("") is stores.ranking
    day = stores.ranking_for("day:2026-12-02")
    assert stores.ranking_for("day:2026-12-02") is day
    week = stores.ranking_for("week:2026-W49")
    assert week is not day and day is not stores.ranking
    day.apply([entry("a", 10)])
    week.apply([entry("b", 20)])
    assert day.top(5) == [("a", 10)] and week.top(5) == [("b", 20)] and stores.ranking.top(5) == []
    if isinstance(day, RedisRanking):
        assert day.members_key.endswith("rank:day:2026-12-02") or day.members_key.endswith(
            "{board:day:2026-12-02}:rank"
        )
    got, gate = [], threading.Barrier(8)

    def look_up():
        gate.wait(5)
        got.append(stores.ranking_for("month:2026-12"))

    threads = [threading.Thread(target=look_up) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(got) == 8 and all(ranking is got[0] for ranking in got)


def test_memory_and_the_backend_agree_on_a_random_ranking_with_many_ties(stores):
    rng = random.Random(20261202)
    ranking, memory = stores.ranking, MemoryRanking()
    users = [f"user-{i:03d}" for i in range(500)]
    versions = dict.fromkeys(users, 0)
    batches = []
    for _ in range(3):  # each user's state a few times over: scores move, some users hide and come back
        batch = []
        for user in rng.sample(users, 400):
            versions[user] += 1
            score = rng.choice([0, 10, 20, 20, 50, 50, 50, 100, rng.randrange(1, 2000)])
            visible = score > 0 and rng.random() > 0.05
            batch.append(entry(user, score, reached_us=rng.randrange(4), version=versions[user], visible=visible))
        batches.append(batch)
    for batch in batches:
        for part in (batch[:150], batch[150:]):
            assert ranking.apply(part) == memory.apply(part)
    latest = {e.user_id: e for batch in batches for e in batch}
    expected = ranked_order(latest.values())
    assert ranking.total() == memory.total() == len(expected)
    for size in (1, 7, 50, 1000):
        walked = walk(ranking, size)
        assert walked == walk(memory, size)
        assert [s.user_id for s in walked] == expected
    assert ranking.top(25) == memory.top(25)
    asked = [*users, "nobody"]
    assert ranking.standings(asked) == memory.standings(asked)
    for user in rng.sample(users, 40):
        radius = rng.choice([0, 1, 3, 10])
        assert ranking.around(user, radius) == memory.around(user, radius)
        assert ranking.standing(user) == memory.standing(user)
    for _ in range(20):  # cursors of members no longer (or never) ranked
        cursor = entry(rng.choice(users), rng.choice([10, 20, 50, 300]), reached_us=rng.randrange(4)).member
        assert ranking.page(cursor, 9) == memory.page(cursor, 9)
        assert ranking.around_as_if(cursor, 4) == memory.around_as_if(cursor, 4)
    assert ranking.compare(list(latest.values())) == memory.compare(list(latest.values()))
    assert ranking.size() == memory.size()


@pytest.mark.unit
def test_on_a_cluster_a_boards_keys_share_one_slot_and_one_redis_keeps_its_names():
    client = redis.Redis()  # never contacted: here the adapters only name their keys
    for board in ("", "2026-w01"):
        ranking = RedisRanking(client, "p:", board, cluster=True)
        keys = [ranking.members_key, ranking.state_key, ranking.built_key]
        if not board:  # the board cache belongs to the all-time board
            cache = RedisBoardCache(client, "p:", "p:board", TTL, cluster=True)
            keys += [cache.message_key, cache.published_key, cache.version_key]
        assert len({key_slot(key.encode()) for key in keys}) == 1, keys
        assert all(key.startswith("p:{board") for key in keys)
    assert RedisRanking(client, "p:", cluster=True).members_key == "p:{board}:rank"
    assert RedisRanking(client, "p:", "2026-w01", cluster=True).members_key == "p:{board:2026-w01}:rank"
    plain, plain_cache = RedisRanking(client, "p:"), RedisBoardCache(client, "p:", "p:board", TTL)
    assert (plain.members_key, plain.state_key, plain.built_key) == ("p:rank", "p:rank:state", "p:rank:built")
    assert (plain_cache.message_key, plain_cache.published_key) == ("p:top", "p:top:published")
    assert RedisRanking(client, "p:", "2026-w01").members_key == "p:rank:2026-w01"


def test_ping_answers_when_the_backend_serves(stores):
    stores.ping()


# The board cache and its broadcast.


def test_publish_only_when_the_top_list_changes(stores):
    cache = stores.board_cache
    first = cache.publish_if_changed(dumps([{"userId": "a", "score": 1}]))
    assert first > 0
    assert cache.publish_if_changed(dumps([{"userId": "a", "score": 1}])) == 0
    second = cache.publish_if_changed(dumps([{"userId": "a", "score": 2}]))
    assert second > first
    assert cache.version() == second
    assert cache.cached() == {"type": "update", "version": second, "top": [{"userId": "a", "score": 2}]}


def test_versions_never_fall_below_the_wall_clock(stores):
    version = stores.board_cache.publish_if_changed("[]")
    assert version >= int(time.time() * 1000) - 5000


def test_publish_reaches_every_listener_with_the_claim_time(stores):
    with Listening(stores) as listening:
        version = stores.board_cache.publish_if_changed(dumps([{"userId": "a"}]), changed_at=1234)
        (message,) = listening.wait_for("board")
    assert parse_message(message) == (("update", version, 1234, '[{"userId":"a"}]'))
    assert json.loads(message) == {"type": "update", "version": version, "changedAt": 1234, "top": [{"userId": "a"}]}


def test_cache_if_absent_fills_a_miss_but_never_replaces_a_broadcast(stores):
    cache = stores.board_cache
    assert cache.cached() is None
    cache.cache_if_absent(7, "[]")
    assert cache.cached() == {"type": "update", "version": 7, "top": []}
    stores_with_broadcast = cache.publish_if_changed('[{"userId":"b"}]')
    cache.cache_if_absent(8, "[]")
    assert cache.cached()["version"] == stores_with_broadcast


def test_invalidate_makes_the_next_publish_broadcast_again(stores):
    cache = stores.board_cache
    cache.publish_if_changed("[]")
    assert cache.consistent()
    cache.invalidate()
    assert cache.publish_if_changed("[]") > 0


@pytest.mark.unit
def test_board_message_round_trips():
    message = board_message("snapshot", 42, '[{"displayName":"x,\\"top\\":1"}]', 99)
    assert json.loads(message)["top"] == [{"displayName": 'x,"top":1'}]
    assert parse_message(message) == ("snapshot", 42, 99, '[{"displayName":"x,\\"top\\":1"}]')
    head, tail = message_parts("update", "[]")
    assert json.loads(head + "3" + tail) == {"type": "update", "version": 3, "top": []}


# Coordination between workers.


def test_refresh_slot_is_taken_once_until_released(stores):
    coordination = stores.coordination
    assert coordination.claim_refresh_slot()
    assert not coordination.claim_refresh_slot()
    coordination.release_refresh_slot()
    assert coordination.claim_refresh_slot()


def test_refresh_lock_is_exclusive_and_names_lock_error_when_busy(stores):
    coordination = stores.coordination
    held, release = threading.Event(), threading.Event()

    def hold():
        with coordination.refresh_lock(timeout=2, wait=1):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        with pytest.raises(LockError), coordination.refresh_lock(timeout=2, wait=0.1):
            pass
    finally:
        release.set()
        holder.join(5)
    with coordination.refresh_lock(timeout=2, wait=1):
        pass


def test_last_refresh_time_is_recorded(stores):
    coordination = stores.coordination
    assert coordination.last_refresh_at() == 0
    before = time.time()
    coordination.mark_refresh()
    assert before - 0.01 <= coordination.last_refresh_at() <= time.time() + 0.01


# Revocations.


def test_revocations_hold_until_they_lapse_and_are_announced(stores):
    revocations = stores.revocations
    with Listening(stores) as listening:
        lapses = revocations.revoke("jti-1", 60)
        (announcement,) = listening.wait_for("revoked")
    assert json.loads(announcement) == {"jti": "jti-1", "exp": lapses}
    assert revocations.is_revoked("jti-1")
    assert not revocations.is_revoked("jti-2")
    assert revocations.in_force() == {"jti-1": pytest.approx(lapses)}


def test_a_revocation_is_only_ever_extended(stores):
    revocations = stores.revocations
    long = revocations.revoke("jti", 600)
    revocations.revoke("jti", 1)
    assert revocations.in_force()["jti"] == pytest.approx(long)


def test_lapsed_revocations_are_not_in_force(stores):
    revocations = stores.revocations
    revocations.revoke("short", 1)
    wait_until(lambda: not revocations.is_revoked("short"), 5, message="a 1 s revocation still in force")
    assert "short" not in revocations.in_force()


# Socket tickets.


def test_a_socket_ticket_is_taken_once(stores):
    tickets = stores.socket_tickets
    tickets.put("ticket-1", '{"sub": "u1"}', 30)
    assert tickets.take("ticket-2") is None
    assert tickets.take("ticket-1") == '{"sub": "u1"}'
    assert tickets.take("ticket-1") is None


def test_of_many_takes_racing_for_one_ticket_one_gets_it(stores):
    tickets = stores.socket_tickets
    for round_ in range(20):
        tickets.put(f"raced-{round_}", "holder", 30)
        gate = threading.Barrier(8)
        got = []

        def take(ticket=f"raced-{round_}", gate=gate, got=got):
            gate.wait(5)
            got.append(tickets.take(ticket))

        threads = [threading.Thread(target=take) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert got.count("holder") == 1 and got.count(None) == 7, got


def test_a_socket_ticket_lapses(stores):
    tickets = stores.socket_tickets
    tickets.put("brief", "holder", 1)
    tickets.put("longer", "holder", 30)
    wait_until(lambda: tickets.take("brief") is None, 5, message="a 1 s ticket still redeemable")
    assert tickets.take("longer") == "holder"


# Socket slots (the per-IP socket cap across processes).


def test_socket_slots_cap_an_address_until_one_is_given_back(stores):
    slots = stores.socket_slots
    assert [slots.acquire("10.0.0.1", f"s{i}", 3, 60) for i in range(4)] == [True, True, True, False]
    assert slots.count("10.0.0.1") == 3
    assert slots.acquire("10.0.0.2", "other", 3, 60)  # each address has its own
    slots.release("10.0.0.1", "s1")
    assert slots.count("10.0.0.1") == 2
    assert slots.acquire("10.0.0.1", "s4", 3, 60)
    assert not slots.acquire("10.0.0.1", "s5", 3, 60)


def test_of_many_sockets_racing_for_the_last_slot_one_gets_it(stores):
    slots = stores.socket_slots
    slots.acquire("10.0.1.1", "first", 2, 60)
    gate = threading.Barrier(8)
    won = []

    def race(i):
        gate.wait(5)
        won.append(slots.acquire("10.0.1.1", f"racer-{i}", 2, 60))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(won) == [False] * 7 + [True]
    assert slots.count("10.0.1.1") == 2


def test_slots_lapse_unless_renewed_and_a_slot_given_back_stays_free(stores):
    slots = stores.socket_slots
    # The sockets of a process that died: nobody renews them, they lapse.
    assert slots.acquire("10.0.2.1", "crashed", 1, 1)
    assert not slots.acquire("10.0.2.1", "newcomer", 1, 60)
    wait_until(lambda: slots.count("10.0.2.1") == 0, 5, message="an unrenewed slot never lapsed")
    assert slots.acquire("10.0.2.1", "newcomer", 1, 60)
    # Renewed slots stay; a renewal never brings back a slot given back (a socket that closed meanwhile).
    assert slots.acquire("10.0.2.2", "kept", 3, 1)
    assert slots.acquire("10.0.2.2", "closed", 3, 60)
    slots.release("10.0.2.2", "closed")
    past_the_lapse = time.monotonic() + 2.5

    def renewed_past_the_lapse():  # renewed every 0.3 s, for longer than the 1 s lapse
        slots.renew({"10.0.2.2": ["kept", "closed"]}, 1)
        assert slots.count("10.0.2.2") == 1
        return time.monotonic() > past_the_lapse

    wait_until(renewed_past_the_lapse, 5, interval=0.3, message="renewing for 2.5 s")
