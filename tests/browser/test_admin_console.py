"""The admin console at ``/admin`` in Chromium, on the production stack (gunicorn and a Celery worker).

Signing in (a password or a pasted token; a non-admin one is refused and sees nothing), the live
board with every status marked, a ban that takes a player off a second page's public widget live, an
adjustment that moves the ledger and the chart, the suspects queue (cleared with a reason, updated
without a reload), the audit log, keyboard-only use of every view, the dark theme, and no
Content-Security-Policy violation anywhere. The screenshots in ``docs/console-*.png`` come from here.
"""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import shown_ranking, sign_in
from tests.support import ROOT, bearer

pytestmark = pytest.mark.browser

DOCS = ROOT / "docs"
ADMIN_PASSWORD = "ops-console-pw"

# Every policy violation the page reports, from before its first script runs.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(
  {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample}));
"""
# Chromium logs every 4xx answer as a console error; the console handles those answers itself (a refused
# token, an unknown user). Anything else logged is a fault of the page.
HANDLED = re.compile(r"^Failed to load resource: the server responded with a status of 4\d\d")


def watched_page(new_page, **options):
    """A page recording its policy violations and what it logs."""
    page = new_page(**options)
    page.add_init_script(RECORD_VIOLATIONS)
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: page.console_errors.append(f"pageerror: {error}"))
    return page


def assert_clean(page):
    """No policy violation, and nothing logged but the answers the page handled."""
    assert page.evaluate("window.__violations") == []
    assert [e for e in page.console_errors if not HANDLED.match(e)] == []


@pytest.fixture
def make_admin(app, make_user):
    """``make_admin(user_id, password)``: a local account with the ``admin`` role."""
    from scoreboard.extensions import db
    from scoreboard.models import User

    def _make_admin(user_id="ops", password=ADMIN_PASSWORD):
        make_user(user_id, user_id.title(), password=password)
        with app.app_context():
            db.session.get(User, user_id).roles = "admin"
            db.session.commit()

    return _make_admin


@pytest.fixture
def hold(app):
    """``hold(user_id)``: make ``user_id`` a held suspect, as the anomaly scan does (a suspect row, then the hold
    through moderation, audited), and let every board drop them."""
    from scoreboard.extensions import db
    from scoreboard.models import Suspect, SuspectStatus, User, UserStatus
    from scoreboard.scoring import moderation
    from workers.board import request_refresh

    reasons = [
        {"feature": "claims_per_active_hour", "value": 12.0, "typical": {"median": 1.5, "p95": 4.0}},
        {"feature": "gap_cv", "value": 0.02, "typical": {"median": 0.9, "p95": 1.6}},
        {"feature": "active_hours", "value": 20, "typical": {"median": 2, "p95": 6}},
    ]

    def _hold(user_id, score=0.81):
        with app.app_context():
            user = db.session.get(User, user_id)
            db.session.add(
                Suspect(
                    user_id=user_id,
                    status=SuspectStatus.HELD,
                    anomaly_score=score,
                    reasons=json.dumps(reasons),
                    features=json.dumps({r["feature"]: r["value"] for r in reasons}),
                    previous_status=user.status,
                )
            )
            moderation.apply_status(
                user_id, UserStatus.HELD, f"anomaly score {score} over the threshold", "anomaly-scan", None
            )
            db.session.commit()
            request_refresh()

    return _hold


def sign_in_admin(page, base, username="ops", password=ADMIN_PASSWORD):
    """Open the console and sign in with a password; waits for the live board."""
    page.goto(base + "/admin")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#console")).to_be_visible()
    expect(page.locator("#board-state")).to_have_text("Live")


def board_rows(page):
    """The admin board as shown: ``[(player, user id, score, status), ...]``."""
    return page.locator("#board-table tbody tr[data-user-id]").evaluate_all(
        """rows => rows.map(tr => [tr.querySelector('th').textContent, tr.children[2].textContent,
                                     tr.children[3].textContent, tr.children[4].textContent])"""
    )


def shot(page, name):
    """Save the viewport as ``docs/console-<name>.png`` (overwritten in place)."""
    page.wait_for_timeout(50)  # a frame for the charts' canvas to paint
    page.screenshot(path=str(DOCS / f"console-{name}.png"))


def seed(make_user, give, make_admin):
    make_admin()
    make_user("alice", "Alice", password="alice-pw")
    give("maya", "win-challenge", "Maya Chen")
    give("maya", "win-challenge")
    give("omar", "win-challenge", "Omar Haddad")
    give("alice", "complete-lesson")
    give("li", "complete-lesson", "Li Wei")


def test_the_page_is_static_and_served_under_the_strict_policy(demo_stack, new_page):
    page = watched_page(new_page)
    answer = page.goto(demo_stack + "/admin")
    policy = dict(d.strip().split(" ", 1) for d in answer.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'" and policy["default-src"] == "'self'"
    assert answer.headers["x-frame-options"] == "DENY"
    html = answer.text()
    # No inline script or style, and nothing secret: the page is the same file for everyone.
    assert "<style" not in html and " style=" not in html
    assert all(' src="' in tag for tag in re.findall(r"<script[^>]*>", html))
    assert "Bearer" not in html and "eyJ" not in html
    expect(page.get_by_role("heading", name="Sign in to the admin console")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()
    assert_clean(page)


def test_ban_leaves_the_public_board_live_and_an_adjustment_moves_ledger_and_chart(
    demo_stack, new_page, make_user, give, make_admin
):
    seed(make_user, give, make_admin)
    public = watched_page(new_page)
    sign_in(public, demo_stack, "alice", "alice-pw")
    public.wait_for_function("() => document.querySelector('live-scoreboard').top.length === 4")
    assert ("Maya Chen", "500") in shown_ranking(public)

    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    expect(page.locator("#board-table tbody tr[data-user-id]")).to_have_count(4)
    assert board_rows(page)[0] == ["Maya Chen", "maya", "500", "active"]
    # The token stays in the tab (sessionStorage), never in a cookie.
    assert page.context.cookies() == []
    assert "accessToken" not in page.evaluate("document.cookie")
    assert page.evaluate("Object.keys(sessionStorage)") == ["scoreboard-admin-session"]
    shot(page, "board")

    # From the board to Maya's page; every act waits for a reason.
    page.get_by_role("link", name="Maya Chen").click()
    expect(page).to_have_url(re.compile(r"#/users/maya$"))
    expect(page.locator("#user-heading")).to_have_text("Maya Chen (maya)")
    expect(page.locator("#user-score")).to_have_text("500")
    expect(page.locator("#ledger-table tbody tr[data-action-id]")).to_have_count(2)
    ban = page.get_by_role("button", name="Ban", exact=True)
    expect(ban).to_be_disabled()
    page.get_by_label("Reason (required, kept in the audit log)").fill("scripted claims reported by players")
    expect(ban).to_be_enabled()
    ban.click()

    # Off the public board, live, in the second page; marked (in words) on the admin board.
    expect(page.locator("#user-status")).to_have_text("banned")
    public.wait_for_function(
        "() => !document.querySelector('live-scoreboard').top.some(row => row.userId === 'maya')", timeout=5000
    )
    assert "Maya Chen" not in [name for name, _ in shown_ranking(public)]
    expect(page.locator("#user-audit tbody")).to_contain_text("status:banned")
    expect(page.locator("#user-audit tbody")).to_contain_text("scripted claims reported by players")

    # Restore, then adjust: the ledger gains the row and the chart its step.
    page.get_by_label("Reason (required, kept in the audit log)").fill("appeal upheld")
    page.get_by_role("button", name="Restore").click()
    expect(page.locator("#user-status")).to_have_text("active")
    public.wait_for_function(
        "() => document.querySelector('live-scoreboard').top.some(row => row.userId === 'maya')", timeout=5000
    )
    expect(page.locator("#history-summary")).to_contain_text("now 500")
    adjust = page.get_by_role("button", name="Adjust points")
    page.get_by_label("Points to add (negative to take away)").fill("40")
    expect(adjust).to_be_disabled()  # the reason went with the last act
    page.get_by_label("Reason (required, kept in the audit log)").fill("tournament bonus")
    adjust.click()
    expect(page.locator("#user-score")).to_have_text("540")
    expect(page.locator("#ledger-table tbody tr[data-action-id]")).to_have_count(3)
    first = page.locator("#ledger-table tbody tr[data-action-id]").first
    expect(first).to_have_attribute("data-status", "adjustment")
    expect(first).to_contain_text("tournament bonus")
    expect(first).to_contain_text("+40")
    expect(page.locator("#history-summary")).to_contain_text("3 changes")
    expect(page.locator("#history-summary")).to_contain_text("now 540")
    assert page.locator("#history-chart canvas").count() == 1
    expect(page.locator("#announcer")).to_contain_text("the score is now 540")
    public.wait_for_function(
        "() => document.querySelector('live-scoreboard').top.some(r => r.userId === 'maya' && r.score === 540)"
    )
    shot(page, "user")

    # A claim voided from its ledger row gives its points back.
    page.get_by_label("Reason (required, kept in the audit log)").fill("claimed twice by a replay")
    page.locator("#ledger-table tbody tr[data-status='claimed'] button").first.click()
    expect(page.locator("#user-score")).to_have_text("290")
    expect(page.locator("#ledger-table tbody tr[data-status='void']")).to_have_count(1)
    assert_clean(page)
    # The demo page's widget is refused a token-less socket on this private board before its sign-in (logged by
    # Chromium, no fault of the page); it keeps the policy all the same.
    assert public.evaluate("window.__violations") == []


def test_revoking_a_users_tokens_refuses_them(demo_stack, app, new_page, make_user, give, make_admin, mint):
    seed(make_user, give, make_admin)
    before = mint("alice")
    assert app.test_client().get("/api/scores/me", headers=bearer(before)).status_code == 200
    public = watched_page(new_page)
    sign_in(public, demo_stack, "alice", "alice-pw")
    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    page.goto(demo_stack + "/admin#/users/alice")
    expect(page.locator("#user-heading")).to_have_text("Alice (alice)")
    revoke = page.get_by_role("button", name="Revoke the user's tokens")
    expect(revoke).to_be_disabled()
    page.get_by_label("Reason (required, kept in the audit log)").fill("account reported stolen")
    revoke.click()
    expect(page.locator("#announcer")).to_contain_text("Revoked the tokens of alice: every token issued before")
    expect(page.locator("#user-audit tbody tr").first).to_contain_text("revoke:user")
    expect(page.locator("#user-audit tbody tr").first).to_contain_text("account reported stolen")
    answer = app.test_client().get("/api/scores/me", headers=bearer(before))
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "token_revoked"
    # Alice's open page loses its signed-in socket (closed 4001), and its token buys no new one.
    expect(public.locator("live-scoreboard .status")).to_have_attribute("data-state", "unauthorized")
    assert_clean(page)


def test_the_ledger_pages_with_more(demo_stack, app, new_page, make_user, give, make_admin):
    make_admin()
    headers = bearer(_admin_token(app))
    client = app.test_client()
    give("omar", "win-challenge", "Omar Haddad")
    for i in range(54):
        answer = client.post(
            "/api/admin/users/omar/adjustments", json={"delta": 1, "reason": f"bonus {i}"}, headers=headers
        )
        assert answer.status_code == 201
    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    page.goto(demo_stack + "/admin#/users/omar")
    rows = page.locator("#ledger-table tbody tr[data-action-id]")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("bonus 53")
    more = page.get_by_role("button", name="More")
    more.click()
    expect(rows).to_have_count(55)
    expect(rows.last).to_have_attribute("data-status", "claimed")
    expect(more).to_be_hidden()
    assert_clean(page)


def test_search_finds_a_user_by_id_or_name(demo_stack, new_page, make_user, give, make_admin):
    seed(make_user, give, make_admin)
    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    page.get_by_role("link", name="Users").click()
    search = page.get_by_label("Search by id or name")
    search.fill("chen")
    search.press("Enter")
    results = page.locator("#user-results tbody tr[data-user-id]")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Maya Chen")
    expect(page.locator("#user-results-caption")).to_have_text("1 user matching “chen”")
    search.fill("o")
    search.press("Enter")
    expect(page.locator("#user-results tbody tr[data-user-id]").first).to_be_visible()
    page.get_by_role("link", name="Omar Haddad").click()
    expect(page.locator("#user-heading")).to_have_text("Omar Haddad (omar)")
    assert_clean(page)


def test_a_user_page_shows_rank_on_every_board(demo_stack, new_page, make_user, give, make_admin, hold):
    seed(make_user, give, make_admin)
    hold("li")
    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    page.goto(demo_stack + "/admin#/users/omar")
    rows = page.locator("#user-standings tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.nth(0)).to_contain_text("All time")
    expect(rows.nth(0)).to_contain_text("#2")
    expect(rows.nth(1)).to_contain_text("Today")
    # A held user: where they would rank, said as such.
    page.goto(demo_stack + "/admin#/users/li")
    expect(page.locator("#user-status")).to_have_text("held")
    expect(page.locator("#user-standings tbody tr").first).to_contain_text("(as if ranked: held)")
    assert_clean(page)


def _admin_token(app):
    from scoreboard.security.tokens import mint_token

    with app.app_context():
        return mint_token("ops", ["admin"])


def test_a_held_suspect_is_cleared_and_the_queue_follows_without_a_reload(
    demo_stack, app, new_page, make_user, give, make_admin, hold
):
    seed(make_user, give, make_admin)
    hold("omar")
    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    # Held, marked on the admin board (the public one leaves Omar out).
    expect(page.locator("#board-table tr[data-user-id='omar']")).to_contain_text("held")

    page.get_by_role("link", name="Suspects").click()
    card = page.locator("#suspects-list li[data-user-id='omar']")
    expect(card).to_be_visible()
    expect(card.locator(".reasons li").first).to_have_text("claims_per_active_hour: 12 (typical median 1.5, p95 4)")
    expect(card.locator(".reasons li").nth(1)).to_have_text("gap_cv: 0.02 (typical median 0.9, p95 1.6)")
    expect(page.locator("#suspects-count")).to_have_text("1 held")

    # A new suspect arrives while the page is open: the queue shows it without a reload.
    hold("li", score=0.77)
    expect(page.locator("#suspects-list li[data-user-id='li']")).to_be_visible(timeout=10_000)
    expect(page.locator("#suspects-count")).to_have_text("2 held")
    expect(page.locator("#announcer")).to_contain_text("1 new suspect held")
    shot(page, "suspects")

    clear = card.get_by_role("button", name="Clear")
    expect(clear).to_be_disabled()
    card.get_by_label("Reason for clearing or confirming Omar Haddad (required)").fill("our own load test")
    clear.click()
    expect(card).to_have_count(0)
    expect(page.locator("#announcer")).to_contain_text("Cleared omar: back to active")
    expect(page.locator("#suspects-count")).to_have_text("1 held")
    answer = app.test_client().get("/api/admin/suspects?status=cleared", headers=bearer(_admin_token(app)))
    assert [(s["userId"], s["reviewReason"]) for s in answer.get_json()["suspects"]] == [("omar", "our own load test")]

    # Confirm the other one, voiding the window's claims.
    other = page.locator("#suspects-list li[data-user-id='li']")
    other.get_by_label("Reason for clearing or confirming Li Wei (required)").fill("scripted, every 300 s")
    other.get_by_label("On confirm, void the window's claims").check()
    other.get_by_role("button", name="Confirm").click()
    expect(other).to_have_count(0)
    expect(page.locator("#suspects-empty")).to_be_visible()
    expect(page.locator("#announcer")).to_contain_text("Confirmed li: banned, 1 claim voided")
    page.get_by_role("link", name="Live board").click()
    expect(page.locator("#board-table tr[data-user-id='omar']")).to_contain_text("active")
    assert_clean(page)


def test_the_suspects_claim_timeline_is_charted(demo_stack, new_page, make_user, give, make_admin, hold):
    seed(make_user, give, make_admin)
    hold("maya")
    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    page.goto(demo_stack + "/admin#/suspects")
    card = page.locator("#suspects-list li[data-user-id='maya']")
    expect(card.locator("figcaption")).to_contain_text("2 claims in 1 of 24 hours")
    assert card.locator("canvas").count() == 1
    page.get_by_label("Claim timeline", exact=True).select_option("7d")
    expect(card.locator("figcaption")).to_contain_text("of 168 hours")
    assert_clean(page)


def test_a_non_admin_is_refused_and_sees_nothing(demo_stack, app, new_page, make_user, give, mint, make_admin):
    seed(make_user, give, make_admin)
    page = watched_page(new_page)
    page.goto(demo_stack + "/admin")

    # A pasted token without the admin role.
    page.get_by_label("Admin token").fill(mint("alice"))
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#signin-error")).to_have_text(
        "This token does not carry the admin role: the console shows nothing without it."
    )
    expect(page.locator("#console")).to_be_hidden()
    assert page.locator("#console tbody tr").count() == 0
    assert page.evaluate("Object.keys(sessionStorage)") == []

    # A password sign-in of an account without the role: refused the same way, and that session's token revoked.
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-pw")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("does not carry the admin role")
    expect(page.locator("#console")).to_be_hidden()
    assert page.evaluate("Object.keys(sessionStorage)") == []
    assert page.context.cookies() == []

    # A reload keeps nothing, and a garbage token is refused by the service.
    page.reload()
    expect(page.locator("#console")).to_be_hidden()
    page.get_by_label("Admin token").fill("not-a-token")
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#signin-error")).to_contain_text("The service refused the token")
    expect(page.locator("#console")).to_be_hidden()
    assert page.locator("#console tbody tr").count() == 0
    assert_clean(page)


def test_a_pasted_admin_token_signs_in_and_signing_out_forgets_it(demo_stack, new_page, make_user, give, mint):
    give("maya", "win-challenge", "Maya Chen")
    page = watched_page(new_page)
    page.goto(demo_stack + "/admin")
    page.get_by_label("Admin token").fill(mint("ops-token", "admin"))
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#who-id")).to_have_text("ops-token")
    expect(page.locator("#board-table tbody tr[data-user-id='maya']")).to_be_visible()
    page.reload()  # kept for the tab
    expect(page.locator("#board-table tbody tr[data-user-id='maya']")).to_be_visible()
    page.get_by_role("link", name="Analytics").click()
    expect(page.locator("#cph-chart canvas")).to_have_count(1)
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin-note")).to_have_text("Signed out.")
    expect(page.locator("#username")).to_be_focused()
    expect(page.locator("#console")).to_be_hidden()
    # Nothing the session showed is left in the page: no rows, no chart, no figures.
    assert page.locator("#console tbody tr").count() == 0
    assert page.locator("#console canvas").count() == 0
    assert page.locator("#cph-summary").text_content() == ""
    assert page.evaluate("Object.keys(sessionStorage)") == []
    page.reload()
    expect(page.locator("#console")).to_be_hidden()
    assert_clean(page)


def test_a_token_revoked_meanwhile_ends_the_session(demo_stack, app, new_page, mint):
    from flask_jwt_extended import decode_token

    token = mint("ops-token", "admin")
    with app.app_context():
        jti = decode_token(token)["jti"]
    page = watched_page(new_page)
    page.goto(demo_stack + "/admin")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#board-state")).to_have_text("Live")
    answer = app.test_client().post(
        "/api/admin/tokens/revoke", json={"jti": jti, "reason": "left the team"}, headers=bearer(_admin_token(app))
    )
    assert answer.status_code == 200
    # The board's socket is closed (4001) and its next ticket refused: the page ends the session by itself.
    expect(page.locator("#signin-error")).to_contain_text("Your session ended")
    expect(page.locator("#console")).to_be_hidden()
    assert page.locator("#console tbody tr").count() == 0
    assert page.evaluate("Object.keys(sessionStorage)") == []
    assert_clean(page)


def test_the_audit_log_filters_and_pages_back(demo_stack, app, new_page, make_user, give, make_admin):
    seed(make_user, give, make_admin)
    headers = bearer(_admin_token(app))
    client = app.test_client()
    for i in range(3):
        client.post("/api/admin/users/omar/adjustments", json={"delta": 1, "reason": f"bonus {i}"}, headers=headers)
    client.post("/api/admin/users/li/status", json={"status": "hidden", "reason": "offensive name"}, headers=headers)
    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    page.get_by_role("link", name="Audit log").click()
    rows = page.locator("#audit-table tbody tr[data-audit-id]")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("status:hidden")
    expect(rows.first).to_contain_text("offensive name")
    shot(page, "audit")

    page.get_by_label("Act", exact=True).select_option("adjust")
    page.get_by_label("Target user").fill("omar")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"#/audit\?target=omar&act=adjust$"))
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("bonus 2")
    page.get_by_label("Act", exact=True).select_option("status:hidden")
    page.get_by_label("Target user").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("li")
    assert_clean(page)


def test_the_audit_log_pages_back_with_older(demo_stack, app, new_page, make_user, give, make_admin):
    seed(make_user, give, make_admin)
    headers = bearer(_admin_token(app))
    client = app.test_client()
    for i in range(55):
        client.post("/api/admin/users/omar/adjustments", json={"delta": 1, "reason": f"bonus {i}"}, headers=headers)
    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    page.get_by_role("link", name="Audit log").click()
    rows = page.locator("#audit-table tbody tr[data-audit-id]")
    expect(rows).to_have_count(50)
    page.get_by_role("button", name="Older").click()
    expect(rows).to_have_count(55)
    expect(rows.last).to_contain_text("bonus 0")
    expect(page.get_by_role("button", name="Older")).to_be_hidden()
    assert_clean(page)


def test_analytics_are_drawn_for_each_range(demo_stack, new_page, make_user, give, make_admin):
    seed(make_user, give, make_admin)
    page = watched_page(new_page)
    sign_in_admin(page, demo_stack)
    page.get_by_role("link", name="Analytics").click()
    expect(page.locator("[data-figure='dau']")).to_have_text("4")
    expect(page.locator("[data-figure='new']")).to_have_text("4")
    expect(page.locator("#cph-summary")).to_contain_text("5 claims in 24 hours")
    assert page.locator("#cph-chart canvas").count() == 1
    expect(page.locator("#an-actions tbody")).to_contain_text("win-challenge")
    expect(page.locator("#an-top-completed li").first).to_be_visible()
    completions = page.locator("#an-completions tbody tr")
    expect(completions.nth(0)).to_contain_text("Recorded")
    expect(completions.nth(0)).to_contain_text("5")
    expect(completions.nth(1)).to_contain_text("5")
    shot(page, "analytics")
    page.get_by_role("button", name="Last 7 days").click()
    expect(page.locator("#cph-summary")).to_contain_text("in 168 hours")
    page.get_by_role("button", name="Last 30 days").click()
    expect(page.locator("#cph-summary")).to_contain_text("in 720 hours")
    assert_clean(page)


def test_keyboard_alone_reaches_every_view_and_the_dark_theme(demo_stack, new_page, make_user, give, make_admin):
    seed(make_user, give, make_admin)
    page = watched_page(new_page)
    page.goto(demo_stack + "/admin")
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#theme-toggle")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#username")).to_be_focused()
    page.keyboard.type("ops")
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#board-state")).to_have_text("Live")
    expect(page.locator("#board-heading")).to_be_focused()

    # Every view from the side navigation, by Tab and Enter; each lands on its heading.
    for name, heading in [
        ("Users", "#users-heading"),
        ("Suspects", "#suspects-heading"),
        ("Analytics", "#analytics-heading"),
        ("Audit log", "#audit-heading"),
        ("Live board", "#board-heading"),
    ]:
        page.locator("#sign-out").focus()  # start each walk from the header, as a keyboard user would
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == name:
                break
        assert page.evaluate("document.activeElement.textContent") == name
        page.keyboard.press("Enter")
        expect(page.locator(heading)).to_be_focused()
        expect(page.locator(".sidenav a[aria-current='page']")).to_have_text(name)

    # The period switcher and a user's acts work from the keyboard too.
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="All time")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Today")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#board-table")).to_have_attribute("data-period", "day")
    for _ in range(3):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('#board-table') !== null")
    focused = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("Enter")
    expect(page.locator("#user-heading")).to_be_focused()
    expect(page.locator("#user-heading")).to_contain_text(focused)

    # Focus is visible: the focused control draws an outline.
    page.locator("#act-reason").focus()
    page.keyboard.type("checked by keyboard")
    page.keyboard.press("Tab")
    hide = page.get_by_role("button", name="Hide")
    expect(hide).to_be_focused()
    assert hide.evaluate("b => getComputedStyle(b).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(page.locator("#user-status")).to_have_text("hidden")

    # The theme toggle, from the keyboard; the board in the dark theme.
    page.locator("#theme-toggle").focus()
    page.keyboard.press("Enter")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.locator("#theme-toggle")).to_have_text("Switch to light theme")
    page.goto(demo_stack + "/admin#/board")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.locator("#board-table tbody tr[data-status='hidden']")).to_contain_text("hidden")
    shot(page, "dark")
    assert_clean(page)


def test_the_system_dark_scheme_and_a_narrow_screen(demo_stack, new_page, make_user, give, make_admin):
    seed(make_user, give, make_admin)
    page = watched_page(new_page, color_scheme="dark", viewport={"width": 390, "height": 800})
    sign_in_admin(page, demo_stack)
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    # Narrow: the navigation sits above the view instead of beside it.
    nav = page.locator(".sidenav").bounding_box()
    view = page.locator("#view").bounding_box()
    assert view["y"] >= nav["y"] + nav["height"] - 1
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert_clean(page)


# WCAG contrast of every visible piece of text against its composited background (disabled controls exempt).
LOW_CONTRAST = """
() => {
  const parse = (c) => {
    const m = c.match(/[\\d.]+/g).map(Number);
    return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
  };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]);
  const background = (el) => {
    const chain = [];
    for (let n = el; n; n = n.parentElement) chain.push(parse(getComputedStyle(n).backgroundColor));
    return chain.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1]);
  };
  const low = [];
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('[hidden], .sr-only, .uplot, :disabled')) continue;
    const text = Array.from(el.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join('');
    if (!text || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden') continue;
    const fg = over(parse(style.color), background(el));
    const [a, b] = [lum(fg), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) low.push(`${text.slice(0, 30)}: ${ratio.toFixed(2)} < ${needed}`);
  }
  return low;
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_meets_wcag_aa_contrast_in_both_themes(demo_stack, new_page, make_user, give, make_admin, hold, scheme):
    seed(make_user, give, make_admin)
    hold("li")
    page = watched_page(new_page, color_scheme=scheme)
    page.goto(demo_stack + "/admin")
    assert page.evaluate(LOW_CONTRAST) == []
    sign_in_admin(page, demo_stack)
    expect(page.locator("html")).to_have_attribute("data-theme", scheme)
    for route, ready in [
        ("#/board", "#board-table tbody tr[data-status='held']"),
        ("#/users/maya", "#ledger-table tbody tr[data-action-id]"),
        ("#/suspects", "#suspects-list li figcaption p"),
        ("#/analytics", "#an-actions tbody tr"),
        ("#/audit", "#audit-table tbody tr[data-audit-id]"),
    ]:
        page.goto(demo_stack + "/admin" + route)
        expect(page.locator(ready).first).to_be_visible()
        assert page.evaluate(LOW_CONTRAST) == [], route
    assert_clean(page)
