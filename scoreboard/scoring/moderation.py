"""Moderation: hide, ban and restore users, adjust points, void completions; every act goes in the audit log.

Scores never go below zero: an adjustment, or the void of a claim, that would take one there is
refused (409 ``score_below_zero``) and changes nothing, so a score always equals the sum of its ledger.

Period boards follow: an adjustment counts in the current day, week and month; a void takes the
claim's points out of the periods it was claimed in (those still kept); a change of standing
flags the user's kept period rows, so every board shows or hides the user.
"""

import json
from typing import Any

from sqlalchemy import select, update

from ..errors import ApiError
from ..extensions import db
from ..models import AuditEntry, Completion, CompletionStatus, PeriodScore, Score, User
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


def _flag_for_board(user_id):
    """Mark the score (and the kept period rows) changed so every board picks up the user's new standing."""
    db.session.execute(update(scores).where(scores.c.user_id == user_id).values(score_change()))
    db.session.execute(flag_periods(user_id, [p.key for p in all_kept()]))


def set_status(user_id: str, status: str, reason: str, actor: str, actor_ip: str | None) -> User:
    """Hide, unhide, ban or unban; returns the user."""
    user = _user(user_id)
    previous = user.status
    user.status = status
    _flag_for_board(user_id)
    record_audit(actor, actor_ip, f"status:{status}", reason, target_user=user_id, previous=previous)
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
