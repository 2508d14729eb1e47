"""The boards' periods: all time, and each day, ISO week (from Monday) and month, in one time zone.

A period is named by a key: ``all``, ``day:2026-12-02``, ``week:2026-W49``, ``month:2026-12``.
The all-time board lives in ``scores``; every other period's in ``period_scores`` under its key,
and in a ranking store of its own (``stores.ranking_for(key)``). Boundaries are midnights in
``SCOREBOARD_PERIOD_TZ`` (UTC by default). What time it is comes from :func:`clock`, which tests
replace (app config ``CLOCK``) to cross a midnight without waiting for one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context

ALL = "all"
DAY = "day"
WEEK = "week"
MONTH = "month"
KINDS = (ALL, DAY, WEEK, MONTH)
TIMED = (DAY, WEEK, MONTH)  # the kinds that roll over; a claim counts in the current one of each


class UnknownPeriod(ValueError):
    """A period kind, key or date that names no period."""


@dataclass(frozen=True, slots=True)
class Period:
    """One board's period: its kind, its key, and for timed kinds the instants it spans (``[start, end)``)."""

    kind: str
    key: str
    start: datetime | None = None
    end: datetime | None = None

    @property
    def board(self) -> str:
        """The ranking store's name for this period (the all-time board's is ``""``)."""
        return "" if self.kind == ALL else self.key

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` falls inside this period."""
        return self.kind == ALL or (self.start <= moment < self.end)

    def to_dict(self) -> dict[str, str | None]:
        """The API's description of the period."""
        return {
            "period": self.kind,
            "key": self.key,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }


ALL_TIME = Period(ALL, ALL)


def timezone() -> ZoneInfo:
    """The zone whose midnights bound the periods (``SCOREBOARD_PERIOD_TZ``)."""
    name = current_app.config["PERIOD_TZ"] if has_app_context() else "UTC"
    return ZoneInfo(name)


def clock() -> datetime:
    """Now, in UTC: the app's ``CLOCK`` when one is set (tests), else the system clock."""
    fake: Callable[[], datetime] | None = current_app.config.get("CLOCK") if has_app_context() else None
    return fake() if fake is not None else datetime.now(UTC)


def _first_day(kind: str, day: date) -> date:
    if kind == DAY:
        return day
    if kind == WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_first_day(kind: str, first: date) -> date:
    if kind == DAY:
        return first + timedelta(days=1)
    if kind == WEEK:
        return first + timedelta(days=7)
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def _key(kind: str, first: date) -> str:
    if kind == DAY:
        return f"day:{first.isoformat()}"
    if kind == WEEK:
        year, week, _ = first.isocalendar()
        return f"week:{year}-W{week:02d}"
    return f"month:{first:%Y-%m}"


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def period_of(kind: str, day: date, zone: ZoneInfo | None = None) -> Period:
    """The period of ``kind`` that holds the calendar day ``day`` (in the periods' zone)."""
    if kind == ALL:
        return ALL_TIME
    if kind not in TIMED:
        raise UnknownPeriod(f"unknown period {kind!r}; one of {', '.join(KINDS)}")
    zone = zone or timezone()
    first = _first_day(kind, day)
    return Period(kind, _key(kind, first), _midnight(first, zone), _midnight(_next_first_day(kind, first), zone))


def period_at(kind: str, moment: datetime, zone: ZoneInfo | None = None) -> Period:
    """The period of ``kind`` that holds the instant ``moment``."""
    zone = zone or timezone()
    return period_of(kind, moment.astimezone(zone).date(), zone)


def current_periods(moment: datetime | None = None) -> list[Period]:
    """The timed periods running at ``moment`` (default now): today, this week, this month."""
    moment = moment or clock()
    zone = timezone()
    return [period_at(kind, moment, zone) for kind in TIMED]


def resolve(kind: str | None, at: str | None = None) -> Period:
    """The period a request names: ``period`` (default ``all``) and, for a past one, ``at`` (an ISO date in it).

    Raises :class:`UnknownPeriod` for an unknown kind, a malformed date, ``at`` with ``all``, a date
    in the future, or a period older than those kept (``SCOREBOARD_PERIODS_KEPT``).
    """
    kind = kind or ALL
    if kind not in KINDS:
        raise UnknownPeriod(f"unknown period {kind!r}; one of {', '.join(KINDS)}")
    if kind == ALL:
        if at:
            raise UnknownPeriod("the all-time board has no date: leave out 'at'")
        return ALL_TIME
    now = period_at(kind, clock())
    if not at:
        return now
    try:
        day = date.fromisoformat(at)
    except ValueError:
        raise UnknownPeriod(f"'at' must be an ISO date (YYYY-MM-DD), not {at!r}") from None
    period = period_of(kind, day)
    if period.start > now.start:
        raise UnknownPeriod(f"{period.key} has not started yet")
    if period.key not in {p.key for p in kept(kind)}:
        raise UnknownPeriod(f"{period.key} is older than the periods kept")
    return period


def kept(kind: str, moment: datetime | None = None) -> list[Period]:
    """The periods of ``kind`` still kept at ``moment``, newest (the current one) first."""
    moment = moment or clock()
    zone = timezone()
    count = current_app.config["PERIODS_KEPT"][kind] if has_app_context() else 1
    period = period_at(kind, moment, zone)
    found = [period]
    while len(found) < count:
        period = period_at(kind, period.start - timedelta(microseconds=1), zone)
        found.append(period)
    return found


def all_kept(moment: datetime | None = None) -> Iterator[Period]:
    """Every timed period still kept: what a rebuild reloads and the retention job spares."""
    for kind in TIMED:
        yield from kept(kind, moment)


def dropped(moment: datetime | None = None, depth: int = 60) -> Iterator[Period]:
    """The ``depth`` periods of each kind just older than those kept: what the retention job deletes.

    It runs hourly, so only the newest of them still has rows, unless it was stopped for a while.
    """
    for kind in TIMED:
        period = kept(kind, moment)[-1]
        for _ in range(depth):
            period = period_at(kind, period.start - timedelta(microseconds=1))
            yield period


def from_key(key: str) -> Period:
    """The period a key names (``day:2026-12-02`` ...); raises :class:`UnknownPeriod` for anything else."""
    if key == ALL:
        return ALL_TIME
    kind, _, rest = key.partition(":")
    try:
        if kind == DAY:
            day = date.fromisoformat(rest)
        elif kind == WEEK:
            year, week = rest.split("-W")
            day = date.fromisocalendar(int(year), int(week), 1)
        elif kind == MONTH:
            day = date.fromisoformat(f"{rest}-01")
        else:
            raise ValueError(kind)
    except ValueError:
        raise UnknownPeriod(f"no period is named {key!r}") from None
    period = period_of(kind, day)
    if period.key != key:
        raise UnknownPeriod(f"no period is named {key!r}")
    return period
