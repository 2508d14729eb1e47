"""The ranking mirror: every visible user's score, ordered as the database orders them.

Every member of the sorted set has score 0, so Redis orders them by member alone, and the
member spells the rank order: ``<score, 19 digits><base minus the time reached, 17 digits>:<user id>``.
Higher scores sort higher, then whoever reached the score first, then the higher user id, the
database's tie order (``board.source``). Ranks, pages after a member (the keyset cursor) and
the neighbours of a user are then each one O(log n) script. Each user's mirrored state carries
the score row's ``version``, so a late or repeated write never replaces a newer state.

Each board also keeps the display names of its ranked users (written by the same mirror path,
from the same rows), and every read script checks the built flag and returns the names of the
users it returns: a read of a board is one round trip to Redis and none to the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from redis.exceptions import NoScriptError
from sortedcontainers import SortedList

from .cluster import board_tag, on_cluster

INVERTED_TIME_BASE = 10**17 - 1
SCORE_DIGITS = 19  # a non-negative 64-bit integer
# The format the mirror was built with (the members' spelling; since "3" also the names beside them): a
# mirror built in another one (an older release's) reads as not built, so the next refresh rebuilds it
# rather than ranking two formats together.
FORMAT = "3"


class RankingNotBuilt(Exception):
    """A board's mirror is not built (being rebuilt, or lost with Redis's data): its ranks would be partial."""

    def __init__(self, board: str) -> None:
        super().__init__(f"the ranking of {board or 'all'} is not built")
        self.board = board


@dataclass(frozen=True, slots=True)
class RankEntry:
    """One user's mirrored state; ``version`` only grows, so older states never overwrite newer."""

    user_id: str
    score: int
    reached_us: int
    version: int
    visible: bool
    name: str | None = None  # the display name, kept beside the ranking while the user is ranked

    @property
    def member(self) -> str:
        """The sorted-set member, whose lexicographic order is rank order (used only when visible)."""
        return f"{self.score:0{SCORE_DIGITS}d}{INVERTED_TIME_BASE - self.reached_us:017d}:{self.user_id}"


class Standing(NamedTuple):
    """One ranked user: ``rank`` is 1-based with no gaps; ``member`` is the keyset cursor after them.

    ``name`` is the display name the mirror holds, None where it holds none (the caller then asks the database).
    """

    rank: int
    user_id: str
    score: int
    member: str
    name: str | None = None


class Mirrored(NamedTuple):
    """What the mirror holds for one entry's user, to compare with the database."""

    state: str | None  # "<version>|<member>" ("" member when hidden), None when absent
    state_member_ranked: bool  # the member that state names is in the ranking
    entry_member_ranked: bool  # the entry's own member (its score, time and user) is in the ranking


def user_of(member: str) -> str:
    """The user id inside a sorted-set member."""
    return member.split(":", 1)[1]


def score_of(member: str) -> int:
    """The score inside a sorted-set member."""
    return int(member[:SCORE_DIGITS])


def standing_of(member: str, rank: int, name: str | None = None) -> Standing:
    """The standing of ``member`` at ``rank``."""
    return Standing(rank, user_of(member), score_of(member), member, name or None)


def run_from(members: Sequence[str], first_rank: int, names: Sequence[str | None] | None = None) -> list[Standing]:
    """Consecutive members, best first, the first at ``first_rank`` (with their names, when given)."""
    names = names if names is not None else [None] * len(members)
    return [
        standing_of(member, rank, name)
        for rank, (member, name) in enumerate(zip(members, names, strict=True), start=first_rank)
    ]


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

    def total(self) -> int:
        """How many users are ranked."""

    def standing(self, user_id: str) -> Standing | None:
        """The user's rank and score; None when not ranked."""

    def standings(self, user_ids: Sequence[str], checked: bool = False) -> dict[str, Standing]:
        """The standings of the ranked users among ``user_ids``; the others are left out.

        With ``checked``, every read here raises :class:`RankingNotBuilt` when the mirror is not built
        (checked in the same call as the read).
        """

    def page(self, after: str | None, limit: int, checked: bool = False) -> tuple[list[Standing], int]:
        """The ``limit`` standings right after the member ``after`` (None: from rank 1), and the total.

        ``after`` need not be ranked any more: the page starts where it would sort.
        """

    def around(self, user_id: str, radius: int, checked: bool = False) -> tuple[Standing | None, list[Standing], int]:
        """The user's standing, those from ``radius`` ranks above to ``radius`` below, and the total.

        ``(None, [], total)`` when the user is not ranked.
        """

    def around_as_if(self, member: str, radius: int, checked: bool = False) -> tuple[Standing, list[Standing], int]:
        """The standing ``member`` would have were it ranked, the ``radius`` standings either side of it, and
        the total counting it (a held user's own view, see ``board.standings``).

        The neighbours below it are ranked one lower than they are, as if it were there; a member that is
        ranked after all gets its real place and total.
        """

    def compare(self, entries: Sequence[RankEntry]) -> list[Mirrored]:
        """What the mirror holds for each entry's user (reconcile's drift count)."""

    def size(self) -> tuple[int, int]:
        """``(users with a state, ranked members)``."""


# KEYS: members, state, names. ARGV: (user id, member, version, visible "1"/"0", display name or "") per entry.
# A ranked user's name is kept beside the member; a hidden one's is dropped with it.
APPLY = """
local applied = 0
for i = 1, #ARGV, 5 do
  local uid, member, ver, visible, name = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4]
  local cur = redis.call('HGET', KEYS[2], uid)
  local curver, curmember = -1, ''
  if cur then
    local sep = string.find(cur, '|', 1, true)
    curver = tonumber(string.sub(cur, 1, sep - 1))
    curmember = string.sub(cur, sep + 1)
  end
  if ver > curver then
    if curmember ~= '' then redis.call('ZREM', KEYS[1], curmember) end
    if visible == '1' then
      redis.call('ZADD', KEYS[1], 0, member)
      if name ~= '' then redis.call('HSET', KEYS[3], uid, name) end
    else
      member = ''
      redis.call('HDEL', KEYS[3], uid)
    end
    redis.call('HSET', KEYS[2], uid, ver .. '|' .. member)
    applied = applied + 1
  end
end
return applied
"""

# Shared by the read scripts. KEYS: members, state, built, names; ARGV[1]: the format the mirror must have been
# built in, or "" to read without checking. Each read answers {0} when the mirror is not built, else 1 first.
READ_HELPERS = """
local function unbuilt()
  return ARGV[1] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[1]
end
local function member_of(uid)
  local cur = redis.call('HGET', KEYS[2], uid)
  if not cur then return false end
  local member = string.sub(cur, string.find(cur, '|', 1, true) + 1)
  if member == '' then return false end
  return member
end
local function name_of(member)
  return redis.call('HGET', KEYS[4], string.sub(member, string.find(member, ':', 1, true) + 1)) or ''
end
local function push_run(reply, members)
  for i = 1, #members do
    reply[#reply + 1] = members[i]
    reply[#reply + 1] = name_of(members[i])
  end
end
if unbuilt() then return {0} end
"""

# ARGV[2..]: user ids. Returns {1, (member, 0-based rank, name) per ranked user...}.
STANDINGS = (
    READ_HELPERS
    + """
local found = {1}
for i = 2, #ARGV do
  local member = member_of(ARGV[i])
  if member then
    local rank = redis.call('ZREVRANK', KEYS[1], member)
    if rank then
      found[#found + 1] = member
      found[#found + 1] = rank
      found[#found + 1] = name_of(member)
    end
  end
end
return found
"""
)

# ARGV[2..4]: "1" and the member to start after, or "0" (from the top); limit.
# Returns {1, total, 0-based rank of the first, (member, name)...}.
PAGE = (
    READ_HELPERS
    + """
local total = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[4])
if limit <= 0 then return {1, total, 0} end
local members
if ARGV[2] == '1' then
  members = redis.call('ZREVRANGEBYLEX', KEYS[1], '(' .. ARGV[3], '-', 'LIMIT', 0, limit)
else
  members = redis.call('ZREVRANGE', KEYS[1], 0, limit - 1)
end
if #members == 0 then return {1, total, 0} end
local reply = {1, total, redis.call('ZREVRANK', KEYS[1], members[1])}
push_run(reply, members)
return reply
"""
)

# ARGV[2..3]: user id, radius (>= 0).
# Returns {1, total} when the user is not ranked, else {1, total, 0-based rank of the user, of the first,
# (member, name)...}.
AROUND = (
    READ_HELPERS
    + """
local total = redis.call('ZCARD', KEYS[1])
local member = member_of(ARGV[2])
if not member then return {1, total} end
local rank = redis.call('ZREVRANK', KEYS[1], member)
if not rank then return {1, total} end
local radius = tonumber(ARGV[3])
local first = math.max(0, rank - radius)
local reply = {1, total, rank, first}
push_run(reply, redis.call('ZREVRANGE', KEYS[1], first, rank + radius))
return reply
"""
)

# ARGV[2..3]: a member (ranked or not), radius (>= 0).
# Returns {1, total, members sorting above it, 1 if it is ranked else 0, how many above follow, those above (nearest
# first), then those below (nearest first), each (member, name)}: each read is O(log n) plus the members returned.
AROUND_AS_IF = (
    READ_HELPERS
    + """
local total = redis.call('ZCARD', KEYS[1])
local member, radius = ARGV[2], tonumber(ARGV[3])
local above = redis.call('ZLEXCOUNT', KEYS[1], '(' .. member, '+')
local ranked = redis.call('ZSCORE', KEYS[1], member) and 1 or 0
local up, down = {}, {}
if radius > 0 then
  up = redis.call('ZRANGEBYLEX', KEYS[1], '(' .. member, '+', 'LIMIT', 0, radius)
  down = redis.call('ZREVRANGEBYLEX', KEYS[1], '(' .. member, '-', 'LIMIT', 0, radius)
end
local reply = {1, total, above, ranked, #up}
push_run(reply, up)
push_run(reply, down)
return reply
"""
)


def _pairs(flat: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(members, names)`` of a script's flat ``member, name, member, name ...`` run."""
    return list(flat[::2]), list(flat[1::2])


def as_if(
    member: str,
    total: int,
    above: int,
    ranked: bool,
    up: Sequence[str],
    down: Sequence[str],
    up_names: Sequence[str | None] | None = None,
    down_names: Sequence[str | None] | None = None,
) -> tuple[Standing, list[Standing], int]:
    """:meth:`Ranking.around_as_if`'s answer from what either adapter read: ``up`` and ``down`` nearest first."""
    rank = above + 1
    me = standing_of(member, rank)
    up_names = list(up_names) if up_names is not None else [None] * len(up)
    down_names = list(down_names) if down_names is not None else [None] * len(down)
    near = [
        *run_from(list(reversed(up)), rank - len(up), list(reversed(up_names))),
        me,
        *run_from(list(down), rank + 1, down_names),
    ]
    return me, near, total + (0 if ranked else 1)


class RedisRanking:
    """The ranking as a sorted set plus a hash of per-user states and one of names; every write and read is one call.

    ``board`` names the ranking (the all-time board is ``""``, keyed ``<p>rank``); other boards
    (a period's key, such as ``day:2026-12-02``) get keys of their own (``<p>rank:<board>``), so
    each is rebuilt, compared and read alone. On a cluster (``client`` a ``RedisCluster``, or
    ``cluster=True``) a board's keys carry its hash tag, so the scripts' keys share a slot:
    ``<p>{board}:rank``, ``<p>{board:<name>}:rank``.
    """

    def __init__(self, client, prefix: str, board: str = "", cluster: bool | None = None) -> None:
        self.redis = client
        self.board = board
        cluster = on_cluster(client) if cluster is None else cluster
        named = f":{board}" if board else ""
        base = f"{prefix}{board_tag(board)}:rank" if cluster else f"{prefix}rank{named}"
        self.members_key, self.state_key, self.built_key = base, f"{base}:state", f"{base}:built"
        self.names_key = f"{base}:names"
        self._keys = [self.members_key, self.state_key, self.built_key, self.names_key]
        self._apply_keys = [self.members_key, self.state_key, self.names_key]
        self._apply = client.register_script(APPLY)
        self._standings = client.register_script(STANDINGS)
        self._page = client.register_script(PAGE)
        self._around = client.register_script(AROUND)
        self._around_as_if = client.register_script(AROUND_AS_IF)

    def _read(self, script, checked: bool, args: list) -> list:
        """Run a read script; its reply without the leading 1, or :class:`RankingNotBuilt`."""
        reply = script(keys=self._keys, args=[FORMAT if checked else "", *args])
        if not int(reply[0]):
            raise RankingNotBuilt(self.board)
        return reply[1:]

    def is_built(self) -> bool:
        """Whether the mirror holds the whole ranking, in this release's format."""
        return self.redis.get(self.built_key) == FORMAT

    def reset(self) -> None:
        """Drop the mirror before a rebuild."""
        self.redis.delete(self.members_key, self.state_key, self.built_key, self.names_key)

    def mark_built(self) -> None:
        """Record that a rebuild finished."""
        self.redis.set(self.built_key, FORMAT)

    @staticmethod
    def apply_args(entries: Iterable[RankEntry]) -> list[object]:
        """The apply script's arguments for ``entries``."""
        args: list[object] = []
        for e in entries:
            args += [e.user_id, e.member if e.visible else "", e.version, "1" if e.visible else "0", e.name or ""]
        return args

    def apply(self, entries: Iterable[RankEntry]) -> int:
        """Upsert entries newer than what is mirrored; returns how many were applied."""
        args = self.apply_args(entries)
        if not args:
            return 0
        return int(self._apply(keys=self._apply_keys, args=args))

    def top(self, limit: int) -> list[tuple[str, int]]:
        """The first ``limit`` ``(user_id, score)`` pairs, best first."""
        if limit <= 0:
            return []
        return [(user_of(member), score_of(member)) for member in self.redis.zrevrange(self.members_key, 0, limit - 1)]

    def total(self) -> int:
        """How many users are ranked."""
        return int(self.redis.zcard(self.members_key))

    def standing(self, user_id: str) -> Standing | None:
        """The user's rank and score; None when not ranked."""
        return self.standings([user_id]).get(user_id)

    def standings(self, user_ids: Sequence[str], checked: bool = False) -> dict[str, Standing]:
        """The standings of the ranked users among ``user_ids``, in one script."""
        if not user_ids:
            if checked and not self.is_built():
                raise RankingNotBuilt(self.board)
            return {}
        flat = self._read(self._standings, checked, list(user_ids))
        found = (
            standing_of(member, int(rank) + 1, name)
            for member, rank, name in zip(flat[::3], flat[1::3], flat[2::3], strict=True)
        )
        return {s.user_id: s for s in found}

    def page(self, after: str | None, limit: int, checked: bool = False) -> tuple[list[Standing], int]:
        """The ``limit`` standings right after the member ``after`` (None: from rank 1), and the total."""
        args = ["0", "", limit] if after is None else ["1", after, limit]
        total, first, *run = self._read(self._page, checked, args)
        members, names = _pairs(run)
        return run_from(members, int(first) + 1, names), int(total)

    def around(self, user_id: str, radius: int, checked: bool = False) -> tuple[Standing | None, list[Standing], int]:
        """The user's standing, those within ``radius`` ranks of it, and the total; one script."""
        total, *found = self._read(self._around, checked, [user_id, max(0, radius)])
        if not found:
            return None, [], int(total)
        rank, first, *run = found
        members, names = _pairs(run)
        near = run_from(members, int(first) + 1, names)
        return near[int(rank) - int(first)], near, int(total)

    def around_as_if(self, member: str, radius: int, checked: bool = False) -> tuple[Standing, list[Standing], int]:
        """Where ``member`` would rank, its neighbours as if it were there, and the total counting it; one script."""
        total, above, ranked, count, *run = self._read(self._around_as_if, checked, [member, max(0, radius)])
        members, names = _pairs(run)
        up, down = members[: int(count)], members[int(count) :]
        up_names, down_names = names[: int(count)], names[int(count) :]
        return as_if(member, int(total), int(above), bool(int(ranked)), up, down, up_names, down_names)

    def compare(self, entries: Sequence[RankEntry]) -> list[Mirrored]:
        """What the mirror holds for each entry's user, in two round trips."""
        if not entries:
            return []
        states = self.redis.hmget(self.state_key, [e.user_id for e in entries])
        named = [state.split("|", 1)[1] if state else "" for state in states]
        # Every member's score is 0: ZMSCORE says only whether each member is there.
        scores = iter(self.redis.zmscore(self.members_key, [m for m in named if m] + [e.member for e in entries]))
        by_state = [member != "" and next(scores) is not None for member in named]
        return [
            Mirrored(state, ranked, next(scores) is not None) for state, ranked in zip(states, by_state, strict=True)
        ]

    def size(self) -> tuple[int, int]:
        """``(users with a state, ranked members)``."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hlen(self.state_key)
            pipe.zcard(self.members_key)
            states, members = pipe.execute()
        return int(states), int(members)


def run_scripts(client, calls: Sequence[tuple]) -> list:
    """Run several registered scripts (``(script, keys, args)`` each) in one round trip where the client allows it.

    A plain Redis runs them as one pipeline of ``EVALSHA`` (not the client's script pipeline, which asks
    ``SCRIPT EXISTS`` first, a round trip of its own); a script Redis does not know yet (a restarted Redis) is
    then run alone, which loads it. A cluster runs them one by one: their keys are in different slots.
    Not atomic together: each script is atomic on its own, as it is when called alone.
    """
    if len(calls) <= 1 or on_cluster(client):
        return [script(keys=keys, args=args) for script, keys, args in calls]
    with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        replies = pipe.execute(raise_on_error=False)
    for i, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            script, keys, args = calls[i]
            replies[i] = script(keys=keys, args=args)
        elif isinstance(reply, Exception):
            raise reply
    return replies


def _one_redis(rankings: Sequence[Ranking]):
    """The client every ranking shares when they are all on one Redis, else None (each is then asked alone)."""
    clients = {id(r.redis): r.redis for r in rankings if isinstance(r, RedisRanking)}
    if len(clients) != 1 or len(rankings) != sum(isinstance(r, RedisRanking) for r in rankings):
        return None
    return next(iter(clients.values()))


def built_flags(rankings: Sequence[Ranking]) -> list[bool]:
    """:meth:`Ranking.is_built` of several boards, in one round trip when they share a Redis."""
    client = _one_redis(rankings)
    if client is None or len(rankings) <= 1:
        return [r.is_built() for r in rankings]
    with client.pipeline(transaction=False) as pipe:
        for ranking in rankings:
            pipe.get(ranking.built_key)
        return [found == FORMAT for found in pipe.execute()]


def apply_each(batches: Sequence[tuple[Ranking, Sequence[RankEntry]]]) -> list[int]:
    """:meth:`Ranking.apply` of several boards' entries, in one round trip when they share a Redis."""
    batches = [(ranking, entries) for ranking, entries in batches if entries]
    client = _one_redis([ranking for ranking, _ in batches])
    if client is None:
        return [ranking.apply(entries) for ranking, entries in batches]
    calls = [(ranking._apply, ranking._apply_keys, ranking.apply_args(entries)) for ranking, entries in batches]
    return [int(applied) for applied in run_scripts(client, calls)]


def tops(rankings: Sequence[Ranking], limit: int) -> list[list[Standing]]:
    """The first ``limit`` standings of several boards, with the names the mirror keeps beside them, in one round
    trip when they share a Redis (a standing whose name the mirror lacks has ``name`` None)."""
    client = _one_redis(rankings)
    if client is None or limit <= 0:
        return [r.page(None, limit)[0] if limit > 0 else [] for r in rankings]
    calls = [(r._page, r._keys, ["", "0", "", limit]) for r in rankings]
    found = []
    for reply in run_scripts(client, calls):
        _total, first, *run = reply[1:]
        members, names = _pairs(run)
        found.append(run_from(members, int(first) + 1, names))
    return found


class MemoryRanking:
    """The ranking in a ``SortedList`` of the same members, so ranks and pages are O(log n) as on Redis.

    The list ascends, as Redis stores a sorted set; rank order is its reverse (rank 1 is the last).
    """

    def __init__(self, board: str = "") -> None:
        self.board = board
        self._lock = threading.Lock()
        self._members: SortedList = SortedList()
        self._state: dict[str, tuple[int, str | None]] = {}  # user id -> (version, member or None)
        self._names: dict[str, str] = {}  # ranked user id -> display name
        self._built = False

    def _check(self, checked: bool) -> None:
        if checked and not self._built:
            raise RankingNotBuilt(self.board)

    def _name(self, member: str) -> str | None:
        return self._names.get(user_of(member))

    def is_built(self) -> bool:
        """Whether the mirror holds the whole ranking."""
        return self._built

    def reset(self) -> None:
        """Drop the mirror before a rebuild."""
        with self._lock:
            self._members, self._state, self._names, self._built = SortedList(), {}, {}, False

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
                if member is not None:
                    self._members.discard(member)
                self._state[e.user_id] = (e.version, e.member if e.visible else None)
                if e.visible:
                    self._members.add(e.member)
                    if e.name:
                        self._names[e.user_id] = e.name
                else:
                    self._names.pop(e.user_id, None)
                applied += 1
        return applied

    def _rank(self, member: str | None) -> int | None:
        """The 1-based rank of ``member``, None when not ranked; under the lock."""
        if member is None:
            return None
        index = self._members.bisect_left(member)
        if index == len(self._members) or self._members[index] != member:
            return None
        return len(self._members) - index

    def _run(self, first_rank: int, last_rank: int) -> list[Standing]:
        """The standings from ``first_rank`` to ``last_rank`` (clipped to the ranking); under the lock."""
        count = len(self._members)
        first_rank, last_rank = max(1, first_rank), min(count, last_rank)
        if first_rank > last_rank:
            return []
        members = list(self._members.islice(count - last_rank, count - first_rank + 1, reverse=True))
        return run_from(members, first_rank, [self._name(m) for m in members])

    def top(self, limit: int) -> list[tuple[str, int]]:
        """The first ``limit`` ``(user_id, score)`` pairs, best first."""
        with self._lock:
            run = self._run(1, limit)
        return [(s.user_id, s.score) for s in run]

    def total(self) -> int:
        """How many users are ranked."""
        return len(self._members)

    def standing(self, user_id: str) -> Standing | None:
        """The user's rank and score; None when not ranked."""
        return self.standings([user_id]).get(user_id)

    def standings(self, user_ids: Sequence[str], checked: bool = False) -> dict[str, Standing]:
        """The standings of the ranked users among ``user_ids``."""
        found = {}
        with self._lock:
            self._check(checked)
            for user_id in user_ids:
                member = self._state.get(user_id, (0, None))[1]
                rank = self._rank(member)
                if rank is not None:
                    found[user_id] = standing_of(member, rank, self._name(member))
        return found

    def page(self, after: str | None, limit: int, checked: bool = False) -> tuple[list[Standing], int]:
        """The ``limit`` standings right after the member ``after`` (None: from rank 1), and the total."""
        with self._lock:
            self._check(checked)
            count = len(self._members)
            # Those after `after` in rank order are the members below it: the first `below` of the list.
            below = count if after is None else self._members.bisect_left(after)
            first_rank = count - below + 1
            return self._run(first_rank, first_rank + limit - 1), count

    def around(self, user_id: str, radius: int, checked: bool = False) -> tuple[Standing | None, list[Standing], int]:
        """The user's standing, those within ``radius`` ranks of it, and the total."""
        radius = max(0, radius)
        with self._lock:
            self._check(checked)
            count = len(self._members)
            member = self._state.get(user_id, (0, None))[1]
            rank = self._rank(member)
            if rank is None:
                return None, [], count
            return standing_of(member, rank, self._name(member)), self._run(rank - radius, rank + radius), count

    def around_as_if(self, member: str, radius: int, checked: bool = False) -> tuple[Standing, list[Standing], int]:
        """Where ``member`` would rank, its neighbours as if it were there, and the total counting it."""
        radius = max(0, radius)
        with self._lock:
            self._check(checked)
            members = self._members
            low, high = members.bisect_left(member), members.bisect_right(member)
            up = list(members.islice(high, high + radius))  # ascending: nearest above first
            down = list(members.islice(max(0, low - radius), low, reverse=True))  # nearest below first
            names_up, names_down = [self._name(m) for m in up], [self._name(m) for m in down]
            return as_if(member, len(members), len(members) - high, high > low, up, down, names_up, names_down)

    def compare(self, entries: Sequence[RankEntry]) -> list[Mirrored]:
        """What the mirror holds for each entry's user."""
        results = []
        with self._lock:
            for e in entries:
                version, member = self._state.get(e.user_id, (None, None))
                state = None if version is None else f"{version}|{member or ''}"
                results.append(
                    Mirrored(state, member is not None and member in self._members, e.member in self._members)
                )
        return results

    def size(self) -> tuple[int, int]:
        """``(users with a state, ranked members)``."""
        with self._lock:
            return len(self._state), len(self._members)
