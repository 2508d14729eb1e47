"""A simulated ledger: ordinary people and five kinds of automated players, on the default catalog.

Everything is drawn from one ``numpy`` generator seeded by the caller, so a seed is a population.
Times are seconds since 1970 (UTC). A completion is *recorded* at ``created`` and claimed
``delay`` seconds later (``inf``: never claimed); the writer (``bench.anomalies.load``) turns the
delays into the ledger's statuses against the completions' time to live and the end of the window.

People (docs/anomalies.md, "The simulated population"): a time zone and a waking day each; a
few sessions a day of a few claims, with human gaps (a log-normal around a minute or two of
their own, the odd quick double claim); delays from seconds to most of an hour; one to three
addresses (a few travellers more), one or two browsers; a taste for some actions, the daily
login when they come back, rarely at a cap; the occasional refused claim (a double click, an
expired link). Automated players are built so that each departs from people on one or two
traits only and looks human on the rest.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CATALOG = json.loads((ROOT / "scoreboard" / "default_catalog.json").read_text())
KEYS = [entry["key"] for entry in CATALOG]
POINTS = np.array([entry["points"] for entry in CATALOG])
CAPS = [entry.get("maxPerUserPerDay") for entry in CATALOG]
COOLDOWNS = [entry.get("cooldownSeconds") for entry in CATALOG]
LOGIN, LESSON, QUIZ, SHARE, WIN = (KEYS.index(k) for k in KEYS)
assert KEYS == ["daily-login", "complete-lesson", "pass-quiz", "share-result", "win-challenge"], KEYS
DAY = 86400.0
KINDS = ("metronome", "burst", "cap-maxer", "address-hopper", "grinder")
ORDINARY = "ordinary"
# Refusal codes and how often people meet each (a double click replays an id, a link goes stale ...).
REFUSALS = ("already_claimed", "action_expired", "action_not_found", "action_void")
REFUSAL_WEIGHTS = np.array([0.6, 0.25, 0.1, 0.05])
# UTC offsets (hours) of the players, weighted like a mostly European and American audience with Asia.
TZ_OFFSETS = np.array([-8, -7, -6, -5, -4, -3, 0, 1, 2, 3, 5.5, 7, 8, 9, 10])
TZ_WEIGHTS = np.array([8, 4, 7, 10, 3, 4, 9, 16, 8, 4, 7, 4, 7, 5, 4], dtype=float)
TZ_WEIGHTS /= TZ_WEIGHTS.sum()
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.{w} Safari",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_{w} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 15; Pixel {w}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0 Mobile Safari",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
]
# What people choose among the uncapped and capped actions besides the daily login.
MIX = np.array([0.0, 0.6, 0.3, 0.05, 0.05])


@dataclass
class Ledger:
    """The simulated users and their completions and refusals (parallel arrays)."""

    start: float
    end: float
    kinds: list[str] = field(default_factory=list)  # per user
    ips: list[str] = field(default_factory=list)  # address strings, indexed by the ip arrays
    agents: list[str] = field(default_factory=list)
    user: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    created: list[np.ndarray] = field(default_factory=list)
    delay: list[np.ndarray] = field(default_factory=list)
    ip: list[np.ndarray] = field(default_factory=list)
    agent: list[np.ndarray] = field(default_factory=list)
    refusal_user: list[int] = field(default_factory=list)
    refusal_at: list[float] = field(default_factory=list)
    refusal_reason: list[str] = field(default_factory=list)
    refusal_ip: list[int] = field(default_factory=list)

    def completions(self) -> dict[str, np.ndarray]:
        """The completions as flat arrays."""
        return {
            name: np.concatenate(getattr(self, name)) if getattr(self, name) else np.zeros(0)
            for name in ("user", "action", "created", "delay", "ip", "agent")
        }


class _Pools:
    """Addresses and user agents handed out to users (strings interned once in the ledger)."""

    def __init__(self, ledger: Ledger, rng: np.random.Generator) -> None:
        self.ledger, self.rng = ledger, rng

    def addresses(self, count: int) -> np.ndarray:
        """``count`` new public IPv4 addresses; returns their indexes."""
        first = len(self.ledger.ips)
        octets = self.rng.integers([11, 0, 0, 1], [223, 256, 256, 255], size=(count, 4))
        self.ledger.ips.extend(f"{a}.{b}.{c}.{d}" for a, b, c, d in octets)
        return np.arange(first, first + count)

    def agents(self, count: int) -> np.ndarray:
        """``count`` new browser strings (versions vary, so two users rarely share one exactly)."""
        first = len(self.ledger.agents)
        for _ in range(count):
            template = BROWSERS[self.rng.integers(len(BROWSERS))]
            self.ledger.agents.append(template.format(v=self.rng.integers(118, 142), w=self.rng.integers(1, 9)))
        return np.arange(first, first + count)


@dataclass
class _Person:
    """The habits of one simulated person (a hopper and a burst player borrow some of them)."""

    tz: float
    wake: float  # local hour they get up
    awake: float  # hours they stay up
    sessions_per_day: float
    claims_per_session: float
    gap_median: float
    gap_sigma: float
    delay_median: float
    mix: np.ndarray
    refusal_rate: float


def _person(rng: np.random.Generator) -> _Person:
    return _Person(
        tz=float(rng.choice(TZ_OFFSETS, p=TZ_WEIGHTS)),
        wake=float(np.clip(rng.normal(7.5, 1.3), 4.5, 11.5)),
        awake=float(np.clip(rng.normal(16.0, 1.3), 12.5, 19.5)),
        sessions_per_day=float(min(rng.lognormal(math.log(2.2), 0.7), 14.0)),
        claims_per_session=float(np.clip(rng.lognormal(math.log(4.5), 0.55), 1.5, 40.0)),
        gap_median=float(np.clip(rng.lognormal(math.log(75.0), 0.6), 12.0, 900.0)),
        gap_sigma=float(rng.uniform(0.7, 1.1)),
        delay_median=float(np.clip(rng.lognormal(math.log(15.0), 1.3), 0.8, 1200.0)),
        mix=rng.dirichlet(MIX[1:] * 20.0),
        refusal_rate=float(rng.lognormal(math.log(0.01), 1.0)),
    )


def _session_starts(rng: np.random.Generator, who: _Person, start: float, end: float, rate: float) -> np.ndarray:
    """Session starts over ``[start, end)``: ``rate`` a day on average, in the person's waking hours."""
    starts = []
    first_day = math.floor((start + who.tz * 3600) / DAY) - 1
    last_day = math.floor((end + who.tz * 3600) / DAY) + 1
    for local_day in range(first_day, last_day + 1):
        morning = local_day * DAY - who.tz * 3600 + who.wake * 3600
        count = rng.poisson(rate)
        starts.extend(morning + rng.uniform(0, who.awake * 3600, count))
    starts = np.sort(np.array(starts))
    return starts[(starts >= start) & (starts < end)]


def _human_times(rng: np.random.Generator, who: _Person, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Claim times of sessions starting at ``starts``; returns ``(times, session index of each)``."""
    times, session = [], []
    for s, begin in enumerate(starts):
        k = min(int(rng.geometric(1.0 / who.claims_per_session)), 120)
        gaps = rng.lognormal(math.log(who.gap_median), who.gap_sigma, k - 1)
        quick = rng.random(k - 1) < 0.015  # a double claim: two completions finished together
        gaps[quick] = rng.uniform(0.5, 3.0, quick.sum())
        times.append(begin + np.concatenate([[0.0], np.cumsum(gaps)]))
        session.append(np.full(k, s))
    if not times:
        return np.zeros(0), np.zeros(0, dtype=int)
    times, session = np.concatenate(times), np.concatenate(session)
    order = np.argsort(times, kind="stable")  # a long session may run into the next one
    return times[order], session[order]


def _actions(rng: np.random.Generator, times: np.ndarray, mix: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
    """Actions for claims at sorted ``times``: chosen by ``mix``, within the catalog's caps and cooldowns.

    With ``starts`` (session starts), a session's first claim is the daily login when the last
    one is a day old. The daily cap and cooldown are the service's (rolling 24 hours on the
    recording time): a choice they would refuse becomes a lesson.
    """
    actions = rng.choice(np.arange(1, len(KEYS)), size=len(times), p=mix)
    if starts is not None and len(times):
        firsts = np.searchsorted(times, starts)
        last_login = -math.inf
        for i in firsts[firsts < len(times)]:
            if times[i] - last_login >= DAY and rng.random() < 0.85:
                actions[i], last_login = LOGIN, times[i]
    _within_limits(actions, times)
    return actions


def _within_limits(actions: np.ndarray, times: np.ndarray) -> None:
    """Turn into lessons the claims the caps or cooldowns would refuse (in place)."""
    for key in range(len(KEYS)):
        cap, cooldown = CAPS[key], COOLDOWNS[key]
        if not cap and not cooldown:
            continue
        kept = []
        for i in np.flatnonzero(actions == key):
            cooling = bool(cooldown and kept and times[i] - times[kept[-1]] < cooldown)
            capped = bool(cap and len(kept) >= cap and times[i] - times[kept[-cap]] < DAY)
            if cooling or capped:
                actions[i] = LESSON
            else:
                kept.append(i)


def _human_delays(rng: np.random.Generator, median: float, count: int) -> np.ndarray:
    """Recording-to-claim delays: log-normal around the person's median, some late, a few never."""
    delays = np.maximum(rng.lognormal(math.log(median), 1.0, count), 0.3)
    late = rng.random(count) < 0.03
    delays[late] = rng.uniform(600.0, 3500.0, late.sum())
    delays[rng.random(count) < 0.02] = math.inf  # left unclaimed: expires
    return delays


def _per_session(rng: np.random.Generator, session: np.ndarray, pool: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One pool entry per session (a device, a network), drawn by ``weights``; per claim."""
    sessions = int(session.max()) + 1 if len(session) else 0
    chosen = rng.choice(pool, size=max(sessions, 1), p=weights)
    return chosen[session]


def _skewed(count: int) -> np.ndarray:
    """Weights of a user's addresses or agents: the first (home, main browser) dominates."""
    weights = np.array([0.7**i for i in range(count)]) * np.array([3.0] + [1.0] * (count - 1))
    return weights / weights.sum()


class Simulator:
    """Builds a :class:`Ledger` of ``ordinary`` people and ``bots`` automated players (equal numbers per kind)."""

    def __init__(self, seed: int, start: float, end: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.start, self.end = start, end
        # Activity is simulated from well before the window, so claims recorded before it count too.
        self.sim_start, self.sim_end = start - 12 * 3600, end + 2 * 3600
        self.ledger = Ledger(start=start, end=end)
        self.pools = _Pools(self.ledger, self.rng)

    def build(self, ordinary: int, bots: int) -> Ledger:
        """Simulate everybody, in a shuffled order (so a user's position says nothing of its kind)."""
        kinds = [ORDINARY] * ordinary + [KINDS[i % len(KINDS)] for i in range(bots)]
        order = self.rng.permutation(len(kinds))
        makers = {
            ORDINARY: self._ordinary,
            "metronome": self._metronome,
            "burst": self._burst,
            "cap-maxer": self._cap_maxer,
            "address-hopper": self._hopper,
            "grinder": self._grinder,
        }
        for user in range(len(kinds)):
            kind = kinds[order[user]]
            self.ledger.kinds.append(kind)
            makers[kind](user)
        return self.ledger

    def _add(self, user: int, times, actions, delays, ips, agents, refusal_rate: float, reasons=None) -> None:
        """Append one user's completions (and refused claims drawn at ``refusal_rate`` per claim)."""
        led, rng = self.ledger, self.rng
        order = np.argsort(times, kind="stable")
        led.user.append(np.full(len(times), user))
        led.action.append(np.asarray(actions)[order])
        led.created.append(np.asarray(times, dtype=float)[order])
        led.delay.append(np.asarray(delays, dtype=float)[order])
        led.ip.append(np.asarray(ips)[order])
        led.agent.append(np.asarray(agents)[order])
        refused = rng.poisson(refusal_rate * len(times)) if len(times) else 0
        for _ in range(refused):
            i = rng.integers(len(times))
            led.refusal_user.append(user)
            led.refusal_at.append(float(times[i] + rng.uniform(0.5, 30.0)))
            led.refusal_reason.append(str(rng.choice(REFUSALS, p=REFUSAL_WEIGHTS if reasons is None else reasons)))
            led.refusal_ip.append(int(np.asarray(ips)[i]))

    def _devices(self, session: np.ndarray, addresses: int, agents: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-claim address and agent indexes: a person's few, one of each per session."""
        ip_pool, agent_pool = self.pools.addresses(addresses), self.pools.agents(agents)
        ips = _per_session(self.rng, session, ip_pool, _skewed(addresses))
        return ips, _per_session(self.rng, session, agent_pool, _skewed(agents))

    def _ordinary(self, user: int) -> None:
        rng = self.rng
        who = _person(rng)
        starts = _session_starts(rng, who, self.sim_start, self.sim_end, who.sessions_per_day)
        times, session = _human_times(rng, who, starts)
        actions = _actions(rng, times, who.mix, starts)
        addresses = int(rng.choice([1, 2, 3, 4, 5], p=[0.55, 0.3, 0.11, 0.03, 0.01]))
        agents = int(rng.choice([1, 2, 3], p=[0.7, 0.27, 0.03]))
        ips, uas = self._devices(session, addresses, agents)
        self._add(user, times, actions, _human_delays(rng, who.delay_median, len(times)), ips, uas, who.refusal_rate)

    def _metronome(self, user: int) -> None:
        """A script on a timer: one to three stretches of a few hours at a fixed gap (2 to 15% of jitter),
        with a fixed sleep between recording and claiming. Human in its actions, address and browser."""
        rng = self.rng
        gap, jitter = rng.uniform(45.0, 900.0), rng.uniform(0.02, 0.15)
        delay = rng.uniform(0.5, 40.0)
        times = []
        begin = rng.uniform(self.start - 3600, self.start + 12 * 3600)
        for _ in range(int(rng.integers(1, 4))):  # stretches one after another, an hour or more apart
            steps = max(int(rng.uniform(2.0, 8.0) * 3600 / gap), 8)
            times.append(begin + np.cumsum(gap * (1 + rng.uniform(-jitter, jitter, steps))))
            begin = times[-1][-1] + rng.uniform(1.0, 6.0) * 3600
        times = np.concatenate(times)
        actions = _actions(rng, times, _person(rng).mix, times[:1])
        delays = delay * (1 + rng.uniform(-0.05, 0.05, len(times)))
        ips, uas = self._devices(np.zeros(len(times), dtype=int), 1, 1)
        self._add(user, times, actions, delays, ips, uas, 0.005)

    def _burst(self, user: int) -> None:
        """Dense bursts: a person's waking schedule, but each "session" is a volley of claims one to three
        seconds apart (log-normal), claimed at once; replays get refused now and then."""
        rng = self.rng
        who = _person(rng)
        starts = _session_starts(rng, who, self.sim_start, self.sim_end, rng.uniform(6.0, 12.0))
        pace = rng.uniform(1.0, 3.0)  # the median gap inside a volley, seconds
        if not len(starts):
            starts = np.array([rng.uniform(self.start, self.end)])
        times, session = [], []
        for s, begin in enumerate(starts):
            k = int(rng.integers(4, 16))
            times.append(begin + np.concatenate([[0.0], np.cumsum(rng.lognormal(math.log(pace), 0.7, k - 1))]))
            session.append(np.full(k, s))
        times, session = np.concatenate(times), np.concatenate(session)
        order = np.argsort(times, kind="stable")
        times, session = times[order], session[order]
        actions = _actions(rng, times, who.mix, starts)
        delays = rng.lognormal(math.log(0.8), 0.5, len(times))
        ips, uas = self._devices(session, int(rng.integers(1, 3)), 1)
        self._add(user, times, actions, delays, ips, uas, 0.05, reasons=np.array([0.85, 0.1, 0.05, 0.0]))

    def _cap_maxer(self, user: int) -> None:
        """Every limit taken to the brim: at its hour each day the login and the share cap (5 shares a
        minute or so apart), then runs of quizzes soon after their 5-s cooldown ends, between human-paced
        lesson sessions. Human in delays, address and browser."""
        rng = self.rng
        who = _person(rng)
        slack = rng.uniform(0.5, 3.0)  # how long after the cooldown ends it tries again, seconds (median)
        times, actions = [], []
        # Each day a little more than 24 hours after the last: as soon as the rolling cap lets it.
        at = self.sim_start - rng.uniform(0, DAY)
        while at < self.sim_end:
            shares = at + 20 + np.cumsum(rng.lognormal(math.log(40.0), 0.5, 5))
            times += [at, *shares]
            actions += [LOGIN] + [SHARE] * 5
            at += DAY + 300 + abs(rng.normal(0, 600))
        for begin in _session_starts(rng, who, self.sim_start, self.sim_end, rng.uniform(4.0, 8.0)):
            k = int(rng.integers(4, 12))
            quiz = begin + np.cumsum(5.0 + rng.lognormal(math.log(slack), 0.8, k))
            times += list(quiz)
            actions += [QUIZ] * k
        lesson_starts = _session_starts(rng, who, self.sim_start, self.sim_end, who.sessions_per_day)
        lessons, _ = _human_times(rng, who, lesson_starts)
        times += list(lessons)
        actions += [LESSON] * len(lessons)
        times, actions = np.array(times), np.array(actions)
        order = np.argsort(times, kind="stable")
        times, actions = times[order], actions[order]
        _within_limits(actions, times)
        session = np.zeros(len(times), dtype=int)
        delays = _human_delays(rng, who.delay_median, len(times))
        ips, uas = self._devices(session, int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        self._add(user, times, actions, delays, ips, uas, who.refusal_rate)

    def _hopper(self, user: int) -> None:
        """An address-hopper: a person's pace and hours, every claim from one of a pool of proxies (6 to 40)
        with a browser string from a small rotation."""
        rng = self.rng
        who = _person(rng)
        who.sessions_per_day = max(who.sessions_per_day, 8.0)
        who.claims_per_session = max(who.claims_per_session, 6.0)
        starts = _session_starts(rng, who, self.sim_start, self.sim_end, who.sessions_per_day)
        times, _ = _human_times(rng, who, starts)
        actions = _actions(rng, times, who.mix, starts)
        ip_pool = self.pools.addresses(int(rng.integers(6, 41)))
        agent_pool = self.pools.agents(int(rng.integers(3, 9)))
        ips, uas = rng.choice(ip_pool, len(times)), rng.choice(agent_pool, len(times))
        self._add(user, times, actions, _human_delays(rng, who.delay_median, len(times)), ips, uas, who.refusal_rate)

    def _grinder(self, user: int) -> None:
        """Slow and steady, around the clock: a claim every 6 to 20 minutes with human jitter (log-normal),
        pausing up to an hour and a half now and then and once for up to three and a half hours, never
        sleeping. Human in everything else."""
        rng = self.rng
        who = _person(rng)
        gap = rng.uniform(6.0, 20.0) * 60
        steps = int((self.sim_end - self.sim_start) / gap * 1.3) + 10
        gaps = rng.lognormal(math.log(gap), 0.6, steps)
        pauses = rng.random(steps) < 0.04
        gaps[pauses] = rng.uniform(1800.0, 5400.0, pauses.sum())
        gaps[rng.integers(steps)] = rng.uniform(1.0, 3.5) * 3600  # and one longer break (an update, a restart)
        times = self.sim_start + rng.uniform(0, gap) + np.cumsum(gaps)
        times = times[times < self.sim_end]
        starts = times[np.concatenate([[True], np.diff(times) > 1800])]
        actions = _actions(rng, times, who.mix, starts)
        session = np.cumsum(np.concatenate([[0], np.diff(times) > 4 * 3600]))
        ips, uas = self._devices(session, int(rng.integers(1, 3)), 1)
        self._add(user, times, actions, _human_delays(rng, who.delay_median, len(times)), ips, uas, who.refusal_rate)


def simulate(seed: int, ordinary: int, bots: int, start: float, end: float) -> Ledger:
    """The ledger of ``ordinary`` people and ``bots`` automated players active around ``[start, end)``."""
    return Simulator(seed, start, end).build(ordinary, bots)
