"""Fast clicks over the per-user rate limit: the page says so, waits out ``Retry-After`` and claims every completion.

The stack here limits each user to a few requests per endpoint every two seconds, and its board is
public (as the demo's soon is), so the board shows before anyone signs in.
"""

import re

import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import text

from tests.browser.helpers import expect_live, sign_in
from tests.support import bearer, running_stack

pytestmark = pytest.mark.browser

LIMIT = 5  # requests per user, per endpoint, per window
CLICKS = 15
POINTS = 50  # "Finished a lesson"
LESSON = "Finished a lesson, 50 points"
RATE_MESSAGE = re.compile(r"^Too fast: your points? will be claimed in \d+ s")

# Keep every text the result line shows, since each one replaces the last.
WATCH_RESULT = """
() => {
  window.__results = [];
  const result = document.getElementById('result');
  new MutationObserver(() => window.__results.push(result.textContent))
    .observe(result, {childList: true, characterData: true, subtree: true});
}
"""


@pytest.fixture(scope="module")
def limited_stack(app, demo_env, tmp_path_factory):
    """gunicorn and a worker with rate limits on: ``LIMIT`` per user every 2 s, and a public board."""
    env = {
        **demo_env,
        "SCOREBOARD_RATE_LIMIT_ENABLED": "true",
        "SCOREBOARD_RATE_LIMIT_USER": f"{LIMIT}/2 seconds",
        "SCOREBOARD_RATE_LIMIT_LOGIN": "100/minute",
        "SCOREBOARD_PUBLIC_BOARD": "true",
    }
    with running_stack(env, tmp_path_factory.mktemp("limited-stack"), name="limited", concurrency=1) as base:
        yield base


def use_up_claims(base, token):
    """Spend this window's claims for the token's user (refused claims count too) until the next one gets a 429."""
    for _ in range(LIMIT + 1):
        spent = requests.post(base + "/api/action/do", json={"actionId": "no-such-completion"}, headers=bearer(token))
        if spent.status_code == 429:
            assert spent.headers["Retry-After"].isdigit(), spent.headers
            return
        assert spent.status_code in (400, 404), spent.text
    raise AssertionError(f"{LIMIT + 1} claims in a row were not refused")


def completions_by_status(app, user_id):
    """``{status: count}`` of the user's completions, from the database."""
    from scoreboard.extensions import db

    with app.app_context():
        rows = db.session.execute(
            text("SELECT status, count(*) FROM completions WHERE user_id = :user GROUP BY status"), {"user": user_id}
        ).all()
        db.session.rollback()
    return dict(rows)


def test_fifteen_fast_clicks_over_the_limit_are_all_claimed_and_the_page_says_when(
    limited_stack, new_page, make_user, app
):
    make_user("alice", "Alice", password="alice-pw")
    page = new_page()
    page.goto(limited_stack + "/")
    expect_live(page)  # public board: live before signing in
    sign_in(page, limited_stack, "alice", "alice-pw")
    token = page.evaluate("() => JSON.parse(sessionStorage.getItem('scoreboard-demo-session')).accessToken")
    page.evaluate(WATCH_RESULT)
    answers = []
    page.on(
        "response",
        lambda response: (
            answers.append(response) if "/demo/" in response.url or "/api/action/do" in response.url else None
        ),
    )

    # The claims of this window are spent, so the first completion below is recorded and then refused its
    # claim: the case that left completions recorded but never claimed.
    use_up_claims(limited_stack, token)
    button = page.get_by_role("button", name=LESSON)
    for _ in range(CLICKS):
        button.click()

    result = page.locator("#result")
    final = f"+{POINTS} points for “Finished a lesson”. Your score is now {CLICKS * POINTS}."
    expect(result).to_have_text(final, timeout=60_000)
    expect(button).to_be_focused()

    # The page said why it was waiting, with the wait the server asked for.
    said = page.evaluate("window.__results")
    assert any(RATE_MESSAGE.match(text) for text in said), said

    # What the server answered: 429s with Retry-After, on claims too, and every recorded completion claimed.
    records = [a for a in answers if a.url.endswith("/demo/complete")]
    claims = [a for a in answers if a.url.endswith("/api/action/do")]
    refused = [a for a in records + claims if a.status == 429]
    assert refused and all(a.headers["retry-after"].isdigit() for a in refused)
    assert all(a.json()["error"]["code"] == "rate_limited" for a in refused)
    recorded = {a.json()["actionId"] for a in records if a.status == 201}
    claimed = {a.request.post_data_json["actionId"] for a in claims if a.status == 200}
    refused_claims = {a.request.post_data_json["actionId"] for a in claims if a.status == 429}
    assert refused_claims, "a recorded completion should have been refused its claim at first"
    assert len(recorded) == CLICKS and claimed == recorded and refused_claims <= claimed
    assert completions_by_status(app, "alice") == {"claimed": CLICKS}
    assert requests.get(limited_stack + "/api/score/top").json()[0] == {
        "rank": 1,
        "userId": "alice",
        "displayName": "Alice",
        "score": CLICKS * POINTS,
    }
    expect(page.locator("live-scoreboard tr[data-user-id='alice'] .value")).to_have_text(str(CLICKS * POINTS))


def test_a_completion_waiting_for_its_claim_is_claimed_after_a_sign_out_or_a_reload(
    limited_stack, new_page, make_user, app
):
    make_user("bob", "Bob", password="bob-pw")
    page = new_page()
    sign_in(page, limited_stack, "bob", "bob-pw")
    session = "() => JSON.parse(sessionStorage.getItem('scoreboard-demo-session')).accessToken"
    result = page.locator("#result")

    # Signed out while the claim waits: the completion is kept, and claimed at the next sign-in.
    use_up_claims(limited_stack, page.evaluate(session))
    with page.expect_response(lambda r: r.url.endswith("/demo/complete") and r.status == 201):
        page.get_by_role("button", name=LESSON).click()
    expect(result).to_have_text(RATE_MESSAGE)
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#login-note")).to_have_text(
        "Signed out. One completion waits to be claimed when you sign in again."
    )
    assert completions_by_status(app, "bob") == {"pending": 1}
    sign_in(page, limited_stack, "bob", "bob-pw")
    expect(result).to_have_text(f"+{POINTS} points for “Finished a lesson”. Your score is now {POINTS}.")

    # Reloaded while the claim waits: claimed once the page is back.
    use_up_claims(limited_stack, page.evaluate(session))
    with page.expect_response(lambda r: r.url.endswith("/demo/complete") and r.status == 201):
        page.get_by_role("button", name=LESSON).click()
    expect(result).to_have_text(RATE_MESSAGE)
    page.reload()
    expect(result).to_have_text(f"+{POINTS} points for “Finished a lesson”. Your score is now {2 * POINTS}.")
    assert completions_by_status(app, "bob") == {"claimed": 2}
