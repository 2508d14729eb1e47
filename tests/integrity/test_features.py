"""The anomaly scan's features on hand-made ledgers (exact values, on PostgreSQL and SQLite), and the model:
a planted metronome among simulated people is flagged and explained by its rhythm; ``changed_markedly``."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from flask import Flask
from sqlalchemy import insert, text

from scoreboard.extensions import db
from scoreboard.integrity import features
from scoreboard.integrity.detector import DEFAULT_THRESHOLD, changed_markedly, judge
from scoreboard.integrity.features import NAMES, Population, population
from scoreboard.models import Action, ClaimRefusal, Completion, User
from tests.conftest import DEFAULT_CATALOG

END = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=24)
START = END - WINDOW

_serial = iter(range(1, 10**9))


def completion(user, claimed, delay=1.0, action="complete-lesson", status="claimed", ip="10.9.9.9", agent="UA"):
    """A ledger row claimed at ``claimed`` (None: never), recorded ``delay`` seconds before."""
    created = (claimed or END) - timedelta(seconds=delay)
    return {
        "id": f"c{next(_serial):08d}",
        "user_id": user,
        "action_key": action,
        "points": 50,
        "status": status,
        "created_at": created,
        "expires_at": created + timedelta(hours=1),
        "claimed_at": claimed,
        "client_ip": ip,
        "user_agent": agent,
    }


def ledger() -> tuple[list[dict], list[dict]]:
    """Completions and refusals of four users whose features are worked out by hand below."""
    rows, refusals = [], []
    # alice: 11 claims from 14:00, gaps alternating 60 and 180 s (mean 120, std 60: CV 0.5), all in one hour;
    # delays 1..11 s (median 6); three addresses and one unknown; two agents; two refusals in the window.
    t0 = START + timedelta(hours=2)
    offsets = np.concatenate([[0], np.cumsum([60, 180] * 5)])
    for i, offset in enumerate(offsets):
        ip = "10.0.0.1" if i < 6 else "10.0.0.2" if i < 9 else "10.0.0.3" if i < 10 else None
        action = "pass-quiz" if i in (5, 6) else "complete-lesson"
        claimed = t0 + timedelta(seconds=float(offset))
        rows.append(completion("alice", claimed, i + 1, action, ip=ip, agent="A" if i < 8 else "B"))
    for at in (t0 + timedelta(seconds=5), t0 + timedelta(seconds=100), START - timedelta(seconds=1), END):
        refusals.append({"user_id": "alice", "at": at, "reason": "already_claimed", "client_ip": "10.0.0.1"})

    # bob: exactly six claims (one of them voided after its claim) at 22:00 + 0, 1, 8, 10, 110, 4110 s:
    # gaps 1, 7, 2, 100, 4000 (two under 3 s; only four within sessions, too few for a rhythm); quizzes
    # recorded 7.5 s apart (within two 5-s cooldowns), then 100 s; delays 0.5, 0.5, 1, 2, 3, 4 (median 1.5).
    t1 = START + timedelta(hours=10)
    delays = [0.5, 0.5, 1.0, 2.0, 3.0, 4.0]
    for i, (offset, delay) in enumerate(zip([0, 1, 8, 10, 110, 4110], delays, strict=True)):
        action = "pass-quiz" if i in (0, 2, 4) else "complete-lesson"
        status = "void" if i == 3 else "claimed"
        rows.append(completion("bob", t1 + timedelta(seconds=offset), delay, action, status, ip="10.1.0.1"))
    # None of these is a claim of the window: pending, expired, claimed before it, an adjustment.
    rows.append(completion("bob", None, status="pending"))
    rows.append(completion("bob", None, status="expired"))
    rows.append(completion("bob", START - timedelta(minutes=5)))
    adjustment = completion("bob", t1 + timedelta(seconds=30), 0, None, "adjustment")
    rows.append(adjustment)

    # carol: five claims inside and one exactly at the window's end (outside): not judged.
    for i in range(5):
        rows.append(completion("carol", t0 + timedelta(minutes=10 * i)))
    rows.append(completion("carol", END))
    # dave: five inside and one exactly at the window's start (inside): six, judged.
    for i in range(5):
        rows.append(completion("dave", t0 + timedelta(minutes=10 * i)))
    rows.append(completion("dave", START))
    return rows, refusals


EXPECTED = {
    "alice": {
        "claims_per_active_hour": 11.0,
        "active_hours": 1.0,
        "longest_rest_hours": (86400 - 7200 - 1200) / 3600,
        "gap_cv": 0.5,
        "burst_share": 0.0,
        "median_claim_delay": 6.0,
        "cooldown_share": 0.0,
        "distinct_ips": 3.0,
        "distinct_user_agents": 2.0,
        "refusals_per_claim": 2 / 11,
    },
    "bob": {
        "claims_per_active_hour": 3.0,
        "active_hours": 2.0,
        "longest_rest_hours": (86400 - 36000 - 4110) / 3600,
        "gap_cv": features.UNMEASURED_CV,
        "burst_share": 0.4,
        "median_claim_delay": 1.5,
        "cooldown_share": 1 / 3,
        "distinct_ips": 1.0,
        "distinct_user_agents": 1.0,
        "refusals_per_claim": 0.0,
    },
}


def write(rows, refusals):
    """Insert the users and rows through the app's session."""
    users = sorted({r["user_id"] for r in rows} | {r["user_id"] for r in refusals})
    db.session.execute(insert(User), [{"id": u, "display_name": u} for u in users])
    db.session.execute(insert(Completion), rows)
    if refusals:
        db.session.execute(insert(ClaimRefusal), refusals)
    db.session.commit()


def check_ledger():
    rows, refusals = ledger()
    write(rows, refusals)
    found = population(END, WINDOW)
    assert found.names == NAMES
    assert found.user_ids == ["alice", "bob", "dave"]  # carol has five claims: not judged
    for user, expected in EXPECTED.items():
        got = found.features_of(found.user_ids.index(user))
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-4), user
    assert population(END, WINDOW, min_claims=7).user_ids == ["alice"]


def test_features_of_a_hand_made_ledger_on_postgresql(app):
    with app.app_context():
        check_ledger()
        # The scan's reads left the session usable, and the statement timeout as it was.
        assert db.session.execute(text("SHOW statement_timeout")).scalar() != "0"


@pytest.fixture
def sqlite_app(tmp_path):
    """A bare app on SQLite with the models' schema and the default catalog."""
    app = Flask("integrity-sqlite")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    db.init_app(app)
    with app.app_context():
        db.create_all(bind_key=None)  # the tables; the service's claims bind has none of its own
        catalog = json.loads(DEFAULT_CATALOG.read_text())
        db.session.execute(
            insert(Action),
            [
                {
                    "key": e["key"],
                    "points": e["points"],
                    "max_per_user_per_day": e.get("maxPerUserPerDay"),
                    "cooldown_seconds": e.get("cooldownSeconds"),
                }
                for e in catalog
            ],
        )
        db.session.commit()
    yield app
    with app.app_context():
        db.engine.dispose()


def test_features_of_a_hand_made_ledger_on_sqlite(sqlite_app):
    with sqlite_app.app_context():
        check_ledger()


def test_an_empty_window_judges_nobody(app):
    with app.app_context():
        found = population(END, WINDOW)
    assert (found.user_ids, found.values.shape) == ([], (0, len(NAMES)))
    assert judge(found, DEFAULT_THRESHOLD) == []


def metronome(user: str, claims: int = 60) -> list[dict]:
    """A script claiming every 120 s (1% jitter), 3 s after recording, from one address: 2 hours."""
    rng = np.random.default_rng(3)
    times = START + timedelta(hours=9)
    rows = []
    for gap in 120 * (1 + rng.uniform(-0.01, 0.01, claims)):
        times += timedelta(seconds=float(gap))
        rows.append(completion(user, times, 3.0, ip="10.7.7.7", agent="bot"))
    return rows


@pytest.fixture
def people_and_a_metronome(app):
    """300 simulated people (bench.anomalies' simulator) and one planted metronome, scanned."""
    from bench.anomalies import load
    from bench.anomalies.simulate import simulate

    ledger = simulate(7, 300, 0, START.timestamp(), END.timestamp())
    with app.app_context():
        load.write(db.engine, ledger, 3600.0, 7)
        write(metronome("metronome"), [])
        found = population(END, WINDOW)
    return found


def test_judge_flags_a_planted_metronome_and_says_why(people_and_a_metronome):
    found = people_and_a_metronome
    assert len(found) > 150
    verdicts = {v.user_id: v for v in judge(found, DEFAULT_THRESHOLD)}
    bot = verdicts["metronome"]
    assert bot.flagged and bot.score >= DEFAULT_THRESHOLD
    assert bot.score == max(v.score for v in verdicts.values())
    assert bot.reasons[0]["feature"] == "gap_cv"
    assert bot.reasons[0]["value"] == pytest.approx(bot.features["gap_cv"]) and bot.features["gap_cv"] < 0.02
    typical = bot.reasons[0]["typical"]
    assert typical["p95"] < typical["median"]  # gap_cv is suspicious low: its p95 is the 5th percentile
    assert bot.reasons[0]["value"] < typical["p95"]
    assert len(bot.reasons) == 3 and set(bot.features) == set(NAMES)
    people = [v for uid, v in verdicts.items() if uid != "metronome"]
    assert sum(v.flagged for v in people) <= 0.03 * len(people)
    # The same seed, the same verdicts; contamination caps how many are flagged.
    again = judge(found, DEFAULT_THRESHOLD)
    assert [v.score for v in again] == [verdicts[v.user_id].score for v in again]
    capped = judge(found, 0.0, contamination=0.01)
    assert 0 < sum(v.flagged for v in capped) <= 0.01 * len(found) + 1


def synthetic(n: int = 2000, seed: int = 0) -> Population:
    """Ordinary-looking users drawn at random, with a metronome in row 0 (no database needed)."""
    rng = np.random.default_rng(seed)
    columns = {
        "claims_per_active_hour": rng.lognormal(np.log(4), 0.6, n),
        "active_hours": rng.integers(1, 12, n).astype(float),
        "longest_rest_hours": rng.uniform(6, 20, n),
        "gap_cv": rng.lognormal(np.log(1.2), 0.4, n),
        "burst_share": np.where(rng.random(n) < 0.2, rng.uniform(0, 0.15, n), 0.0),
        "median_claim_delay": rng.lognormal(np.log(15), 1.2, n),
        "cooldown_share": np.where(rng.random(n) < 0.05, rng.uniform(0, 0.3, n), 0.0),
        "distinct_ips": rng.choice([1.0, 2.0, 3.0], n, p=[0.6, 0.3, 0.1]),
        "distinct_user_agents": rng.choice([1.0, 2.0], n, p=[0.75, 0.25]),
        "refusals_per_claim": np.where(rng.random(n) < 0.1, rng.uniform(0, 0.2, n), 0.0),
    }
    values = np.column_stack([columns[name] for name in NAMES])
    values[0, NAMES.index("gap_cv")] = 0.01
    return Population([f"u{i:05d}" for i in range(n)], values, NAMES)


@pytest.mark.unit
def test_judge_ranks_a_metronome_first_in_a_synthetic_population():
    # Random features, not people's: only the ranking is checked here (the threshold's is the benchmark's).
    found = synthetic()
    verdicts = judge(found, DEFAULT_THRESHOLD, seed=4)
    assert verdicts[0].flagged and verdicts[0].reasons[0]["feature"] == "gap_cv"
    assert verdicts[0].score == max(v.score for v in verdicts)
    assert [v.user_id for v in verdicts] == found.user_ids
    typical = found.typical()["distinct_ips"]
    assert (typical["median"], typical["p95"]) == (1.0, 3.0)


@pytest.mark.unit
def test_changed_markedly():
    found = synthetic()
    before = found.features_of(0)  # the metronome, as cleared by a reviewer
    assert not changed_markedly(before, dict(before), found)
    # More of the same behaviour, but not markedly more: a bit more regular, a bit faster.
    assert not changed_markedly(before, {**before, "gap_cv": 0.008, "claims_per_active_hour": 5.0}, found)
    # Becoming ordinary on the feature it was cleared for is no change that matters.
    assert not changed_markedly(before, {**before, "gap_cv": 1.3}, found)
    # A new behaviour far out on another feature is.
    assert changed_markedly(before, {**before, "distinct_ips": 12.0}, found)
    assert changed_markedly(before, {**before, "burst_share": 0.9}, found)
    # Movement on the ordinary side of the median counts for nothing, however large.
    assert not changed_markedly(before, {**before, "median_claim_delay": 3000.0}, found)
    # Features one side lacks are skipped.
    assert not changed_markedly({"gap_cv": 0.01}, {"distinct_ips": 40.0}, found)
