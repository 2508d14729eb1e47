"""Claiming a completion: the one place a score rises.

A conditional UPDATE marks the completion claimed (only one concurrent
claimant can match ``status = 'pending'``) and an atomic SQL increment raises
the score and flags the row for the board (the outbox), both or neither.

The claim's day, week and month (``period_scores``) are not written by the claim
on PostgreSQL: the claimed completion carries ``period_pending``, and the board's
worker adds the points of the flagged claims to the periods of their ``claimed_at``
and clears the flags in one transaction (``board.refresh.fold_claims``): each
claim counts in its periods exactly once, whenever the worker gets to it.

On PostgreSQL all of it is one statement (a data-modifying CTE) run on a
connection in autocommit (the ``claims`` bind), prepared once per connection
(``ops.prepared``): one round trip commits the claim. Claims that arrive
while another claim's statement is in flight in the process go together in
the next one (``claim_batch``: group commit), each with its own answer.
SQLite cannot modify data in a CTE, so the embedded database runs the same
updates in one transaction, and adds the points to the periods there too
(with no flag to fold). Every user with a completion has a score row
(``ensure_user`` writes both in the transaction that records it), so the
second update always matches when the first did.

A refused claim (a replay, another user's id, an expired or void one, a banned user) is recorded
as a ``claim_refusals`` row, one of the anomaly scan's signals; a successful claim writes nothing more.
"""

import functools
import logging
from datetime import datetime

from flask import current_app
from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import Compiled
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import ApiError
from ..extensions import db
from ..models import ClaimRefusal, Completion, CompletionStatus, Score, User, UserStatus, UTCDateTime
from ..ops import prepared
from ..ops.db_waits import timed_out
from ..ops.metrics import CLAIM_BATCH_RETRIES
from ..outbox import not_before, period_params, period_upsert, score_change
from ..periods import clock, current_periods
from .claim_batch import claim_batcher

log = logging.getLogger(__name__)

completions = Completion.__table__
scores = Score.__table__
users = User.__table__

# Bound names differ from the columns': SQLAlchemy reserves column names for SET values.
_claimed = (
    update(completions)
    .where(
        completions.c.id == bindparam("p_action"),
        completions.c.user_id == bindparam("p_user"),
        completions.c.status == CompletionStatus.PENDING,
        completions.c.expires_at > bindparam("p_now"),
        # A ban is checked in the same statement; why nothing matched is worked out only on refusal.
        ~exists().where(users.c.id == bindparam("p_user"), users.c.status == UserStatus.BANNED),
    )
    .values(
        status=CompletionStatus.CLAIMED,
        claimed_at=bindparam("p_now"),
        client_ip=bindparam("p_ip"),
        user_agent=bindparam("p_agent"),
    )
)


_NOW = bindparam("p_now", type_=UTCDateTime())


def _raise_score(points, user_id):
    """The score increment, flagging the row for the board; ``points`` and ``user_id`` are SQL expressions."""
    return (
        update(scores)
        .where(scores.c.user_id == user_id)
        .values(score_change(score=scores.c.score + points, reached_at=not_before(scores.c.reached_at, _NOW)))
        .returning(scores.c.score)
    )


# On PostgreSQL the claimed completion waits in the period outbox for the worker.
_claimed_cte = (
    _claimed.values(period_pending=True).returning(completions.c.user_id, completions.c.points).cte("claimed")
)
CLAIM_ONE_STATEMENT = _raise_score(_claimed_cte.c.points, _claimed_cte.c.user_id)
CLAIM_COMPLETION = _claimed.returning(completions.c.points)
RAISE_SCORE = _raise_score(bindparam("p_points"), bindparam("p_user"))


def _refusal(action_id, user_id):
    """Explain why a claim matched nothing, without revealing other users' ids."""
    if db.session.scalar(select(User.status).where(User.id == user_id)) == UserStatus.BANNED:
        return ApiError(403, "user_banned", "This account may not claim points.")
    row = db.session.execute(select(Completion.user_id, Completion.status).where(Completion.id == action_id)).first()
    if row is None or row.user_id != user_id:
        return ApiError(404, "action_not_found", "No such actionId for this user.")
    if row.status == CompletionStatus.CLAIMED:
        return ApiError(409, "already_claimed", "This actionId has already been claimed.")
    if row.status == CompletionStatus.VOID:
        return ApiError(410, "action_void", "This actionId was voided.")
    return ApiError(410, "action_expired", "This actionId has expired.")


def _record_refusal(user_id: str, code: str, client_ip: str | None, at: datetime) -> None:
    """Keep the refusal for the anomaly scan, committed at once; a failure here never changes the answer."""
    try:
        db.session.add(ClaimRefusal(user_id=user_id, at=at, reason=code, client_ip=client_ip))
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("claim refusal not recorded: %s", exc.__class__.__name__)


@functools.cache
def _compiled_claim(dialect: Dialect) -> Compiled:
    """The claim's statement compiled once per dialect, and sent as its SQL string (no cache-key walk per claim)."""
    return CLAIM_ONE_STATEMENT.compile(dialect=dialect)


def _claim_in_one_statement(engine, params):
    """Claim and raise the score in one autocommitted statement (PostgreSQL).

    A pooled connection left dead by a database restart fails its first use (and the pool drops all
    such connections); the claim is then run once more on a fresh one. That is safe even if the first
    attempt did commit: the completion is no longer pending, so the second claims nothing. A connection
    dropped because the database did not answer in time (``ops.db_waits``) is not retried: the claim's
    answer must not wait that long twice.
    """
    for attempt in (1, 2):
        try:
            with engine.connect() as conn:
                compiled = _compiled_claim(conn.dialect)
                return prepared.execute(conn, "claim_one", compiled.string, compiled.construct_params(params)).scalar()
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated or timed_out(exc):
                raise
            CLAIM_BATCH_RETRIES.labels("reconnect").inc()


def _claim_in_one_transaction(params):
    """The same two updates as one ORM transaction, for databases without data-modifying CTEs."""
    points = db.session.execute(CLAIM_COMPLETION, params).scalar()
    if points is None:
        db.session.rollback()
        return None
    new_score = db.session.execute(RAISE_SCORE, {**params, "p_points": points}).scalar_one()
    upsert = period_upsert(db.session.get_bind().dialect.name)
    db.session.execute(upsert, period_params(params["p_periods"], params["p_user"], points, params["p_now"]))
    db.session.commit()
    return new_score


def claim(action_id: str, user_id: str, client_ip: str | None = None, user_agent: str | None = None) -> int:
    """Claim ``action_id`` for ``user_id``; returns the new score or raises :class:`ApiError`."""
    now = clock()  # the periods' clock, so a claim counts in the periods of its own time
    params = {
        "p_action": action_id,
        "p_user": user_id,
        "p_now": now,
        "p_ip": client_ip,
        "p_agent": (user_agent or "")[:256],
    }
    autocommit = db.engines.get("claims")
    if autocommit:
        # Alone when no claim statement of this process is in flight, else with the claims queued behind it.
        new_score = claim_batcher(current_app, autocommit, _claim_in_one_statement).claim(params)
    else:
        new_score = _claim_in_one_transaction({**params, "p_periods": current_periods(now)})
    if new_score is None:
        refusal = _refusal(action_id, user_id)
        _record_refusal(user_id, refusal.code, client_ip, now)
        raise refusal
    return int(new_score)
