"""The demo page under its security headers in Chromium: a strict Content-Security-Policy that the page and the
widget keep (no violation reported, nothing in the console, the widget styled), that really refuses inline code
and framing, on Werkzeug's dev server (``make run``) and on gunicorn."""

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import expect_live, settle_animations, sign_in, widget

pytestmark = pytest.mark.browser

# Every violation the page reports, from before its first script runs.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(
  {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample, source: e.sourceFile}));
"""


@pytest.fixture(params=["dev_server", "demo_stack"])
def server(request):
    """The demo on Werkzeug's dev server (public board) and on gunicorn (private board)."""
    return request.getfixturevalue(request.param)


def watched_page(new_page):
    """A page recording its policy violations and console errors."""
    page = new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: page.console_errors.append(f"pageerror: {error}"))
    return page


def violations(page):
    return page.evaluate("window.__violations")


def test_the_demo_page_keeps_its_strict_policy(server, new_page, make_user, give):
    make_user("alice", "Alice", password="alice-pw")
    give("maya", "win-challenge", "Maya Chen")
    page = watched_page(new_page)
    answer = page.goto(server + "/")
    headers = answer.headers
    policy = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
    host = server.removeprefix("http://")
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == f"'self' ws://{host}"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"

    # Everything the page does: sign in, a live board, an action claimed and animated, the theme, a reload.
    sign_in(page, server, "alice", "alice-pw")
    # Signed out, a private board (gunicorn's here) refuses the widget's token-less socket: that 401 is the only
    # thing logged before signing in, and it is no policy's doing.
    assert all("401" in e or "Authentication failed" in e for e in page.console_errors), page.console_errors
    page.console_errors.clear()
    page.locator("#actions button").first.click()
    expect(page.locator("#result")).to_contain_text("Your score is now")
    expect(page.locator("live-scoreboard tr.me")).to_be_visible()
    settle_animations(page)
    page.locator("#theme-toggle").click()
    expect(widget(page)).to_have_attribute("theme", "dark")
    page.reload()
    expect_live(page)
    # The widget's styles arrived (a constructed sheet: no inline <style> for the policy to refuse).
    card = "el => getComputedStyle(el.shadowRoot.querySelector('.card')).borderTopLeftRadius"
    assert widget(page).evaluate(card) == "16px"
    assert widget(page).evaluate("el => el.shadowRoot.querySelector('style')") is None
    assert violations(page) == []
    assert page.console_errors == []

    # The policy is enforced, and the listener would have seen a violation: inline code is refused.
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.__inlineRan = true";
        document.head.append(script);
        document.body.setAttribute("style", "outline: 5px solid red");
    }""")
    page.wait_for_function("() => window.__violations.length >= 2")
    assert page.evaluate("window.__inlineRan === undefined")
    assert {v["directive"] for v in violations(page)} == {"script-src-elem", "style-src-attr"}
    assert page.evaluate("getComputedStyle(document.body).outlineStyle") == "none"


def test_no_page_of_the_service_can_be_framed(demo_stack, new_page):
    page = new_page()
    framed = []
    page.on("response", lambda response: framed.append(response) if response.url == demo_stack + "/" else None)
    page.set_content(f'<iframe src="{demo_stack}/" title="framed"></iframe>')
    page.wait_for_function("() => document.querySelector('iframe').contentWindow !== null")
    expect(page.frame_locator("iframe").locator("#login-form")).to_have_count(0)
    assert framed and framed[0].status == 200  # served, and refused by the browser for its frame-ancestors
