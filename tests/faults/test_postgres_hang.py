"""PostgreSQL hung under a stream of claims: every server process SIGSTOPped, so connections stay open and the
server's kernel still acknowledges every packet, but nothing answers (no server-side timeout, keepalive or
``tcp_user_timeout`` can fire). Only the client-side wait bound (``SCOREBOARD_DB_WAIT_TIMEOUT``) helps.

Claims in flight at the stop and claims sent during the hang answer 503 ``database_unavailable`` within 2 s,
on the gevent instances and on a gthread one; after SIGCONT the same processes answer 200 within seconds; every
claim answered 200 is committed and on the board.
"""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.support import bearer, start_web, wait_until

from .conftest import USERS
from .stack import BoardWatcher, ClaimStream, account, wait_converged

pytestmark = [pytest.mark.faults, pytest.mark.live]

BOUND = 2.0  # a claim's answer while the database hangs, p100
RECOVERY = 5.0  # after SIGCONT: every claim sent later than this answers 200


def children(pid):
    """The pids of the processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@contextmanager
def hung(pg):
    """SIGSTOP the postmaster (no new server process), then every server process; SIGCONT them all at the end."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGSTOP)
    stopped = [postmaster]
    try:
        for pid in children(postmaster):
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            except ProcessLookupError:
                pass
        yield time.monotonic()
    finally:
        for pid in reversed(stopped):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def worker_pids(process):
    """A gunicorn instance's worker processes."""
    return set(children(process.proc.pid))


def claim(base, token, action_id):
    """One claim over HTTP: ``(status, error code or "ok", seconds to the answer)``."""
    started = time.monotonic()
    r = requests.post(f"{base}/api/action/do", json={"actionId": action_id}, headers=bearer(token), timeout=10)
    code = "ok" if r.status_code == 200 else r.json()["error"]["code"]
    return r.status_code, code, time.monotonic() - started


@pytest.fixture
def gthread_base(stack):
    """A third web instance on the private stack, with the gthread worker (threads: the select.poll wait)."""
    env = {**stack._env_for("web-t"), "SCOREBOARD_WORKER_CLASS": "gthread", "SCOREBOARD_WEB_THREADS": "32"}
    process, base = start_web(env, stack.log_dir, name="web-gthread", workers=1)
    stack.processes["web-gthread"] = process
    yield base
    process.stop()
    stack.processes.pop("web-gthread", None)


def test_hung_postgres_answers_503_within_bound_then_recovers(stack, tokens, reader, service_headers, gthread_base):
    items = stack.record(service_headers, USERS, 60)
    direct, items = items[:12], items[12:]  # claimed one by one on the gthread instance during the hang
    bases = [stack.base_a, stack.base_b, gthread_base]
    webs = {name: worker_pids(stack.processes[name]) for name in ("web-a", "web-b", "web-gthread")}
    watchers = [BoardWatcher(base, reader).start() for base in (stack.base_a, stack.base_b)]
    stream = ClaimStream(bases, items, tokens, interval=0.1, threads=4).start()
    try:
        stream.wait_answered(30, status=200)  # flowing through all three instances
        with hung(stack.pg) as stopped_at:
            # Claims sent during the hang, on every instance, each waiting out the bound; and some straight to the
            # gthread instance.
            with ThreadPoolExecutor(max_workers=3) as pool:
                on_gthread = list(pool.map(lambda item: claim(gthread_base, tokens[item[0]], item[1]), direct[:6]))
            stream.wait_answered(12, since=stopped_at, status=503, timeout=30)
            ready_started = time.monotonic()
            ready = requests.get(f"{stack.base_b}/readyz", timeout=15)
            ready_took = time.monotonic() - ready_started
            thawed_at = time.monotonic()
        # The same processes serve again once the database answers.
        stream.wait_answered(30, since=thawed_at + RECOVERY, status=200, timeout=30)
        first_200 = wait_until(
            lambda: min(
                (o.at + o.took for o in list(stream.outcomes) if o.status == 200 and o.at >= thawed_at), default=0
            ),
            message="no claim sent after SIGCONT answered 200",
        )
        after = [claim(gthread_base, tokens[user], action_id) for user, action_id in direct[6:]]
        stream.stop()
        converged_in = wait_converged(stack, reader, watchers, timeout=10)
    finally:
        stream.stop()
        for watcher in watchers:
            watcher.stop()

    outcomes = list(stream.outcomes)
    assert set(stream.statuses()) <= {200, 503}, stream.statuses()
    # In flight when the server stopped (sent before, answered after) or sent while it was stopped.
    affected = [o for o in outcomes if o.at + o.took > stopped_at and o.at < thawed_at]
    in_flight = [o for o in affected if o.at < stopped_at]
    during = [o for o in affected if o.at >= stopped_at + 0.05 and o.at + o.took < thawed_at]
    assert during and all(o.status == 503 and o.code == "database_unavailable" for o in during), [
        (round(o.at - stopped_at, 2), o.status, o.code) for o in during if o.status != 503
    ]
    slowest = max(o.took for o in affected)
    assert slowest <= BOUND, f"a claim waited {slowest:.2f}s on the hung database"
    assert [(s, c) for s, c, _ in on_gthread] == [(503, "database_unavailable")] * len(on_gthread), on_gthread
    assert max(t for _, _, t in on_gthread) <= BOUND, on_gthread
    assert ready.status_code == 503 and ready.json()["error"]["failing"] == ["database"], ready.text
    assert first_200 - thawed_at < RECOVERY
    late = [o for o in outcomes if o.at >= thawed_at + RECOVERY]
    assert late and all(o.status == 200 for o in late), [(o.status, o.code) for o in late if o.status != 200]
    assert [s for s, _, _ in after] == [200] * len(after), after
    assert webs == {name: worker_pids(stack.processes[name]) for name in webs}, "a web worker was restarted"

    counts = account(stack, stream, "postgres hung", converged_in)
    print(
        f"[postgres hung] in_flight={len(in_flight)} during={len(during)} "
        f"slowest_answer_s={slowest:.2f} in_flight_slowest_s={max((o.took for o in in_flight), default=0):.2f} "
        f"gthread_slowest_s={max(t for _, _, t in on_gthread):.2f} readyz_s={ready_took:.2f} "
        f"first_200_after_sigcont_s={first_200 - thawed_at:.2f}"
    )
    assert counts["acknowledged_not_committed"] == 0
    assert counts["lost"] == 0
    assert counts["committed"] == counts["on_board"] > 0
    assert counts["answered_503"] > 0
