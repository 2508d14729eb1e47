"""From committed scores to the broadcast boards (run by the worker's ``refresh`` task).

``refresh_board`` first adds the points of newly committed claims to their days, weeks and
months (:func:`fold_claims`), then mirrors the changed scores into the ranking stores (the
all-time board and every kept day, week and month), recomputes the top lists of the all-time
board and of the current periods, and broadcasts each one that changed. The database is the
outbox: ``completions.period_pending``, ``scores.board_pending`` and
``period_scores.board_pending`` stay set until their change is folded or mirrored, so a change
committed while Redis, the broker or every worker was down is picked up by the next sweep.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Iterable

from flask import current_app
from sqlalchemy import bindparam, case, select, text, update
from sqlalchemy.dialects import sqlite

from ..extensions import db
from ..models import Completion, CompletionStatus, PeriodScore, Score
from ..ops import metrics
from ..periods import ALL_TIME, TIMED, Period, all_kept, current_periods, period_of, timezone
from ..stores import Stores, get_stores
from ..stores.board_cache import dumps
from ..stores.ranking import Ranking
from .drift import count_drift
from .source import board_rows, display_names, mirror_rows, period_rows, public_entries, to_entries, unbounded_statement

log = logging.getLogger(__name__)

BATCH = 2000

scores = Score.__table__
period_scores = PeriodScore.__table__
completions = Completion.__table__
# Clear a flag only where no newer change has landed since the row was read.
_CLEAR_SCORE = (
    update(scores)
    .where(scores.c.user_id == bindparam("uid"), scores.c.version == bindparam("ver"))
    .values(board_pending=False)
)
_CLEAR_PERIOD = (
    update(period_scores)
    .where(
        period_scores.c.period == bindparam("key"),
        period_scores.c.user_id == bindparam("uid"),
        period_scores.c.version == bindparam("ver"),
    )
    .values(board_pending=False)
)


# Pick a batch of the period outbox and clear its flags in one statement (PostgreSQL: locked rows are skipped).
_TAKE_PENDING = text(
    """
    UPDATE completions SET period_pending = false
    WHERE id IN (
        SELECT id FROM completions WHERE period_pending ORDER BY claimed_at LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    RETURNING user_id, points, claimed_at, status
    """
)
# Add each (period, user)'s points in one statement, in the order given (see fold_claims).
_ADD_TO_PERIODS = text(
    """
    INSERT INTO period_scores (period, user_id, score, reached_at, version, board_pending)
    SELECT t.period, t.user_id, t.points, t.reached_at, 1, true
    FROM unnest(CAST(:periods AS varchar[]), CAST(:users AS varchar[]), CAST(:points AS bigint[]),
                CAST(:reached AS timestamptz[])) WITH ORDINALITY AS t(period, user_id, points, reached_at, n)
    ORDER BY t.n
    ON CONFLICT (period, user_id) DO UPDATE SET
        score = period_scores.score + excluded.score,
        reached_at = GREATEST(period_scores.reached_at, excluded.reached_at),
        version = period_scores.version + 1,
        board_pending = true
    """
)


def _add_to_periods_one_by_one():
    """The same upsert for the embedded database (SQLite), one parameter set per row."""
    statement = sqlite.insert(period_scores).values(
        period=bindparam("p_period"),
        user_id=bindparam("p_user"),
        score=bindparam("p_points"),
        reached_at=bindparam("p_now"),
        version=1,
        board_pending=True,
    )
    reached = period_scores.c.reached_at
    return statement.on_conflict_do_update(
        index_elements=[period_scores.c.period, period_scores.c.user_id],
        set_={
            "score": period_scores.c.score + statement.excluded.score,
            "reached_at": case((reached > statement.excluded.reached_at, reached), else_=statement.excluded.reached_at),
            "version": period_scores.c.version + 1,
            "board_pending": True,
        },
    )


def _take_pending(postgres: bool) -> list:
    """A batch of the period outbox, its flags cleared in the current transaction."""
    if postgres:
        return db.session.execute(_TAKE_PENDING, {"batch": BATCH}).all()
    picked = db.session.execute(
        select(completions.c.id, completions.c.user_id, completions.c.points, completions.c.claimed_at)
        .add_columns(completions.c.status)
        .where(completions.c.period_pending)
        .order_by(completions.c.claimed_at)
        .limit(BATCH)
    ).all()
    if picked:
        ids = [r.id for r in picked]
        db.session.execute(update(completions).where(completions.c.id.in_(ids)).values(period_pending=False))
    return picked


def fold_claims(max_batches: int = 50) -> int:
    """Add the points of the claims in the period outbox (``completions.period_pending``) to the day, week and month
    of each one's ``claimed_at`` (those still kept), and clear their flags, in one transaction per batch.

    Exactly once: the flagged rows are locked as they are taken (``SKIP LOCKED``: a concurrent fold or a void
    holding one leaves it to the next run), and the flags are cleared in the transaction that adds the points,
    so a crash adds nothing and clears nothing. A claim voided before it was folded had its flag cleared by the
    void, which then took nothing from the periods (``scoring.moderation``). On PostgreSQL a batch is three
    round trips: take (and clear), add, commit. Returns how many claims were folded.
    """
    postgres = db.session.get_bind().dialect.name == "postgresql"
    kept = {p.key for p in all_kept()}
    zone = timezone()
    keys_of: dict = {}  # local date -> its (day, week, month) keys, each worked out once per run
    total = 0
    for _ in range(max_batches):
        rows = _take_pending(postgres)
        if not rows:
            db.session.commit()
            break
        sums: dict[tuple[str, int, str], list] = {}
        for r in rows:
            if r.status != CompletionStatus.CLAIMED:
                continue  # no longer a claim (a void that missed clearing the flag took nothing either): cleared only
            day = r.claimed_at.astimezone(zone).date()
            keys = keys_of.get(day)
            if keys is None:
                keys = keys_of[day] = [period_of(kind, day, zone).key for kind in TIMED]
            for rank, key in enumerate(keys):
                if key in kept:
                    found = sums.setdefault((r.user_id, rank, key), [0, r.claimed_at])
                    found[0] += int(r.points)
                    found[1] = max(found[1], r.claimed_at)
        # In the order a user's rows are written elsewhere (day, week, month), so two writers never deadlock.
        ordered = sorted(sums.items())
        if ordered and postgres:
            db.session.execute(
                _ADD_TO_PERIODS,
                {
                    "periods": [key for (_u, _r, key), _ in ordered],
                    "users": [user for (user, _r, _k), _ in ordered],
                    "points": [points for _, (points, _at) in ordered],
                    "reached": [at for _, (_p, at) in ordered],
                },
            )
        elif ordered:
            params = [
                {"p_period": key, "p_user": user, "p_points": points, "p_now": at}
                for (user, _rank, key), (points, at) in ordered
            ]
            db.session.execute(_add_to_periods_one_by_one(), params)
        db.session.commit()
        total += len(rows)
        if len(rows) < BATCH:
            break
    return total


def rebuild_mirror(ranking: Ranking, board: str = "") -> int:
    """Reload one board (``""`` all-time, else a period key) from the database into its store; returns how many
    entries differed."""
    ranking.reset()
    changed = 0
    unbounded_statement()
    for chunk in db.session.execute(board_rows(board).execution_options(yield_per=10_000)).partitions():
        changed += ranking.apply(to_entries(chunk))
    ranking.mark_built()
    db.session.commit()
    return changed


def sync_pending(ranking: Ranking, max_batches: int = 50) -> tuple[int, int | None]:
    """Mirror the all-time outbox (``scores`` rows flagged ``board_pending``) into the store.

    Returns how many rows, and when the oldest of them changed (epoch ms, None if none did).
    """
    total, oldest = 0, None
    for _ in range(max_batches):
        rows = db.session.execute(mirror_rows().where(Score.board_pending).limit(BATCH)).all()
        if not rows:
            break
        entries = to_entries(rows)
        ranking.apply(entries)
        oldest = _oldest(oldest, entries)
        db.session.connection().execute(_CLEAR_SCORE, [{"uid": r.user_id, "ver": r.version} for r in rows])
        db.session.commit()
        total += len(rows)
        if len(rows) < BATCH:
            break
    return total, oldest


def sync_period_pending(stores: Stores, kept: set[str], max_batches: int = 50) -> tuple[int, int | None]:
    """Mirror the period outbox (``period_scores`` rows flagged ``board_pending``) into each period's store.

    Rows of a period no longer kept are cleared without mirroring: its board is gone.
    """
    total, oldest = 0, None
    for _ in range(max_batches):
        rows = db.session.execute(period_rows().where(PeriodScore.board_pending).limit(BATCH)).all()
        if not rows:
            break
        by_period = defaultdict(list)
        for row in rows:
            by_period[row.period].append(row)
        for key, period_batch in by_period.items():
            if key in kept:
                entries = to_entries(period_batch)
                stores.ranking_for(key).apply(entries)
                oldest = _oldest(oldest, entries)
        clear = [{"key": r.period, "uid": r.user_id, "ver": r.version} for r in rows]
        db.session.connection().execute(_CLEAR_PERIOD, clear)
        db.session.commit()
        total += len(rows)
        if len(rows) < BATCH:
            break
    return total, oldest


def _oldest(oldest: int | None, entries: Iterable) -> int | None:
    first = min(e.reached_us for e in entries) // 1000
    return first if oldest is None else min(oldest, first)


def compose_top(ranking: Ranking, limit: int) -> list[dict]:
    """The public top list from the mirror, with display names from the database."""
    return compose_tops([ranking], limit)[0]


def compose_tops(rankings: list[Ranking], limit: int) -> list[list[dict]]:
    """The public top lists of several boards, with every display name read in one query."""
    pairs = [ranking.top(limit) for ranking in rankings]
    names = display_names(sorted({user_id for board in pairs for user_id, _ in board}))
    return [
        public_entries([(user_id, names.get(user_id, user_id), score) for user_id, score in board]) for board in pairs
    ]


def _rebuild(stores: Stores, periods: list[Period], reason: str) -> None:
    """Reload these boards; one rebuild in the metrics, however many boards it reloads."""
    if periods:
        metrics.REBUILDS.labels(reason=reason).inc()
    for period in periods:
        rebuild_mirror(stores.ranking_for(period.board), period.board)


CLOSED_CHECK_INTERVAL = 30.0  # seconds between checks that every kept closed period's mirror is built
_closed_checked_at = 0.0


def _due_for_closed_check() -> bool:
    global _closed_checked_at
    due = time.monotonic() - _closed_checked_at >= CLOSED_CHECK_INTERVAL
    if due:
        _closed_checked_at = time.monotonic()
    return due


def refresh_board(rebuild: bool = False) -> int:
    """Mirror pending changes, recompute the top lists, broadcast those that changed.

    Returns the all-time board's new version, or 0 when it did not change.
    """
    config = current_app.config
    stores = get_stores()
    coordination = stores.coordination
    with coordination.refresh_lock():
        # From here on a new change queues the next run: one running, at most one queued.
        coordination.release_refresh_slot()
        # Bound recomputes (and so broadcasts) to BROADCAST_MAX_RATE, whatever the claim rate. Waiting
        # before reading, inside the lock, means the run after a burst reads the burst's last change.
        min_interval = 1.0 / config["BROADCAST_MAX_RATE"]
        wait = coordination.last_refresh_at() + min_interval - time.time()
        if 0 < wait <= min_interval:
            time.sleep(wait)
        coordination.mark_refresh()
        metrics.RECOMPUTES.inc()
        fold_claims()
        now = current_periods()
        kept = list(all_kept())
        if rebuild and stores.ranking.is_built():
            metrics.RECONCILE_DRIFT.inc(count_drift(stores, kept))
        if rebuild or not stores.ranking.is_built():
            # A reconcile, or Redis lost its data (the all-time board goes with every other): reload every board.
            _rebuild(stores, [ALL_TIME, *kept], "reconcile" if rebuild else "mirror_missing")
        else:
            # The current periods every run; the closed ones kept now and then (a read of one found it unbuilt).
            checked = kept if _due_for_closed_check() else now
            _rebuild(stores, [p for p in checked if not stores.ranking_for(p.board).is_built()], "mirror_missing")
        _, changed_at = sync_pending(stores.ranking)
        _, period_changed_at = sync_period_pending(stores, {p.key for p in kept})
        tops = compose_tops([stores.ranking, *(stores.ranking_for(p.board) for p in now)], config["BOARD_SIZE"])
        db.session.commit()
        version = stores.board_cache.publish_if_changed(dumps(tops[0]), changed_at)
        if version:
            metrics.BROADCASTS.labels(board=ALL_TIME.kind).inc()
            log.info("board broadcast", extra={"version": version})
        for period, top in zip(now, tops[1:], strict=True):
            if stores.board_cache_for(period.kind).publish_if_changed(dumps(top), period_changed_at, key=period.key):
                metrics.BROADCASTS.labels(board=period.kind).inc()
        return version
