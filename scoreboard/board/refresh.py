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
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import DBAPIError

from ..extensions import db
from ..models import Completion, CompletionStatus, PeriodScore, Score
from ..ops import metrics, prepared
from ..ops.db_waits import timed_out
from ..outbox import period_upsert
from ..periods import ALL_TIME, TIMED, Period, all_kept, clock, current_periods, period_of, timezone
from ..stores import Stores, get_stores
from ..stores.board_cache import dumps, publish_each
from ..stores.ranking import Ranking, apply_each, built_flags, tops
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


def _period_sums(rows: Iterable[Any], kept: set[str], keys_of: dict) -> list[tuple[tuple[str, int, str], list]]:
    """The points of taken claims by (user, period), in the order a user's period rows are written elsewhere
    (day, week, month: two writers never deadlock); ``keys_of`` caches each local date's keys across batches."""
    zone = timezone()
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
    return sorted(sums.items())


def _add_params(ordered: Sequence[tuple[tuple[str, int, str], list]]) -> dict[str, list]:
    """:data:`_ADD_TO_PERIODS`'s arrays for :func:`_period_sums`' result."""
    return {
        "periods": [key for (_u, _r, key), _ in ordered],
        "users": [user for (user, _r, _k), _ in ordered],
        "points": [points for _, (points, _at) in ordered],
        "reached": [at for _, (_p, at) in ordered],
    }


def fold_claims(max_batches: int = 50) -> int:
    """Add the points of the claims in the period outbox (``completions.period_pending``) to the day, week and month
    of each one's ``claimed_at`` (those still kept), and clear their flags, in one transaction per batch.

    Exactly once: the flagged rows are locked as they are taken (``SKIP LOCKED``: a concurrent fold or a void
    holding one leaves it to the next run), and the flags are cleared in the transaction that adds the points,
    so a crash adds nothing and clears nothing. A claim voided before it was folded had its flag cleared by the
    void, which then took nothing from the periods (``scoring.moderation``). On PostgreSQL a batch is three
    round trips: take (and clear), add, commit. Returns how many claims were folded. (A recompute folds on
    the driver's cursor instead, with its outbox read: :func:`_outbox_round`.)
    """
    postgres = db.session.get_bind().dialect.name == "postgresql"
    kept = {p.key for p in all_kept()}
    keys_of: dict = {}  # local date -> its (day, week, month) keys, each worked out once per run
    total = 0
    for _ in range(max_batches):
        rows = _take_pending(postgres)
        if not rows:
            db.session.commit()
            break
        ordered = _period_sums(rows, kept, keys_of)
        if ordered and postgres:
            db.session.execute(_ADD_TO_PERIODS, _add_params(ordered))
        elif ordered:
            params = [
                {"p_period": key, "p_user": user, "p_points": points, "p_now": at}
                for (user, _rank, key), (points, at) in ordered
            ]
            db.session.execute(period_upsert("sqlite"), params)
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
    """Mirror the all-time outbox (``scores`` rows flagged ``board_pending``) into the store (the embedded
    database's path; PostgreSQL's recompute reads it with the period outbox, :func:`_outbox_round`).

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
    """Mirror the period outbox (``period_scores`` rows flagged ``board_pending``) into each period's store (the
    embedded database's path).

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


# --- PostgreSQL: a recompute's database work in three round trips -------------------------------------------------
#
# On an autocommitted connection of the ``claims`` pool (no pre-ping, no BEGIN or COMMIT of the driver's own),
# each step sent as SQL on the driver's cursor, several statements to a string (the server runs them in turn
# and answers the last): (1) open a transaction and take a batch of the period outbox; (2) add the batch to its
# periods, commit, and read both board outboxes (the flagged ``scores`` and ``period_scores`` rows, the period
# rows just added among them); the mirrors are then written; (3) clear the flags of the rows mirrored, where no
# newer change has landed since (each table in a transaction of its own, as a claim or a void writes them).
# Exactly once as :func:`fold_claims`: the take and the add commit together, or neither does.

# Each statement is sent prepared (``ops.prepared``: prepared once per connection, all five in one round trip).
_PG_TAKE = (
    "UPDATE completions SET period_pending = false WHERE id IN ("
    "SELECT id FROM completions WHERE period_pending ORDER BY claimed_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED"
    ") RETURNING user_id, points, claimed_at, status"
)
_PG_ADD = """
    INSERT INTO period_scores (period, user_id, score, reached_at, version, board_pending)
    SELECT t.period, t.user_id, t.points, t.reached_at, 1, true
    FROM unnest(CAST(%(periods)s AS varchar[]), CAST(%(users)s AS varchar[]), CAST(%(points)s AS bigint[]),
                CAST(%(reached)s AS timestamptz[])) WITH ORDINALITY AS t(period, user_id, points, reached_at, n)
    ORDER BY t.n
    ON CONFLICT (period, user_id) DO UPDATE SET
        score = period_scores.score + excluded.score,
        reached_at = GREATEST(period_scores.reached_at, excluded.reached_at),
        version = period_scores.version + 1,
        board_pending = true
"""
# The all-time rows carry the period "" (the all-time board's name); each half served by its partial index.
_PG_READ = """
    (SELECT '' AS period, s.user_id, s.score, s.reached_at, s.version, u.status, u.display_name
     FROM scores s JOIN users u ON u.id = s.user_id WHERE s.board_pending LIMIT %(batch)s)
    UNION ALL
    (SELECT p.period, p.user_id, p.score, p.reached_at, p.version, u.status, u.display_name
     FROM period_scores p JOIN users u ON u.id = p.user_id WHERE p.board_pending LIMIT %(batch)s)
"""
# The score rows are locked in user_id order first, as a batch of claims locks them (scoring.claim_batch): in
# whatever order the join met them, a clear and a batch of the same hot users could each wait for the other
# until the lock timeout failed both (seen under 1,000 claims/s of ten users). A row changed meanwhile drops out
# of the lock's re-check of its version, and keeps its flag.
_PG_CLEAR_SCORES = """
    WITH locked AS (
        SELECT s.user_id FROM scores s
        JOIN unnest(CAST(%(s_users)s AS varchar[]), CAST(%(s_versions)s AS bigint[])) AS t(user_id, version)
            ON s.user_id = t.user_id AND s.version = t.version
        ORDER BY s.user_id
        FOR UPDATE OF s
    )
    UPDATE scores SET board_pending = false FROM locked WHERE scores.user_id = locked.user_id
"""
_PG_CLEAR_PERIODS = """
    UPDATE period_scores SET board_pending = false
    FROM unnest(CAST(%(p_periods)s AS varchar[]), CAST(%(p_users)s AS varchar[]), CAST(%(p_versions)s AS bigint[]))
        AS t(period, user_id, version)
    WHERE period_scores.period = t.period AND period_scores.user_id = t.user_id AND period_scores.version = t.version
"""
_PG_STATEMENTS = {
    "board_take": _PG_TAKE,
    "board_fold": _PG_ADD,
    "board_read": _PG_READ,
    "board_clear_scores": _PG_CLEAR_SCORES,
    "board_clear_periods": _PG_CLEAR_PERIODS,
}


class _OutboxRow(NamedTuple):
    """A row of :data:`_PG_READ`: ``period`` is ``""`` for the all-time board, else a period's key."""

    period: str
    user_id: str
    score: int
    reached_at: Any
    version: int
    status: str
    display_name: str


class _Taken(NamedTuple):
    user_id: str
    points: int
    claimed_at: Any
    status: str


def _run(conn, sql: str, params: dict[str, Any]) -> list[tuple]:
    """``sql`` on the driver's cursor of ``conn``; its last statement's rows (none when it returns none).

    A driver error goes through SQLAlchemy's own mapping; the connection is invalidated whatever the error, since
    it may be left inside a transaction of its own making.
    """
    dialect = conn.dialect
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []
    except dialect.loaded_dbapi.Error as exc:
        gone = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
        conn.invalidate(exc)
        raise DBAPIError.instance(
            sql, params, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone, dialect=dialect
        ) from exc
    finally:
        if not cursor.closed:
            cursor.close()


def _outbox_round(
    conn, stores: Stores, kept: set[str], keys_of: dict, first: bool
) -> tuple[bool, int | None, int | None]:
    """One batch of the three steps above; returns whether a batch was full (more may wait), and when the oldest
    all-time and period change mirrored was made (epoch ms, or None)."""
    for attempt in (1, 2):
        try:
            sql = prepared.statements(conn, _PG_STATEMENTS)
            taken = [_Taken(*r) for r in _run(conn, "BEGIN; " + sql["board_take"], {"batch": BATCH})]
            break
        except DBAPIError as exc:
            # A pooled connection the server dropped (a restart) fails its first use: once more on a fresh one.
            # The pool's other idle connections died with it (this pool has no pre-ping): a new pool replaces it.
            if attempt == 2 or not first or not exc.connection_invalidated or timed_out(exc):
                raise
            conn.engine.dispose()
    ordered = _period_sums(taken, kept, keys_of)
    read = ("" if not ordered else sql["board_fold"] + "; ") + "COMMIT; " + sql["board_read"]
    rows = [_OutboxRow(*r) for r in _run(conn, read, {"batch": BATCH, **(_add_params(ordered) if ordered else {})})]
    all_time = [r for r in rows if not r.period]
    by_period: dict[str, list[_OutboxRow]] = defaultdict(list)
    for row in rows:
        if row.period:
            by_period[row.period].append(row)
    # Rows of a period no longer kept are cleared without mirroring: its board is gone.
    batches = [(stores.ranking, to_entries(all_time))] + [
        (stores.ranking_for(key), to_entries(period_batch)) for key, period_batch in by_period.items() if key in kept
    ]
    apply_each(batches)
    changed_at = _oldest(None, batches[0][1]) if batches[0][1] else None
    period_changed_at = None
    for _ranking, entries in batches[1:]:
        period_changed_at = _oldest(period_changed_at, entries)
    period_rows_read = len(rows) - len(all_time)
    clear = ""
    params: dict[str, Any] = {}
    if all_time:
        clear += "BEGIN; " + sql["board_clear_scores"] + "; COMMIT; "
        params.update(s_users=[r.user_id for r in all_time], s_versions=[r.version for r in all_time])
    if period_rows_read:
        clear += sql["board_clear_periods"]
        flagged = [r for r in rows if r.period]
        params.update(
            p_periods=[r.period for r in flagged],
            p_users=[r.user_id for r in flagged],
            p_versions=[r.version for r in flagged],
        )
    if clear:
        _run(conn, clear, params)
    full = len(taken) >= BATCH or len(all_time) >= BATCH or period_rows_read >= BATCH
    return full, changed_at, period_changed_at


def sync_outbox(stores: Stores, kept: set[str], max_batches: int = 50) -> tuple[int | None, int | None]:
    """Fold the claims flagged for their periods and mirror both board outboxes into the stores.

    Returns when the oldest all-time and period change mirrored was made (epoch ms, None where none was).
    PostgreSQL: three round trips a batch (above); the embedded database: :func:`fold_claims`,
    :func:`sync_pending` and :func:`sync_period_pending` on the session.
    """
    engine = db.engines.get("claims")
    if engine is None:
        fold_claims(max_batches)
        _, changed_at = sync_pending(stores.ranking, max_batches)
        _, period_changed_at = sync_period_pending(stores, kept, max_batches)
        return changed_at, period_changed_at
    changed_at = period_changed_at = None
    keys_of: dict = {}
    with engine.connect() as conn:
        try:
            for n in range(max_batches):
                full, all_at, period_at = _outbox_round(conn, stores, kept, keys_of, first=n == 0)
                changed_at, period_changed_at = _earliest(changed_at, all_at), _earliest(period_changed_at, period_at)
                if not full:
                    break
        finally:
            # Never pooled inside a transaction this code opened (an error between the take and its commit).
            dbapi = conn.connection.dbapi_connection if not conn.invalidated else None
            if dbapi is not None and dbapi.info.transaction_status != _IDLE:
                conn.invalidate()
    return changed_at, period_changed_at


_IDLE = 0  # psycopg2.extensions.TRANSACTION_STATUS_IDLE


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _oldest(oldest: int | None, entries: Iterable) -> int | None:
    first = min(e.reached_us for e in entries) // 1000
    return first if oldest is None else min(oldest, first)


def compose_top(ranking: Ranking, limit: int) -> list[dict]:
    """The public top list from the mirror, with display names from the database."""
    return compose_tops([ranking], limit)[0]


def compose_tops(rankings: list[Ranking], limit: int) -> list[list[dict]]:
    """The public top lists of several boards, read together (one round trip on one Redis), with the display
    names the mirrors keep beside their rankings (kept current through the outbox: a rename flags the user's
    rows); a name a mirror lacks is read from the database, every such name in one query."""
    runs = tops(rankings, limit)
    missing = sorted({s.user_id for run in runs for s in run if not s.name})
    names = display_names(missing) if missing else {}
    return [
        public_entries([(s.user_id, s.name or names.get(s.user_id, s.user_id), s.score) for s in run]) for run in runs
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


_kept_memo: dict[tuple, list[Period]] = {}


def _kept(now: list[Period], moment) -> list[Period]:
    """Every kept period (``SCOREBOARD_PERIODS_KEPT`` of each kind, dozens), worked out again only when the current
    periods or the settings change."""
    config = current_app.config
    memo_key = (tuple(p.key for p in now), repr(config["PERIODS_KEPT"]), config["PERIOD_TZ"])
    found = _kept_memo.get(memo_key)
    if found is None:
        _kept_memo.clear()
        found = _kept_memo[memo_key] = list(all_kept(moment))
    return found


class _Run(NamedTuple):
    version: int  # the all-time board's new version, 0 when it did not change
    changed: bool  # anything was mirrored or rebuilt
    keys: tuple[str, ...]  # the current periods' keys


def refresh_board(rebuild: bool = False, drain: float = 0.0) -> int:
    """Mirror pending changes, recompute the top lists, broadcast those that changed.

    With ``drain`` (seconds; the worker's task), the run goes on recomputing while changes keep coming, for about
    that long: it holds the refresh slot from its first run on (:meth:`Coordination.hold_refresh`), so those
    changes queue no task of their own, and reads them at the pace a queued run would (``BROADCAST_MAX_RATE``).
    It always ends with a run that released the slot before it read, as a single run does: a change it did not
    read has queued the next run. Returns the all-time board's last new version, or 0 when it did not change.
    """
    config = current_app.config
    stores = get_stores()
    coordination = stores.coordination
    interval = 1.0 / config["BROADCAST_MAX_RATE"]
    with coordination.refresh_lock():
        # The slot is released as the run books its start: from here on a new change queues the next run (one
        # running, at most one queued); a drain's first run takes it instead (from the change that queued this run)
        # and holds it. Recomputes (and so broadcasts) are bound to BROADCAST_MAX_RATE whatever the claim rate;
        # waiting before reading, inside the lock, means the run after a burst reads its last change.
        wait = coordination.hold_refresh(interval, take=True) if drain else None
        held = wait is not None
        _wait(coordination.begin_refresh(interval) if wait is None else wait)
        run = _recompute(stores, config["BOARD_SIZE"], rebuild)
        version = run.version
        deadline = time.monotonic() + drain
        while drain and time.monotonic() < deadline:
            if run.changed:
                wait = coordination.hold_refresh(interval)
                if wait is None:
                    break  # a change queued a run already (the slot was free): that run reads it
                held = True
            elif held:
                # Nothing came since the last read: release the slot, then read once more, as a single run does.
                wait, held = coordination.begin_refresh(interval), False
            else:
                break  # released before this read, and nothing came: done
            _wait(wait)
            run = _recompute(stores, config["BOARD_SIZE"], False, quiet_keys=run.keys)
            version = run.version or version
        if held:
            _wait(coordination.begin_refresh(interval))
            version = _recompute(stores, config["BOARD_SIZE"], False, quiet_keys=run.keys).version or version
        return version


def _wait(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def _recompute(stores: Stores, size: int, rebuild: bool, quiet_keys: tuple[str, ...] | None = None) -> _Run:
    """One recompute. With ``quiet_keys`` (a drain's next run), a run that mirrored nothing, rebuilt nothing and
    found the same current periods skips the top lists: they cannot have changed since the last run's."""
    metrics.RECOMPUTES.inc()
    moment = clock()
    now = current_periods(moment)
    keys = tuple(p.key for p in now)
    kept = _kept(now, moment)
    # The current periods every run; the closed ones kept now and then (a read of one found it unbuilt).
    checked = kept if rebuild or _due_for_closed_check() else now
    built = built_flags([stores.ranking, *(stores.ranking_for(p.board) for p in checked)])
    if rebuild and built[0]:
        metrics.RECONCILE_DRIFT.inc(count_drift(stores, kept))
    if rebuild or not built[0]:
        # A reconcile, or Redis lost its data (the all-time board goes with every other): reload every board.
        missing = [ALL_TIME, *kept]
        _rebuild(stores, missing, "reconcile" if rebuild else "mirror_missing")
    else:
        missing = [p for p, ok in zip(checked, built[1:], strict=True) if not ok]
        _rebuild(stores, missing, "mirror_missing")
    changed_at, period_changed_at = sync_outbox(stores, {p.key for p in kept})
    changed = bool(missing) or changed_at is not None or period_changed_at is not None
    if not changed and quiet_keys == keys:
        return _Run(0, False, keys)
    top_lists = compose_tops([stores.ranking, *(stores.ranking_for(p.board) for p in now)], size)
    db.session.commit()
    caches = [
        (stores.board_cache, changed_at, None),
        *((stores.board_cache_for(p.kind), period_changed_at, p.key) for p in now),
    ]
    versions = publish_each(
        [(cache, dumps(top), at, key) for (cache, at, key), top in zip(caches, top_lists, strict=True)]
    )
    if versions[0]:
        metrics.BROADCASTS.labels(board=ALL_TIME.kind).inc()
        log.info("board broadcast", extra={"version": versions[0]})
    for period, version in zip(now, versions[1:], strict=True):
        if version:
            metrics.BROADCASTS.labels(board=period.kind).inc()
    return _Run(versions[0], changed, keys)
