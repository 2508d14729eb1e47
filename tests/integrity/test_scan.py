"""The anomaly scan end to end on real ledger rows: who it flags, holds or leaves alone, and how it reports.

The population is written straight into the ledger by :func:`build_population`: about 150 people
(sessions in their waking hours, irregular gaps, a few seconds between a completion and its claim)
and a few scripts claiming like a metronome (exact gaps, round the clock, claimed at once). Scores and
period scores are the sums of those claims, so the boards and the ledger agree as if every claim had
gone through the API; then the mirror is rebuilt. The model is the real one (``scoreboard.integrity``).

The tests hold the model to one promise only, that it scores every metronome above every person, and
scan with a threshold between the two (:attr:`Population.threshold`): so they check the scan, not the
model's tuning (docs/anomalies.md benchmarks that), and stay true when the model is retuned.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from scoreboard.extensions import db
from scoreboard.models import (
    AuditEntry,
    ClaimRefusal,
    Completion,
    CompletionStatus,
    PeriodScore,
    Score,
    Suspect,
    SuspectStatus,
    User,
    UserStatus,
)
from tests.support import ROOT, python_bin, sample, snapshot

WINDOW = timedelta(hours=24)
SEED = 38
# The least gap between the scripts' lowest score and the people's highest that the model must keep.
MARGIN = 0.02
# action key -> points, as in the default catalog (the population uses its actions).
ACTIONS = {"daily-login": 10, "complete-lesson": 50, "pass-quiz": 100, "share-result": 20, "win-challenge": 250}


@dataclass(frozen=True)
class Bot:
    """A script: one claim of ``action`` every ``every`` seconds, exactly, claimed ``delay`` s after its completion."""

    user_id: str
    every: float
    action: str = "complete-lesson"
    delay: float = 0.2


BOTS = (
    Bot("bot-metronome", 300.0),  # 287 claims of 50: the top of the board
    Bot("bot-sharer", 900.0, "share-result", 0.1),  # 95 claims of 20: mid-board
    Bot("bot-login", 1200.0, "daily-login", 0.05),  # 71 claims of 10
)


@dataclass
class Population:
    """What :func:`build_population` wrote: each user's claims ``(claimed_at, points)``, and a threshold halfway
    between the model's highest score of a person and its lowest of a script."""

    end: datetime
    humans: list[str]
    bots: list[str]
    claims: dict[str, list[tuple[datetime, int]]] = field(default_factory=dict)
    threshold: float | None = None

    def score(self, user_id: str) -> int:
        return sum(points for _, points in self.claims[user_id])


def _human_claims(rng: random.Random, end: datetime) -> tuple[list[tuple[datetime, str, float]], int]:
    """A person's day: sessions in their waking hours, irregular gaps; ``(claimed_at, action, delay)`` and IPs."""
    # Their clock, hours from the window's start (not UTC's: the same population whatever the hour it ends at).
    offset = rng.uniform(0, 24)
    wake, sleep = rng.uniform(6.5, 10), rng.uniform(21, 24.5)
    keen = rng.random() < 0.1  # a few play a lot
    start = end - WINDOW
    claims: list[tuple[datetime, str, float]] = []
    while len(claims) < (40 if keen else 8):
        moment = start + timedelta(seconds=rng.uniform(0, WINDOW.total_seconds() - 3600))
        local = ((moment - start).total_seconds() / 3600 + offset) % 24
        if not wake <= local <= sleep:
            continue
        for _ in range(rng.randint(3, 12)):
            moment += timedelta(seconds=rng.lognormvariate(4.4, 0.9))  # median ~80 s, often minutes
            if moment >= end - timedelta(seconds=30):
                break
            action = rng.choices(
                ["complete-lesson", "pass-quiz", "share-result", "win-challenge"], weights=[60, 25, 10, 2]
            )[0]
            if action == "share-result" and sum(a == action for _, a, _ in claims) >= 3:
                action = "complete-lesson"  # people share a result or two, short of the daily cap of 5
            claims.append((moment, action, rng.lognormvariate(2.0, 1.0)))  # ~7 s to claim, sometimes a minute
    claims.sort()
    # The day's login, just before the first claim.
    first = claims[0][0] - timedelta(seconds=rng.uniform(5, 60))
    claims.insert(0, (first, "daily-login", rng.lognormvariate(1.5, 0.6)))
    return claims, 2 if rng.random() < 0.3 else 1


def _bot_claims(bot: Bot, end: datetime) -> list[tuple[datetime, str, float]]:
    count = int((WINDOW.total_seconds() - 120) // bot.every)
    last = end - timedelta(seconds=60)
    return [(last - timedelta(seconds=bot.every * i), bot.action, bot.delay) for i in range(count)][::-1]


def build_population(
    app, humans: int = 150, bots: tuple[Bot, ...] = BOTS, seed: int = SEED, end: datetime | None = None
) -> Population:
    """Write ``humans`` people and ``bots`` into the ledger (users, claimed completions, refusals, scores, period
    scores) with claims in the 24 h before ``end`` (default now), then rebuild the boards' mirrors."""
    from scoreboard.board.refresh import refresh_board
    from scoreboard.periods import TIMED, all_kept, period_at

    rng = random.Random(seed)
    # On the hour: the features (distinct clock hours, the hour-of-day histogram's entropy) are then the same
    # whenever the test runs, and so are the model's scores.
    end = end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    made = Population(end=end, humans=[f"human-{i:03d}" for i in range(humans)], bots=[b.user_id for b in bots])
    user_rows, completion_rows, refusal_rows = [], [], []
    plans = {user_id: _human_claims(rng, end) for user_id in made.humans}
    plans |= {bot.user_id: (_bot_claims(bot, end), 1) for bot in bots}
    for number, (user_id, (claims, ips)) in enumerate(plans.items()):
        bot = user_id in made.bots
        user_rows.append(
            {
                "id": user_id,
                "display_name": user_id.title(),
                "status": UserStatus.ACTIVE,
                "created_at": end - 2 * WINDOW,
            }
        )
        agent = "python-requests/2.32.3" if bot else f"Mozilla/5.0 (X11; Linux x86_64) Firefox/13{number % 7}.0"
        made.claims[user_id] = []
        for claimed_at, action, delay in claims:
            created_at = claimed_at - timedelta(seconds=delay)
            ip = f"10.{number // 250}.{number % 250}.{1 + (rng.random() < 0.5 if ips > 1 else 0)}"
            completion_rows.append(
                {
                    "id": secrets.token_urlsafe(24),
                    "user_id": user_id,
                    "action_key": action,
                    "points": ACTIONS[action],
                    "status": CompletionStatus.CLAIMED,
                    "created_at": created_at,
                    "expires_at": created_at + timedelta(hours=1),
                    "claimed_at": claimed_at,
                    "client_ip": ip,
                    "user_agent": agent,
                }
            )
            made.claims[user_id].append((claimed_at, ACTIONS[action]))
        if not bot and rng.random() < 0.1:  # a double click now and then
            refusal_rows.append(
                {"user_id": user_id, "at": claims[-1][0], "reason": "already_claimed", "client_ip": None}
            )
    score_rows, period_rows = [], defaultdict(lambda: [0, None])
    with app.app_context():
        kept = {p.key for p in all_kept(end)}
        for user_id, claims in made.claims.items():
            score_rows.append(
                {
                    "user_id": user_id,
                    "score": made.score(user_id),
                    "reached_at": max(t for t, _ in claims),
                    "version": 1,
                    "board_pending": False,
                }
            )
            for claimed_at, points in claims:
                for kind in TIMED:
                    key = period_at(kind, claimed_at).key
                    if key in kept:
                        row = period_rows[(key, user_id)]
                        row[0] += points
                        row[1] = max(row[1] or claimed_at, claimed_at)
        db.session.execute(insert(User), user_rows)
        db.session.execute(insert(Score), score_rows)
        db.session.execute(
            insert(PeriodScore),
            [
                {
                    "period": key,
                    "user_id": user_id,
                    "score": points,
                    "reached_at": at,
                    "version": 1,
                    "board_pending": False,
                }
                for (key, user_id), (points, at) in period_rows.items()
            ],
        )
        for start in range(0, len(completion_rows), 2000):
            db.session.execute(insert(Completion), completion_rows[start : start + 2000])
        if refusal_rows:
            db.session.execute(insert(ClaimRefusal), refusal_rows)
        db.session.commit()
        refresh_board(rebuild=True)
        if bots:
            made.threshold = _between(made)
    return made


def _between(made: Population) -> float:
    """Judge ``made`` as the scan would; the threshold halfway between its people and its scripts."""
    from scoreboard.integrity import detector, features

    population = features.population(made.end, WINDOW, min_claims=6)
    db.session.rollback()
    scores = {v.user_id: v.score for v in detector.judge(population, detector.DEFAULT_THRESHOLD, seed=0)}
    people = max(scores[user] for user in made.humans if user in scores)
    scripts = min(scores[user] for user in made.bots)
    assert scripts > people + MARGIN, f"the model scores a person ({people:.3f}) near a script ({scripts:.3f})"
    return round((people + scripts) / 2, 6)


# --- settings and helpers -------------------------------------------------------------------------------

SETTINGS = ("ANOMALY_WINDOW", "ANOMALY_THRESHOLD", "ANOMALY_MIN_POPULATION", "ANOMALY_MIN_CLAIMS", "ANOMALY_ACTION")


def scan_settings(app):
    """The scan's settings for one test (the generator behind the ``anomaly`` fixtures): yields
    ``app.config.update`` (``anomaly(ANOMALY_ACTION="flag")`` changes them), and restores them after."""
    saved = {name: app.config[name] for name in (*SETTINGS, "CLOCK")}
    app.config.update(
        ANOMALY_WINDOW=WINDOW,
        ANOMALY_THRESHOLD=None,
        ANOMALY_MIN_POPULATION=100,
        ANOMALY_MIN_CLAIMS=6,
        ANOMALY_ACTION="hold",
    )
    yield app.config.update
    app.config.update(saved)


@pytest.fixture
def anomaly(app):
    """The scan's settings for one test, restored after."""
    yield from scan_settings(app)


def scan(app, made, **options):
    """:func:`run_scan` over the window ending where ``made``'s does, with ``made``'s threshold unless one is set."""
    from scoreboard.integrity.scan import run_scan

    threshold = app.config["ANOMALY_THRESHOLD"]
    if threshold is None:
        app.config["ANOMALY_THRESHOLD"] = made.threshold  # the fixture puts the setting back after the test
    try:
        with app.app_context():
            return run_scan(now=made.end, **options)
    finally:
        app.config["ANOMALY_THRESHOLD"] = threshold


def statuses(app, *user_ids):
    with app.app_context():
        found = dict(db.session.execute(select(User.id, User.status).where(User.id.in_(user_ids))).all())
        db.session.rollback()
    return found


def suspect_rows(app):
    with app.app_context():
        rows = {s.user_id: s for s in db.session.scalars(select(Suspect))}
        db.session.expunge_all()
        db.session.rollback()
    return rows


def audits(app, act=None):
    with app.app_context():
        query = select(AuditEntry).order_by(AuditEntry.id)
        if act is not None:
            query = query.where(AuditEntry.act == act)
        rows = [(a.actor, a.act, a.target_user, a.reason) for a in db.session.scalars(query)]
        db.session.rollback()
    return rows


def public_top(client, mint):
    from tests.support import bearer

    return [e["userId"] for e in client.get("/api/score/top", headers=bearer(mint("viewer"))).get_json()]


def counters():
    """The scan's metrics in this process's registry."""
    return {
        "judged": sample("scoreboard_anomaly_scans_total", outcome="judged"),
        "too_small": sample("scoreboard_anomaly_scans_total", outcome="population_too_small"),
        "seconds": sample("scoreboard_anomaly_scan_duration_seconds_count"),
        "scored": sample("scoreboard_anomaly_users_scored_total"),
        "flagged": sample("scoreboard_anomaly_suspects_total", event="flagged"),
        "held": sample("scoreboard_anomaly_suspects_total", event="held"),
    }


def grew(before, after):
    return {name: after[name] - before[name] for name in before if after[name] != before[name]}


# --- the scan ------------------------------------------------------------------------------------------


def test_the_scan_holds_the_scripts_and_nobody_else(app, client, mint, anomaly, caplog):
    from scoreboard.board.refresh import refresh_board
    from scoreboard.integrity.features import NAMES
    from scoreboard.integrity.scan import last_scan

    made = build_population(app)
    assert public_top(client, mint)[0] == "bot-metronome"
    before = counters()
    caplog.set_level(logging.INFO, logger="scoreboard.integrity.scan")

    summary = scan(app, made)

    assert summary.threshold == made.threshold
    assert (summary.judged, summary.population_too_small, summary.held, summary.skipped) == (153, False, 3, [])
    assert {f["userId"] for f in summary.flagged} == set(made.bots)
    assert all(f["action"] == "held" and f["anomalyScore"] >= summary.threshold for f in summary.flagged)
    assert statuses(app, *made.bots, *made.humans) == {
        **dict.fromkeys(made.humans, UserStatus.ACTIVE),
        **dict.fromkeys(made.bots, UserStatus.HELD),
    }
    rows = suspect_rows(app)
    assert set(rows) == set(made.bots)
    for found in summary.flagged:
        row = rows[found["userId"]]
        assert (row.status, row.previous_status, row.anomaly_score) == ("held", "active", found["anomalyScore"])
        assert row.flagged_at == made.end and row.reviewed_by is None
        reasons = json.loads(row.reasons)
        assert reasons == found["reasons"] and len(reasons) == 3
        assert all(
            set(r) == {"feature", "value", "typical"} and set(r["typical"]) == {"median", "p95"} for r in reasons
        )
        assert set(json.loads(row.features)) == set(NAMES)
    # Held the way moderation holds: audited, flagged for every board.
    held = audits(app, "status:held")
    assert sorted(user for _, _, user, _ in held) == sorted(made.bots)
    assert all(actor == "anomaly-scan" and reason.startswith("anomaly score ") for actor, _, _, reason in held)
    with app.app_context():
        pending = db.session.scalar(select(func.count()).select_from(Score).where(Score.board_pending))
        assert pending == 3
        refresh_board()
    assert not set(public_top(client, mint)) & set(made.bots)

    # One JSON log line per suspect; the metrics; the summary kept for --dry-run.
    lines = [r for r in caplog.records if getattr(r, "event", None) == "anomaly_suspect"]
    assert sorted(r.suspect for r in lines) == sorted(made.bots)
    assert all(r.action == "held" and r.reasons and r.anomaly_score >= summary.threshold for r in lines)
    assert grew(before, counters()) == {"judged": 1, "seconds": 1, "scored": 153, "flagged": 3, "held": 3}
    with app.app_context():
        assert last_scan() == json.loads(json.dumps(summary.to_dict()))

    # The next scan leaves them as they are: under review.
    again = scan(app, made)
    assert again.flagged == [] and sorted(s["userId"] for s in again.skipped) == sorted(made.bots)
    assert {s["why"] for s in again.skipped} == {"under review"}


def test_a_high_threshold_flags_nobody_a_low_one_everybody(app, anomaly):
    from scoreboard.integrity import detector

    made = build_population(app)
    before = snapshot(app)
    anomaly(ANOMALY_THRESHOLD=0.0)
    low = scan(app, made, dry_run=True)
    assert len(low.flagged) == low.judged == 153 and {f["action"] for f in low.flagged} == {"would_hold"}
    # The detector's own threshold (the setting's default) flags every script; how many people it also flags
    # is the model's tuning, benchmarked in docs/anomalies.md on a population of its own.
    anomaly(ANOMALY_THRESHOLD=detector.DEFAULT_THRESHOLD)
    assert set(made.bots) <= {f["userId"] for f in scan(app, made, dry_run=True).flagged}
    assert snapshot(app) == before  # dry runs change nothing
    anomaly(ANOMALY_THRESHOLD=1.01)  # scores are at most 1
    high = scan(app, made)
    assert (high.judged, high.flagged, high.held) == (153, [], 0)
    assert suspect_rows(app) == {} and snapshot(app) == before


def test_flag_mode_reports_and_holds_nobody(app, client, mint, anomaly):
    anomaly(ANOMALY_ACTION="flag")
    made = build_population(app)
    before = counters()
    summary = scan(app, made)
    assert {f["userId"]: f["action"] for f in summary.flagged} == dict.fromkeys(made.bots, "flagged")
    assert summary.held == 0
    assert set(statuses(app, *made.bots).values()) == {UserStatus.ACTIVE}
    assert {s.status for s in suspect_rows(app).values()} == {SuspectStatus.FLAGGED}
    assert sorted(user for _, _, user, _ in audits(app, "suspect:flag")) == sorted(made.bots)
    assert audits(app, "status:held") == []
    assert public_top(client, mint)[0] == "bot-metronome"
    assert grew(before, counters()) == {"judged": 1, "seconds": 1, "scored": 153, "flagged": 3}


def test_too_small_a_population_is_not_judged(app, anomaly):
    from scoreboard.integrity.scan import last_scan

    made = build_population(app, humans=40)
    before = counters()
    summary = scan(app, made)
    assert (summary.judged, summary.population_too_small, summary.flagged, summary.held) == (43, True, [], 0)
    assert suspect_rows(app) == {} and set(statuses(app, *made.bots).values()) == {UserStatus.ACTIVE}
    assert grew(before, counters()) == {"too_small": 1, "seconds": 1}
    with app.app_context():
        assert last_scan()["populationTooSmall"] is True
    # The same crowd is judged once the bar allows it: the size alone kept it from being judged.
    anomaly(ANOMALY_MIN_POPULATION=40)
    assert scan(app, made, dry_run=True).judged == 43
    # Users with fewer claims than the minimum are not in the population at all.
    anomaly(ANOMALY_MIN_CLAIMS=90)
    assert scan(app, made, dry_run=True).judged == 2  # the two scripts with 287 and 95 claims


def test_a_cleared_user_is_not_flagged_again_for_the_same_behaviour(app, anomaly):
    from scoreboard.scoring import moderation

    made = build_population(app)
    scan(app, made)
    with app.app_context():
        moderation.clear_suspect("bot-metronome", "a cron job of ours, allowed", "boss", None)
    assert statuses(app, "bot-metronome") == {"bot-metronome": UserStatus.ACTIVE}

    again = scan(app, made)
    assert again.flagged == []
    assert {s["userId"]: s["why"] for s in again.skipped} == {
        "bot-metronome": "cleared, unchanged since",
        "bot-sharer": "under review",
        "bot-login": "under review",
    }
    assert statuses(app, "bot-metronome") == {"bot-metronome": UserStatus.ACTIVE}
    assert suspect_rows(app)["bot-metronome"].status == SuspectStatus.CLEARED

    # Had it behaved like a person when it was cleared, the same behaviour now is a marked change: held again.
    with app.app_context():
        person = {name: stats["median"] for name, stats in _typical(app, made).items()}
        db.session.get(Suspect, "bot-metronome").features = json.dumps(person)
        db.session.commit()
    third = scan(app, made)
    assert [f["userId"] for f in third.flagged] == ["bot-metronome"]
    row = suspect_rows(app)["bot-metronome"]
    assert (row.status, row.reviewed_by, row.previous_status) == (SuspectStatus.HELD, None, UserStatus.ACTIVE)
    assert statuses(app, "bot-metronome") == {"bot-metronome": UserStatus.HELD}


def _typical(app, made):
    from scoreboard.integrity import features

    population = features.population(made.end, WINDOW, 6)
    db.session.rollback()
    return population.typical()


def test_banned_and_hidden_users_are_left_alone(app, anomaly):
    from scoreboard.scoring import moderation

    made = build_population(app)
    with app.app_context():
        moderation.set_status("bot-login", UserStatus.BANNED, "banned by hand", "boss", None)
        moderation.set_status("bot-sharer", UserStatus.HIDDEN, "hidden by hand", "boss", None)
    summary = scan(app, made)
    assert [f["userId"] for f in summary.flagged] == ["bot-metronome"]
    assert {s["userId"]: s["why"] for s in summary.skipped} == {"bot-login": "banned", "bot-sharer": "hidden"}
    assert statuses(app, "bot-login", "bot-sharer") == {"bot-login": "banned", "bot-sharer": "hidden"}
    assert set(suspect_rows(app)) == {"bot-metronome"}


def test_the_cli_prints_each_suspect_and_a_dry_run_the_last_scan(app, anomaly):
    made = build_population(app)
    anomaly(ANOMALY_THRESHOLD=made.threshold)  # the command reads the setting
    runner = app.test_cli_runner()
    end = made.end.isoformat()
    dry = runner.invoke(args=["anomalies", "scan", "--dry-run", "--end", end])
    assert dry.exit_code == 0, dry.output
    lines = [json.loads(line) for line in dry.output.splitlines()]
    assert lines[0] == {"lastScan": None}
    assert sorted(line["suspect"]["userId"] for line in lines[1:-1]) == sorted(made.bots)
    assert {line["suspect"]["action"] for line in lines[1:-1]} == {"would_hold"}
    assert lines[-1]["scan"]["dryRun"] is True and suspect_rows(app) == {}

    real = runner.invoke(args=["anomalies", "scan", "--end", end])
    assert real.exit_code == 0, real.output
    lines = [json.loads(line) for line in real.output.splitlines()]
    assert sorted(line["suspect"]["userId"] for line in lines[:-1]) == sorted(made.bots)
    summary = lines[-1]["scan"]
    assert (summary["held"], summary["judged"], summary["dryRun"], summary["action"]) == (3, 153, False, "hold")
    assert summary["at"] == end and summary["windowSeconds"] == 86400 and summary["threshold"] == made.threshold

    again = runner.invoke(args=["anomalies", "scan", "--dry-run", "--end", end])
    lines = [json.loads(line) for line in again.output.splitlines()]
    assert lines[0] == {"lastScan": summary}
    assert len(lines) == 2 and lines[1]["scan"]["flagged"] == []  # they are under review now

    bad = runner.invoke(args=["anomalies", "scan", "--end", "2026-12-02T10:00:00"])
    assert bad.exit_code != 0 and "zone" in bad.output


def test_beat_scans_on_the_maintenance_queue_and_the_task_holds(app, client, mint, anomaly):
    import workers
    from workers.maintenance import scan_anomalies

    schedule, routes = workers.beat_schedule(app.config), workers.task_routes(app.config)
    job = schedule["scan-anomalies"]
    assert job == {"task": "workers.maintenance.scan_anomalies", "schedule": 600.0}
    assert routes[job["task"]] == {"queue": app.config["CELERY_MAINTENANCE_QUEUE"]}

    made = build_population(app)
    anomaly(CLOCK=lambda: made.end, ANOMALY_THRESHOLD=made.threshold)  # the task scans the window ending "now"
    with app.app_context():
        assert scan_anomalies.apply().get() == 3
    assert set(statuses(app, *made.bots).values()) == {UserStatus.HELD}
    # The task queued a refresh (eager here): the held are off the board already.
    assert not set(public_top(client, mint)) & set(made.bots)


@pytest.mark.unit
def test_the_settings_and_their_defaults(monkeypatch):
    import config

    for name in (*SETTINGS, "ANOMALY_INTERVAL"):
        monkeypatch.delenv(f"SCOREBOARD_{name}", raising=False)
    settings = config.integrity_settings()
    assert settings == {
        "ANOMALY_WINDOW": timedelta(hours=24),
        "ANOMALY_THRESHOLD": None,
        "ANOMALY_MIN_POPULATION": 100,
        "ANOMALY_MIN_CLAIMS": 6,
        "ANOMALY_ACTION": "hold",
    }
    assert config.celery_settings(None)["ANOMALY_INTERVAL"] == 600.0
    monkeypatch.setenv("SCOREBOARD_ANOMALY_THRESHOLD", "0.7")
    monkeypatch.setenv("SCOREBOARD_ANOMALY_ACTION", "Flag")
    monkeypatch.setenv("SCOREBOARD_ANOMALY_WINDOW", "6h")
    monkeypatch.setenv("SCOREBOARD_ANOMALY_INTERVAL", "90s")
    settings = config.integrity_settings()
    assert (settings["ANOMALY_THRESHOLD"], settings["ANOMALY_ACTION"], settings["ANOMALY_WINDOW"]) == (
        0.7,
        "flag",
        timedelta(hours=6),
    )
    assert config.celery_settings(None)["ANOMALY_INTERVAL"] == 90.0
    monkeypatch.setenv("SCOREBOARD_ANOMALY_ACTION", "ban")
    with pytest.raises(config.RefusedConfiguration, match="ANOMALY_ACTION"):
        config.integrity_settings()


@pytest.mark.unit
def test_verdict_values_become_plain_json():
    import numpy as np

    from scoreboard.integrity.scan import plain

    value = plain({"a": np.float64(0.5), "b": [np.int64(3), float("nan"), np.float32(np.inf)], "c": "x", "d": True})
    assert value == {"a": 0.5, "b": [3, None, None], "c": "x", "d": True}
    assert type(value["b"][0]) is int
    json.dumps(value, allow_nan=False)


# --- the embedded mode ----------------------------------------------------------------------------------

BUILD_IN_SUBPROCESS = """
import json, sys
from datetime import datetime
from scoreboard import create_app
from tests.integrity.test_scan import build_population
app = create_app()
made = build_population(app, end=datetime.fromisoformat(sys.argv[1]))
print(json.dumps({"bots": made.bots, "threshold": made.threshold}))
"""


@pytest.mark.live  # flask commands on SQLite and the in-process stores: no PostgreSQL or Redis
def test_the_scan_runs_on_the_embedded_database(tmp_path):
    import sqlite3

    database = tmp_path / "board.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        {
            "SCOREBOARD_SQLITE_PATH": str(database),
            "FLASK_APP": "wsgi",
            "SCOREBOARD_JWT_SECRET_KEY": "embedded-test-secret-0123456789abcdef",
            "SCOREBOARD_LOG_LEVEL": "WARNING",
        }
    )
    flask = [python_bin(), "-m", "flask"]

    def run(*argv):
        result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run(*flask, "db", "upgrade")
    run(*flask, "actions", "load", "scoreboard/default_catalog.json")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat()
    built = json.loads(run(python_bin(), "-c", BUILD_IN_SUBPROCESS, end))
    bots = built["bots"]
    env["SCOREBOARD_ANOMALY_THRESHOLD"] = str(built["threshold"])

    lines = [json.loads(line) for line in run(*flask, "anomalies", "scan", "--end", end).splitlines()]
    assert sorted(line["suspect"]["userId"] for line in lines[:-1]) == sorted(bots)
    summary = lines[-1]["scan"]
    assert (summary["judged"], summary["held"], summary["dryRun"]) == (153, 3, False)
    with sqlite3.connect(database) as conn:
        held = conn.execute("SELECT id FROM users WHERE status = 'held' ORDER BY id").fetchall()
        suspects = conn.execute("SELECT user_id, status FROM suspects ORDER BY user_id").fetchall()
        pending = conn.execute("SELECT count(*) FROM scores WHERE board_pending").fetchone()
    assert [user for (user,) in held] == sorted(bots)
    assert suspects == [(user, "held") for user in sorted(bots)]
    assert pending == (3,)  # left for the server's next refresh: this process's in-memory mirror is not its

    dry = [json.loads(line) for line in run(*flask, "anomalies", "scan", "--dry-run", "--end", end).splitlines()]
    assert dry[0] == {"lastScan": summary}
    assert dry[1]["scan"]["flagged"] == [] and len(dry[1]["scan"]["skipped"]) == 3
