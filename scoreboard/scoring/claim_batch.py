"""Claims in batches (group commit) on PostgreSQL: one statement for the claims that arrive together.

Each web process has one :class:`ClaimBatcher` per app. A claim that finds no claim statement in
flight in the process is sent at once, alone, as it always was (``claims.CLAIM_ONE_STATEMENT``):
no timer, no added wait. While a statement is in flight, newly arriving claims queue; when it
returns, the queued claims (up to ``SCOREBOARD_CLAIM_BATCH_MAX``) go together in the next single
statement, :data:`CLAIM_BATCH`, sent by the thread (or greenlet) of the first of them. Under load
PostgreSQL then plans, executes and commits (one WAL flush) once per batch rather than once per claim,
and the pool holds one busy connection per process instead of one per claim.

The batch statement, one round trip in autocommit, does what the lone statement does for every row
of ``unnest(...)`` (the claims' action, user, time, address and agent): the completions still pending,
unexpired and not a banned user's are marked claimed and flagged for the period boards, each user's
score rises by the sum of their claims' points (one row update per user, flagged for the board),
and each claim that matched gets its own new score: a user with several claims in a batch gets, for
each, the score as if they had committed one after another in the order they arrived (the final
score less the points of that user's later claims in the batch). Several claims of one user are
kept in one batch rather than deferred: a hot user's claims would otherwise go one per batch and
lose what batching gains. A claim that matched nothing gets no row and is refused by its own
request, as a lone one is (``claims._refusal``). The same ``actionId`` twice in one process is never
put in one batch: the second waits for the next one, where it finds the completion claimed (409).

Row locks are taken in one order by every batch of every process, so two batches never deadlock:
the completions in ``actionId`` order (the claims are sent sorted by it and the completion is found by
its key for each in turn), then the scores in ``user_id`` order (the per-user totals are materialized
sorted, and every claimed completion is locked before the first score row, since the totals need all of
them). Should a deadlock happen all the same (a plan that reads in another order), PostgreSQL rolls the
whole statement back and it is sent again, at most twice more.

A failed statement fails every claim of its batch with the same error (a 503 for a database that is
down or timed out, as for a lone claim). A connection left dead by a database restart is replaced and
the statement sent once more, as for a lone claim; that is safe even if the first attempt committed,
since the completions are then no longer pending. When the wait bound gave up (``ops.db_waits``), the
claims queued meanwhile fail with it rather than waiting out the bound a second time: each claim's
answer stays within one bound, as before.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask
from sqlalchemy import Integer, Text, bindparam, cast, exists, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.engine.interfaces import Compiled
from sqlalchemy.exc import DBAPIError, OperationalError

from ..models import Completion, CompletionStatus, Score, User, UserStatus, UTCDateTime
from ..ops import prepared
from ..ops.db_waits import timed_out
from ..ops.metrics import CLAIM_BATCH_RETRIES, CLAIM_BATCH_SIZE
from ..outbox import not_before, score_change

completions = Completion.__table__
scores = Score.__table__
users = User.__table__

DEFAULT_MAX = 64
DEADLOCK = "40P01"
DEADLOCK_RETRIES = 2

# The batch's claims as one set of rows: each column is a bound array, so one statement (compiled once)
# serves every batch size.
_batch = (
    func.unnest(
        cast(bindparam("b_ord"), ARRAY(Integer)),
        cast(bindparam("b_action"), ARRAY(Text)),
        cast(bindparam("b_user"), ARRAY(Text)),
        cast(bindparam("b_now"), ARRAY(UTCDateTime())),
        cast(bindparam("b_ip"), ARRAY(Text)),
        cast(bindparam("b_agent"), ARRAY(Text)),
    )
    .table_valued("ord", "action_id", "user_id", "now", "ip", "agent")
    .render_derived(name="v")
)

_claimed = (
    update(completions)
    .where(
        completions.c.id == _batch.c.action_id,
        completions.c.user_id == _batch.c.user_id,
        completions.c.status == CompletionStatus.PENDING,
        completions.c.expires_at > _batch.c.now,
        ~exists().where(users.c.id == _batch.c.user_id, users.c.status == UserStatus.BANNED),
    )
    .values(
        status=CompletionStatus.CLAIMED,
        claimed_at=_batch.c.now,
        client_ip=_batch.c.ip,
        user_agent=_batch.c.agent,
        period_pending=True,
    )
    .returning(_batch.c.ord, completions.c.user_id, completions.c.points, _batch.c.now)
    .cte("claimed")
)

# MATERIALIZED and sorted: the score rows are then updated (and locked) in user_id order.
_totals = (
    select(
        _claimed.c.user_id,
        func.sum(_claimed.c.points).label("points"),
        func.max(_claimed.c.now).label("now"),
    )
    .group_by(_claimed.c.user_id)
    .order_by(_claimed.c.user_id)
    .cte("totals")
    .prefix_with("MATERIALIZED")
)

_raised = (
    update(scores)
    .where(scores.c.user_id == _totals.c.user_id)
    .values(
        score_change(score=scores.c.score + _totals.c.points, reached_at=not_before(scores.c.reached_at, _totals.c.now))
    )
    .returning(scores.c.user_id, scores.c.score)
    .cte("raised")
)

# Each claim's score: the user's new total less the points of their claims that arrived after it.
_later = func.coalesce(
    func.sum(_claimed.c.points).over(partition_by=_claimed.c.user_id, order_by=_claimed.c.ord, rows=(1, None)),
    0,
)
CLAIM_BATCH = select(_claimed.c.ord, (_raised.c.score - _later).label("score")).join(
    _raised, _raised.c.user_id == _claimed.c.user_id
)


@functools.cache
def _compiled_batch(dialect: Dialect) -> Compiled:
    """The batch statement compiled once per dialect, sent as its SQL string."""
    return CLAIM_BATCH.compile(dialect=dialect)


def batch_params(claims: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The arrays of :data:`CLAIM_BATCH` for ``claims`` (each the lone claim's parameters), in ``actionId`` order."""
    rows = sorted(enumerate(claims), key=lambda row: row[1]["p_action"])
    return {
        "b_ord": [ord_ for ord_, _ in rows],
        "b_action": [c["p_action"] for _, c in rows],
        "b_user": [c["p_user"] for _, c in rows],
        "b_now": [c["p_now"] for _, c in rows],
        "b_ip": [c["p_ip"] for _, c in rows],
        "b_agent": [c["p_agent"] for _, c in rows],
    }


def claim_batch_in_one_statement(engine: Engine, claims: Sequence[dict[str, Any]]) -> list[int | None]:
    """Claim ``claims`` in one autocommitted statement; each claim's new score, or None where it matched nothing.

    Retried on a fresh connection once after a dead pooled connection (not after a timed-out wait), and up to
    :data:`DEADLOCK_RETRIES` times after a deadlock: either way PostgreSQL rolled the statement back, or it
    committed and the retry claims nothing it claimed.
    """
    params = batch_params(claims)
    reconnected = False
    deadlocks = 0
    while True:
        try:
            with engine.connect() as conn:
                compiled = _compiled_batch(conn.dialect)
                rows = prepared.execute(conn, "claim_batch", compiled.string, compiled.construct_params(params)).all()
            break
        except DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) == DEADLOCK and deadlocks < DEADLOCK_RETRIES:
                deadlocks += 1
                CLAIM_BATCH_RETRIES.labels("deadlock").inc()
                continue
            if exc.connection_invalidated and not reconnected and not timed_out(exc):
                reconnected = True
                CLAIM_BATCH_RETRIES.labels("reconnect").inc()
                continue
            raise
    answers: list[int | None] = [None] * len(claims)
    for ord_, score in rows:
        answers[ord_] = int(score)
    return answers


class _Claim:
    """One claim waiting for its answer; ``batch`` is set when its own thread is to send the next batch."""

    __slots__ = ("batch", "done", "error", "params", "score")

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.done = threading.Event()
        self.score: int | None = None
        self.error: BaseException | None = None
        self.batch: list[_Claim] | None = None


class ClaimBatcher:
    """Sends a process's claims to PostgreSQL one statement at a time: alone when none is in flight, else together.

    ``send_one(params)`` and ``send_many(list of params)`` run the statements; the threading primitives are
    gevent's own in a patched process, so the same code serves threads and greenlets.
    """

    def __init__(
        self,
        send_one: Callable[[dict[str, Any]], int | None],
        send_many: Callable[[Sequence[dict[str, Any]]], list[int | None]],
        max_size: int = DEFAULT_MAX,
    ) -> None:
        self.max_size = max(1, max_size)
        self._send_one = send_one
        self._send_many = send_many
        self._lock = threading.Lock()
        self._queue: deque[_Claim] = deque()
        self._in_flight = False

    def queued(self) -> int:
        """How many claims wait for the statement in flight to return (for tests and diagnostics)."""
        return len(self._queue)

    def claim(self, params: dict[str, Any]) -> int | None:
        """Send one claim (the lone statement's parameters); its new score, or None when it matched nothing.

        Raises the statement's error when the batch it went in failed.
        """
        if self.max_size == 1:
            CLAIM_BATCH_SIZE.observe(1)
            return self._send_one(params)
        item = _Claim(params)
        with self._lock:
            if self._in_flight:
                self._queue.append(item)
            else:
                self._in_flight = True
                item.batch = [item]
        if item.batch is None:
            self._wait(item)
        if item.batch is not None:
            self._send(item.batch)
        if item.error is not None:
            raise item.error
        return item.score

    def _wait(self, item: _Claim) -> None:
        """Wait until ``item`` is answered or chosen to send the next batch."""
        try:
            item.done.wait()
        except BaseException:
            # Interrupted (a greenlet killed): leave the queue; if already chosen, send the batch first,
            # since the claims in it wait for this thread.
            with self._lock:
                if item in self._queue:
                    self._queue.remove(item)
                    raise
                chosen = item.batch
            if chosen is not None:
                self._send(chosen)
            raise

    def _send(self, batch: list[_Claim]) -> None:
        """Send ``batch`` as one statement, answer each of its claims, and hand the next batch on."""
        error: BaseException | None = None
        scores: list[int | None] = []
        CLAIM_BATCH_SIZE.observe(len(batch))
        try:
            if len(batch) == 1:
                scores = [self._send_one(batch[0].params)]
            else:
                scores = self._send_many([c.params for c in batch])
        except Exception as exc:  # every claim of the batch answers with it
            error = exc
        except BaseException:
            # This thread is being stopped mid-statement: the others get a database error (503), this one its own.
            error = OperationalError("claim batch", None, RuntimeError("the claim's sender was interrupted"))
            raise
        finally:
            self._answer(batch, scores, error)

    def _answer(self, batch: list[_Claim], scores: list[int | None], error: BaseException | None) -> None:
        """Give every claim of ``batch`` its answer; start the next batch, or fail the queue after a timeout."""
        failed: list[_Claim] = []
        with self._lock:
            if error is not None and timed_out(error):
                failed = list(self._queue)
                self._queue.clear()
            following = self._take()
            if following:
                following[0].batch = following
            else:
                self._in_flight = False
        for index, item in enumerate(batch):
            item.batch = None
            if error is None:
                item.score = scores[index]
            else:
                item.error = error
            item.done.set()
        for item in failed:
            item.error = error
            item.done.set()
        if following:
            following[0].done.set()

    def _take(self) -> list[_Claim]:
        """The next batch from the queue (the lock held): oldest first, each ``actionId`` once, at most ``max_size``."""
        batch: list[_Claim] = []
        actions: set[str] = set()
        left: deque[_Claim] = deque()
        while self._queue and len(batch) < self.max_size:
            item = self._queue.popleft()
            if item.params["p_action"] in actions:
                left.append(item)
            else:
                actions.add(item.params["p_action"])
                batch.append(item)
        left.extend(self._queue)
        self._queue = left
        return batch


def claim_batcher(app: Flask, engine: Engine, send_one: Callable[[Engine, dict[str, Any]], int | None]) -> ClaimBatcher:
    """The app's one batcher in this process, made on first use; ``send_one(engine, params)`` sends a lone claim."""
    batcher = app.extensions.get("claim_batcher")
    if batcher is None:
        batcher = app.extensions.setdefault(
            "claim_batcher",
            ClaimBatcher(
                functools.partial(send_one, engine),
                functools.partial(claim_batch_in_one_statement, engine),
                int(app.config["CLAIM_BATCH_MAX"]),
            ),
        )
    return batcher
