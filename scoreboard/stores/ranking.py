"""The ranking mirror: every visible user's score, ordered as the database orders them.

Equal scores rank by who reached the score first. Redis orders equal scores by member, so a
member starts with a base minus the time reached (earlier sorts higher), then the user id;
the database's tie order (``board.source``) is the same. Each user's mirrored state carries
the score row's ``version``, so a late or repeated write never replaces a newer state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from .cluster import board_tag, on_cluster

INVERTED_TIME_BASE = 10**17 - 1


@dataclass(frozen=True, slots=True)
class RankEntry:
    """One user's mirrored state; ``version`` only grows, so older states never overwrite newer."""

    user_id: str
    score: int
    reached_us: int
    version: int
    visible: bool

    @property
    def member(self) -> str:
        """The sorted-set member: ``<inverted time>:<user id>``."""
        return f"{INVERTED_TIME_BASE - self.reached_us:017d}:{self.user_id}"


class Mirrored(NamedTuple):
    """What the mirror holds for one entry's user, to compare with the database."""

    state: str | None  # "<version>|<member>" ("" member when hidden), None when absent
    state_member_score: int | float | None  # the score of the member that state names, if ranked
    entry_member_score: int | float | None  # the score of the entry's own member, if ranked


def user_of(member: str) -> str:
    """The user id inside a sorted-set member."""
    return member.split(":", 1)[1]


class Ranking(Protocol):
    """The mirror of one board's ranking."""

    def is_built(self) -> bool:
        """Whether the mirror holds the whole ranking."""

    def reset(self) -> None:
        """Drop the mirror before a rebuild."""

    def mark_built(self) -> None:
        """Record that a rebuild finished."""

    def apply(self, entries: Sequence[RankEntry]) -> int:
        """Upsert entries, each only if newer than what is mirrored; returns how many were applied."""

    def top(self, limit: int) -> list[tuple[str, int]]:
        """The first ``limit`` ``(user_id, score)`` pairs, best first."""

    def compare(self, entries: Sequence[RankEntry]) -> list[Mirrored]:
        """What the mirror holds for each entry's user (reconcile's drift count)."""

    def size(self) -> tuple[int, int]:
        """``(users with a state, ranked members)``."""


APPLY = """
local applied = 0
for i = 1, #ARGV, 5 do
  local uid, score, member, ver, visible = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local cur = redis.call('HGET', KEYS[2], uid)
  local curver, curmember = -1, ''
  if cur then
    local sep = string.find(cur, '|', 1, true)
    curver = tonumber(string.sub(cur, 1, sep - 1))
    curmember = string.sub(cur, sep + 1)
  end
  if ver > curver then
    if curmember ~= '' then redis.call('ZREM', KEYS[1], curmember) end
    if visible == '1' then redis.call('ZADD', KEYS[1], score, member) else member = '' end
    redis.call('HSET', KEYS[2], uid, ver .. '|' .. member)
    applied = applied + 1
  end
end
return applied
"""


class RedisRanking:
    """The ranking as a sorted set plus a hash of per-user states; every write is one Lua script.

    ``board`` names the ranking (the all-time board is ``""``, keyed ``<p>rank``); other boards
    get keys of their own (``<p>rank:<board>``), so each is rebuilt, compared and read alone.
    On a cluster (``client`` a ``RedisCluster``, or ``cluster=True``) a board's keys carry its
    hash tag, so the script's keys share a slot: ``<p>{board}:rank``, ``<p>{board:<name>}:rank``.
    """

    def __init__(self, client, prefix: str, board: str = "", cluster: bool | None = None) -> None:
        self.redis = client
        cluster = on_cluster(client) if cluster is None else cluster
        named = f":{board}" if board else ""
        base = f"{prefix}{board_tag(board)}:rank" if cluster else f"{prefix}rank{named}"
        self.members_key, self.state_key, self.built_key = base, f"{base}:state", f"{base}:built"
        self._apply = client.register_script(APPLY)

    def is_built(self) -> bool:
        """Whether the mirror holds the whole ranking."""
        return bool(self.redis.exists(self.built_key))

    def reset(self) -> None:
        """Drop the mirror before a rebuild."""
        self.redis.delete(self.members_key, self.state_key, self.built_key)

    def mark_built(self) -> None:
        """Record that a rebuild finished."""
        self.redis.set(self.built_key, "1")

    def apply(self, entries: Iterable[RankEntry]) -> int:
        """Upsert entries newer than what is mirrored; returns how many were applied."""
        args: list[object] = []
        for e in entries:
            args += [e.user_id, e.score, e.member, e.version, "1" if e.visible else "0"]
        if not args:
            return 0
        return int(self._apply(keys=[self.members_key, self.state_key], args=args))

    def top(self, limit: int) -> list[tuple[str, int]]:
        """The first ``limit`` ``(user_id, score)`` pairs, best first."""
        rows = self.redis.zrevrange(self.members_key, 0, limit - 1, withscores=True)
        return [(user_of(member), int(score)) for member, score in rows]

    def compare(self, entries: Sequence[RankEntry]) -> list[Mirrored]:
        """What the mirror holds for each entry's user, in two round trips."""
        if not entries:
            return []
        states = self.redis.hmget(self.state_key, [e.user_id for e in entries])
        named = [state.split("|", 1)[1] if state else "" for state in states]
        scores = iter(self.redis.zmscore(self.members_key, [m for m in named if m] + [e.member for e in entries]))
        by_state = [next(scores) if member else None for member in named]
        return [Mirrored(state, score, next(scores)) for state, score in zip(states, by_state, strict=True)]

    def size(self) -> tuple[int, int]:
        """``(users with a state, ranked members)``."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hlen(self.state_key)
            pipe.zcard(self.members_key)
            states, members = pipe.execute()
        return int(states), int(members)


class MemoryRanking:
    """The ranking in a dict, ordered on read the way Redis orders the sorted set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, int] = {}  # member -> score
        self._state: dict[str, tuple[int, str | None]] = {}  # user id -> (version, member or None)
        self._built = False

    def is_built(self) -> bool:
        """Whether the mirror holds the whole ranking."""
        return self._built

    def reset(self) -> None:
        """Drop the mirror before a rebuild."""
        with self._lock:
            self._members, self._state, self._built = {}, {}, False

    def mark_built(self) -> None:
        """Record that a rebuild finished."""
        self._built = True

    def apply(self, entries: Iterable[RankEntry]) -> int:
        """Upsert entries newer than what is mirrored; returns how many were applied."""
        applied = 0
        with self._lock:
            for e in entries:
                version, member = self._state.get(e.user_id, (-1, None))
                if e.version <= version:
                    continue
                self._members.pop(member, None)
                self._state[e.user_id] = (e.version, e.member if e.visible else None)
                if e.visible:
                    self._members[e.member] = e.score
                applied += 1
        return applied

    def top(self, limit: int) -> list[tuple[str, int]]:
        """The first ``limit`` ``(user_id, score)`` pairs, in Redis's ZREVRANGE order."""
        with self._lock:
            best = sorted(self._members.items(), key=lambda item: (item[1], item[0]), reverse=True)[:limit]
        return [(user_of(member), score) for member, score in best]

    def compare(self, entries: Sequence[RankEntry]) -> list[Mirrored]:
        """What the mirror holds for each entry's user."""
        results = []
        with self._lock:
            for e in entries:
                version, member = self._state.get(e.user_id, (None, None))
                state = None if version is None else f"{version}|{member or ''}"
                results.append(Mirrored(state, self._members.get(member), self._members.get(e.member)))
        return results

    def size(self) -> tuple[int, int]:
        """``(users with a state, ranked members)``."""
        with self._lock:
            return len(self._state), len(self._members)
