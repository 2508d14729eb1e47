"""The claim statement with and without its period upserts, timed on the claims bind; run as its own process.

``python -m bench.claimcost CLAIMS_FILE RUNS OUT`` with the servers' environment (``stack.stack_env``).

The app is built as the servers build it, and every claim runs on ``db.engines["claims"]`` (the
pool of autocommit connections the claim uses), as ``scoring.claims`` runs it: check a
connection out, execute, scalar. Claims alternate between the two statements in pairs of
opposite order (with, without, without, with, ...), so drift on the machine falls on both alike.
``CLAIMS_FILE`` holds ``actionId user`` lines of pending completions, claimed in order and split
into ``RUNS`` runs; each claim must succeed (its new score returned). The first claims of each
run are a warm-up and are not counted. Times are ``time.perf_counter()`` around the execute.
"""

import json
import sys
import time
from pathlib import Path

WARMUP = 20


def main() -> None:
    """Claim every completion of the file, alternating the two statements; write the times as JSON."""
    claims_file, runs, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    from scoreboard import create_app
    from scoreboard.extensions import db
    from scoreboard.periods import clock, current_periods
    from scoreboard.scoring.claims import CLAIM_ONE_STATEMENT, _claimed_cte, _raise_score

    # The statement as it was before the period boards: the claimed CTE and the score's increment alone.
    without_periods = _raise_score(_claimed_cte.c.points, _claimed_cte.c.user_id)
    statements = {"with": CLAIM_ONE_STATEMENT, "without": without_periods}
    lines = [line.split() for line in claims_file.read_text().splitlines() if line.strip()]
    per_run = len(lines) // runs
    results = []
    with create_app().app_context():
        engine = db.engines["claims"]
        keys = [p.key for p in current_periods()]
        for run in range(runs):
            times: dict[str, list[float]] = {"with": [], "without": []}
            failed = 0
            for i, (action_id, user) in enumerate(lines[run * per_run : (run + 1) * per_run]):
                # Pairs in opposite order: with, without | without, with | with, without ...
                kind = "with" if (i % 2 == 0) == ((i // 2) % 2 == 0) else "without"
                params = {
                    "p_action": action_id,
                    "p_user": user,
                    "p_now": clock(),
                    "p_ip": "127.0.0.1",
                    "p_agent": "bench",
                    "p_periods": keys,
                }
                started = time.perf_counter()
                with engine.connect() as conn:
                    new_score = conn.execute(statements[kind], params).scalar()
                elapsed = time.perf_counter() - started
                if new_score is None:
                    failed += 1
                elif i >= WARMUP:
                    times[kind].append(elapsed)
            results.append({"periods": keys, "failed": failed, **times})
        engine.dispose()
    out.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
