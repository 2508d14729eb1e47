"""Claims in batches (group commit) on the real PostgreSQL, with real threads and real gunicorn processes.

A statement is held in flight by a row lock another session holds on a user's score, so the claims
sent meanwhile are known to queue behind it and go together in the next statement once it returns.
"""

import threading
from collections import Counter, defaultdict
from contextlib import contextmanager
from itertools import accumulate

import pytest
from psycopg2 import extensions
from sqlalchemy import select, text, update

from scoreboard.extensions import db
from scoreboard.models import ClaimRefusal, Completion, CompletionStatus, Score, User, UserStatus
from scoreboard.ops import db_waits
from scoreboard.scoring.completions import record_completion
from tests.support import (
    bearer,
    claim_together,
    delta,
    peak_in_flight,
    sample,
    scrape,
    start_web,
    wait_until,
)

POINTS = {"complete-lesson": 50, "win-challenge": 250, "share-result": 20}


def batches():
    """``(statements, claims sent in them, statements of one claim)`` sent by this process so far."""
    return (
        sample("scoreboard_claim_batch_size_count"),
        sample("scoreboard_claim_batch_size_sum"),
        sample("scoreboard_claim_batch_size_bucket", le="1.0"),
    )


def grown(after, before):
    return tuple(a - b for a, b in zip(after, before, strict=True))


def new_completion(app, user, action="complete-lesson"):
    """A pending completion of ``user`` recorded straight through the scoring layer; its actionId."""
    with app.app_context():
        completion, _ = record_completion(user, action)
        return completion.id


def score_of(app, user):
    with app.app_context():
        value = db.session.scalar(select(Score.score).where(Score.user_id == user))
        db.session.rollback()
        return value


class Claimer(threading.Thread):
    """One claim through the app, in a thread of its own (the test client, as a request thread would)."""

    def __init__(self, app, token, action_id):
        super().__init__(daemon=True)
        self.app, self.token, self.action_id = app, token, action_id
        self.status = self.body = None

    def run(self):
        r = self.app.test_client().post("/api/action/do", json={"actionId": self.action_id}, headers=bearer(self.token))
        self.status, self.body = r.status_code, r.get_json()

    def answer(self, timeout=30):
        self.join(timeout)
        assert not self.is_alive(), "the claim did not answer"
        return self.status, self.body


def lock_waits(app, batch=None):
    """Backend pids of this database's statements waiting on a lock (``batch``: only batches, or only the rest)."""
    # A batch is sent as its text (``unnest`` of the arrays) or as its prepared statement (``scoreboard.ops.prepared``).
    is_batch = "(query LIKE '%unnest%' OR query LIKE 'EXECUTE claim_batch%')"
    which = {None: "", True: f" AND {is_batch}", False: f" AND NOT {is_batch}"}[batch]
    with app.app_context():
        pids = db.session.scalars(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                + which
            )
        ).all()
        db.session.rollback()
    return pids


@contextmanager
def score_row_locked(app, user):
    """Hold ``user``'s score row locked from another session, so a claim raising it waits in flight."""
    with app.app_context():
        conn = db.engine.connect()
        tx = conn.begin()
        conn.execute(text("SELECT 1 FROM scores WHERE user_id = :u FOR UPDATE"), {"u": user})
        try:
            yield
        finally:
            tx.rollback()
            conn.close()


def the_batcher(app):
    return wait_until(lambda: app.extensions.get("claim_batcher"), message="no claim batcher made")


def queue_behind(app, batcher, jobs):
    """Start a claim for each ``(token, actionId)``, each once the one before it is queued: their order is known."""
    claimers = []
    for count, (token, action_id) in enumerate(jobs, 1):
        claimer = Claimer(app, token, action_id)
        claimer.start()
        claimers.append(claimer)
        wait_until(lambda n=count: batcher.queued() == n, message=lambda: f"{batcher.queued()} queued")
    return claimers


def test_a_claim_with_nothing_in_flight_goes_alone_at_once(app, client, mint):
    action_id = new_completion(app, "solo")
    before = batches()
    r = client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(mint("solo")))
    assert r.status_code == 200 and r.get_json() == {"success": True, "newScore": 50}
    # One statement, of one claim, and nothing left waiting.
    assert grown(batches(), before) == (1, 1, 1)
    assert the_batcher(app).queued() == 0


def test_claims_queued_behind_a_statement_go_in_one_batch_each_with_its_own_answer(app, mint):
    tokens = {u: mint(u) for u in ("holder", "alice", "bob", "carol", "dave", "erin", "banned")}
    held = new_completion(app, "holder")
    alice = [new_completion(app, "alice", a) for a in ("complete-lesson", "win-challenge", "share-result")]
    bob = new_completion(app, "bob", "win-challenge")
    expired = new_completion(app, "carol")
    erins = new_completion(app, "erin")
    taken = new_completion(app, "dave")
    banned = new_completion(app, "banned")
    app.test_client().post("/api/action/do", json={"actionId": taken}, headers=bearer(tokens["dave"]))
    with app.app_context():
        db.session.execute(update(Completion).where(Completion.id == expired).values(expires_at=db.func.now()))
        db.session.execute(update(User).where(User.id == "banned").values(status=UserStatus.BANNED))
        db.session.commit()

    before = batches()
    with score_row_locked(app, "holder"):
        first = Claimer(app, tokens["holder"], held)
        first.start()
        wait_until(lambda: lock_waits(app), message="the first claim never waited on the lock")
        batcher = the_batcher(app)
        queued = queue_behind(
            app,
            batcher,
            [
                (tokens["alice"], alice[0]),
                (tokens["bob"], bob),
                (tokens["alice"], alice[1]),
                (tokens["carol"], expired),
                (tokens["bob"], bob),  # the same actionId again: not in the same batch
                (tokens["dave"], erins),  # another user's
                (tokens["dave"], taken),  # claimed before
                (tokens["banned"], banned),
                (tokens["alice"], alice[2]),
            ],
        )
        assert first.is_alive() and all(c.is_alive() for c in queued)
    assert first.answer() == (200, {"success": True, "newScore": 50})
    answers = [c.answer() for c in queued]

    def ok(score):
        return (200, {"success": True, "newScore": score})

    def refused(status, code):
        return (status, code)

    got = [a if a[0] == 200 else refused(a[0], a[1]["error"]["code"]) for a in answers]
    assert got == [
        ok(50),  # alice, in arrival order: each as if committed one after another
        ok(250),
        ok(300),
        refused(410, "action_expired"),
        refused(409, "already_claimed"),
        refused(404, "action_not_found"),
        refused(409, "already_claimed"),
        refused(403, "user_banned"),
        ok(320),
    ]
    # The lone claim, then the eight distinct actionIds together, then bob's repeat alone.
    assert grown(batches(), before) == (3, 10, 2)
    assert score_of(app, "alice") == 320 and score_of(app, "bob") == 250 and score_of(app, "holder") == 50
    with app.app_context():
        reasons = Counter(db.session.scalars(select(ClaimRefusal.reason)).all())
        statuses = dict(db.session.execute(select(Completion.id, Completion.status)).all())
        db.session.rollback()
    assert reasons == {"action_expired": 1, "already_claimed": 2, "action_not_found": 1, "user_banned": 1}
    assert [statuses[i] for i in alice] == ["claimed"] * 3 and statuses[bob] == "claimed"
    assert statuses[expired] == statuses[erins] == statuses[banned] == CompletionStatus.PENDING


def test_many_threads_claiming_at_once_are_batched_and_exact(app, mint):
    users = [f"player{i}" for i in range(8)]
    tokens = {u: mint(u) for u in users}
    jobs, points = [], []
    for i in range(320):
        user, action = users[i % len(users)], ("complete-lesson", "win-challenge")[i % 3 == 0]
        jobs.append((tokens[user], new_completion(app, user, action)))
        points.append((user, POINTS[action]))
    before = batches()
    answers = [None] * len(jobs)
    gate = threading.Barrier(32, timeout=30)

    def run(worker):
        client = app.test_client()
        for index in range(worker, len(jobs), 32):
            token, action_id = jobs[index]
            gate.wait()
            r = client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(token))
            answers[index] = (r.status_code, r.get_json())

    threads = [threading.Thread(target=run, args=(w,)) for w in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(a is not None and a[0] == 200 for a in answers), Counter(a and a[0] for a in answers)
    statements, claims, alone = grown(batches(), before)
    assert claims == len(jobs)
    assert statements - alone > 0, "no batch of more than one claim was sent"
    assert statements < len(jobs), (statements, len(jobs))
    applied, expected = defaultdict(list), defaultdict(int)
    for (user, gained), (_, body) in zip(points, answers, strict=True):
        applied[user].append((body["newScore"], gained))
        expected[user] += gained
    for user, totals in applied.items():
        totals.sort()
        # Every intermediate total once: no lost or doubled increment, whatever went in which batch.
        assert [t for t, _ in totals] == list(accumulate(g for _, g in totals)), user
        assert score_of(app, user) == expected[user]


def test_concurrent_claims_leave_no_task_in_progress_behind(app, mint):
    """Eager recomputes run by many claiming threads at once do not leave Celery believing it is inside a task
    (which would make every later ``result.get()`` in the process refuse)."""
    from celery._state import task_join_will_block

    users = [f"eager{i}" for i in range(16)]
    jobs = [(mint(u), new_completion(app, u, "complete-lesson")) for u in users for _ in range(4)]
    gate = threading.Barrier(16, timeout=30)
    statuses = []

    def run(worker):
        client = app.test_client()
        for index in range(worker, len(jobs), 16):
            token, action_id = jobs[index]
            gate.wait()
            statuses.append(
                client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(token)).status_code
            )

    threads = [threading.Thread(target=run, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert statuses.count(200) == len(jobs)
    assert not task_join_will_block()


def test_one_action_id_claimed_by_many_threads_at_once_succeeds_once(app, mint):
    action_id = new_completion(app, "racer", "win-challenge")
    token = mint("racer")
    claimers = [Claimer(app, token, action_id) for _ in range(40)]
    for c in claimers:
        c.start()
    answers = [c.answer() for c in claimers]
    assert Counter(status for status, _ in answers) == {200: 1, 409: 39}
    assert [b for s, b in answers if s == 200] == [{"success": True, "newScore": 250}]
    assert score_of(app, "racer") == 250


def test_a_failed_batch_fails_each_of_its_claims_with_503_and_commits_none(app, mint):
    """Each statement retries once after a dead connection (a restart); failing twice answers 503 to every claim
    of its batch, and none of them is claimed."""
    tokens = {u: mint(u) for u in ("holder", "a", "b")}
    held = [new_completion(app, "holder") for _ in range(2)]
    others = [new_completion(app, "a"), new_completion(app, "b")]
    before = sample("scoreboard_claim_batch_retries_total", reason="reconnect")

    def kill(batch, times):
        for _ in range(times):
            pids = wait_until(lambda: lock_waits(app, batch), message=f"no statement (batch: {batch}) waiting")
            with app.app_context():
                db.session.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]})
                db.session.commit()
            wait_until(lambda p=pids[0]: p not in lock_waits(app), message="the backend lingered")

    with score_row_locked(app, "holder"):
        first = Claimer(app, tokens["holder"], held[0])
        first.start()
        wait_until(lambda: lock_waits(app), message="the first claim never waited on the lock")
        queued = queue_behind(
            app, the_batcher(app), [(tokens["holder"], held[1]), (tokens["a"], others[0]), (tokens["b"], others[1])]
        )
        kill(False, 2)  # the lone claim: its retry waits too, then it fails
        assert first.answer()[0] == 503
        kill(True, 2)  # then the batch of three, the same way
        answers = [c.answer() for c in queued]
    assert [(s, b["error"]["code"]) for s, b in answers] == [(503, "database_unavailable")] * 3
    assert sample("scoreboard_claim_batch_retries_total", reason="reconnect") - before == 2
    with app.app_context():
        statuses = db.session.scalars(select(Completion.status).where(Completion.id.in_([*held, *others]))).all()
        db.session.rollback()
    assert statuses == [CompletionStatus.PENDING] * 4
    assert score_of(app, "a") == score_of(app, "b") == score_of(app, "holder") == 0
    # And the next claim goes through as usual.
    again = Claimer(app, tokens["a"], others[0])
    again.start()
    assert again.answer() == (200, {"success": True, "newScore": 50})


def test_claims_queued_behind_a_timed_out_statement_fail_with_it(app, mint):
    """The wait bound gave up on the statement in flight: the claims queued behind it answer 503 at once rather
    than wait out the bound a second time."""
    tokens = {u: mint(u) for u in ("holder", "a", "b")}
    held = new_completion(app, "holder")
    others = [new_completion(app, "a"), new_completion(app, "b")]
    with score_row_locked(app, "holder"):
        db_waits.install(timeout=1.0, green=False)
        try:
            first = Claimer(app, tokens["holder"], held)
            first.start()
            wait_until(lambda: lock_waits(app), message="the first claim never waited on the lock")
            queued = queue_behind(app, the_batcher(app), [(tokens["a"], others[0]), (tokens["b"], others[1])])
            answers = [first.answer(), *(c.answer() for c in queued)]
        finally:
            extensions.set_wait_callback(None)
    assert [(s, b["error"]["code"]) for s, b in answers] == [(503, "database_unavailable")] * 3
    with app.app_context():
        statuses = db.session.scalars(select(Completion.status).where(Completion.id.in_(others))).all()
        db.session.rollback()
    assert statuses == [CompletionStatus.PENDING] * 2


@pytest.mark.live
def test_two_gevent_processes_batch_overlapping_hot_users_without_deadlock(app, stack_env, tmp_path, mint):
    """gunicorn's production config (2 gevent workers): claims of five hot users from 64 threads, so both
    processes' batches raise the same score rows at once; and one actionId raced through both."""
    (tmp_path / "metrics").mkdir()
    env = {**stack_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    web, base = start_web(env, tmp_path, workers=2)
    try:
        users = [f"hot{i}" for i in range(5)]
        tokens = {u: bearer(mint(u)) for u in users}
        jobs, points = [], []
        for i in range(640):
            user = users[i % len(users)]
            jobs.append((tokens[user], new_completion(app, user)))
            points.append(user)
        racer = new_completion(app, "hot0", "win-challenge")
        before = scrape(f"{base}/metrics")
        answers = claim_together(base, jobs, workers=64)
        raced = claim_together(base, [(tokens["hot0"], racer)] * 64, workers=64)
        after = scrape(f"{base}/metrics")
    finally:
        web.stop()
    assert Counter(a.status for a in answers) == {200: len(jobs)}, [a.body for a in answers if a.status != 200][:3]
    assert peak_in_flight(answers) >= 32
    statements = delta(after, before, "scoreboard_claim_batch_size_count")
    alone = delta(after, before, "scoreboard_claim_batch_size_bucket", le="1.0")
    assert statements - alone > 0, "no batch of more than one claim was sent"
    assert delta(after, before, "scoreboard_claim_batch_retries_total", reason="deadlock") == 0
    per_user = defaultdict(list)
    for user, answer in zip(points, answers, strict=True):
        per_user[user].append(answer.body["newScore"])
    for user in users:
        # Each user's answers are every intermediate total once, whichever process and batch each went in.
        assert sorted(per_user[user]) == [50 * (i + 1) for i in range(len(per_user[user]))], user
    assert Counter(a.status for a in raced) == {200: 1, 409: 63}
    assert [a.body["newScore"] for a in raced if a.status == 200] == [50 * len(per_user["hot0"]) + 250]
    assert {u: score_of(app, u) for u in users} == {
        u: 50 * len(per_user[u]) + (250 if u == "hot0" else 0) for u in users
    }
