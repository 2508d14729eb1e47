"""Several boards' calls in one round trip (``stores.ranking.apply_each``, ``built_flags``, ``tops``,
``stores.board_cache.publish_each``) answer as the calls one by one do, on Redis and in memory; a Redis that
lost its scripts still runs them; the refresh slot and the recompute's booked start (``begin_refresh``)."""

import json
import time

import pytest

from scoreboard.stores.board_cache import publish_each
from scoreboard.stores.ranking import RankEntry, apply_each, built_flags, tops
from tests.stores.test_contract import entry, redis_cluster, stores  # noqa: F401  (fixtures)


def test_apply_each_and_tops_match_one_board_at_a_time(stores):  # noqa: F811
    day, week = stores.ranking_for("day:2026-12-02"), stores.ranking_for("week:2026-W49")
    applied = apply_each(
        [
            (stores.ranking, [entry("ann", 30), entry("bob", 20)]),
            (day, [entry("bob", 5)]),
            (week, []),  # nothing for this board: left out
        ]
    )
    assert applied == [2, 1]
    assert apply_each([(stores.ranking, [entry("ann", 10, version=1)])]) == [0]  # not newer: not applied
    for ranking in (stores.ranking, day):
        ranking.mark_built()
    assert built_flags([stores.ranking, day, week]) == [True, True, False]
    all_time, of_day, of_week = tops([stores.ranking, day, week], 10)
    assert [(s.rank, s.user_id, s.score) for s in all_time] == [(1, "ann", 30), (2, "bob", 20)]
    assert [(s.user_id, s.score) for s in of_day] == [("bob", 5)]
    assert of_week == []
    assert [(s.user_id, s.score) for s in all_time] == stores.ranking.top(10)
    assert tops([stores.ranking], 1)[0][0].user_id == "ann"


def test_entries_carry_their_names_into_the_top_lists(stores):  # noqa: F811
    apply_each([(stores.ranking, [RankEntry("ann", 30, 1, version=1, visible=True, name="Ann"), entry("bob", 3)])])
    (run,) = tops([stores.ranking], 10)
    assert [(s.user_id, s.name) for s in run] == [("ann", "Ann"), ("bob", None)]  # bob's name is not mirrored


def test_publish_each_broadcasts_only_the_boards_that_changed(stores):  # noqa: F811
    day = stores.board_cache_for("day")
    first = publish_each([(stores.board_cache, "[1]", None, None), (day, "[2]", None, "day:2026-12-02")])
    assert all(version > 0 for version in first)
    again = publish_each([(stores.board_cache, "[1]", None, None), (day, "[2]", None, "day:2026-12-02")])
    assert again == [0, 0]
    # A new period's key is a change even with the same list.
    changed = publish_each([(stores.board_cache, "[1]", None, None), (day, "[2]", None, "day:2026-12-03")])
    assert changed[0] == 0 and changed[1] > first[1]
    cached = stores.board_cache_for("day").cached()
    assert cached["key"] == "day:2026-12-03" and cached["top"] == [2]
    assert json.loads(json.dumps(stores.board_cache.cached()))["top"] == [1]


def test_scripts_a_restarted_redis_lost_are_loaded_again(stores):  # noqa: F811
    if not hasattr(stores.ranking, "redis"):
        pytest.skip("a Redis behaviour")
    stores.ranking.apply([entry("ann", 1)])  # the scripts are loaded
    stores.board_cache.publish_if_changed("[0]")
    stores.ranking.redis.script_flush()
    day = stores.ranking_for("day:2026-12-02")
    assert apply_each([(stores.ranking, [entry("ann", 2, version=2)]), (day, [entry("ann", 2)])]) == [1, 1]
    assert [(s.user_id, s.score) for s in tops([stores.ranking, day], 5)[0]] == [("ann", 2)]
    stores.ranking.redis.script_flush()
    versions = publish_each(
        [(stores.board_cache, "[9]", None, None), (stores.board_cache_for("week"), "[8]", None, "w")]
    )
    assert all(v > 0 for v in versions)


def test_begin_refresh_releases_the_slot_and_books_the_next_start(stores):  # noqa: F811
    coordination = stores.coordination
    assert coordination.claim_refresh_slot()
    assert not coordination.claim_refresh_slot()
    assert coordination.begin_refresh(0.5) == 0  # no run before: start now
    assert coordination.claim_refresh_slot()  # released: the next change queues a run
    booked = coordination.last_refresh_at()
    assert abs(booked - time.time()) < 0.5
    wait = coordination.begin_refresh(0.5)
    assert 0.3 < wait <= 0.5  # half a second after the last start
    assert coordination.last_refresh_at() == pytest.approx(booked + 0.5, abs=0.01)
    time.sleep(wait)
    time.sleep(0.5)
    assert coordination.begin_refresh(0.5) == 0  # the interval has passed since the booked start


def test_a_draining_run_holds_the_slot_until_it_releases_it(stores):  # noqa: F811
    coordination = stores.coordination
    if getattr(coordination, "_hold", True) is None:
        assert coordination.hold_refresh(0.05) is None  # a cluster: no holding, each run is queued
        return
    assert coordination.claim_refresh_slot()  # a change queued a run
    assert coordination.hold_refresh(0.05) is None  # not taken from a queued run's flag ...
    assert coordination.hold_refresh(0.05, take=True) is not None  # ... unless the run it queued takes it
    assert not coordination.claim_refresh_slot()  # held: a change queues nothing, the running one reads it
    assert 0 <= coordination.hold_refresh(0.05) <= 0.05  # kept, the next start booked
    coordination.begin_refresh(0.05)  # the last run releases it before it reads
    assert coordination.claim_refresh_slot()
