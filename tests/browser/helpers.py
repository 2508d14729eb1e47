"""Page helpers for the widget tests: signing in through the demo page and reading what the widget shows."""

import os
import time

import pytest

try:
    from playwright.sync_api import expect
except ImportError as exc:  # `make test` installs it; CI must never skip the browser tests
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip(
        f"Playwright is not installed ({exc}); `make test` installs requirements-dev.txt", allow_module_level=True
    )

# What the widget shows, read from its shadow DOM as a person sees it (not from its data).
READ_ROWS = """
el => Array.from(el.shadowRoot.querySelectorAll('tbody tr[data-user-id]')).map(tr => ({
  rank: tr.querySelector('.badge').textContent.trim(),
  name: tr.querySelector('.name').textContent.trim(),
  score: tr.querySelector('.value').textContent.trim(),
  me: tr.getAttribute('aria-current') === 'true',
}))
"""

# Record every event the widget dispatches, with the page's clock, for later inspection.
RECORD_EVENTS = """
el => {
  window.__events = [];
  for (const type of ['scoreboard-state', 'scoreboard-update', 'scoreboard-error']) {
    el.addEventListener(type, e => window.__events.push({type, at: Date.now(), detail: e.detail}));
  }
}
"""


def widget(page):
    """The page's ``<live-scoreboard>``."""
    return page.locator("live-scoreboard")


def status(page):
    """The widget's connection-state indicator."""
    return page.locator("live-scoreboard .status")


def shown_rows(page):
    """The rows the widget shows: ``[{"rank", "name", "score", "me"}, ...]``."""
    return widget(page).evaluate(READ_ROWS)


def shown_ranking(page):
    """``[(name, score_text), ...]`` in the order shown."""
    return [(row["name"], row["score"]) for row in shown_rows(page)]


def expect_live(page):
    """Wait until the widget says it is live."""
    expect(status(page)).to_have_attribute("data-state", "live")


def sign_in(page, base, username, password):
    """Open the demo page and sign in through its form; waits for the actions and a live board."""
    page.goto(base + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signed-in")).to_be_visible()
    expect(page.locator("#actions button").first).to_be_visible()
    expect_live(page)


def record_events(page):
    """Start recording the widget's events into ``window.__events``."""
    widget(page).evaluate(RECORD_EVENTS)


def recorded_events(page, type_=None):
    """The recorded events, optionally of one type."""
    events = page.evaluate("window.__events || []")
    return [e for e in events if type_ is None or e["type"] == type_]


def settle_animations(page):
    """Wait for the widget's finite animations (moves, flashes) to end; the live dot's pulse never does."""
    widget(page).evaluate(
        """el => Promise.all(el.shadowRoot.getAnimations()
              .filter(a => a.effect && a.effect.getComputedTiming().iterations !== Infinity)
              .map(a => a.finished.catch(() => null)))"""
    )


def add_page_styles(page, css):
    """Add page styles as a constructed style sheet: the served pages' Content-Security-Policy refuses inline
    ``<style>`` (Playwright's ``add_style_tag``), and constructed sheets are what the widget itself uses."""
    page.evaluate(
        """css => {
          const sheet = new CSSStyleSheet();
          sheet.replaceSync(css);
          document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
        }""",
        css,
    )


def wait_with_page(page, predicate, timeout=10.0, message="condition not met"):
    """``tests.support.wait_until``, but waiting through Playwright, so the page's routes are served meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{message} (waited {timeout}s)"
        page.wait_for_timeout(20)
