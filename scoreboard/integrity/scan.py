"""The anomaly scan: judge the players of the last window and hold (or flag) the anomalous ones for review.

Beat runs :func:`run_scan` every ``SCOREBOARD_ANOMALY_INTERVAL`` on the maintenance queue
(``workers.maintenance.scan_anomalies``); ``flask anomalies scan [--dry-run]`` runs it by hand.
A scan reads the population of the window ending now (``features.population``: the users with
at least ``SCOREBOARD_ANOMALY_MIN_CLAIMS`` claims in it), judges it (``detector.judge``) and, for
each user flagged who is not already under review:

- records a :class:`~scoreboard.models.Suspect` (score, the features that drove it, every
  feature's value, the status the user had);
- with ``SCOREBOARD_ANOMALY_ACTION=hold`` (the default) sets the user's status to ``held`` the
  way moderation does (flagged for every board, audited with the actor ``anomaly-scan``): off
  every public board while their claims keep working; with ``flag`` only reports them.

Banned and hidden users are left alone, as are suspects under review or confirmed; a cleared
suspect is flagged again only when their behaviour changed markedly since (``detector.changed_markedly``).
With fewer judged users than ``SCOREBOARD_ANOMALY_MIN_POPULATION`` nothing is judged: the
scan says so and flags nobody. Each new suspect is one JSON log line; the last real scan's
summary is kept (Redis ``<p>anomaly:last-scan``, or a file beside the embedded database) for
``flask anomalies scan --dry-run`` to show.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import current_app

from ..extensions import db
from ..models import Suspect, SuspectStatus, User, UserStatus
from ..ops import metrics
from ..periods import clock
from ..scoring import moderation
from ..stores import get_stores
from . import detector, features

log = logging.getLogger(__name__)

ACTOR = "anomaly-scan"
LAST_SCAN_KEY = "anomaly:last-scan"
LAST_SCAN_FILE = "anomaly-last-scan.json"
# The users left alone whatever the model says: an admin already dealt with them.
LEFT_ALONE = (UserStatus.BANNED, UserStatus.HIDDEN)
# Reasons shown in an audit line (the suspect row keeps them all).
AUDITED_REASONS = 3


@dataclass
class ScanSummary:
    """What one scan judged and did; :meth:`to_dict` is its JSON (the CLI's output, the stored last scan)."""

    at: datetime
    window_seconds: float
    threshold: float
    action: str
    dry_run: bool
    min_population: int
    judged: int = 0  # users in the population
    population_too_small: bool = False
    # One entry per new suspect: {"userId", "anomalyScore", "action", "reasons"}; action "held" or "flagged"
    # (a dry run: "would_hold", "would_flag").
    flagged: list[dict[str, Any]] = field(default_factory=list)
    held: int = 0
    # Flagged by the model but left as they are: {"userId", "why"} (banned, hidden, under review, confirmed, cleared).
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready camelCase."""
        raw = asdict(self)
        return {
            "at": self.at.isoformat(),
            "windowSeconds": raw["window_seconds"],
            "threshold": raw["threshold"],
            "action": raw["action"],
            "dryRun": raw["dry_run"],
            "minPopulation": raw["min_population"],
            "judged": raw["judged"],
            "populationTooSmall": raw["population_too_small"],
            "flagged": raw["flagged"],
            "held": raw["held"],
            "skipped": raw["skipped"],
            "seconds": round(raw["seconds"], 3),
        }


def plain(value: Any) -> Any:
    """``value`` with numpy scalars made Python numbers and non-finite numbers made None, so it is valid JSON."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return None
    return int(number) if isinstance(value, numbers.Integral) else number


def threshold_setting() -> float:
    """The threshold in force: ``SCOREBOARD_ANOMALY_THRESHOLD``, else the detector's default."""
    configured = current_app.config.get("ANOMALY_THRESHOLD")
    return float(detector.DEFAULT_THRESHOLD if configured is None else configured)


def _why_left_alone(user: User | None, suspect: Suspect | None, verdict: Any, population: Any) -> str | None:
    """Why a flagged user gets no new suspect row, or None when they should."""
    if user is None:
        return "no such user"
    if user.status in LEFT_ALONE:
        return user.status
    if suspect is None:
        return None
    if suspect.status in (SuspectStatus.HELD, SuspectStatus.FLAGGED):
        return "under review"
    if suspect.status == SuspectStatus.CONFIRMED:
        return "confirmed"
    before = json.loads(suspect.features or "{}")
    if not detector.changed_markedly(before, dict(verdict.features), population):
        return "cleared, unchanged since"
    return None


def _audit_reason(verdict: Any, threshold: float) -> str:
    """One line for the audit log: the score against the threshold and the features that drove it."""
    shown = ", ".join(f"{r['feature']}={plain(r['value'])}" for r in list(verdict.reasons)[:AUDITED_REASONS])
    return f"anomaly score {float(verdict.score):.3f} over the threshold {threshold:.3f}: {shown}"[:500]


def _record(verdict: Any, population: Any, summary: ScanSummary, hold: bool) -> dict[str, Any] | None:
    """Make ``verdict``'s user a suspect (and hold them) in a transaction of its own; None when left alone."""
    user_id = verdict.user_id
    # Locked, so a ban an admin commits meanwhile is never overwritten by the hold.
    user = db.session.get(User, user_id, with_for_update=True)
    suspect = db.session.get(Suspect, user_id, with_for_update=True)
    why = _why_left_alone(user, suspect, verdict, population)
    if why is not None:
        db.session.rollback()
        summary.skipped.append({"userId": user_id, "why": why})
        return None
    reasons = plain(list(verdict.reasons))
    if suspect is None:
        suspect = Suspect(user_id=user_id)
        db.session.add(suspect)
    score = round(float(verdict.score), 6)
    suspect.status = SuspectStatus.HELD if hold else SuspectStatus.FLAGGED
    suspect.anomaly_score = score
    suspect.flagged_at = summary.at
    suspect.reasons = json.dumps(reasons)
    suspect.features = json.dumps(plain(dict(verdict.features)))
    # A user an admin held by hand has no status of their own to go back to but active.
    suspect.previous_status = user.status if user.status != UserStatus.HELD else UserStatus.ACTIVE
    suspect.reviewed_by = suspect.reviewed_at = suspect.review_reason = None
    reason = _audit_reason(verdict, summary.threshold)
    if hold:
        moderation.apply_status(user_id, UserStatus.HELD, reason, ACTOR, None, anomaly_score=score)
    else:
        moderation.record_audit(ACTOR, None, "suspect:flag", reason, target_user=user_id, anomaly_score=score)
    db.session.commit()
    return {"userId": user_id, "anomalyScore": score, "action": "held" if hold else "flagged", "reasons": reasons}


def _preview(verdict: Any, population: Any, summary: ScanSummary, hold: bool) -> dict[str, Any] | None:
    """What :func:`_record` would do, changing nothing."""
    user = db.session.get(User, verdict.user_id)
    suspect = db.session.get(Suspect, verdict.user_id)
    why = _why_left_alone(user, suspect, verdict, population)
    if why is not None:
        summary.skipped.append({"userId": verdict.user_id, "why": why})
        return None
    return {
        "userId": verdict.user_id,
        "anomalyScore": round(float(verdict.score), 6),
        "action": "would_hold" if hold else "would_flag",
        "reasons": plain(list(verdict.reasons)),
    }


def run_scan(dry_run: bool = False, now: datetime | None = None) -> ScanSummary:
    """Judge the window ending ``now`` (default: the periods' clock) and record the new suspects.

    A dry run judges and reports the same, and changes nothing (it is neither counted nor stored).
    """
    config = current_app.config
    started = time.monotonic()
    window = config["ANOMALY_WINDOW"]
    summary = ScanSummary(
        at=now or clock(),
        window_seconds=window.total_seconds(),
        threshold=threshold_setting(),
        action=config["ANOMALY_ACTION"],
        dry_run=dry_run,
        min_population=int(config["ANOMALY_MIN_POPULATION"]),
    )
    hold = summary.action == "hold"
    try:
        population = features.population(summary.at, window, min_claims=int(config["ANOMALY_MIN_CLAIMS"]))
        db.session.commit()  # the window's reads are done: hold no transaction while the model judges
        summary.judged = len(population.user_ids)
        if summary.judged < summary.min_population:
            summary.population_too_small = True
            log.info(
                "anomaly scan: %d users judged, fewer than %d: nobody flagged",
                summary.judged,
                summary.min_population,
                extra={"event": "anomaly_scan_too_small", "judged": summary.judged, "dry_run": dry_run},
            )
        else:
            verdicts = detector.judge(population, summary.threshold, seed=0)
            act = _preview if dry_run else _record
            for verdict in sorted((v for v in verdicts if v.flagged), key=lambda v: -float(v.score)):
                found = act(verdict, population, summary, hold)
                if found is None:
                    continue
                summary.flagged.append(found)
                summary.held += found["action"] == "held"
                log.info(
                    "anomaly suspect %s: %s",
                    found["userId"],
                    found["action"],
                    extra={"event": "anomaly_suspect", "suspect": found["userId"], **_log_fields(found, dry_run)},
                )
    except Exception:
        db.session.rollback()
        if not dry_run:
            metrics.ANOMALY_SCANS.labels("failed").inc()
        raise
    summary.seconds = time.monotonic() - started
    if not dry_run:
        _count(summary)
        store_last_scan(summary)
    return summary


def _log_fields(found: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    return {
        "anomaly_score": found["anomalyScore"],
        "action": found["action"],
        "reasons": found["reasons"],
        "dry_run": dry_run,
    }


def _count(summary: ScanSummary) -> None:
    metrics.ANOMALY_SCANS.labels("population_too_small" if summary.population_too_small else "judged").inc()
    metrics.ANOMALY_SCAN_SECONDS.observe(summary.seconds)
    if not summary.population_too_small:
        metrics.ANOMALY_USERS_SCORED.inc(summary.judged)
    metrics.ANOMALY_SUSPECTS.labels("flagged").inc(len(summary.flagged))
    metrics.ANOMALY_SUSPECTS.labels("held").inc(summary.held)


# --- the last scan's summary ----------------------------------------------------------------------


def _redis():
    """The Redis client of the stores, or None on the embedded in-process ones."""
    return getattr(get_stores().coordination, "redis", None)


def _last_scan_file() -> Path:
    """Beside the embedded database (the CLI and the server are different processes, and share only that)."""
    uri = current_app.config["SQLALCHEMY_DATABASE_URI"]
    base = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path("instance")
    return base / LAST_SCAN_FILE


def store_last_scan(summary: ScanSummary) -> None:
    """Keep the summary of the last real scan; a failure to keep it is logged, never raised."""
    text = json.dumps(summary.to_dict())
    try:
        client = _redis()
        if client is not None:
            client.set(current_app.config["REDIS_PREFIX"] + LAST_SCAN_KEY, text)
        else:
            path = _last_scan_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except Exception as exc:  # Redis down, a read-only disk: the scan itself is done
        log.warning("the anomaly scan's summary was not kept: %s", exc)


def last_scan() -> dict[str, Any] | None:
    """The summary of the last real scan, or None if none was kept."""
    client = _redis()
    if client is not None:
        text = client.get(current_app.config["REDIS_PREFIX"] + LAST_SCAN_KEY)
    else:
        path = _last_scan_file()
        text = path.read_text() if path.is_file() else None
    return json.loads(text) if text else None
