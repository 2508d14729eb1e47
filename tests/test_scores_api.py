"""The read API beyond the top 10, against real PostgreSQL and Redis: pages, the caller's standing, chosen users,
a user's history, the period boards, and every refusal.

The expected rankings are computed here from the claims the tests make (score, then who reached it first), not
read back from the service, and compared with what every endpoint answers.
"""

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from scoreboard.periods import resolve
from scoreboard.stores import get_stores
from tests.support import bearer

LESSON, QUIZ, CHALLENGE = 50, 100, 250  # points of complete-lesson, pass-quiz, win-challenge


@pytest.fixture
def viewer(mint):
    return bearer(mint("viewer"))


@pytest.fixture
def admin(mint):
    return bearer(mint("boss", "admin"))


@pytest.fixture
def clock(app):
    """``clock(moment)`` sets the periods' clock (claims are timed by it), ticking 1 ms on each read; the system
    clock is back after the test."""

    def _set(moment: datetime | None) -> None:
        if moment is None:
            app.config["CLOCK"] = None
            return
        ticks = count()
        app.config["CLOCK"] = lambda: moment + timedelta(milliseconds=next(ticks))

    yield _set
    app.config["CLOCK"] = None


class Ledger:
    """The claims a test made, and the ranking they must give: highest score first, then who reached it first."""

    def __init__(self):
        self.scores = {}
        self.reached = {}
        self.sequence = count()
        self.lock = threading.Lock()

    def add(self, user, points):
        with self.lock:
            self.scores[user] = self.scores.get(user, 0) + points
            self.reached[user] = next(self.sequence)

    def ranking(self, hidden=()):
        ranked = sorted(
            (u for u, s in self.scores.items() if s > 0 and u not in hidden),
            key=lambda u: (-self.scores[u], self.reached[u]),
        )
        return [(rank, u, self.scores[u]) for rank, u in enumerate(ranked, start=1)]


@pytest.fixture
def ledger():
    return Ledger()


@pytest.fixture
def claim(record_and_claim, ledger):
    """``claim(user, action)``: record and claim, and count it in the test's own ledger."""
    points = {"complete-lesson": LESSON, "pass-quiz": QUIZ, "win-challenge": CHALLENGE}

    def _claim(user, action="complete-lesson"):
        answer = record_and_claim(user, action)
        ledger.add(user, points[action])
        return answer

    return _claim


def seed_with_ties(claim):
    """23 users, many of them tied at 50, 100 or 150; ties reached in a shuffled order."""
    rng = random.Random(7)
    users = [f"user-{i:02d}" for i in range(23)]
    rounds = {user: 1 + i % 3 for i, user in enumerate(users)}
    rounds["user-05"] = 0  # given a challenge instead
    order = [user for user in users for _ in range(rounds[user])]
    rng.shuffle(order)
    for user in order:
        claim(user)
    claim("user-05", "win-challenge")
    return users


def rows(entries):
    return [(e["rank"], e["userId"], e["score"]) for e in entries]


def walk(client, headers, limit, **query):
    """Every page of ``/api/scores`` from the first; returns the pages' answers."""
    pages, cursor = [], None
    while True:
        params = {**query, "limit": limit} if cursor is None else {**query, "limit": limit, "cursor": cursor}
        answer = client.get("/api/scores", query_string=params, headers=headers)
        assert answer.status_code == 200, answer.get_json()
        pages.append(answer.get_json())
        cursor = pages[-1]["next"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the walk does not end"


def error_code(response):
    return response.get_json()["error"]["code"]


# --- pages ---------------------------------------------------------------------------------------


def test_a_walk_in_pages_of_seven_is_the_ranking_and_starts_like_the_top_list(client, claim, ledger, viewer):
    seed_with_ties(claim)
    expected = ledger.ranking()
    assert len(expected) == 23
    assert len({score for _, _, score in expected}) < len(expected)  # there are ties to break

    pages = walk(client, viewer, 7)
    assert [len(p["entries"]) for p in pages] == [7, 7, 7, 2]
    assert [p["total"] for p in pages] == [23] * 4
    assert all(p["period"] == "all" and p["key"] == "all" and p["start"] is None for p in pages)
    walked = [row for page in pages for row in rows(page["entries"])]
    assert walked == expected

    top = client.get("/api/score/top", headers=viewer).get_json()
    assert rows(top) == expected[:10]
    # The display names are the same as the top list's, entry for entry.
    first_page = pages[0]["entries"] + pages[1]["entries"]
    assert [e["displayName"] for e in first_page[:10]] == [e["displayName"] for e in top]


def test_every_board_read_shows_a_new_display_name_once_the_board_has_swept(
    app, client, mint, record, record_and_claim, viewer
):
    from workers.board import sweep

    record_and_claim("renamer", displayName="Before")
    record_and_claim("other", displayName="Other")
    own = bearer(mint("renamer"))

    def names_read():
        page = client.get("/api/scores?limit=10", headers=viewer).get_json()["entries"]
        week = client.get("/api/scores?period=week&limit=10", headers=viewer).get_json()["entries"]
        chosen = client.get("/api/scores/users?ids=renamer", headers=viewer).get_json()["entries"]
        mine = client.get("/api/scores/me?radius=1", headers=own).get_json()["around"]
        top = client.get("/api/score/top?period=day", headers=viewer).get_json()
        return {e["displayName"] for e in [*page, *week, *chosen, *mine, *top] if e["userId"] == "renamer"}

    assert names_read() == {"Before"}
    record("renamer", displayName="After")  # the recording service renames; no claim, no score change
    with app.app_context():
        sweep()  # the beat's sweep finds the flagged rows, as it would within SWEEP_INTERVAL
    assert names_read() == {"After"}


def test_a_page_size_that_divides_the_board_ends_without_an_empty_page(client, claim, ledger, viewer):
    for user in ("a", "b", "c", "d"):
        claim(user)
    pages = walk(client, viewer, 2)
    assert [rows(p["entries"]) for p in pages] == [ledger.ranking()[:2], ledger.ranking()[2:]]
    assert pages[-1]["next"] is None
    assert client.get("/api/scores", headers=viewer).get_json()["next"] is None  # default limit 50


def test_a_walk_during_a_stream_of_claims_shows_nobody_twice_and_skips_nobody_who_held_still(
    app, client, claim, ledger, viewer, mint, service_headers
):
    users = [f"p{i:02d}" for i in range(40)]
    for i, user in enumerate(users):
        claim(user, "win-challenge" if i % 4 == 0 else "complete-lesson")
    movers = users[1::3]  # their scores change during the walk; every other user's holds still
    stop = threading.Event()
    moved = set()
    failures = []

    def keep_claiming(mine):
        # A client of its own: the test client is not shared between threads.
        http = app.test_client()
        rng = random.Random(len(mine))
        try:
            while not stop.is_set():
                user = rng.choice(mine)
                recorded = http.post(
                    "/api/actions/completions",
                    json={"userId": user, "action": "complete-lesson"},
                    headers=service_headers,
                )
                claimed = http.post(
                    "/api/action/do", json={"actionId": recorded.get_json()["actionId"]}, headers=bearer(mint(user))
                )
                assert claimed.status_code == 200, claimed.get_json()
                moved.add(user)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=keep_claiming, args=(movers[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        seen, pages, cursor = [], 0, None
        while True:
            params = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
            answer = client.get("/api/scores", query_string=params, headers=viewer).get_json()
            seen += [e["userId"] for e in answer["entries"]]
            pages += 1
            cursor = answer["next"]
            if cursor is None:
                break
            time.sleep(0.02)  # let claims land between pages
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures
    assert pages >= 10
    assert moved, "no claim landed during the walk"
    assert len(seen) == len(set(seen)), "a user was shown twice"
    held_still = set(users) - moved
    assert held_still <= set(seen), f"skipped: {sorted(held_still - set(seen))}"


# --- the caller, chosen users --------------------------------------------------------------------


def test_me_shows_a_ranked_user_with_neighbours_and_an_unranked_one_with_nulls(client, claim, ledger, mint, record):
    seed_with_ties(claim)
    expected = ledger.ranking()
    rank, user, score = expected[11]
    me = client.get("/api/scores/me?radius=2", headers=bearer(mint(user))).get_json()
    assert (me["userId"], me["rank"], me["score"], me["total"]) == (user, rank, score, 23)
    assert rows(me["around"]) == expected[9:14]
    assert me["period"] == "all"

    # At the top: no one above; radius 0: only the user.
    first = expected[0][1]
    assert (
        rows(client.get("/api/scores/me?radius=3", headers=bearer(mint(first))).get_json()["around"]) == (expected[:4])
    )
    assert rows(client.get("/api/scores/me?radius=0", headers=bearer(mint(user))).get_json()["around"]) == [
        expected[11]
    ]
    assert len(client.get("/api/scores/me", headers=bearer(mint(user))).get_json()["around"]) == 11  # radius 5

    record("newcomer")  # known, nothing claimed yet
    for nobody in ("newcomer", "never-seen"):
        me = client.get("/api/scores/me", headers=bearer(mint(nobody))).get_json()
        assert me == {**me, "userId": nobody, "rank": None, "score": None, "total": 23, "around": []}


def test_me_for_a_hidden_user_is_unranked_and_the_others_close_ranks(client, claim, ledger, mint, admin):
    for user, action in (("ann", "win-challenge"), ("bob", "pass-quiz"), ("cat", "complete-lesson")):
        claim(user, action)
    hidden = client.post(
        "/api/admin/users/bob/status", json={"status": "hidden", "reason": "under review"}, headers=admin
    )
    assert hidden.status_code == 200
    me = client.get("/api/scores/me", headers=bearer(mint("bob"))).get_json()
    assert (me["rank"], me["score"], me["around"], me["total"]) == (None, None, [], 2)
    cat = client.get("/api/scores/me", headers=bearer(mint("cat"))).get_json()
    assert (cat["rank"], rows(cat["around"])) == (2, ledger.ranking(hidden={"bob"}))


def test_me_needs_a_user_token(client, claim):
    claim("ann")
    response = client.get("/api/scores/me")
    assert response.status_code == 401 and error_code(response) == "token_missing"


def test_users_answers_the_known_ones_in_rank_order(client, claim, ledger, viewer, admin):
    seed_with_ties(claim)
    expected = {user: (rank, user, score) for rank, user, score in ledger.ranking()}
    asked = ["user-20", "nobody", "user-05", "user-03", "user-20", "user-11"]
    answer = client.get("/api/scores/users", query_string={"ids": ",".join(asked)}, headers=viewer).get_json()
    wanted = sorted((expected[u] for u in {"user-20", "user-05", "user-03", "user-11"}), key=lambda r: r[0])
    assert rows(answer["entries"]) == wanted
    assert answer["period"] == "all"

    client.post("/api/admin/users/user-05/status", json={"status": "hidden", "reason": "spam reports"}, headers=admin)
    answer = client.get("/api/scores/users?ids=user-05,user-03", headers=viewer).get_json()
    assert [e["userId"] for e in answer["entries"]] == ["user-03"]
    assert client.get("/api/scores/users?ids=nobody", headers=viewer).get_json()["entries"] == []


def test_the_board_endpoints_need_a_token_unless_the_board_is_public(app, client, claim):
    claim("ann")
    for url in ("/api/scores", "/api/scores/users?ids=ann"):
        assert client.get(url).status_code == 401
    app.config["PUBLIC_BOARD"] = True
    try:
        assert client.get("/api/scores").status_code == 200
        assert [e["userId"] for e in client.get("/api/scores/users?ids=ann").get_json()["entries"]] == ["ann"]
        assert client.get("/api/scores/me").status_code == 401  # whose standing, without a token?
    finally:
        app.config["PUBLIC_BOARD"] = False


# --- history -------------------------------------------------------------------------------------


def history(client, user, headers, **params):
    return client.get(f"/api/scores/{user}/history", query_string=params, headers=headers)


def test_history_is_newest_first_with_running_totals_through_an_adjustment_and_a_void(
    client, record_and_claim, mint, admin
):
    first = record_and_claim("ann", "complete-lesson")["actionId"]
    record_and_claim("ann", "pass-quiz")
    record_and_claim("bob", "win-challenge")  # not ann's
    assert (
        client.post(
            "/api/admin/users/ann/adjustments", json={"delta": -30, "reason": "double counted"}, headers=admin
        ).status_code
        == 201
    )
    assert (
        client.post(f"/api/admin/completions/{first}/void", json={"reason": "fraud check"}, headers=admin).status_code
        == 200
    )

    answer = history(client, "ann", bearer(mint("ann"))).get_json()
    assert answer["userId"] == "ann" and answer["period"] == "all" and answer["next"] is None
    assert [(e["kind"], e["action"], e["delta"], e["score"]) for e in answer["entries"]] == [
        ("void", "void", -LESSON, QUIZ - 30),
        ("adjustment", "adjustment", -30, LESSON + QUIZ - 30),
        ("claim", "pass-quiz", QUIZ, LESSON + QUIZ),
        ("claim", "complete-lesson", LESSON, LESSON),
    ]
    moments = [datetime.fromisoformat(e["at"]) for e in answer["entries"]]
    assert moments == sorted(moments, reverse=True)
    # The running total ends at the score every board shows.
    me = client.get("/api/scores/me", headers=bearer(mint("ann"))).get_json()
    assert me["score"] == answer["entries"][0]["score"] == QUIZ - 30

    # The same, a page of one at a time.
    pages, cursor = [], None
    while True:
        page = history(client, "ann", bearer(mint("ann")), limit=1, **({"cursor": cursor} if cursor else {}))
        assert page.status_code == 200, page.get_json()
        pages += page.get_json()["entries"]
        cursor = page.get_json()["next"]
        if cursor is None:
            break
    assert pages == answer["entries"]


def test_history_pages_keep_their_totals_while_new_changes_arrive_and_old_cursors_still_resume(
    app, client, claim, mint, admin
):
    for action in ("complete-lesson", "pass-quiz", "win-challenge", "complete-lesson"):
        claim("ann", action)
    ann = bearer(mint("ann"))
    whole = history(client, "ann", ann).get_json()["entries"]
    assert [e["score"] for e in whole] == [
        2 * LESSON + QUIZ + CHALLENGE,
        LESSON + QUIZ + CHALLENGE,
        LESSON + QUIZ,
        LESSON,
    ]

    first = history(client, "ann", ann, limit=2).get_json()
    assert first["entries"] == whole[:2]
    # Changes after the first page (a claim, an adjustment) are newer than every entry still to come.
    claim("ann", "win-challenge")
    assert (
        client.post("/api/admin/users/ann/adjustments", json={"delta": 7, "reason": "bonus"}, headers=admin).status_code
        == 201
    )
    rest = history(client, "ann", ann, limit=2, cursor=first["next"]).get_json()
    assert rest["entries"] == whole[2:] and rest["next"] is None

    # A cursor that carries no total (as handed out before totals were carried) resumes with the same totals.
    signer = URLSafeSerializer(app.config["JWT_SECRET_KEY"], salt="scoreboard.history-cursor")
    payload = signer.loads(first["next"])
    assert payload.pop("s") == whole[1]["score"] - whole[1]["delta"]
    legacy = history(client, "ann", ann, limit=2, cursor=signer.dumps(payload)).get_json()
    assert legacy["entries"] == whole[2:]
    # A carried total that is not a whole number is refused, signed or not.
    for total in ("12", 1.5, True, 2**70):
        forged = history(client, "ann", ann, cursor=signer.dumps({**payload, "s": total}))
        assert forged.status_code == 400 and error_code(forged) == "bad_cursor", total


def test_a_long_mixed_history_walks_the_same_at_every_page_size(client, record_and_claim, mint, admin):
    # Claims, adjustments and voids interleaved, so that pages take their rows from every kind at once and some
    # pages hold only one kind while another kind has rows newer than the cursor's.
    points = {"complete-lesson": LESSON, "win-challenge": CHALLENGE}  # no cooldown, no daily cap
    made, claimed = [], []  # (kind, delta) in the order made; the claims' ids
    rng = random.Random(13)
    for step in range(40):
        roll = rng.random()
        if roll < 0.15:
            delta = rng.choice((-20, 5, 40))
            answer = client.post(
                "/api/admin/users/ann/adjustments", json={"delta": delta, "reason": f"step {step}"}, headers=admin
            )
            assert answer.status_code == 201, answer.get_json()
            made.append(("adjustment", delta))
        elif roll < 0.25 and claimed:
            action_id, action = claimed.pop(rng.randrange(len(claimed)))
            answer = client.post(
                f"/api/admin/completions/{action_id}/void", json={"reason": f"step {step}"}, headers=admin
            )
            assert answer.status_code == 200, answer.get_json()
            made.append(("void", -points[action]))
        else:
            action = rng.choice(sorted(points))
            claimed.append((record_and_claim("ann", action)["actionId"], action))
            made.append(("claim", points[action]))
    assert {kind for kind, _delta in made} == {"claim", "adjustment", "void"}
    totals, expected = 0, []
    for kind, delta in made:
        totals += delta
        expected.append((kind, delta, totals))
    expected.reverse()

    ann = bearer(mint("ann"))
    whole = history(client, "ann", ann, limit=100).get_json()
    assert [(e["kind"], e["delta"], e["score"]) for e in whole["entries"]] == expected and whole["next"] is None
    for size in (1, 2, 3, 7, 39, 40):
        pages, cursor = [], None
        while True:
            page = history(client, "ann", ann, limit=size, **({"cursor": cursor} if cursor else {}))
            assert page.status_code == 200, page.get_json()
            assert len(page.get_json()["entries"]) <= size
            pages += page.get_json()["entries"]
            cursor = page.get_json()["next"]
            if cursor is None:
                break
        assert pages == whole["entries"], size


def test_history_of_a_period_holds_its_own_events_and_its_own_running_total(client, clock, claim, mint):
    today = datetime.now(UTC).replace(microsecond=0)
    two_days_ago, yesterday = today - timedelta(days=2), today - timedelta(days=1)
    clock(two_days_ago)
    claim("ann", "complete-lesson")
    claim("ann", "pass-quiz")
    clock(yesterday)
    claim("ann", "win-challenge")
    claim("ann", "complete-lesson")
    clock(None)
    ann = bearer(mint("ann"))

    def events(**params):
        answer = history(client, "ann", ann, **params)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    older = events(period="day", at=two_days_ago.date().isoformat())
    assert older["key"] == f"day:{two_days_ago.date().isoformat()}"
    assert [(e["action"], e["score"]) for e in older["entries"]] == [
        ("pass-quiz", LESSON + QUIZ),
        ("complete-lesson", LESSON),
    ]
    newer = events(period="day", at=yesterday.date().isoformat())
    assert [(e["action"], e["score"]) for e in newer["entries"]] == [
        ("complete-lesson", CHALLENGE + LESSON),
        ("win-challenge", CHALLENGE),
    ]
    start, end = datetime.fromisoformat(newer["start"]), datetime.fromisoformat(newer["end"])
    assert all(start <= datetime.fromisoformat(e["at"]) < end for e in newer["entries"])
    assert events(period="day")["entries"] == []  # nothing today
    everything = events()
    assert [e["score"] for e in everything["entries"]] == [
        2 * LESSON + QUIZ + CHALLENGE,
        LESSON + QUIZ + CHALLENGE,
        LESSON + QUIZ,
        LESSON,
    ]
    # A cursor of one period is refused in another.
    cursor = events(period="day", at=yesterday.date().isoformat(), limit=1)["next"]
    assert cursor
    refused = history(client, "ann", ann, period="day", at=two_days_ago.date().isoformat(), cursor=cursor)
    assert refused.status_code == 400 and error_code(refused) == "bad_cursor"


def test_history_is_for_its_user_and_admins(client, claim, mint, admin):
    claim("ann")
    claim("bob")
    refused = history(client, "ann", bearer(mint("bob")))
    assert refused.status_code == 403 and error_code(refused) == "forbidden"
    assert history(client, "ann", bearer(mint("svc", "service"))).status_code == 403
    assert history(client, "ann", {}).status_code == 401
    assert [e["action"] for e in history(client, "ann", admin).get_json()["entries"]] == ["complete-lesson"]
    # An unknown user is a 404 to those allowed to read them, a 403 to the others (who learn nothing).
    unknown = history(client, "ghost", admin)
    assert unknown.status_code == 404 and error_code(unknown) == "user_not_found"
    assert history(client, "ghost", bearer(mint("ghost"))).status_code == 404
    assert history(client, "ghost", bearer(mint("bob"))).status_code == 403
    # Another user's cursor is not this user's.
    claim("bob")
    cursor = history(client, "bob", admin, limit=1).get_json()["next"]
    assert cursor
    foreign = history(client, "ann", admin, cursor=cursor)
    assert foreign.status_code == 400 and error_code(foreign) == "bad_cursor"


# --- period boards -------------------------------------------------------------------------------


def test_period_boards_rank_the_claims_inside_the_period(client, clock, record_and_claim, viewer, mint):
    today = datetime.now(UTC).replace(microsecond=0)
    yesterday = today - timedelta(days=1)
    clock(yesterday)
    record_and_claim("ann", "win-challenge")
    record_and_claim("bob", "complete-lesson")
    clock(today)
    record_and_claim("bob", "win-challenge")
    record_and_claim("cat", "complete-lesson")
    record_and_claim("dan", "complete-lesson")

    day = yesterday.date().isoformat()
    closed = client.get(f"/api/score/top?period=day&at={day}", headers=viewer)
    assert closed.status_code == 200
    assert rows(closed.get_json()) == [(1, "ann", CHALLENGE), (2, "bob", LESSON)]
    assert closed.headers["X-Board-Version"] == "0"

    current = client.get("/api/score/top?period=day", headers=viewer)
    assert rows(current.get_json()) == [(1, "bob", CHALLENGE), (2, "cat", LESSON), (3, "dan", LESSON)]
    assert int(current.headers["X-Board-Version"]) > 0
    # All time: bob's two claims together.
    assert rows(client.get("/api/score/top?period=all", headers=viewer).get_json())[0] == (1, "bob", CHALLENGE + LESSON)

    page = client.get(f"/api/scores?period=day&at={day}", headers=viewer).get_json()
    assert (page["period"], page["key"], page["total"]) == ("day", f"day:{day}", 2)
    assert rows(page["entries"]) == [(1, "ann", CHALLENGE), (2, "bob", LESSON)]
    pages = walk(client, viewer, 2, period="day")
    assert [row for p in pages for row in rows(p["entries"])] == rows(current.get_json())
    me = client.get(f"/api/scores/me?period=day&at={day}", headers=bearer(mint("cat"))).get_json()
    assert (me["rank"], me["score"], me["total"]) == (None, None, 2)  # cat claimed nothing yesterday
    users = client.get("/api/scores/users?period=day&ids=dan,ann,bob", headers=viewer).get_json()
    assert [e["userId"] for e in users["entries"]] == ["bob", "dan"]
    # Yesterday's week: both days when today is in it too (not on a Monday).
    week = client.get(f"/api/scores/users?period=week&at={day}&ids=ann,bob", headers=viewer).get_json()
    if yesterday.isocalendar()[:2] == today.isocalendar()[:2]:
        assert rows(week["entries"]) == [(1, "bob", CHALLENGE + LESSON), (2, "ann", CHALLENGE)]
    else:
        assert rows(week["entries"]) == [(1, "ann", CHALLENGE), (2, "bob", LESSON)]


def test_a_board_being_rebuilt_answers_503_and_queues_its_rebuild(app, client, claim, viewer, mint):
    claim("ann")
    claim("bob", "pass-quiz")

    def lose(kind):
        """What Redis losing a board's data looks like."""
        with app.app_context():
            get_stores().ranking_for(resolve(kind).board).reset()

    for kind, url in (("all", "/api/scores"), ("day", "/api/scores?period=day")):
        lose(kind)
        refused = client.get(url, headers=viewer)
        assert refused.status_code == 503, refused.get_json()
        assert error_code(refused) == "board_rebuilding"
        assert refused.headers["Retry-After"] == "1"
        # The refresh it queued (run at once here) rebuilt the ranking from the database.
        again = client.get(url, headers=viewer)
        assert again.status_code == 200
        assert [e["userId"] for e in again.get_json()["entries"]] == ["bob", "ann"]
    for url, headers in (("/api/scores/me", bearer(mint("ann"))), ("/api/scores/users?ids=ann", viewer)):
        lose("all")
        assert client.get(url, headers=headers).status_code == 503
        assert client.get(url, headers=headers).status_code == 200
    period_top = "/api/score/top?period=week"
    lose("week")
    assert client.get(period_top, headers=viewer).status_code == 503
    assert rows(client.get(period_top, headers=viewer).get_json()) == [(1, "bob", QUIZ), (2, "ann", LESSON)]


# --- refusals ------------------------------------------------------------------------------------


def test_every_bad_parameter_is_a_400_with_its_code(client, claim, mint, viewer):
    claim("ann")
    ann = bearer(mint("ann"))
    today = datetime.now(UTC).date()
    bad_periods = [
        "period=year",
        "period=DAY",
        "period=day&at=yesterday",
        "period=day&at=2026-13-01",
        f"period=day&at={today + timedelta(days=2)}",
        f"period=week&at={today + timedelta(days=9)}",
        f"period=month&at={today + timedelta(days=62)}",
        "period=day&at=2000-01-01",  # older than the periods kept
        "at=2026-01-01",  # all time has no date
        "period=all&at=2026-01-01",
    ]
    endpoints = [
        ("/api/scores?", viewer),
        ("/api/scores/me?", ann),
        ("/api/scores/users?ids=ann&", viewer),
        ("/api/scores/ann/history?", ann),
        ("/api/score/top?", viewer),
    ]
    for url, headers in endpoints:
        for query in bad_periods:
            response = client.get(url + query, headers=headers)
            assert response.status_code == 400, (url, query)
            assert error_code(response) == "bad_period", (url, query)
            assert response.get_json()["error"]["message"]

    bad_queries = [
        ("/api/scores?limit=0", viewer),
        ("/api/scores?limit=101", viewer),
        ("/api/scores?limit=abc", viewer),
        ("/api/scores?limit=", viewer),
        ("/api/scores?limit=-1", viewer),
        ("/api/scores?limit=5.0", viewer),
        ("/api/scores?limit=+5", viewer),
        ("/api/scores/ann/history?limit=0", ann),
        ("/api/scores/ann/history?limit=101", ann),
        ("/api/scores/ann/history?limit=abc", ann),
        ("/api/scores/me?radius=26", ann),
        ("/api/scores/me?radius=-1", ann),
        ("/api/scores/me?radius=x", ann),
        ("/api/scores/users?ids=" + ",".join(f"u{i}" for i in range(101)), viewer),
        ("/api/scores/users?ids=", viewer),
        ("/api/scores/users", viewer),
        ("/api/scores/users?ids=ann,,bob", viewer),
        ("/api/scores/users?ids=ann,bad%20id", viewer),
        ("/api/scores/users?ids=" + "x" * 65, viewer),
    ]
    for url, headers in bad_queries:
        response = client.get(url, headers=headers)
        assert response.status_code == 400, url
        assert error_code(response) == "invalid_query", url
        assert response.get_json()["error"]["problems"], url
    # The edges are accepted.
    for url, headers in (
        ("/api/scores?limit=1", viewer),
        ("/api/scores?limit=100", viewer),
        ("/api/scores/me?radius=0", ann),
        ("/api/scores/me?radius=25", ann),
        ("/api/scores/users?ids=" + ",".join(f"u{i}" for i in range(100)), viewer),
        ("/api/scores/ann/history?limit=100", ann),
    ):
        assert client.get(url, headers=headers).status_code == 200, url

    for url, headers in (("/api/scores?cursor=nope", viewer), ("/api/scores/ann/history?cursor=nope", ann)):
        response = client.get(url, headers=headers)
        assert response.status_code == 400 and error_code(response) == "bad_cursor"


def cursors_of(client, viewer, ann):
    """A valid page cursor and a valid history cursor (ann's), for mutating."""
    page = client.get("/api/scores?limit=1", headers=viewer).get_json()["next"]
    past = client.get("/api/scores/ann/history?limit=1", headers=ann).get_json()["next"]
    assert page and past
    return page, past


def test_foreign_and_forged_cursors_are_refused(app, client, claim, mint, viewer):
    claim("ann")
    claim("ann")
    claim("bob")
    ann = bearer(mint("ann"))
    page, past = cursors_of(client, viewer, ann)
    assert client.get(f"/api/scores?limit=1&cursor={page}", headers=viewer).status_code == 200

    def refused(url, headers):
        response = client.get(url, headers=headers)
        return response.status_code == 400 and error_code(response) == "bad_cursor"

    # Each endpoint refuses the other's cursor, and a cursor of another period.
    assert refused(f"/api/scores?cursor={past}", viewer)
    assert refused(f"/api/scores/ann/history?cursor={page}", ann)
    assert refused(f"/api/scores?period=day&cursor={page}", viewer)
    assert refused(f"/api/scores/ann/history?period=month&cursor={past}", ann)
    # Signed with another key, or with the right key for a payload of the wrong shape.
    secret = app.config["JWT_SECRET_KEY"]
    other_key = URLSafeSerializer("another-secret-entirely-0123456789", salt="scoreboard.scores-cursor")
    assert refused(f"/api/scores?cursor={other_key.dumps({'p': 'all', 'm': 'x'})}", viewer)
    ours = URLSafeSerializer(secret, salt="scoreboard.scores-cursor")
    for payload in (
        ["all", "x"],
        {"p": "all"},
        {"p": "all", "m": 5},
        {"p": "all", "m": ""},
        {"p": "all", "m": "x" * 300},
    ):
        assert refused(f"/api/scores?cursor={ours.dumps(payload)}", viewer), payload
    history_signer = URLSafeSerializer(secret, salt="scoreboard.history-cursor")
    for payload in (
        {"p": "all", "u": "ann", "t": "not a time", "i": "x", "k": "claim"},
        {"p": "all", "u": "ann", "t": "2026-01-01T00:00:00", "i": "x", "k": "claim"},  # no zone
        {"p": "all", "u": "ann", "t": "2026-01-01T00:00:00+00:00", "i": "x", "k": "payday"},
        {"p": "all", "u": "ann", "t": "2026-01-01T00:00:00+00:00", "i": 7, "k": "claim"},
        {"p": "all", "u": "ann", "t": 1, "i": "x", "k": "claim"},
    ):
        assert refused(f"/api/scores/ann/history?cursor={history_signer.dumps(payload)}", ann), payload
    # A cursor whose member has left the board still resumes where that member would sort.
    gone = ours.dumps({"p": "all", "m": "0" * 19 + "9" * 17 + ":zzz"})
    answer = client.get(f"/api/scores?cursor={gone}", headers=viewer)
    assert answer.status_code == 200 and answer.get_json()["entries"] == []


def mutations(cursor):
    """Strategies of strings close to ``cursor``: one character changed, cut short, extended, spliced."""
    alphabet = st.sampled_from("ABCXYZabcxyz0189-_.=~%")
    position = st.integers(0, len(cursor) - 1)
    return st.one_of(
        st.tuples(position, alphabet).map(lambda p: cursor[: p[0]] + p[1] + cursor[p[0] + 1 :]),
        position.map(lambda n: cursor[:n]),
        st.text(alphabet, min_size=1, max_size=8).map(lambda extra: cursor + extra),
        st.tuples(position, position).map(
            lambda p: cursor[: min(p)] + cursor[max(p) :] if p[0] != p[1] else cursor[1:]
        ),
    )


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_fuzzed_cursors_are_a_400_never_a_500(client, claim, mint, viewer, data):
    ann = bearer(mint("ann"))
    if client.get("/api/scores?limit=1", headers=viewer).get_json().get("next") is None:
        claim("ann")
        claim("ann")
        claim("bob")
    page, past = cursors_of(client, viewer, ann)
    target, cursor = data.draw(st.sampled_from([("/api/scores", page), ("/api/scores/ann/history", past)]))
    candidate = data.draw(
        st.one_of(
            mutations(cursor),
            st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
            st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        )
    )
    if candidate == cursor:
        return
    headers = ann if "history" in target else viewer
    response = client.get(target, query_string={"cursor": candidate}, headers=headers)
    assert response.status_code == 400, (candidate, response.get_data(as_text=True))
    assert error_code(response) == "bad_cursor"


def test_no_character_of_a_cursor_can_change(client, claim, viewer):
    """Every single-character change anywhere in a cursor (its payload, its signature, their separator) is refused,
    the cursor itself resumes the walk."""
    for user in ("ann", "bob", "cat"):
        claim(user)
    cursor = client.get("/api/scores?limit=1", headers=viewer).get_json()["next"]
    resumed = client.get("/api/scores", query_string={"limit": 1, "cursor": cursor}, headers=viewer).get_json()
    assert [e["rank"] for e in resumed["entries"]] == [2]
    for index, char in enumerate(cursor):
        for other in {"A", "B", "g", "_", "-", "."} - {char}:
            changed = cursor[:index] + other + cursor[index + 1 :]
            response = client.get("/api/scores", query_string={"limit": 1, "cursor": changed}, headers=viewer)
            assert response.status_code == 400 and error_code(response) == "bad_cursor", (index, other)
