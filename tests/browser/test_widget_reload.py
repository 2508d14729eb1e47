"""Reloading the demo page: one socket per page, no console errors; leaving a page closes its socket normally.

The demo page hands the widget its token provider from a deferred script. If the widget connected
before that script ran, it opened a token-less socket and closed it straight away: an error in the
console (a refused handshake on a private board, and on Werkzeug's dev server, which ``make run``
uses, "Invalid frame header" for a socket closed once open). The tests hold ``demo.js`` back until
the widget's script has run and its first task has passed, so that order happens every time.
"""

import json
import threading

import pytest
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from tests.browser.helpers import expect_live, sign_in, wait_with_page, widget
from tests.support import ROOT

pytestmark = pytest.mark.browser

WIDGET_JS = ROOT / "scoreboard" / "static" / "live-scoreboard.js"


@pytest.fixture(params=["dev_server", "demo_stack"])
def server(request):
    """The demo on Werkzeug's dev server (public board) and on gunicorn (private board)."""
    return request.getfixturevalue(request.param)


class Watch:
    """What a page logs to its console and which sockets it opens, from now on."""

    def __init__(self, page):
        self.console = []
        self.sockets = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.on("websocket", lambda socket: self.sockets.append(socket))

    def reset(self):
        self.console.clear()
        self.sockets.clear()

    def settle(self):
        """Wait until every socket but the newest has closed (a socket closed is when a bad close shows)."""
        for socket in self.sockets[:-1]:
            if not socket.is_closed():
                socket.wait_for_event("close")


def signed_in(url):
    """Whether a socket URL is a signed-in viewer's: with a socket ticket, and never the token itself."""
    return "ticket=" in url and "token=" not in url


def test_a_reload_opens_one_socket_and_logs_no_console_error(server, new_page, make_user, give):
    make_user("alice", "Alice", password="alice-pw")
    give("maya", "win-challenge", "Maya Chen")
    page = new_page()
    sign_in(page, server, "alice", "alice-pw")
    page.wait_for_function("() => document.querySelector('live-scoreboard').top.length === 1")
    watch = Watch(page)

    # The page's script arrives late: the widget's script has run, and a task after it, before it does.
    held = []
    page.route("**/static/demo.js", lambda route: held.append(route))
    page.reload(wait_until="commit")
    page.wait_for_function("() => Boolean(window.customElements && customElements.get('live-scoreboard'))")
    page.evaluate("() => new Promise(resolve => setTimeout(resolve, 0))")
    assert held, "demo.js should be held back"
    held.pop().continue_()
    page.wait_for_load_state("load")
    expect_live(page)
    watch.settle()
    assert len(watch.sockets) == 1 and signed_in(watch.sockets[0].url), [s.url for s in watch.sockets]
    assert watch.console == []
    page.unroute("**/static/demo.js")

    # Plain reloads: one socket each, the signed-in viewer's, and nothing in the console.
    for _ in range(3):
        watch.reset()
        page.reload()
        expect_live(page)
        expect(page.locator("live-scoreboard tbody tr").first).to_contain_text("Maya Chen")
        watch.settle()
        assert len(watch.sockets) == 1 and signed_in(watch.sockets[0].url), [s.url for s in watch.sockets]
        assert watch.console == []
    expect(page.locator("#signed-in")).to_be_visible()
    assert widget(page).evaluate("el => el.state") == "live"


# Every close a page's sockets see, with its code and reason (the widget's own handlers are set as properties).
RECORD_CLOSES = """
(() => {
  const Native = window.WebSocket;
  window.__closes = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("close", (e) => window.__closes.push({ code: e.code, reason: e.reason, url: this.url }));
    }
  };
})();
"""


def test_signing_out_and_in_again_reconnects_and_logs_no_console_error(dev_server, new_page, make_user, give):
    """On the dev server (public board): signing out revokes the token, and the server ends its socket (4001)
    before the page has the logout's answer; the widget waits for a fresh token, goes on without one, then
    with the new session's. Werkzeug writes nothing after a close frame, so the console stays empty."""
    make_user("alice", "Alice", password="alice-pw")
    give("maya", "win-challenge", "Maya Chen")
    page = new_page()
    page.add_init_script(RECORD_CLOSES)
    sign_in(page, dev_server, "alice", "alice-pw")
    watch = Watch(page)

    # The logout's answer is held until the server has ended the signed-in socket.
    held = []
    page.route("**/api/auth/logout", lambda route: held.append(route))
    page.get_by_role("button", name="Sign out").click()
    wait_with_page(page, lambda: held, message="the logout never went out")
    answer = held[0].fetch()  # the server revokes the token now
    assert answer.status == 200
    page.wait_for_function(
        "() => window.__closes.some(c => c.code === 4001 && c.reason === 'token revoked')", timeout=5_000
    )
    held[0].fulfill(response=answer)
    expect(page.locator("#login-note")).to_have_text("Signed out.")
    expect_live(page)  # the public board, without a token
    page.unroute("**/api/auth/logout")

    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-pw")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signed-in")).to_be_visible()
    expect_live(page)
    expect(page.locator("live-scoreboard tbody tr").first).to_contain_text("Maya Chen")
    watch.settle()
    urls = [s.url for s in watch.sockets]
    assert not signed_in(urls[-2]) and "?" not in urls[-2], urls  # signed out: no credential at all
    assert signed_in(urls[-1]), urls
    assert watch.console == []
    assert widget(page).evaluate("el => el.state") == "live"


class ClosingPeer:
    """A socket server that sends each connection a snapshot and records how each one was closed."""

    def __init__(self):
        self.connections = 0
        self.closes = []
        self.changed = threading.Condition()
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, connection):
        with self.changed:
            self.connections += 1
            version = self.connections
        top = [{"rank": 1, "userId": "zed", "displayName": "Zed", "score": 10 * version}]
        connection.send(json.dumps({"type": "snapshot", "version": version, "top": top}))
        try:
            while True:
                connection.recv()
        except ConnectionClosed as closed:
            with self.changed:
                self.closes.append((closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, None))
                self.changed.notify_all()

    def wait_closes(self, count, timeout=10):
        """The closes recorded, once there are ``count`` of them."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.closes) >= count, timeout), self.closes
            return list(self.closes)

    def stop(self):
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def closing_peer():
    """A socket peer that records close codes, for one test."""
    peer = ClosingPeer()
    yield peer
    peer.stop()


def test_leaving_the_page_closes_the_socket_normally_and_a_restored_page_reconnects(new_page, closing_peer):
    page = new_page()
    page.set_content(f'<live-scoreboard server="http://127.0.0.1:{closing_peer.port}"></live-scoreboard>')
    page.add_script_tag(path=str(WIDGET_JS))
    expect_live(page)
    expect(page.locator("live-scoreboard .value").first).to_have_text("10")

    # Into the back/forward cache: the widget closes its socket itself, with a normal close saying why...
    page.evaluate("() => window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}))")
    assert closing_peer.wait_closes(1) == [(1000, "page hidden")]
    # ...and, restored from it, connects again and shows the board as it is now.
    page.evaluate("() => window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
    expect(page.locator("live-scoreboard .value").first).to_have_text("20")
    expect_live(page)
    assert closing_peer.connections == 2

    # Leaving for good closes it the same way, rather than leaving the browser to cut it.
    page.goto("about:blank")
    assert closing_peer.wait_closes(2)[1] == (1000, "page hidden")
