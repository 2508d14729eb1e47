"""Moderation: hide, ban and restore users, adjust points, void completions; every act goes in the audit log.

Scores never go below zero: an adjustment, or the void of a claim, that would take one there is
refused (409 ``score_below_zero``) and changes nothing, so a score always equals the sum of its ledger.

Period boards follow: an adjustment counts in the current day, week and month; a void takes the
claim's points out of the periods it was claimed in (those still kept); a change of standing
flags the user's kept period rows, so every board shows or hides the user.

The anomaly scan's suspects (``Suspect``) are reviewed here too: clearing one gives the user back
the status they had before the hold; confirming one bans the user and, if asked, voids their
claims of the scan's window, all in one transaction.
"""

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ..errors import ApiError
from ..extensions import db
from ..models import (
    AuditEntry,
    Completion,
    CompletionStatus,
    PeriodScore,
    Score,
    Suspect,
    SuspectStatus,
    User,
    UserStatus,
)
from ..ops import metrics
from ..periods import TIMED, all_kept, clock, current_periods, period_at
from .completions import new_action_id
from .outbox import flag_periods, period_params, period_upsert, score_change

scores = Score.__table__
period_scores = PeriodScore.__table__


def record_audit(
    actor: str,
    actor_ip: str | None,
    act: str,
    reason: str,
    target_user: str | None = None,
    target_completion: str | None = None,
    **details: Any,
) -> None:
    """Add an audit-log row to the current transaction."""
    db.session.add(
        AuditEntry(
            actor=actor,
            actor_ip=actor_ip,
            act=act,
            reason=reason,
            target_user=target_user,
            target_completion=target_completion,
            details=json.dumps(details, default=str),
        )
    )


def _user(user_id):
    user = db.session.get(User, user_id)
    if user is None:
        raise ApiError(404, "user_not_found", "No such user.")
    return user


def _refuse_below_zero(user_id: str, delta: int) -> None:
    """Scores never go below zero: undo the act and say by how much it would have."""
    db.session.rollback()
    score = db.session.scalar(select(Score.score).where(Score.user_id == user_id)) or 0
    db.session.rollback()
    raise ApiError(
        409,
        "score_below_zero",
        f"This would take the score from {score} to {score + delta}; scores never go below zero.",
        score=int(score),
    )


def flag_for_board(user_id: str) -> None:
    """Mark the score (and the kept period rows) changed so every board picks up the user's new standing."""
    db.session.execute(update(scores).where(scores.c.user_id == user_id).values(score_change()))
    db.session.execute(flag_periods(user_id, [p.key for p in all_kept()]))


def apply_status(user_id: str, status: str, reason: str, actor: str, actor_ip: str | None, **details: Any) -> User:
    """Change a user's status in the current transaction (flagged for every board, audited); the caller commits."""
    user = _user(user_id)
    previous = user.status
    user.status = status
    flag_for_board(user_id)
    record_audit(actor, actor_ip, f"status:{status}", reason, target_user=user_id, previous=previous, **details)
    return user


def set_status(user_id: str, status: str, reason: str, actor: str, actor_ip: str | None) -> User:
    """Hide, unhide, ban or unban; returns the user."""
    user = apply_status(user_id, status, reason, actor, actor_ip)
    db.session.commit()
    return user


def adjust(user_id: str, delta: int, reason: str, actor: str, actor_ip: str | None) -> tuple[Completion, int]:
    """Add ``delta`` points (may be negative) as an ``adjustment`` ledger row; returns ``(row, new_score)``."""
    _user(user_id)
    now = clock()
    row = Completion(
        id=new_action_id(),
        user_id=user_id,
        action_key=None,
        points=delta,
        status=CompletionStatus.ADJUSTMENT,
        reason=reason,
        created_at=now,
        expires_at=now,
        claimed_at=now,
        client_ip=actor_ip,
    )
    db.session.add(row)
    new_score = db.session.execute(
        update(scores)
        .where(scores.c.user_id == user_id, scores.c.score + delta >= 0)
        .values(score_change(score=scores.c.score + delta, reached_at=now))
        .returning(scores.c.score)
    ).scalar()
    if new_score is None:
        _refuse_below_zero(user_id, delta)
    upsert = period_upsert(db.session.get_bind().dialect.name)
    db.session.execute(upsert, period_params(current_periods(now), user_id, delta, now))
    record_audit(actor, actor_ip, "adjust", reason, target_user=user_id, target_completion=row.id, delta=delta)
    db.session.commit()
    return row, int(new_score)


def _take_from_periods(user_id: str, points: int, claimed_at) -> None:
    """Take a voided claim's points out of the kept periods it was claimed in (a period may go below zero:
    its board then leaves the user out, and its score stays the sum of its ledger)."""
    kept = {p.key for p in all_kept()}
    keys = [key for key in (period_at(kind, claimed_at).key for kind in TIMED) if key in kept]
    if keys:
        db.session.execute(
            update(period_scores)
            .where(period_scores.c.user_id == user_id, period_scores.c.period.in_(keys))
            .values(score_change(period_scores, score=period_scores.c.score - points))
        )


def void(action_id: str, reason: str, actor: str, actor_ip: str | None) -> tuple[Completion, int]:
    """Void a completion; a claimed one gives its points back. Returns ``(completion, new_score)``."""
    completion = db.session.scalar(select(Completion).where(Completion.id == action_id).with_for_update())
    if completion is None or completion.status == CompletionStatus.ADJUSTMENT:
        raise ApiError(404, "action_not_found", "No such completion.")
    if completion.status == CompletionStatus.VOID:
        raise ApiError(409, "already_void", "This completion is already void.")
    was_claimed = completion.status == CompletionStatus.CLAIMED
    completion.status = CompletionStatus.VOID
    completion.reason = reason
    completion.voided_at = clock()
    taken = completion.points if was_claimed else 0
    new_score = db.session.execute(
        update(scores)
        .where(scores.c.user_id == completion.user_id, scores.c.score - taken >= 0)
        .values(score_change(score=scores.c.score - taken) if taken else score_change())
        .returning(scores.c.score)
    ).scalar()
    if new_score is None:
        _refuse_below_zero(completion.user_id, -taken)
    if taken:
        _take_from_periods(completion.user_id, taken, completion.claimed_at)
    record_audit(
        actor,
        actor_ip,
        "void",
        reason,
        target_user=completion.user_id,
        target_completion=action_id,
        points=completion.points,
        was_claimed=was_claimed,
    )
    db.session.commit()
    return completion, int(new_score)


# Ids per statement when voiding many claims at once.
VOID_CHUNK = 1000


def void_claims(user_id: str, since: datetime, reason: str, actor: str, actor_ip: str | None) -> tuple[int, int, int]:
    """Void every claim of ``user_id`` claimed at or after ``since`` in the current transaction (the caller
    commits): the points leave the score and the kept periods they were claimed in, each void is audited.

    One statement per table (per :data:`VOID_CHUNK` claims), however many claims: a bot's day can
    hold thousands. Refused as a whole (409 ``score_below_zero``, rolled back) if the score would go
    below zero. Returns ``(claims voided, points taken, new score)``.
    """
    rows = db.session.execute(
        select(Completion.id, Completion.points, Completion.claimed_at)
        .where(
            Completion.user_id == user_id,
            Completion.status == CompletionStatus.CLAIMED,
            Completion.claimed_at >= since,
        )
        .order_by(Completion.claimed_at)
        .with_for_update()
    ).all()
    current = db.session.scalar(select(Score.score).where(Score.user_id == user_id))
    if not rows:
        return 0, 0, int(current or 0)
    taken = sum(int(r.points) for r in rows)
    new_score = db.session.execute(
        update(scores)
        .where(scores.c.user_id == user_id, scores.c.score - taken >= 0)
        .values(score_change(score=scores.c.score - taken))
        .returning(scores.c.score)
    ).scalar()
    if new_score is None:
        _refuse_below_zero(user_id, -taken)
    now = clock()
    ids = [r.id for r in rows]
    for start in range(0, len(ids), VOID_CHUNK):
        db.session.execute(
            update(Completion)
            .where(Completion.id.in_(ids[start : start + VOID_CHUNK]))
            .values(status=CompletionStatus.VOID, reason=reason, voided_at=now),
            execution_options={"synchronize_session": False},
        )
    kept = {p.key for p in all_kept(now)}
    by_period: Counter[str] = Counter()
    for r in rows:
        for kind in TIMED:
            key = period_at(kind, r.claimed_at).key
            if key in kept:
                by_period[key] += int(r.points)
    for key, points in by_period.items():
        db.session.execute(
            update(period_scores)
            .where(period_scores.c.user_id == user_id, period_scores.c.period == key)
            .values(score_change(period_scores, score=period_scores.c.score - points))
        )
    for r in rows:
        record_audit(
            actor,
            actor_ip,
            "void",
            reason,
            target_user=user_id,
            target_completion=r.id,
            points=r.points,
            was_claimed=True,
        )
    return len(rows), taken, int(new_score)


# --- suspects of the anomaly scan ----------------------------------------------------------------

UNDER_REVIEW = (SuspectStatus.HELD, SuspectStatus.FLAGGED)


def suspects(status: str | None = None, limit: int = 100) -> list[tuple[Suspect, str]]:
    """The latest suspects (of one status, or all), newest first, with their display names."""
    query = select(Suspect, User.display_name).join(User, User.id == Suspect.user_id)
    if status is not None:
        query = query.where(Suspect.status == status)
    rows = db.session.execute(query.order_by(Suspect.flagged_at.desc(), Suspect.user_id.desc()).limit(limit)).all()
    return [(suspect, name) for suspect, name in rows]


def _suspect_under_review(user_id: str) -> Suspect:
    """The suspect row of ``user_id``, locked; 404 if none, 409 if already reviewed."""
    suspect = db.session.get(Suspect, user_id, with_for_update=True)
    if suspect is None:
        raise ApiError(404, "suspect_not_found", "This user is not a suspect.")
    if suspect.status not in UNDER_REVIEW:
        db.session.rollback()
        raise ApiError(
            409, "already_reviewed", f"This suspect was already {suspect.status}.", suspectStatus=suspect.status
        )
    return suspect


def _reviewed(suspect: Suspect, status: str, reason: str, actor: str) -> None:
    suspect.status = status
    suspect.reviewed_by = actor
    suspect.reviewed_at = clock()
    suspect.review_reason = reason


def clear_suspect(user_id: str, reason: str, actor: str, actor_ip: str | None) -> tuple[Suspect, User]:
    """Clear a suspect: a held user gets back the status they had before the hold (and the boards show them)."""
    suspect = _suspect_under_review(user_id)
    user = _user(user_id)
    if user.status == UserStatus.HELD:
        # An admin may have changed the status since the hold; only the hold itself is undone.
        apply_status(user_id, suspect.previous_status or UserStatus.ACTIVE, reason, actor, actor_ip, review="clear")
    _reviewed(suspect, SuspectStatus.CLEARED, reason, actor)
    record_audit(actor, actor_ip, "suspect:clear", reason, target_user=user_id, anomaly_score=suspect.anomaly_score)
    db.session.commit()
    metrics.ANOMALY_SUSPECTS.labels("cleared").inc()
    return suspect, user


def confirm_suspect(
    user_id: str, reason: str, void: bool, window: timedelta, actor: str, actor_ip: str | None
) -> tuple[Suspect, User, tuple[int, int, int]]:
    """Confirm a suspect: ban the user and, with ``void``, void their claims from the start of the scan's window
    (``flagged_at - window``) on, the ones claimed while held included. One transaction: all of it or nothing.

    Returns the suspect, the user and ``(claims voided, points taken, new score)``.
    """
    suspect = _suspect_under_review(user_id)
    voided = void_claims(user_id, suspect.flagged_at - window, reason, actor, actor_ip) if void else None
    user = apply_status(user_id, UserStatus.BANNED, reason, actor, actor_ip, review="confirm")
    if voided is None:
        voided = (0, 0, int(db.session.scalar(select(Score.score).where(Score.user_id == user_id)) or 0))
    _reviewed(suspect, SuspectStatus.CONFIRMED, reason, actor)
    record_audit(
        actor,
        actor_ip,
        "suspect:confirm",
        reason,
        target_user=user_id,
        anomaly_score=suspect.anomaly_score,
        voided=voided[0],
        points=voided[1],
    )
    db.session.commit()
    metrics.ANOMALY_SUSPECTS.labels("confirmed").inc()
    return suspect, user, voided


def ledger(user_id: str, limit: int = 200) -> tuple[User, Score | None, list[Completion], list[AuditEntry]]:
    """A user's latest ledger rows and audit entries."""
    user = _user(user_id)
    score = db.session.get(Score, user_id)
    rows = db.session.scalars(
        select(Completion).where(Completion.user_id == user_id).order_by(Completion.created_at.desc()).limit(limit)
    ).all()
    audits = db.session.scalars(
        select(AuditEntry).where(AuditEntry.target_user == user_id).order_by(AuditEntry.id.desc()).limit(limit)
    ).all()
    return user, score, rows, audits
