"""Recording completions: the trusted server side says a user completed an action."""

import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from ..errors import ApiError
from ..extensions import db
from ..models import Action, Completion, CompletionStatus, Score, User, UserStatus, utcnow
from ..outbox import flag_periods, score_change
from ..periods import all_kept


def new_action_id() -> str:
    """An unguessable one-time id: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def _insert_ignore(table, **values):
    """``INSERT ... ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite alike."""
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(insert(table).values(**values).on_conflict_do_nothing())


def ensure_user(user_id: str, display_name: str | None = None) -> None:
    """Create the user and their zero score on first sight; update a given display name."""
    now = utcnow()
    _insert_ignore(
        User.__table__, id=user_id, display_name=display_name or user_id, status=UserStatus.ACTIVE, created_at=now
    )
    _insert_ignore(Score.__table__, user_id=user_id, score=0, reached_at=now, version=0, board_pending=False)
    if display_name:
        renamed = db.session.execute(
            User.__table__.update()
            .where(User.id == user_id, User.display_name != display_name)
            .values(display_name=display_name)
        ).rowcount
        if renamed:
            # The boards keep names beside their rankings: flag every board row so the mirror carries the new name.
            db.session.execute(update(Score.__table__).where(Score.user_id == user_id).values(score_change()))
            db.session.execute(flag_periods(user_id, [p.key for p in all_kept()]))


def _existing_for_ref(ref, user_id, action_key):
    """The completion already recorded under ``ref``, if it matches this request."""
    found = db.session.scalar(select(Completion).where(Completion.ref == ref))
    if found is not None and (found.user_id != user_id or found.action_key != action_key):
        raise ApiError(409, "ref_conflict", "This ref was already used for another user or action.")
    return found


def _enforce_caps(action, user_id, now):
    """Daily cap and cooldown, checked while the user's row is locked."""
    if action.cooldown_seconds:
        last = db.session.scalar(
            select(func.max(Completion.created_at)).where(
                Completion.user_id == user_id, Completion.action_key == action.key
            )
        )
        if last is not None:
            wait = (last + timedelta(seconds=action.cooldown_seconds) - now).total_seconds()
            if wait > 0:
                raise ApiError(
                    429, "action_cooldown", f"'{action.key}' is cooling down for this user.", retryAfter=int(wait) + 1
                )
    if action.max_per_user_per_day:
        count = db.session.scalar(
            select(func.count())
            .select_from(Completion)
            .where(
                Completion.user_id == user_id,
                Completion.action_key == action.key,
                Completion.created_at > now - timedelta(days=1),
                Completion.status != CompletionStatus.VOID,
            )
        )
        if count >= action.max_per_user_per_day:
            raise ApiError(
                429,
                "action_daily_cap",
                f"'{action.key}' has reached its cap of {action.max_per_user_per_day} per user per 24 hours.",
                retryAfter=3600,
            )


def record_completion(
    user_id: str, action_key: str, ref: str | None = None, display_name: str | None = None
) -> tuple[Completion, bool]:
    """Record that ``user_id`` completed ``action_key``; returns ``(completion, created)``.

    The same ``ref`` answers the same completion, so the site can retry safely.
    """
    action = db.session.get(Action, action_key)
    if action is None or not action.enabled:
        raise ApiError(422, "unknown_action", f"'{action_key}' is not an enabled action.")
    if ref is not None:
        existing = _existing_for_ref(ref, user_id, action_key)
        if existing is not None:
            return existing, False

    ensure_user(user_id, display_name)
    # Serialise this user's completions so caps hold under concurrency.
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update())
    now = utcnow()
    _enforce_caps(action, user_id, now)
    completion = Completion(
        id=new_action_id(),
        user_id=user_id,
        action_key=action.key,
        points=action.points,
        status=CompletionStatus.PENDING,
        ref=ref,
        created_at=now,
        expires_at=now + current_app.config["COMPLETION_TTL"],
    )
    db.session.add(completion)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = _existing_for_ref(ref, user_id, action_key) if ref is not None else None
        if existing is None:
            raise
        return existing, False
    return completion, True
