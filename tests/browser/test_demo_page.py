"""The demo page's own behaviour: sign-in validation, focus after an action, the theme button, sign-out."""

import time

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.helpers import sign_in, widget
from tests.support import bearer

pytestmark = pytest.mark.browser

SESSION = "() => JSON.parse(sessionStorage.getItem('scoreboard-demo-session'))"


def watch_requests(page, fragment):
    """Every request the page sends whose URL contains ``fragment``, as it is sent."""
    sent = []
    page.on("request", lambda request: sent.append(request.url) if fragment in request.url else None)
    return sent


def test_an_empty_sign_in_form_says_what_to_enter_and_sends_nothing(demo_stack, new_page, make_user):
    make_user("alice", "Alice", password="alice-pw")
    page = new_page()
    page.goto(demo_stack + "/")
    logins = watch_requests(page, "/api/auth/login")
    error = page.locator("#login-error")
    username, password = page.get_by_label("Username"), page.get_by_label("Password")

    page.get_by_role("button", name="Sign in").click()
    expect(error).to_have_text("Enter a username and password.")
    expect(error).to_have_attribute("role", "alert")
    # Both fields are marked, described by the message, and focus goes to the first one to fill in.
    expect(username).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(username).to_have_accessible_description("Enter a username and password.")
    expect(username).to_be_focused()

    # Blanks are no username; a missing password is named the same way.
    username.fill("   ")
    page.keyboard.press("Enter")
    expect(error).to_have_text("Enter a username and password.")
    username.fill("alice")
    page.get_by_role("button", name="Sign in").click()
    expect(error).to_have_text("Enter a username and password.")
    expect(username).not_to_have_attribute("aria-invalid", "true")
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_be_focused()
    assert logins == [], "an incomplete form must not be sent"

    # The server's own answers read as plainly: a wrong password...
    password.fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(error).to_have_text("Wrong username or password.")
    # ...and a 400 (here a username longer than the server takes, past the field's own limit) is no
    # "The body failed validation.".
    username.evaluate("el => el.removeAttribute('maxlength')")
    username.fill("a" * 100)
    with page.expect_response("**/api/auth/login") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 400
    expect(error).to_have_text("That username or password is too long.")
    expect(username).to_have_attribute("aria-invalid", "true")
    assert len(logins) == 2

    # Corrected, it signs in and the message goes.
    username.fill("alice")
    password.fill("alice-pw")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signed-in")).to_be_visible()
    expect(error).to_be_hidden()


def test_pressing_an_action_keeps_keyboard_focus_on_it(demo_stack, new_page, make_user):
    make_user("alice", "Alice", password="alice-pw")
    page = new_page()
    sign_in(page, demo_stack, "alice", "alice-pw")
    actions = page.locator("#actions button")
    result = page.locator("#result")

    page.keyboard.press("Tab")  # from the actions heading, where signing in put focus
    expect(actions.first).to_be_focused()
    page.keyboard.press("Enter")
    expect(result).to_contain_text("Your score is now 50")
    expect(actions.first).to_be_focused()
    page.keyboard.press("Space")
    expect(result).to_contain_text("Your score is now 100")
    expect(actions.first).to_be_focused()
    # Focus was never lost: Tab goes on to the next action, not back to the top of the page.
    page.keyboard.press("Tab")
    expect(actions.nth(1)).to_be_focused()
    page.keyboard.press("Enter")
    expect(result).to_contain_text("Your score is now 110")
    expect(actions.nth(1)).to_be_focused()


def theme_button(page):
    """The page's theme button."""
    return page.locator("#theme-toggle")


def expect_theme(page, theme):
    """The page and the widget show ``theme``, and the button offers the other one."""
    other = "light" if theme == "dark" else "dark"
    expect(page.locator("html")).to_have_attribute("data-theme", theme)
    expect(widget(page)).to_have_attribute("theme", theme)
    expect(theme_button(page)).to_have_accessible_name(f"Switch to {other} theme")
    expect(theme_button(page)).to_contain_text(f"Switch to {other} theme")  # in words, not only an icon
    # A button whose label says what it does is not also a toggle: aria-pressed would contradict it.
    assert theme_button(page).get_attribute("aria-pressed") is None
    card = widget(page).evaluate("el => getComputedStyle(el.shadowRoot.querySelector('.card')).backgroundColor")
    assert card == ("rgb(15, 23, 42)" if theme == "dark" else "rgb(255, 255, 255)")


def test_the_theme_button_says_what_it_does_in_both_themes(demo_stack, new_page):
    # A light system: light at first, and the button offers dark.
    page = new_page()
    page.goto(demo_stack + "/")
    expect_theme(page, "light")
    theme_button(page).click()
    expect_theme(page, "dark")
    expect(theme_button(page)).to_be_focused()
    # The choice is kept across a reload.
    page.reload()
    expect_theme(page, "dark")
    # Back to the system's theme: no longer a choice to keep, so the page follows the system again.
    theme_button(page).click()
    expect_theme(page, "light")
    assert page.evaluate("localStorage.getItem('scoreboard-demo-theme')") is None
    page.emulate_media(color_scheme="dark")
    expect_theme(page, "dark")

    # A dark system with nothing saved: dark from the start, and the button offers light.
    dark = new_page(color_scheme="dark")
    dark.goto(demo_stack + "/")
    expect_theme(dark, "dark")
    dark.keyboard.press("Tab")
    expect(theme_button(dark)).to_be_focused()
    dark.keyboard.press("Enter")
    expect_theme(dark, "light")

    # A saved light theme wins over a dark system, from the first paint.
    saved = new_page(color_scheme="dark")
    saved.add_init_script("localStorage.setItem('scoreboard-demo-theme', 'light')")
    saved.goto(demo_stack + "/")
    expect_theme(saved, "light")
    saved.emulate_media(color_scheme="light")
    saved.emulate_media(color_scheme="dark")
    expect_theme(saved, "light")


def refused(base, token, deadline_s=2.0):
    """``GET /api/actions`` with ``token`` until it is refused (the other web process hears of the revocation
    over Redis within milliseconds) or the deadline passes; returns the last response."""
    deadline = time.monotonic() + deadline_s
    while True:
        response = requests.get(base + "/api/actions", headers=bearer(token), timeout=10)
        if response.status_code == 401 or time.monotonic() > deadline:
            return response


def test_sign_out_revokes_the_token_on_the_server(demo_stack, new_page, make_user):
    make_user("alice", "Alice", password="alice-pw")
    page = new_page()
    sign_in(page, demo_stack, "alice", "alice-pw")
    token = page.evaluate(SESSION)["accessToken"]
    assert requests.get(demo_stack + "/api/actions", headers=bearer(token), timeout=10).status_code == 200

    with page.expect_response("**/api/auth/logout") as logout:
        page.get_by_role("button", name="Sign out").click()
    assert logout.value.request.headers["authorization"] == f"Bearer {token}"
    assert logout.value.status == 200 and logout.value.json() == {"revoked": True}

    # Forgotten here too: the form is back with focus in it, and the page says what happened.
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_focused()
    expect(page.locator("#login-note")).to_have_text("Signed out.")
    expect(page.locator("#login-error")).to_be_hidden()
    assert page.evaluate(SESSION) is None

    # And the old token is refused by the server from now on.
    answer = refused(demo_stack, token)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_revoked"

    # Signing in again works, with a new token.
    sign_in(page, demo_stack, "alice", "alice-pw")
    assert page.evaluate(SESSION)["accessToken"] != token
