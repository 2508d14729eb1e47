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
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal, select, tuple_, update

from ..errors import ApiError
from ..extensions import db
from ..models import (
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
from ..ops import metrics
from ..outbox import flag_periods, period_params, period_upsert, score_change
from ..periods import TIMED, all_kept, clock, current_periods, period_at
from .completions import new_action_id

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
    # A claim still in the period outbox never reached its periods: clearing its flag is all they need.
    in_periods = not completion.period_pending
    completion.period_pending = False
    new_score = db.session.execute(
        update(scores)
        .where(scores.c.user_id == completion.user_id, scores.c.score - taken >= 0)
        .values(score_change(score=scores.c.score - taken) if taken else score_change())
        .returning(scores.c.score)
    ).scalar()
    if new_score is None:
        _refuse_below_zero(completion.user_id, -taken)
    if taken and in_periods:
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
        select(Completion.id, Completion.points, Completion.claimed_at, Completion.period_pending)
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
            .values(status=CompletionStatus.VOID, reason=reason, voided_at=now, period_pending=False),
            execution_options={"synchronize_session": False},
        )
    kept = {p.key for p in all_kept(now)}
    by_period: Counter[str] = Counter()
    for r in rows:
        if r.period_pending:
            continue  # still in the period outbox: its points never reached the periods
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


# --- the admin console's reads: search, ledger pages, activity, audit, the board of everyone -------

# Every kind of act the audit log holds (the anomaly scan writes ``suspect:flag`` and ``status:held``).
AUDIT_ACTS = (
    *(f"status:{status}" for status in UserStatus.ALL),
    "adjust",
    "void",
    "revoke",
    "revoke:user",
    "suspect:flag",
    "suspect:clear",
    "suspect:confirm",
)
# A search looks at no more than this many matches per group (exact id, id prefix, name), then orders
# those by score: a one-letter prefix on a million users reads a bounded slice of an index, not the table.
SEARCH_CANDIDATES = 1000
# Shorter than a trigram: a name matches by its start (an index range) rather than anywhere in it.
MIN_SUBSTRING = 3
# Past every character: a prefix range's upper end in byte (and so code point) order.
LAST_CHARACTER = 0x10FFFF


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _starts_with(column, q: str, dialect: str):
    """``column`` starts with ``q``, ignoring case: a byte-order range on ``lower(column)`` (its
    ``text_pattern_ops`` index) on PostgreSQL, LIKE (case-blind for ASCII) on SQLite."""
    if dialect != "postgresql":
        return column.like(_like_escaped(q) + "%", escape="\\")
    lowered = func.lower(column)
    start = func.lower(literal(q))
    end = start.concat(func.chr(LAST_CHARACTER)).self_group()
    return and_(lowered.op("~>=~", is_comparison=True)(start), lowered.op("~<~", is_comparison=True)(end))


def _contains(column, q: str):
    """``column`` holds ``q`` anywhere, ignoring case (a trigram index serves it on PostgreSQL)."""
    return column.ilike("%" + _like_escaped(q) + "%", escape="\\")


def search_users(q: str, limit: int) -> list[dict[str, Any]]:
    """Users matching ``q``: the exact id first, then ids starting with it, then names holding it (names
    starting with it when ``q`` is shorter than :data:`MIN_SUBSTRING`), case-insensitive; each group by
    score (highest first) then id, every user once."""
    dialect = db.session.get_bind().dialect.name
    name_match = (
        _contains(User.display_name, q) if len(q) >= MIN_SUBSTRING else _starts_with(User.display_name, q, dialect)
    )
    groups = (User.id == q, _starts_with(User.id, q, dialect), name_match)
    score = func.coalesce(Score.score, 0)
    found: dict[str, dict[str, Any]] = {}
    for condition in groups:
        if len(found) >= limit:
            break
        candidates = select(User.id).where(condition).limit(SEARCH_CANDIDATES).subquery("candidates")
        rows = db.session.execute(
            select(User.id, User.display_name, User.status, User.created_at, score.label("score"))
            .join(candidates, candidates.c.id == User.id)
            .outerjoin(Score, Score.user_id == User.id)
            .order_by(score.desc(), User.id)
            .limit(limit + len(found))
        ).all()
        for r in rows:
            if r.id not in found and len(found) < limit:
                found[r.id] = {
                    "userId": r.id,
                    "displayName": r.display_name,
                    "status": r.status,
                    "score": int(r.score),
                    "createdAt": r.created_at.isoformat(),
                }
    db.session.commit()
    return list(found.values())


def known_user(user_id: str) -> User:
    """The user ``user_id``; 404 ``user_not_found`` if there is none."""
    return _user(user_id)


def period_scores_of(user_id: str, keys: list[str]) -> dict[str, int]:
    """``user_id``'s score in each of the period ``keys`` that has a row (primary-key reads)."""
    if not keys:
        return {}
    rows = db.session.execute(
        select(PeriodScore.period, PeriodScore.score).where(
            PeriodScore.user_id == user_id, PeriodScore.period.in_(keys)
        )
    )
    return {r.period: int(r.score) for r in rows}


def ledger_page(
    user_id: str, after: tuple[datetime, str] | None, limit: int
) -> tuple[list[Completion], tuple[datetime, str] | None]:
    """A page of ``user_id``'s ledger, newest recorded first, after the row ``(created_at, id)`` (keyset on
    ix_completions_user_created); returns the rows and the key of the last one when there are more."""
    query = select(Completion).where(Completion.user_id == user_id)
    if after is not None:
        query = query.where(
            Completion.created_at <= after[0], tuple_(Completion.created_at, Completion.id) < tuple_(*after)
        )
    rows = db.session.scalars(query.order_by(Completion.created_at.desc(), Completion.id.desc()).limit(limit + 1)).all()
    db.session.commit()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].created_at, rows[-1].id) if more and rows else None


def _hour_of(column, dialect: str):
    """The UTC hour a timestamp falls in, grouped on (a naive UTC datetime on PostgreSQL, text on SQLite)."""
    if dialect == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", column))
    return func.strftime("%Y-%m-%d %H:00:00", column)


def _as_hour(value) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def activity(user_id: str, start: datetime, end: datetime, claimable_for: timedelta) -> list[dict[str, Any]]:
    """``user_id``'s claims, their points and refused claims per UTC hour of ``[start, end)`` (whole hours),
    oldest first, every hour present.

    A claim is a ledger row claimed in the hour (one voided since included: it was made then); an
    adjustment is no claim. A completion can be claimed for ``claimable_for`` after it is recorded
    (``SCOREBOARD_COMPLETION_TTL``), so the claims are read along ix_completions_user_created from that
    long before ``start``: the user's rows of the range, not their whole ledger, and no index more for a
    claim to write. Refusals are read along ix_claim_refusals_user_at.
    """
    dialect = db.session.get_bind().dialect.name
    claim_hour = _hour_of(Completion.claimed_at, dialect).label("hour")
    claims = db.session.execute(
        select(claim_hour, func.count(), func.coalesce(func.sum(Completion.points), 0))
        .where(
            Completion.user_id == user_id,
            Completion.created_at >= start - claimable_for,
            Completion.created_at < end,
            Completion.claimed_at >= start,
            Completion.claimed_at < end,
            Completion.status.in_((CompletionStatus.CLAIMED, CompletionStatus.VOID)),
        )
        .group_by(claim_hour)
    ).all()
    refusal_hour = _hour_of(ClaimRefusal.at, dialect).label("hour")
    refused = db.session.execute(
        select(refusal_hour, func.count())
        .where(ClaimRefusal.user_id == user_id, ClaimRefusal.at >= start, ClaimRefusal.at < end)
        .group_by(refusal_hour)
    ).all()
    db.session.commit()
    by_hour: dict[datetime, dict[str, int]] = {}
    for hour, count, points in claims:
        by_hour.setdefault(_as_hour(hour), {}).update(claims=int(count), points=int(points))
    for hour, count in refused:
        by_hour.setdefault(_as_hour(hour), {})["refused"] = int(count)
    points = []
    hour = start
    while hour < end:
        seen = by_hour.get(hour, {})
        points.append(
            {
                "at": hour.isoformat(),
                "claims": seen.get("claims", 0),
                "points": seen.get("points", 0),
                "refused": seen.get("refused", 0),
            }
        )
        hour += timedelta(hours=1)
    return points


def audit_page(
    actor: str | None, target: str | None, act: str | None, before: int | None, limit: int
) -> list[AuditEntry]:
    """The audit log, newest first, filtered by exact actor, target user and act, with ids below ``before``
    (each filter has an index ending in the id: ix_audit_log_actor_id, _target_id, _act_id)."""
    query = select(AuditEntry)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if target is not None:
        query = query.where(AuditEntry.target_user == target)
    if act is not None:
        query = query.where(AuditEntry.act == act)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    entries = db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)).all()
    db.session.commit()
    return list(entries)


def period_board_of_everyone(key: str, limit: int) -> list[dict[str, Any]]:
    """The top ``limit`` of one period (``day:2026-12-02`` ...) of every user with points there, whatever
    their status (the admin's view; read along ix_period_scores_rank)."""
    rows = db.session.execute(
        select(PeriodScore.user_id, User.display_name, PeriodScore.score, User.status)
        .join(User, User.id == PeriodScore.user_id)
        .where(PeriodScore.period == key, PeriodScore.score > 0)
        .order_by(PeriodScore.score.desc(), PeriodScore.reached_at.asc(), PeriodScore.user_id.desc())
        .limit(limit)
    ).all()
    db.session.commit()
    return [
        {"rank": rank, "userId": r.user_id, "displayName": r.display_name, "score": int(r.score), "status": r.status}
        for rank, r in enumerate(rows, start=1)
    ]


def record_user_revocation(
    user_id: str, revoked_before: datetime, reason: str, actor: str, actor_ip: str | None
) -> None:
    """Audit the revocation of every token ``user_id`` was issued before ``revoked_before`` (and commit)."""
    record_audit(actor, actor_ip, "revoke:user", reason, target_user=user_id, revoked_before=revoked_before.isoformat())
    db.session.commit()
