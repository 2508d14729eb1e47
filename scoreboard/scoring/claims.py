"""Claiming a completion: the one place a score rises.

One transaction: a conditional UPDATE marks the completion claimed (only one
concurrent claimant can match ``status = 'pending'``), then an atomic SQL
increment raises the score and flags the row for the board (the outbox).
"""

from sqlalchemy import exists, select, update

from ..errors import ApiError
from ..extensions import db
from ..models import Completion, Score, User, utcnow

completions = Completion.__table__
scores = Score.__table__
users = User.__table__


def _refusal(action_id, user_id, now):
    """Explain why a claim matched nothing, without revealing other users' ids."""
    if db.session.scalar(select(User.status).where(User.id == user_id)) == "banned":
        return ApiError(403, "user_banned", "This account may not claim points.")
    row = db.session.execute(
        select(Completion.user_id, Completion.status, Completion.expires_at).where(Completion.id == action_id)
    ).first()
    if row is None or row.user_id != user_id:
        return ApiError(404, "action_not_found", "No such actionId for this user.")
    if row.status == "claimed":
        return ApiError(409, "already_claimed", "This actionId has already been claimed.")
    if row.status == "void":
        return ApiError(410, "action_void", "This actionId was voided.")
    return ApiError(410, "action_expired", "This actionId has expired.")


def claim(action_id, user_id, client_ip=None, user_agent=None):
    """Claim ``action_id`` for ``user_id``; returns the new score or raises :class:`ApiError`."""
    now = utcnow()
    points = db.session.execute(
        update(completions)
        .where(
            completions.c.id == action_id,
            completions.c.user_id == user_id,
            completions.c.status == "pending",
            completions.c.expires_at > now,
            # A ban is checked in the same statement; why nothing matched is worked out only on refusal.
            ~exists().where(users.c.id == user_id, users.c.status == "banned"),
        )
        .values(status="claimed", claimed_at=now, client_ip=client_ip, user_agent=(user_agent or "")[:256])
        .returning(completions.c.points)
    ).scalar()
    if points is None:
        db.session.rollback()
        raise _refusal(action_id, user_id, now)
    new_score = db.session.execute(
        update(scores)
        .where(scores.c.user_id == user_id)
        .values(score=scores.c.score + points, reached_at=now, version=scores.c.version + 1, board_pending=True)
        .returning(scores.c.score)
    ).scalar_one()
    db.session.commit()
    return int(new_score)
