"""Rate-limit keys and limits (Flask-Limiter; stored in Redis so they hold across processes), and the strategy
that counts a limit string's windows in one round trip."""

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
ONE_TRIP = "fixed-window-one-trip"
_COUNTED = "_scoreboard_windows_counted"
# The limit strings of the settings; the windows of each are counted together.
LIMIT_SETTINGS = ("RATELIMIT_APPLICATION", "RATE_LIMIT_USER", "RATE_LIMIT_LOGIN", "RATE_LIMIT_SERVICE")


# Flask-Limiter's scope of the application limits (the per-IP ones); meta limits have "meta".
APPLICATION_SCOPE = "global"


def _groups_of(strings: tuple[str, ...]) -> dict[RateLimitItem, tuple[RateLimitItem, ...]]:
    """``{first window checked: every window}`` of each limit string with several windows.

    A window found in two of the strings could belong to either: their windows are left out (counted one by one).
    """
    groups, seen = {}, {}
    for text in strings:
        windows = tuple(sorted(parse_many(text), key=lambda w: w.GRANULARITY.seconds)) if text else ()
        for window in windows:
            seen[window] = seen.get(window, 0) + 1
        if len(windows) > 1:
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
    """

    def __init__(self, storage) -> None:
        super().__init__(storage)
        self._script = None
        if type(storage) in (RedisStorage, RedisSentinelStorage):
            self._script = storage.get_connection().register_script(_HIT_WINDOWS)
        self._groups: dict[tuple, dict] = {}

    def _first_of_group(self, item: RateLimitItem, scope: str) -> tuple[RateLimitItem, ...] | None:
        """The windows of the limit string that ``item`` is the first checked of, or None.

        The per-IP limits are Flask-Limiter's application limits (scope ``global``); the others are routes'.
        """
        config = current_app.config
        strings = tuple(config.get(name) or "" for name in LIMIT_SETTINGS)
        groups = self._groups.get(strings)
        if groups is None:
            groups = {APPLICATION_SCOPE: _groups_of(strings[:1]), "routes": _groups_of(strings[1:])}
            self._groups = {strings: groups}
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
        keys = [window.key_for(*identifiers) for window in windows]
        args = [cost]
        for window in windows:
            args += [window.get_expiry(), window.amount]
        counts = self._script(keys=[self.storage.prefixed_key(k) for k in keys], args=args)
        answers = {k: int(c) <= w.amount for k, c, w in zip(keys, counts, windows, strict=False)}
        ok = answers.pop(key)
        if counted is None:
            g.setdefault(_COUNTED, {}).update(answers)
        else:
            counted.update(answers)
        return ok


def install(app: Flask) -> None:
    """Make the one-trip fixed window the limiter's strategy unless ``RATELIMIT_STRATEGY`` names another."""
    STRATEGIES.setdefault(ONE_TRIP, OneTripFixedWindow)
    app.config.setdefault("RATELIMIT_STRATEGY", ONE_TRIP)
