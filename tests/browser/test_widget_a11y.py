"""Keyboard-only use of the demo page, the widget's markup as a screen reader sees it, its live region, layout
and themes."""

import itertools

from playwright.sync_api import expect

from tests.browser.helpers import (
    add_page_styles,
    expect_live,
    record_events,
    recorded_events,
    shown_ranking,
    sign_in,
    widget,
)

# Collect what the widget's live region says, with the page's clock.
WATCH_LIVE_REGION = """
el => {
  window.__announcements = [];
  const region = el.shadowRoot.querySelector('[aria-live]');
  new MutationObserver(() => {
    const text = region.textContent.trim();
    if (text) window.__announcements.push({at: Date.now(), text});
  }).observe(region, {childList: true, characterData: true, subtree: true});
}
"""

ANNOUNCE_INTERVAL_MS = 4000


def focused(page):
    """The focused element's id, or its text when it has none."""
    return page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()")


def test_keyboard_only_sign_in_and_action_and_screen_reader_markup(demo_stack, new_page, make_user, give):
    make_user("alice", "Alice", password="alice-pw")
    give("maya", "win-challenge", "Maya Chen")
    page = new_page()
    page.goto(demo_stack + "/")

    # Keyboard only: Tab reaches the form in order, Enter signs in.
    page.keyboard.press("Tab")
    assert focused(page) == "theme-toggle"
    page.keyboard.press("Tab")
    assert focused(page) == "username"
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    assert focused(page) == "password"
    page.keyboard.type("alice-pw")
    page.keyboard.press("Enter")
    expect(page.locator("#signed-in")).to_be_visible()
    expect_live(page)
    widget(page).evaluate(WATCH_LIVE_REGION)

    # Focus lands on the actions; Tab reaches the first one and Enter completes it.
    assert focused(page) == "actions-heading"
    # The actions are fetched after sign-in: Tab can only reach them once they are on the page.
    expect(page.locator("[data-action]").first).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.dataset.action") == "complete-lesson"
    page.keyboard.press("Enter")
    expect(page.locator("#result")).to_contain_text("Your score is now 50")

    # The screen-reader view of the widget: a named region and table, real headers, the viewer's row marked.
    expect(page.get_by_role("region", name="Top players")).to_be_visible()
    table = page.get_by_role("table", name="Top players")
    expect(table).to_be_visible()
    expect(table).to_have_accessible_description("Live")
    for header in ("Rank", "Player", "Score"):
        expect(table.get_by_role("columnheader", name=header, exact=True)).to_be_visible()
    expect(table.get_by_role("rowheader", name="Alice (you)")).to_be_visible()
    expect(table.get_by_role("row", name="2 Alice (you) 50")).to_have_attribute("aria-current", "true")
    expect(table).to_match_aria_snapshot("""
      - table "Top players":
        - rowgroup:
          - row "Rank Player Score":
            - columnheader "Rank"
            - columnheader "Player"
            - columnheader "Score"
        - rowgroup:
          - row "1 Maya Chen 250":
            - cell "1"
            - rowheader "Maya Chen"
            - cell "250"
          - row "2 Alice (you) 50":
            - cell "2"
            - rowheader "Alice (you)"
            - cell "50"
    """)
    # Decorations (avatars, "+50", rank arrows, the count-up) are hidden from assistive technology.
    hidden = widget(page).evaluate(
        "el => Array.from(el.shadowRoot.querySelectorAll('.avatar, .delta, .trend, .ticker, .you'))"
        ".every(n => n.getAttribute('aria-hidden') === 'true')"
    )
    assert hidden

    # One polite, atomic live region, and it told the viewer what their action did.
    live = widget(page).get_by_role("status")
    expect(live).to_have_count(1)
    expect(live).to_have_attribute("aria-live", "polite")
    expect(live).to_have_attribute("aria-atomic", "true")
    expect(live).to_have_text("You entered the board at 2nd place with 50 points.")


def test_live_region_announces_a_burst_of_changes_without_flooding(demo_stack, new_page, make_user, give):
    make_user("alice", "Alice", password="alice-pw")
    give("maya", "win-challenge", "Maya Chen")
    page = new_page()
    sign_in(page, demo_stack, "alice", "alice-pw")
    page.wait_for_function("() => document.querySelector('live-scoreboard').top.length === 1")
    widget(page).evaluate(WATCH_LIVE_REGION)
    record_events(page)

    for index in range(1, 7):
        give(f"p{index}", "complete-lesson", f"Player {index}")
    page.wait_for_function("() => document.querySelector('live-scoreboard').top.length === 7")
    # Wait for the announcement that covers the last update (it comes at most one interval later).
    page.wait_for_function(
        """() => {
        const updates = window.__events.filter(e => e.type === 'scoreboard-update');
        const said = window.__announcements;
        return said.length && said[said.length - 1].at >= updates[updates.length - 1].at;
    }""",
        timeout=20_000,
    )

    updates = recorded_events(page, "scoreboard-update")
    announcements = page.evaluate("window.__announcements")
    assert len(updates) >= 2, "the burst should have produced several updates"
    assert len(announcements) < len(updates)
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(announcements)]
    assert all(gap >= ANNOUNCE_INTERVAL_MS - 50 for gap in gaps), gaps
    # The last announcement sums up everything since the one before, rather than the last message only.
    assert announcements[-1]["text"].endswith("Maya Chen leads with 250 points.")
    assert shown_ranking(page)[0] == ("Maya Chen", "250")


def test_narrow_screens_and_themes(demo_stack, new_page, make_user, give):
    make_user("bob", "Bob", password="bob-pw")
    give("bob", "complete-lesson")
    give("long", "win-challenge", "Alexandria Konstantinopoulou-Vasquez of the Northern Territories")

    # A 320px phone: nothing overflows sideways; a long name is cut with an ellipsis instead.
    phone = new_page(viewport={"width": 320, "height": 700})
    sign_in(phone, demo_stack, "bob", "bob-pw")
    phone.wait_for_function("() => document.querySelector('live-scoreboard').top.length === 2")
    layout = widget(phone).evaluate("""el => {
        const card = el.shadowRoot.querySelector('.card');
        const name = el.shadowRoot.querySelector('tr[data-user-id="long"] .name');
        const avatar = el.shadowRoot.querySelector('.avatar');
        return {cardOverflow: card.scrollWidth - card.clientWidth, hostWidth: el.getBoundingClientRect().width,
                nameCut: name.scrollWidth > name.clientWidth, avatar: getComputedStyle(avatar).display,
                pageOverflow: document.documentElement.scrollWidth - window.innerWidth};
    }""")
    assert layout["cardOverflow"] <= 0 and layout["pageOverflow"] <= 0, layout
    assert layout["hostWidth"] <= 320 and layout["nameCut"] and layout["avatar"] == "none", layout

    # Light by default; the dark theme and custom properties restyle it.
    page = new_page()
    sign_in(page, demo_stack, "bob", "bob-pw")
    page.wait_for_function("() => document.querySelector('live-scoreboard').top.length === 2")
    card_background = "el => getComputedStyle(el.shadowRoot.querySelector('.card')).backgroundColor"
    assert widget(page).evaluate(card_background) == "rgb(255, 255, 255)"
    page.get_by_role("button", name="Dark theme").click()
    expect(widget(page)).to_have_attribute("theme", "dark")
    assert widget(page).evaluate(card_background) == "rgb(15, 23, 42)"
    add_page_styles(page, "live-scoreboard { --sb-accent: rgb(225, 29, 72); --sb-bg: rgb(1, 2, 3); }")
    assert widget(page).evaluate(card_background) == "rgb(1, 2, 3)"
    chip = widget(page).evaluate("el => getComputedStyle(el.shadowRoot.querySelector('tr.me .you')).backgroundColor")
    assert chip == "rgb(225, 29, 72)"

    # With no theme set, it follows the system's colour scheme.
    auto = new_page(color_scheme="dark")
    auto.goto(demo_stack + "/")
    auto.evaluate("() => { localStorage.clear(); document.querySelector('live-scoreboard').removeAttribute('theme'); }")
    assert widget(auto).evaluate(card_background) == "rgb(15, 23, 42)"
