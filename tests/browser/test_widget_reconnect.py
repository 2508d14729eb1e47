"""The server goes away and comes back on the same address: the widget says so, backs off, recovers and re-syncs."""

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import expect_live, record_events, recorded_events, shown_ranking, sign_in, status, widget
from tests.support import free_port, start_web

# Retries the widget schedules while the server is down (see RECONNECT_BASE_MS in the widget).
RETRIES_WATCHED = 3
BASE_DELAY_MS = 1000


@pytest.fixture
def restartable_web(app, demo_env, tmp_path):
    """``(start, stop, base)``: a gunicorn of our own on a fixed port, so it can be stopped and started again."""
    port = free_port()
    running = []

    def start():
        web, _ = start_web(demo_env, tmp_path, name=f"web-{len(running)}", port=port)
        running.append(web)

    def stop():
        running[-1].stop()

    start()
    yield start, stop, f"http://127.0.0.1:{port}"
    for web in running:
        web.stop()


def test_widget_reconnects_after_a_restart_and_shows_the_current_board(restartable_web, new_page, make_user, give):
    start, stop, base = restartable_web
    make_user("bob", "Bob", password="bob-pw")
    give("carol", "complete-lesson", "Carol")
    give("bob", "complete-lesson")

    page = new_page()
    sign_in(page, base, "bob", "bob-pw")
    page.wait_for_function("() => document.querySelector('live-scoreboard').top.length === 2")
    assert shown_ranking(page) == [("Carol", "50"), ("Bob", "50")]
    version_before = widget(page).evaluate("el => el.version")
    record_events(page)

    stop()
    # The widget says it is reconnecting, keeps the last board on screen (marked stale) and offers a retry.
    expect(status(page)).to_have_attribute("data-state", "reconnecting")
    expect(status(page)).to_contain_text("Reconnecting")
    expect(page.locator("live-scoreboard .card")).to_have_attribute("data-stale", "")
    expect(page.get_by_role("button", name="Retry now")).to_be_visible()
    assert shown_ranking(page) == [("Carol", "50"), ("Bob", "50")]

    # While the server is down, the board changes (the database and Redis stay up).
    give("dave", "win-challenge", "Dave")

    # Exponential backoff with jitter: each retry waits between half and all of a ceiling that doubles.
    # Counted from the last first attempt: while gunicorn stops gracefully a retry may still get in and
    # reset the count, and only the run after that shows the backoff against a server that is gone.
    page.wait_for_function(
        "() => { const r = window.__events.filter(e => e.type === 'scoreboard-state' && e.detail.delay);"
        " const i = r.map(e => e.detail.attempt).lastIndexOf(1);"
        f" return i >= 0 && r.length - i >= {RETRIES_WATCHED}; }}",
        timeout=60_000,
    )
    retries = [e["detail"] for e in recorded_events(page, "scoreboard-state") if e["detail"].get("delay")]
    retries = retries[max(i for i, r in enumerate(retries) if r["attempt"] == 1) :]
    for index, retry in enumerate(retries[:RETRIES_WATCHED]):
        ceiling = BASE_DELAY_MS * 2**index
        assert retry["attempt"] == index + 1
        assert ceiling / 2 <= retry["delay"] <= ceiling, retries

    start()
    # It recovers by itself and re-syncs: the board now includes the change made while it was away.
    expect_live(page)
    expect(page.locator("live-scoreboard tbody tr").first).to_contain_text("Dave", timeout=30_000)
    assert shown_ranking(page) == [("Dave", "250"), ("Carol", "50"), ("Bob", "50")]
    expect(page.locator("live-scoreboard .card")).not_to_have_attribute("data-stale", "")
    expect(page.get_by_role("button", name="Retry now")).to_be_hidden()
    assert widget(page).evaluate("el => el.version") > version_before

    # And it is live again, not just re-synced: the next change arrives over the new socket.
    give("bob", "win-challenge")
    expect(page.locator("live-scoreboard tbody tr").first).to_contain_text("Bob")
    assert shown_ranking(page) == [("Bob", "300"), ("Dave", "250"), ("Carol", "50")]
    states = [e["detail"]["state"] for e in recorded_events(page, "scoreboard-state")]
    assert states[0] == "reconnecting" and states[-1] == "live"
