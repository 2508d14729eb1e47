"""The widget against a scripted peer speaking the socket protocol, for orders of events the real server never produces.

The real server never sends one socket an older version, so this peer does: it checks that the
widget ignores messages older than the board it shows, also across a reconnect, trades its token
for a socket ticket (``POST /api/socket-ticket``, answered here by the page's route) and passes
that as the ``ticket`` query parameter, never the token itself, asks a token provider before
each connection, and that "Retry now" works from the keyboard.
"""

import json
import queue
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from tests.browser.helpers import record_events, recorded_events, shown_ranking, widget
from tests.support import ROOT

WIDGET_JS = ROOT / "scoreboard" / "static" / "live-scoreboard.js"


class ScriptedPeer:
    """A WebSocket server on a free port; the test scripts what its newest connection sends and when it closes."""

    def __init__(self):
        self.paths = []
        self.inboxes = []
        self.refuse = False
        self.page = None  # the page driving the widget, once there is one
        self.lock = threading.Lock()
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, connection):
        """Record the request path, then send and close as the test says, until either side closes."""
        inbox = queue.Queue()
        with self.lock:
            self.paths.append(connection.request.path)
            self.inboxes.append(inbox)
        if self.refuse:
            connection.close(1011, "unavailable")
            return
        while True:
            try:
                kind, value = inbox.get(timeout=0.1)
            except queue.Empty:
                try:
                    connection.recv(timeout=0)
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

    def wait_connections(self, count, timeout=30):
        """Block until ``count`` connections have arrived.

        With a page set (``self.page``), it waits through Playwright, whose event loop must run to answer the
        page's ticket requests (a plain sleep would hold them up).
        """
        deadline = time.monotonic() + timeout
        while len(self.paths) < count:
            assert time.monotonic() < deadline, f"only {len(self.paths)} of {count} connections arrived"
            if self.page is not None:
                self.page.wait_for_timeout(50)
            else:
                time.sleep(0.05)

    def send(self, type_, version, *players):
        """Have the newest connection send one message; ``players`` are ``(user_id, name, score)`` in rank order."""
        top = [{"rank": i + 1, "userId": u, "displayName": n, "score": s} for i, (u, n, s) in enumerate(players)]
        self.inboxes[-1].put(("send", {"type": type_, "version": version, "top": top}))

    def close(self, code=1012):
        """Close the newest connection (1012: the service is restarting)."""
        self.inboxes[-1].put(("close", code))

    def tokens(self):
        """The token behind the ``ticket`` of every connection so far (None: no ticket); no URL carries a token."""
        queries = [parse_qs(urlsplit(path).query) for path in self.paths]
        assert not [query for query in queries if "token" in query], self.paths
        return [TICKETS.get(query.get("ticket", [None])[0]) for query in queries]

    def stop(self):
        """Shut the server down."""
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def peer():
    """A scripted socket peer for one test."""
    server = ScriptedPeer()
    yield server
    server.stop()


# Ticket -> the token it was traded for, as the page's route answered POST /api/socket-ticket.
TICKETS = {}
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization",
    "Cache-Control": "no-store",
}


def answer_ticket(route):
    """``POST /api/socket-ticket`` for the peer, as the service answers it: a ticket standing for the Bearer token."""
    if route.request.method == "OPTIONS":  # the CORS preflight (the page is on another origin)
        route.fulfill(status=204, headers=CORS)
        return
    token = route.request.headers.get("authorization", "").removeprefix("Bearer ")
    ticket = f"ticket-{len(TICKETS)}"
    TICKETS[ticket] = token
    route.fulfill(status=200, headers=CORS, json={"ticket": ticket, "expiresIn": 30})


def open_widget(new_page, peer, attributes):
    """A blank page holding only the widget, pointed at the peer (its tickets answered by a route)."""
    page = new_page()
    page.route(f"http://127.0.0.1:{peer.port}/api/socket-ticket", answer_ticket)
    peer.page = page
    page.set_content(
        f'<main><live-scoreboard server="http://127.0.0.1:{peer.port}" {attributes}></live-scoreboard></main>'
    )
    record_events(page)  # listeners added before the element is defined stay on it
    page.add_script_tag(path=str(WIDGET_JS))
    peer.wait_connections(1)
    return page


def applied_versions(page):
    """The versions of the boards the widget showed, in order."""
    return [e["detail"]["version"] for e in recorded_events(page, "scoreboard-update")]


def test_older_versions_are_ignored_also_after_a_reconnect(new_page, peer, mint):
    token = mint("ann")
    page = open_widget(new_page, peer, f'token="{token}" heading="Weekly leaders" rows="3"')

    peer.send("snapshot", 100, ("ann", "Ann", 300), ("ben", "Ben", 200), ("cy", "Cy", 100), ("dee", "Dee", 50))
    expect(page.locator("live-scoreboard .status")).to_have_attribute("data-state", "live")
    expect(page.get_by_role("table", name="Weekly leaders")).to_be_visible()
    # rows="3": only three of the four players; the token's subject is the highlighted viewer.
    assert shown_ranking(page) == [("Ann", "300"), ("Ben", "200"), ("Cy", "100")]
    expect(page.locator("live-scoreboard tr[aria-current='true']")).to_have_attribute("data-user-id", "ann")
    assert peer.tokens() == [token]

    peer.send("update", 90, ("ben", "Ben", 900), ("ann", "Ann", 300))  # late: older than what is shown
    peer.send("update", 110, ("cy", "Cy", 400), ("ann", "Ann", 300), ("ben", "Ben", 200))
    expect(page.locator("live-scoreboard tbody tr").first).to_contain_text("Cy")
    assert applied_versions(page) == [100, 110]
    assert shown_ranking(page) == [("Cy", "400"), ("Ann", "300"), ("Ben", "200")]

    # The connection drops; the widget reconnects by itself with the same token and re-syncs from the snapshot.
    peer.close()
    expect(page.locator("live-scoreboard .status")).to_have_attribute("data-state", "reconnecting")
    peer.wait_connections(2)
    peer.send("snapshot", 105, ("ben", "Ben", 900))  # a snapshot older than the board shown is ignored too
    peer.send("update", 120, ("dee", "Dee", 999), ("cy", "Cy", 400), ("ann", "Ann", 300))
    expect(page.locator("live-scoreboard tbody tr").first).to_contain_text("Dee", timeout=15_000)
    expect(page.locator("live-scoreboard .status")).to_have_attribute("data-state", "live")
    assert applied_versions(page) == [100, 110, 120]
    assert shown_ranking(page) == [("Dee", "999"), ("Cy", "400"), ("Ann", "300")]
    assert peer.tokens() == [token, token]
    assert widget(page).evaluate("el => el.version") == 120


def test_a_token_provider_is_asked_before_every_connection(new_page, peer):
    page = open_widget(new_page, peer, "")
    peer.send("snapshot", 1, ("zed", "Zed", 10))
    expect(page.locator("live-scoreboard .status")).to_have_attribute("data-state", "live")
    # Handing over a provider reconnects with its token; a provider may answer a promise.
    widget(page).evaluate("""el => {
        const tokens = ['first.token.value', 'second.token.value'];
        el.tokenProvider = () => Promise.resolve(tokens.shift());
    }""")
    peer.wait_connections(2)
    peer.send("snapshot", 2, ("zed", "Zed", 20))
    expect(page.locator("live-scoreboard .value").first).to_have_text("20")
    # After a drop, the provider is asked again.
    peer.close()
    peer.wait_connections(3)
    peer.send("snapshot", 3, ("zed", "Zed", 30))
    expect(page.locator("live-scoreboard .value").first).to_have_text("30")
    assert peer.tokens() == [None, "first.token.value", "second.token.value"]


def test_retry_now_from_the_keyboard_starts_the_backoff_over(new_page, peer):
    page = open_widget(new_page, peer, 'token="t"')
    peer.send("snapshot", 1, ("zed", "Zed", 10))
    expect(page.locator("live-scoreboard .status")).to_have_attribute("data-state", "live")

    peer.refuse = True
    peer.close()
    page.wait_for_function(
        "() => window.__events.filter(e => e.type === 'scoreboard-state' && e.detail.attempt >= 2).length",
        timeout=30_000,
    )
    retry = page.get_by_role("button", name="Retry now")
    expect(retry).to_be_visible()
    page.keyboard.press("Tab")
    expect(retry).to_be_focused()
    before = len(recorded_events(page, "scoreboard-state"))
    page.keyboard.press("Enter")
    # The manual retry connects at once and, refused again, starts the backoff over from the shortest delay
    # (scheduled retries only ever count up).
    page.wait_for_function(
        f"() => window.__events.filter(e => e.type === 'scoreboard-state').slice({before})"
        ".some(e => e.detail.attempt === 1)"
    )
    restarted = [
        e["detail"] for e in recorded_events(page, "scoreboard-state")[before:] if e["detail"].get("attempt") == 1
    ]
    assert restarted[0]["delay"] <= 1000
    assert shown_ranking(page) == [("Zed", "10")]
