"""The claim statement with the period boards and without them, timed on the claims bind; run as its own process.

``python -m bench.claimcost CLAIMS_FILE RUNS WAL_SAMPLES OUT`` with the servers' environment (``stack.stack_env``).

The app is built as the servers build it, and every claim runs on ``db.engines["claims"]`` (the
pool of autocommit connections the claim uses), as ``scoring.claims`` runs it: check a
connection out, execute, scalar. Two statements take turns, in pairs of opposite order (with,
without, without, with, ...; so drift on the machine falls on both alike): ``with``, the claim's
``CLAIM_ONE_STATEMENT`` (which flags the claimed completion for the period boards,
``completions.period_pending``), and ``without``, the statement as it was before the period
boards (the claimed CTE and the score's increment, no flag). Both are sent the way the claim
sends its statement: compiled once (``scoring.claims._compiled_claim``) and run as a prepared
statement of the connection (``ops.prepared``, as ``SCOREBOARD_DB_PREPARED_STATEMENTS`` says), so the
difference is what the period boards cost the claim.
``CLAIMS_FILE`` holds ``actionId user`` lines of pending completions, claimed in order: the
first ``2 * WAL_SAMPLES`` lines are kept for the WAL sample, the rest split into ``RUNS`` runs.
Each claim must succeed (its new score returned). The first claims of each run are a warm-up and
are not counted. Times are ``time.perf_counter()`` around the execute.

The WAL sample, after the runs, claims untimed: ``pg_current_wal_insert_lsn()`` before and after
each claim on the same connection, so the difference is the WAL the claim wrote, its commit record
included (and whatever another session wrote meanwhile: the median is quoted).

Last, the work the period boards moved off the claim: the worker's ``board.refresh.fold_claims``
adds the flagged claims to their periods, timed in batches of ``FOLD_BATCH`` claims (a busy
recompute's share), so its cost per claim is reported beside the statement's.
"""

import json
import sys
import time
from pathlib import Path

from sqlalchemy import text

WARMUP = 20
FOLD_BATCH = 40  # about the claims a recompute finds at 750 claims/s and 20 recomputes/s
LSN = text("SELECT pg_current_wal_insert_lsn()")
DIFF = text("SELECT pg_wal_lsn_diff(:after, :before)")


KINDS = ("with", "without")


def kind_of(i: int) -> str:
    """The statement of claim ``i``: pairs in opposite order, with, without | without, with | with, without ..."""
    return "with" if (i % 2 == 0) == ((i // 2) % 2 == 0) else "without"


def main() -> None:
    """Claim every completion of the file, alternating the two statements; write the times as JSON."""
    claims_file, runs, samples, out = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    import scoreboard.board.refresh as refresh
    from scoreboard import create_app
    from scoreboard.extensions import db
    from scoreboard.models import Completion
    from scoreboard.ops import prepared
    from scoreboard.periods import clock, current_periods
    from scoreboard.scoring.claims import CLAIM_ONE_STATEMENT, _claimed, _raise_score

    # The statement as it was before the period boards: the claimed CTE and the score's increment alone.
    before = _claimed.returning(Completion.__table__.c.user_id, Completion.__table__.c.points).cte("claimed")
    without_periods = _raise_score(before.c.points, before.c.user_id)
    lines = [line.split() for line in claims_file.read_text().splitlines() if line.strip()]
    wal_lines, lines = lines[: 2 * samples], lines[2 * samples :]
    per_run = len(lines) // runs
    results = {"runs": [], "wal": {"with": [], "without": []}, "failed": 0}
    with create_app().app_context():
        engine = db.engines["claims"]
        keys = [p.key for p in current_periods()]
        results["periods"] = keys
        compiled = {
            "with": CLAIM_ONE_STATEMENT.compile(dialect=engine.dialect),
            "without": without_periods.compile(dialect=engine.dialect),
        }
        sql = {kind: c.string for kind, c in compiled.items()}

        def claim(conn, kind: str, bound: dict):
            return prepared.execute(conn, f"cost_{kind}", sql[kind], compiled[kind].construct_params(bound)).scalar()

        def params(action_id: str, user: str) -> dict:
            return {
                "p_action": action_id,
                "p_user": user,
                "p_now": clock(),
                "p_ip": "127.0.0.1",
                "p_agent": "bench",
                "p_periods": keys,
            }

        for run in range(runs):
            times: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for i, (action_id, user) in enumerate(lines[run * per_run : (run + 1) * per_run]):
                kind = kind_of(i)
                bound = params(action_id, user)
                started = time.perf_counter()
                with engine.connect() as conn:
                    new_score = claim(conn, kind, bound)
                elapsed = time.perf_counter() - started
                if new_score is None:
                    results["failed"] += 1
                elif i >= WARMUP:
                    times[kind].append(elapsed)
            results["runs"].append(times)
        with engine.connect() as conn:
            for i, (action_id, user) in enumerate(wal_lines):
                kind = kind_of(i)
                before = conn.execute(LSN).scalar()
                new_score = claim(conn, kind, params(action_id, user))
                after = conn.execute(LSN).scalar()
                if new_score is None:
                    results["failed"] += 1
                else:
                    results["wal"][kind].append(int(conn.execute(DIFF, {"after": after, "before": before}).scalar()))
        # The worker's side: the flagged claims folded into their periods, a recompute's batch at a time.
        batch, refresh.BATCH = refresh.BATCH, FOLD_BATCH
        folded, seconds = 0, 0.0
        while True:
            started = time.perf_counter()
            count = refresh.fold_claims(max_batches=1)
            seconds += time.perf_counter() - started
            if not count:
                break
            folded += count
        refresh.BATCH = batch
        results["fold"] = {"claims": folded, "seconds": seconds}
        db.session.remove()
        engine.dispose()
    out.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
