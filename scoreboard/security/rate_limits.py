"""Rate-limit keys and limits (Flask-Limiter; stored in Redis so they hold across processes), and the strategy
that counts a limit string's windows in one round trip, and a busy caller's hits a share of a window at a time."""

from __future__ import annotations

import math
import threading
import time

from flask import Flask, current_app, g, has_request_context
from flask_jwt_extended import get_jwt_identity
from limits import RateLimitItem, parse_many
from limits.storage import RedisSentinelStorage, RedisStorage
from limits.strategies import STRATEGIES, FixedWindowRateLimiter


def user_key() -> str:
    """Limit by the verified JWT ``sub`` (the view has verified the token already)."""
    return f"user:{get_jwt_identity()}"


def user_limit() -> str:
    """The per-user limit on claims, e.g. ``10/second;300/minute;5000/hour``."""
    return current_app.config["RATE_LIMIT_USER"]


def service_limit() -> str:
    """The per-caller limit on recording completions (a site backend records for many users)."""
    return current_app.config["RATE_LIMIT_SERVICE"]


def login_limit() -> str:
    """The per-IP limit on password logins."""
    return current_app.config["RATE_LIMIT_LOGIN"]


# Every window of one limit string in one round trip: each window's counter as limits' fixed window keeps it
# (INCRBY, and EXPIRE when the counter is new), in the order Flask-Limiter checks them, stopping at the first
# one breached as Flask-Limiter does.
_HIT_WINDOWS = """
local cost = tonumber(ARGV[1])
local counts = {}
for i, key in ipairs(KEYS) do
    local current = redis.call("incrby", key, cost)
    if current == cost then
        redis.call("expire", key, ARGV[2 * i])
    end
    counts[i] = current
    if current > tonumber(ARGV[2 * i + 1]) then
        break
    end
end
return counts
"""
# A lease: ``ARGV[1]`` hits reserved at once in every window of a limit string (as many as each still admits),
# for one process to admit one by one with no round trip. Each window gets INCRBY of what is still to reserve
# (EXPIRE when new); a window that admits only part keeps part; the earlier windows give back what a later
# one refused, and a refused request stays counted once in every window it was counted in, as one hit is.
# Returns the hits reserved (0: refused), the least time left (ms) in any window counted, and the counts.
_LEASE_WINDOWS = """
local take = tonumber(ARGV[1])
local applied, counts, counted = {}, {}, 0
for i, key in ipairs(KEYS) do
    local current = redis.call("incrby", key, take)
    if current == take then
        redis.call("expire", key, ARGV[2 * i])
    end
    counted, applied[i], counts[i] = i, take, current
    local over = current - tonumber(ARGV[2 * i + 1])
    if over > 0 then
        take = math.max(0, take - over)
        if take == 0 then
            break
        end
    end
end
local keep = math.max(take, 1)
local left = -1
for i = 1, counted do
    if applied[i] > keep then
        counts[i] = redis.call("decrby", KEYS[i], applied[i] - keep)
    end
    local ttl = redis.call("pttl", KEYS[i])
    if ttl >= 0 and (left < 0 or ttl < left) then
        left = ttl
    end
end
return {take, left, unpack(counts)}
"""
ONE_TRIP = "fixed-window-one-trip"
# Past this many keys holding leases, the lapsed ones are dropped (and, should half still be live, every one).
MAX_LEASES = 4096
_COUNTED = "_scoreboard_windows_counted"
# The limit strings of the settings; the windows of each are counted together.
LIMIT_SETTINGS = ("RATELIMIT_APPLICATION", "RATE_LIMIT_USER", "RATE_LIMIT_LOGIN", "RATE_LIMIT_SERVICE")


# Flask-Limiter's scope of the application limits (the per-IP ones); meta limits have "meta".
APPLICATION_SCOPE = "global"


def _groups_of(strings: tuple[str, ...]) -> dict[RateLimitItem, tuple[RateLimitItem, ...]]:
    """``{first window checked: every window}`` of each limit string (one window is a group of one: it may lease).

    A window found in two of the strings could belong to either: their windows are left out (counted one by one).
    """
    groups, seen = {}, {}
    for text in strings:
        windows = tuple(sorted(parse_many(text), key=lambda w: w.GRANULARITY.seconds)) if text else ()
        for window in windows:
            seen[window] = seen.get(window, 0) + 1
        if windows:
            groups[windows[0]] = windows
    return {first: windows for first, windows in groups.items() if all(seen[w] == 1 for w in windows)}


class OneTripFixedWindow(FixedWindowRateLimiter):
    """limits' fixed window, with all the windows of a limit string (``50/second;2000/minute``) counted in one
    Redis script instead of one round trip each.

    Flask-Limiter checks a request's windows one by one, shortest first. At the first window of a limit
    string, this counts every window of the string for the same caller and scope in one script and keeps
    the answers in the request's ``g``; Flask-Limiter's next checks take theirs from there. The counters are
    limits' own (same keys, same expiry), so the totals across processes are exactly those of the fixed
    window, and a limit string's windows stop counting at the first one breached, as Flask-Limiter stops.
    Anything else (the in-memory fallback, Redis Cluster, whose keys lie in different slots, a window
    shared by two limit strings) is counted window by window, as limits does.

    A busy caller's hits are leased (``RATE_LIMIT_LEASE_SHARE``, see :func:`lease_size`): one script reserves
    a share of the limit string's windows at once, and this process admits the caller's next hits from it
    with no round trip (a counter under a lock), until it is used or the first of its windows' counters
    expires; the hits after that belong to the next window. Every hit admitted was counted in Redis first,
    so the processes together never admit more than the limit; with P processes they may admit up to about
    P x share fewer (hits leased and unused when a window ends), so with many processes the share should be
    lowered (<= 0.05 / P). With the default per-IP and per-user limits the lease is one hit: every hit goes
    to Redis as before; the site backend's ``500/second`` (10) and a busy IP's raised limits are asked once
    a lease. Refusals are not leased: each asks Redis and counts once, as one hit does. Only hits of cost 1
    lease; a Redis error while reserving propagates as before (Flask-Limiter's in-memory fallback).
    """

    def __init__(self, storage) -> None:
        super().__init__(storage)
        self._script = self._lease_script = None
        if type(storage) in (RedisStorage, RedisSentinelStorage):
            self._script = storage.get_connection().register_script(_HIT_WINDOWS)
            self._lease_script = storage.get_connection().register_script(_LEASE_WINDOWS)
        self._groups: dict[tuple, dict] = {}
        self._chunks: dict[tuple[RateLimitItem, ...], int] = {}  # each group's lease (1: none), with _groups
        # The first window's key -> [hits still to admit, until (monotonic)]: this process's leases.
        self._leases: dict[str, list] = {}
        self._gates: dict[str, threading.Lock] = {}  # per key: held while a reservation is in flight
        self._leases_lock = threading.Lock()

    def _first_of_group(self, item: RateLimitItem, scope: str) -> tuple[RateLimitItem, ...] | None:
        """The windows of the limit string that ``item`` is the first checked of, or None.

        The per-IP limits are Flask-Limiter's application limits (scope ``global``); the others are routes'.
        """
        config = current_app.config
        strings = (*(config.get(name) or "" for name in LIMIT_SETTINGS), config.get("RATE_LIMIT_LEASE_SHARE", 0))
        groups = self._groups.get(strings)
        if groups is None:
            groups = {APPLICATION_SCOPE: _groups_of(strings[:1]), "routes": _groups_of(strings[1:-1])}
            # The leases before the groups: a thread that finds these groups finds their leases.
            self._chunks = {w: lease_size(w, strings[-1]) for part in groups.values() for w in part.values()}
            self._groups = {strings: groups}
            with self._leases_lock:  # a lease is keyed by its first window: it was of the old strings' group
                self._leases.clear()
        if scope == APPLICATION_SCOPE:
            return groups[APPLICATION_SCOPE].get(item)
        return None if scope == "meta" else groups["routes"].get(item)

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Consume ``cost`` of ``item``'s window; see the class."""
        if self._script is None or not has_request_context():
            return super().hit(item, *identifiers, cost=cost)
        key = item.key_for(*identifiers)
        counted = g.get(_COUNTED)
        if counted is not None and key in counted:
            return counted.pop(key)
        windows = self._first_of_group(item, identifiers[-1] if identifiers else "")
        if windows is None:
            return super().hit(item, *identifiers, cost=cost)
        chunk = self._chunks.get(windows, 1) if cost == 1 else 1
        if chunk == 1 and len(windows) == 1:
            return super().hit(item, *identifiers, cost=cost)
        keys = [window.key_for(*identifiers) for window in windows]
        if chunk > 1:
            answers = self._leased(keys, windows, chunk)
        else:
            counts = self._script(keys=[self.storage.prefixed_key(k) for k in keys], args=_script_args(cost, windows))
            answers = {k: int(c) <= w.amount for k, c, w in zip(keys, counts, windows, strict=False)}
        ok = answers.pop(key)
        if counted is None:
            g.setdefault(_COUNTED, {}).update(answers)
        else:
            counted.update(answers)
        return ok

    def _leased(self, keys: list[str], windows: tuple[RateLimitItem, ...], chunk: int) -> dict[str, bool]:
        """One hit on a limit string's windows from this process's lease, reserving ``chunk`` more in Redis
        when the lease is used up or its window has ended; the answer of each window counted.

        One reservation per caller is in flight in a process at a time: the requests arriving meanwhile wait
        for it and take from it, so a process never holds more than one lease's leftover per caller.
        """
        taken = self._take(keys[0])
        if taken is True:
            return dict.fromkeys(keys, True)
        with taken:
            if self._take(keys[0]) is True:  # reserved by the request this one waited for
                return dict.fromkeys(keys, True)
            asked = time.monotonic()  # the windows' time left is as of after this: the lease ends no later
            reserved, left_ms, *counts = self._lease_script(
                keys=[self.storage.prefixed_key(k) for k in keys], args=_script_args(chunk, windows)
            )
            reserved = int(reserved)
            if reserved > 1 and int(left_ms) > 0:
                with self._leases_lock:
                    self._leases[keys[0]] = [reserved - 1, asked + int(left_ms) / 1000]
        if reserved:
            return dict.fromkeys(keys, True)
        # Refused at the last window counted; those before it admitted the hit (and count it), as one by one.
        answers = dict.fromkeys(keys[: len(counts) - 1], True)
        answers[keys[len(counts) - 1]] = False
        return answers

    def _take(self, key: str) -> bool | threading.Lock:
        """True if a hit was taken from this process's lease on ``key``; else the lock to reserve under."""
        now = time.monotonic()
        with self._leases_lock:
            lease = self._leases.get(key)
            if lease is not None and lease[0] > 0 and lease[1] > now:
                lease[0] -= 1
                return True
            gate = self._gates.get(key)
            if gate is None:
                if len(self._gates) >= MAX_LEASES:
                    self._drop_lapsed(now)
                gate = self._gates[key] = threading.Lock()
            return gate

    def _drop_lapsed(self, now: float) -> None:
        """Forget the leases used up or past their window; should the live ones still fill the table, forget them
        too (their unused hits stay counted and go unadmitted: never more than the limit). Under the lock."""
        live = {k for k, (left, until) in self._leases.items() if left > 0 and until > now}
        if len(live) >= MAX_LEASES // 2:
            live = set()
        self._leases = {k: self._leases[k] for k in live}
        # A gate held is a reservation in flight: its holder has it still, so only the live ones must stay.
        self._gates = {k: gate for k, gate in self._gates.items() if k in live or gate.locked()}


def _script_args(hits: int, windows: tuple[RateLimitItem, ...]) -> list[int]:
    """Both scripts' arguments: the hits to count, then each window's expiry and amount."""
    args = [hits]
    for window in windows:
        args += [window.get_expiry(), window.amount]
    return args


def lease_size(windows: tuple[RateLimitItem, ...], share: float) -> int:
    """Hits a process reserves at once on a limit string: ``share`` of what each window allows in the time of the
    smallest (``10000/second;600000/minute``: 2% of 10,000), at least 1 (1: no lease).

    Every hit admitted was reserved in Redis first, so the processes together never admit more than the limit.
    What a lease holds unused when the smallest window ends was counted and never admitted: up to lease - 1 per
    process at each end of the smallest window, in every window of the string. A longer window sees as many of
    those ends as it is longer, hence the share of its allowance per smallest window, not of its whole amount
    (``500/second;30000/minute;100000/hour`` leases 1, not 10: the hour allows ~28 a second). So with P
    processes they admit at most about P x share fewer than any window's limit; ``share`` <= 0.05 / P keeps
    that within 5%.
    """
    if share <= 0 or not windows:
        return 1
    smallest = min(window.get_expiry() for window in windows)
    allowance = min(window.amount * smallest / window.get_expiry() for window in windows)
    return max(1, math.floor(share * allowance + 1e-9))


def install(app: Flask) -> None:
    """Make the one-trip fixed window the limiter's strategy unless ``RATELIMIT_STRATEGY`` names another."""
    STRATEGIES.setdefault(ONE_TRIP, OneTripFixedWindow)
    app.config.setdefault("RATELIMIT_STRATEGY", ONE_TRIP)
