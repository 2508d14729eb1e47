"""The ranks phase: the ranking reads over HTTP, and what the period boards add to the claim statement.

Run on each bench database beside the users phase, in two steps: :func:`prepare` before the
database's stack starts (the current week's rows, then the claim statement timed with and without
the period boards, which also gives the history users their claims), :func:`measure` once the
stacks of both databases are up (their Redis mirrors built), alternating between them.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import redis
import requests

from . import dataset, stack
from .loadgen import wrk
from .progress import log
from .samplers import median, pct

# The reads measured, in the order they run (each with ``wrk -t1 -c1``, one request at a time).
READS = ("me", "page", "around", "history", "week", "users")
READ_USERS = 1000  # random users whose tokens ask for their own rank (the same users each run)
HISTORY_USERS = 500  # users whose completions the claim-cost runs claim, then whose histories are read
PAGE_CURSORS = 50  # page cursors at consecutive members from the middle of the board
PAGE_LIMIT = 50  # entries per page (the endpoint's default)
USERS_PER_LOOKUP = 10  # ids per ``/api/scores/users`` request


def _periods() -> list[Any]:
    """The current day, week and month, in UTC (the stack's zone: the bench leaves ``PERIOD_TZ`` unset)."""
    from scoreboard.periods import current_periods

    return current_periods()


WAL_SAMPLES = 30  # claims of each statement in the WAL sample
# Strides over the users for the scattered claims: coprime with the user count, unlike the users phase's 7,919.
SCATTER = {1000: 7, 1_000_000: 104_729}


def claim_cost(
    db_name: str, users: int, run_id: str, owners: list[str], runs: int, per_run: int, log_dir: Path
) -> dict[str, dict[str, Any]]:
    """Time the claim statement with the period boards and without them (``bench.claimcost``), by pattern.

    ``repeat``: the claims of the history users, ~10 each over a run (the pages their rows are on
    stay cached, and a user's day and month rows exist after their first claim). ``scattered``: each
    claim another user, strided over the whole database (each touches pages nobody touched lately,
    and on the million's database nearly every claim creates the user's day and month rows).
    """
    count = runs * per_run + 2 * WAL_SAMPLES
    pools = {
        "repeat": dataset.add_completions_for(db_name, f"cr{run_id[:4]}x", owners, count),
        "scattered": dataset.add_completions(
            db_name, f"cs{run_id[:4]}x", count, users=users, spread=SCATTER.get(users, 1)
        ),
    }
    found = {}
    for pattern, pool in pools.items():
        # The WAL sample comes first in the file (``bench.claimcost``), after the timed runs in time.
        pool = pool[-2 * WAL_SAMPLES :] + pool[: -2 * WAL_SAMPLES]
        path = log_dir / f"claimcost-{db_name}-{pattern}.txt"
        path.write_text("".join(f"{action_id} {uid}\n" for action_id, uid in pool))
        out = log_dir / f"claimcost-{db_name}-{pattern}.json"
        prefix = f"bench:{run_id}:claimcost:"
        try:
            subprocess.run(
                [sys.executable, "-m", "bench.claimcost", str(path), str(runs), str(WAL_SAMPLES), str(out)],
                cwd=stack.ROOT,
                env=stack.stack_env(db_name, prefix, stack.free_port()),
                check=True,
                timeout=120 + count * 0.05,
            )
        finally:
            stack.clear_prefix(prefix)
        result = json.loads(out.read_text())
        figures = []
        for run in result["runs"]:
            with_ms = [t * 1000 for t in run["with"]]
            without_ms = [t * 1000 for t in run["without"]]
            figures.append(
                {
                    "claims": len(with_ms) + len(without_ms),
                    "with_p50_ms": pct(with_ms, 50),
                    "with_p99_ms": pct(with_ms, 99),
                    "without_p50_ms": pct(without_ms, 50),
                    "without_p99_ms": pct(without_ms, 99),
                }
            )
        found[pattern] = {
            "periods": result["periods"],
            "failed": result["failed"],
            "runs": figures,
            "wal_with_bytes": median(result["wal"]["with"]),
            "wal_without_bytes": median(result["wal"]["without"]),
            # The worker's share, moved off the claim: folding the flagged claims into their periods.
            "fold_us_per_claim": result["fold"]["seconds"] * 1e6 / max(1, result["fold"]["claims"]),
        }
    return found


def prepare(db_name: str, users: int, run_id: str, runs: int, per_run: int, log_dir: Path) -> dict[str, Any]:
    """Before the stack starts: fill the current week, time the claim statement, note the history users' claims."""
    periods = _periods()
    week = next(p for p in periods if p.kind == "week")
    rows, fill_seconds = dataset.fill_period(db_name, week.key, [p.key for p in periods])
    log(f"  {users:,} users: {week.key} holds {rows:,} users ({fill_seconds:.0f} s)")
    # Other users each run: the million's database is kept, and the last run's history users have claims already.
    owners = dataset.sample_users(users, HISTORY_USERS, seed=int(run_id, 16))
    cost = claim_cost(db_name, users, run_id, owners, runs, per_run, log_dir)
    for pattern, found in cost.items():
        w = median([r["with_p50_ms"] for r in found["runs"]])
        wo = median([r["without_p50_ms"] for r in found["runs"]])
        log(
            f"  {users:,} users, {pattern} claims: statement p50 {w:.3f} ms with the period boards, {wo:.3f} ms "
            f"without ({w / wo:.2f}x); WAL {found['wal_with_bytes']:,.0f} vs {found['wal_without_bytes']:,.0f} "
            f"bytes; {found['failed']} claims matched nothing; the worker folds a claim into its periods in "
            f"{found['fold_us_per_claim']:.0f} µs"
        )
    return {
        "week": week.key,
        "week_rows": rows,
        "week_fill_seconds": fill_seconds,
        "claim_cost": cost,
        "history_users": owners,
    }


def _cursors(st: stack.Stack, total_hint: int) -> tuple[list[str], int]:
    """Page cursors after the members at the middle of the all-time board, signed as the API signs them.

    Returns the cursors and the rank the first of their pages starts at.
    """
    from scoreboard.stores.ranking import RedisRanking

    client = redis.Redis.from_url(stack.REDIS_URL, decode_responses=True)
    try:
        key = RedisRanking(client, st.env["SCOREBOARD_REDIS_PREFIX"]).members_key
        total = int(client.zcard(key)) or total_hint
        depth = total // 2  # 0-based index of the first cursor's member: its page starts at rank depth + 2
        members = client.zrevrange(key, depth, depth + PAGE_CURSORS - 1)
    finally:
        client.close()
    return dataset.page_cursors(members), depth + 2


def _lines(kind: str, readers: list[str], owners: list[str], cursors: list[str], tokens: dict[str, str]) -> list[str]:
    """The ``path token`` lines of one read."""
    if kind == "me":
        return [f"/api/scores/me?radius=0 {tokens[u]}" for u in readers]
    if kind == "around":
        return [f"/api/scores/me?radius=5 {tokens[u]}" for u in readers]
    if kind == "week":
        return [f"/api/scores/me?period=week&radius=0 {tokens[u]}" for u in readers]
    if kind == "page":
        return [f"/api/scores?limit={PAGE_LIMIT}&cursor={c} {tokens[readers[i]]}" for i, c in enumerate(cursors)]
    if kind == "history":
        return [f"/api/scores/{u}/history {tokens[u]}" for u in owners]
    if kind == "users":
        groups = [readers[i : i + USERS_PER_LOOKUP] for i in range(0, len(readers), USERS_PER_LOOKUP)]
        return [f"/api/scores/users?ids={','.join(g)} {tokens[g[0]]}" for g in groups]
    raise ValueError(kind)


def _check(st: stack.Stack, kind: str, line: str, first_rank: int) -> str:
    """One request of a read, answered 200 with what it should hold; returns what is wrong ("" when nothing)."""
    path, token = line.split(" ")
    answer = requests.get(st.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    if answer.status_code != 200:
        return f"{kind}: {answer.status_code} {answer.text[:200]}"
    body = answer.json()
    if kind in ("me", "week") and body.get("rank") is None:
        return f"{kind}: the user is not ranked"
    if kind == "around" and len(body.get("around", [])) < 6:
        return f"{kind}: {len(body.get('around', []))} neighbours"
    if kind == "page" and (not body.get("entries") or body["entries"][0]["rank"] != first_rank):
        ranks = [e["rank"] for e in body.get("entries", [])[:1]]
        return f"{kind}: the page starts at rank {ranks}, not {first_rank}"
    if kind == "history" and not body.get("entries"):
        return f"{kind}: no entries"
    if kind == "users" and not body.get("entries"):
        return f"{kind}: no entries"
    return ""


class Side(NamedTuple):
    """One database of the comparison, with its running stack and what :func:`prepare` left."""

    db_name: str
    users: int
    stack: stack.Stack
    prepared: dict[str, Any]


def _read_files(side: Side, tokens: dict[str, str], log_dir: Path) -> tuple[dict[str, Path], int, list[str]]:
    """The ``path token`` file of every read on one side, each read checked once; (files, first page rank, problems)."""
    readers = dataset.sample_users(side.users, READ_USERS, seed=11)
    owners = side.prepared["history_users"]
    missing = sorted(set(readers + owners) - tokens.keys())
    if missing:
        tokens.update(dataset.mint_tokens(missing))
    cursors, first_rank = _cursors(side.stack, side.users)
    files, problems = {}, []
    for kind in READS:
        lines = _lines(kind, readers, owners, cursors, tokens)
        files[kind] = log_dir / f"reads-{side.db_name}-{kind}.txt"
        files[kind].write_text("\n".join(lines) + "\n")
        problem = _check(side.stack, kind, lines[0], first_rank)
        if problem:
            problems.append(problem)
            log(f"  {side.users:,} users: unexpected answer, {problem}")
    return files, first_rank, problems


def measure(
    sides: list[Side], tokens: dict[str, str], runs: int, seconds: int, log_dir: Path, run_id: str
) -> list[dict[str, Any]]:
    """Each read with ``wrk -t1 -c1`` for ``seconds`` on each side, ``runs`` times; their wrk summaries, by side.

    The runs interleave the reads and the sides (read by read, the sides in turn, their order
    swapped every run), so that load from outside the bench falls on every figure alike. Before
    that, the history users of every side after the first get their ledgers padded to the first
    side's (its median claimed and other completions), so that a history page walks as many rows
    everywhere and the comparison is about the number of users alone (on the small database every
    user also holds the other phases' pools).
    """
    padded = {}
    target = None
    for side in sides:
        owners = side.prepared["history_users"]
        padded[side.db_name] = 0
        if target is not None:
            padded[side.db_name] = dataset.pad_ledgers(side.db_name, f"pad{run_id[:4]}", owners, *target)
        else:
            found = dataset.ledgers(side.db_name, owners)
            target = (round(median([c for c, _o in found])), round(median([o for _c, o in found])))
    # The claims since the last ANALYZE (the HTTP phase's, the claim-cost runs, the users phase) change the plans,
    # and leave dead rows on one database more than the other.
    for side in sides:
        dataset.analyze(side.db_name, ("completions", "scores", "period_scores"), vacuum=True)
    prepared = {side.db_name: _read_files(side, tokens, log_dir) for side in sides}
    for side in sides:  # warm up: the first requests of each read pay for pools, scripts and plans
        for kind in READS:
            wrk(side.stack.base + "/", "paths.lua", [prepared[side.db_name][0][kind]], seconds=1, connections=1)
    reads = {side.db_name: {kind: [] for kind in READS} for side in sides}
    for run in range(runs):
        for kind in READS:
            for side in sides if run % 2 == 0 else reversed(sides):
                path = prepared[side.db_name][0][kind]
                reads[side.db_name][kind].append(
                    wrk(side.stack.base + "/", "paths.lua", [path], seconds=seconds, connections=1)
                )
    found = []
    for side in sides:
        mine = reads[side.db_name]
        log(
            f"  {side.users:,} users: "
            + ", ".join(
                f"{kind} p50 {median([r['p50_us'] for r in mine[kind]]) / 1000:.2f} ms "
                f"({sum(r['status_errors'] for r in mine[kind])} non-2xx)"
                for kind in READS
            )
        )
        ledger = dataset.ledgers(side.db_name, side.prepared["history_users"])
        found.append(
            {
                "users": side.users,
                "reads": mine,
                "page_first_rank": prepared[side.db_name][1],
                "problems": prepared[side.db_name][2],
                "history_ledger": (median([c for c, _o in ledger]), median([o for _c, o in ledger])),
                "history_padding": padded[side.db_name],
                **{k: v for k, v in side.prepared.items() if k != "history_users"},
            }
        )
    return found
