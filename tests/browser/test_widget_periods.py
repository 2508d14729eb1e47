"""The widget's ``period`` and ``mode="around"``, and the signed-in viewer's "you:" line: on the demo page against
the production stack (a week board updating live, the viewer's place, the neighbourhood), and against a scripted
socket peer for what the stack cannot stage (a rank in the thousands, a message of another board)."""

import json
import queue
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed

from tests.browser.helpers import (
    expect_live,
    record_events,
    recorded_events,
    shown_ranking,
    shown_rows,
    sign_in,
    wait_with_page,
    widget,
)
from tests.browser.test_widget_protocol import WIDGET_JS, ScriptedPeer, answer_ticket

YOU_LINE = "live-scoreboard .you-line"
RECORD_ME = "el => { window.__me = []; el.addEventListener('scoreboard-me', e => window.__me.push(e.detail)); }"


def seed(make_user, give):
    """Alice can sign in; Maya and Omar have scored today (so this week and this month too)."""
    make_user("alice", "Alice", password="alice-pw")
    give("maya", "win-challenge", "Maya Chen")  # 250
    give("omar", "complete-lesson", "Omar Haddad")  # 50


def test_the_week_board_updates_live_and_shows_the_viewers_place(demo_stack, new_page, make_user, give):
    seed(make_user, give)
    page = new_page()
    sign_in(page, demo_stack, "alice", "alice-pw")
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))

    page.get_by_role("button", name="This week").click()
    expect(page.get_by_role("button", name="This week")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="All time")).to_have_attribute("aria-pressed", "false")
    expect(widget(page)).to_have_attribute("period", "week")
    expect(page.locator("live-scoreboard .period-label")).to_have_text("This week")
    expect(page.get_by_role("table", name="Top players This week")).to_be_visible()
    expect_live(page)
    page.wait_for_function("() => document.querySelector('live-scoreboard').top.length === 2")
    assert shown_ranking(page) == [("Maya Chen", "250"), ("Omar Haddad", "50")]
    # The widget reconnected to the week's board (with a fresh ticket, never the token).
    query = parse_qs(urlsplit(sockets[-1]).query)
    assert query["period"] == ["week"] and "ticket" in query and "token" not in query
    # Alice has not scored: she is told so, below the table.
    expect(page.locator(YOU_LINE)).to_have_text("you: not ranked yet")

    # Someone else scores this week: the board follows live, and Alice's line counts one more player.
    give("li", "complete-lesson", "Li Wei")
    expect(page.locator(YOU_LINE)).to_have_text("you: not ranked yet")
    page.wait_for_function("() => document.querySelector('live-scoreboard').top.length === 3")
    # Alice completes an action: second place of four, on the board and on her line.
    page.get_by_role("button", name="Won a weekly challenge, 250 points").click()
    expect(page.locator("#result")).to_contain_text("Your score is now 250")
    expect(page.locator(YOU_LINE)).to_have_text("you: #2 of 4")
    assert [r["name"] for r in shown_rows(page) if r["me"]] == ["Alice"]
    assert shown_ranking(page)[:2] == [("Maya Chen", "250"), ("Alice", "250")]
    me = widget(page).evaluate("el => el.me")
    assert me == {"rank": 2, "score": 250, "total": 4}

    # The choice survives a reload: the page opens the week's board at once (one socket).
    page.reload()
    expect_live(page)
    expect(widget(page)).to_have_attribute("period", "week")
    expect(page.locator(YOU_LINE)).to_have_text("you: #2 of 4")


def test_around_me_shows_the_viewers_neighbourhood(demo_stack, new_page, make_user, give):
    make_user("alice", "Alice", password="alice-pw")
    for index in range(1, 9):  # eight players, 50 to 400 points
        for _ in range(index):
            give(f"p{index}", "complete-lesson", f"Player {index}")
    give("alice", "win-challenge")  # 250: between Player 5 (250, earlier) and Player 4 (200)
    page = new_page()
    sign_in(page, demo_stack, "alice", "alice-pw")
    page.get_by_role("button", name="Around me").click()
    expect(page.get_by_role("button", name="Around me")).to_have_attribute("aria-pressed", "true")
    expect(widget(page)).to_have_attribute("mode", "around")

    # rows="10": four either side of Alice (5th of 9, after Player 5, who reached 250 first).
    page.wait_for_function("() => (document.querySelector('live-scoreboard').around || []).length === 9")
    rows = shown_rows(page)
    assert [(r["rank"], r["name"]) for r in rows[3:6]] == [("4", "Player 5"), ("5", "Alice"), ("6", "Player 4")]
    assert [r["name"] for r in rows if r["me"]] == ["Alice"]
    expect(page.locator(YOU_LINE)).to_have_text("you: #5 of 9")

    # Alice climbs: the "me" message says her rank changed, and the neighbourhood is fetched again.
    page.get_by_role("button", name="Won a weekly challenge, 250 points").click()
    expect(page.locator(YOU_LINE)).to_have_text("you: #1 of 9")
    expect(page.locator("live-scoreboard tbody tr").first).to_contain_text("Alice")
    assert [(r["rank"], r["name"], r["score"]) for r in shown_rows(page)][:2] == [
        ("1", "Alice", "500"),
        ("2", "Player 8", "400"),
    ]


class RecordingPeer(ScriptedPeer):
    """The scripted peer, also recording what each connection's client sends."""

    def __init__(self):
        self.received = []
        super().__init__()

    def _handle(self, connection):
        with self.lock:
            self.paths.append(connection.request.path)
            inbox = queue.Queue()
            self.inboxes.append(inbox)
        while True:
            try:
                kind, value = inbox.get(timeout=0.05)
            except queue.Empty:
                try:
                    self.received.append(json.loads(connection.recv(timeout=0)))
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return
                continue
            if kind == "send":
                connection.send(json.dumps(value))
            else:
                connection.close(value, "scripted close")
                return

    def say(self, **message):
        """Have the newest connection send ``message`` as it is."""
        self.inboxes[-1].put(("send", message))


@pytest.fixture
def peer():
    server = RecordingPeer()
    yield server
    server.stop()


def top(*players):
    return [{"rank": i + 1, "userId": u, "displayName": n, "score": s} for i, (u, n, s) in enumerate(players)]


def test_a_signed_in_viewer_watches_and_reads_their_place_with_separators(new_page, peer, mint):
    token = mint("ann")
    page = new_page()
    base = f"http://127.0.0.1:{peer.port}"
    page.route(f"{base}/api/socket-ticket", answer_ticket)
    neighbourhoods = []

    def answer_me(route):
        neighbourhoods.append(parse_qs(urlsplit(route.request.url).query))
        headers = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Authorization"}
        if route.request.method == "OPTIONS":
            route.fulfill(status=204, headers=headers)
            return
        rank = 1233 + len(neighbourhoods)
        around = [
            {"rank": rank - 1, "userId": "zoe", "displayName": "Zoe", "score": 900},
            {"rank": rank, "userId": "ann", "displayName": "Ann", "score": 880},
            {"rank": rank + 1, "userId": "bo", "displayName": "Bo", "score": 870},
        ]
        route.fulfill(
            status=200,
            headers=headers,
            json={"userId": "ann", "rank": rank, "score": 880, "total": 50000, "around": around},
        )

    page.route(f"{base}/api/scores/me*", answer_me)
    peer.page = page
    page.set_content(
        f'<main><live-scoreboard server="{base}" token="{token}" period="month" mode="around" rows="3">'
        "</live-scoreboard></main>"
    )
    record_events(page)
    widget(page).evaluate(RECORD_ME)
    page.add_script_tag(path=str(WIDGET_JS))
    peer.wait_connections(1)
    assert parse_qs(urlsplit(peer.paths[0]).query)["period"] == ["month"]

    peer.say(type="snapshot", version=10, period="month", key="month:2026-12", top=top(("zoe", "Zoe", 9000)))
    expect(page.locator("live-scoreboard .status")).to_have_attribute("data-state", "live")
    # After the snapshot the widget asks for its viewer's standing, and fetches the neighbourhood.
    page.wait_for_function("() => (document.querySelector('live-scoreboard').around || []).length === 3")
    wait_with_page(page, lambda: peer.received, message="no watch request")
    assert peer.received == [{"type": "watch"}]
    assert neighbourhoods[-1]["period"] == ["month"] and neighbourhoods[-1]["radius"] == ["1"]
    assert [(r["rank"], r["name"]) for r in shown_rows(page)] == [("1,233", "Zoe"), ("1,234", "Ann"), ("1,235", "Bo")]

    peer.say(type="me", version=10, period="month", key="month:2026-12", rank=1234, score=880, total=50000)
    expect(page.locator(YOU_LINE)).to_have_text("you: #1,234 of 50,000")
    fetched = len(neighbourhoods)
    # A message of another board is none of this widget's business.
    peer.say(type="me", version=11, period="week", key="week:2026-W49", rank=1, score=5, total=2)
    peer.say(type="update", version=12, top=top(("x", "X", 1)))
    # The same standing again does not refetch; a new rank does.
    peer.say(type="me", version=13, period="month", key="month:2026-12", rank=1234, score=880, total=50001)
    expect(page.locator(YOU_LINE)).to_have_text("you: #1,234 of 50,001")
    assert len(neighbourhoods) == fetched
    peer.say(type="me", version=14, period="month", key="month:2026-12", rank=1235, score=880, total=50001)
    expect(page.locator(YOU_LINE)).to_have_text("you: #1,235 of 50,001")
    page.wait_for_function("() => document.querySelector('live-scoreboard').around[1].rank === 1235")
    assert widget(page).evaluate("el => el.version") == 10  # the all-time update was ignored
    assert [(e["rank"], e["total"], e["period"]) for e in page.evaluate("window.__me")] == [
        (1234, 50000, "month"),
        (1234, 50001, "month"),
        (1235, 50001, "month"),
    ]
    assert not recorded_events(page, "scoreboard-error")

    # No rank (no points this month yet): said in words.
    peer.say(type="me", version=15, period="month", key="month:2026-12", rank=None, score=None, total=50001)
    expect(page.locator(YOU_LINE)).to_have_text("you: not ranked yet")


def test_a_viewer_without_a_token_sends_no_watch_and_shows_no_line(new_page, peer):
    page = new_page()
    peer.page = page
    page.set_content(
        f'<main><live-scoreboard server="http://127.0.0.1:{peer.port}" period="day"></live-scoreboard></main>'
    )
    page.add_script_tag(path=str(WIDGET_JS))
    peer.wait_connections(1)
    peer.say(type="snapshot", version=3, period="day", key="day:2026-12-02", top=[])
    expect(page.locator("live-scoreboard .status")).to_have_attribute("data-state", "live")
    expect(page.locator("live-scoreboard .period-label")).to_have_text("Today")
    expect(page.locator("live-scoreboard tbody")).to_contain_text("No scores yet today.")
    peer.say(type="update", version=4, period="day", key="day:2026-12-02", top=top(("x", "Xi", 50)))
    expect(page.locator("live-scoreboard tbody tr").first).to_contain_text("Xi")
    assert peer.received == []
    expect(page.locator(YOU_LINE)).to_be_hidden()
