"""Browser fixtures: Debian's Chromium driven by Playwright, and a production stack serving the demo page.

Playwright cannot download its own browser builds here, so it drives ``/usr/bin/chromium``
(``make test`` installs Debian's ``chromium`` package when it is missing). Where that is
impossible these tests skip naming the reason; in CI (``CI=true``) they fail instead.
"""

import os

import pytest

from tests.support import Process, bearer, free_port, python_bin, running_stack, wait_http

CHROMIUM = os.environ.get("SCOREBOARD_CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing that reaches out to the network: only localhost is reachable here.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORT = {"width": 1100, "height": 800}


def _unavailable(reason):
    """Skip with ``reason``, except in CI, where the browser tests must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the browser tests must run in CI, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"Playwright is not installed ({exc}); `make test` installs requirements-dev.txt")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(
            f"Debian's chromium is not installed at {CHROMIUM}, and scripts/ensure_chromium.sh "
            "could not install it (it needs root and apt-get); install the `chromium` package"
        )
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    except Exception as exc:
        playwright.stop()
        _unavailable(f"{CHROMIUM} did not start under Playwright: {exc}")
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture
def new_page(browser):
    """``new_page(**context_options)`` -> a page in a fresh browser context (its own storage and cookies)."""
    contexts = []

    def _new_page(**options):
        context = browser.new_context(**{"viewport": VIEWPORT, "color_scheme": "light", **options})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield _new_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def demo_env(stack_env):
    """The stack's environment with the demo page switched on."""
    return {
        **stack_env,
        "SCOREBOARD_DEMO_ENABLED": "true",
        "SCOREBOARD_DEMO_ALLOW_REAL_DATABASE": "true",
        "SCOREBOARD_GRACEFUL_TIMEOUT": "2",
    }


@pytest.fixture(scope="session")
def demo_stack(app, demo_env, tmp_path_factory):
    """gunicorn serving the demo page and a Celery worker, on the test database and Redis. Yields the base URL."""
    with running_stack(demo_env, tmp_path_factory.mktemp("demo-stack"), name="demo", concurrency=1) as base:
        yield base


@pytest.fixture(scope="session")
def dev_server(app, demo_env, tmp_path_factory):
    """``flask run`` (Werkzeug's dev server, as ``make run`` serves the demo) with a public board, on the test
    database and Redis. Yields the base URL."""
    port = free_port()
    env = {
        **demo_env,
        "FLASK_APP": "wsgi",
        "SCOREBOARD_PUBLIC_BOARD": "true",
        "SCOREBOARD_CELERY_EAGER": "true",
    }
    argv = [python_bin(), "-m", "flask", "run", "--host", "127.0.0.1", "--port", str(port), "--with-threads"]
    server = Process("dev-server", argv, env, tmp_path_factory.mktemp("dev-server"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/api/actions", proc=server.proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"the dev server failed to start:\n{server.output()}") from None
    yield base
    server.stop()


@pytest.fixture
def make_user(app):
    """``make_user(user_id, display_name, password=None)``: a local account (with a password to sign in)."""
    from scoreboard.extensions import db
    from scoreboard.models import User
    from scoreboard.scoring.completions import ensure_user
    from scoreboard.security.passwords import hash_password

    def _make_user(user_id, display_name, password=None):
        with app.app_context():
            ensure_user(user_id, display_name)
            if password is not None:
                db.session.get(User, user_id).password_hash = hash_password(password)
            db.session.commit()

    return _make_user


@pytest.fixture
def give(client, service_headers, mint):
    """``give(user_id, action, display_name=None)``: record and claim a completion in-process; returns the new score.

    The in-process app runs the board task eagerly, so the change is broadcast through the
    real Redis pub/sub to every server process, exactly as a worker would.
    """

    def _give(user_id, action="complete-lesson", display_name=None):
        body = {"userId": user_id, "action": action}
        if display_name:
            body["displayName"] = display_name
        recorded = client.post("/api/actions/completions", json=body, headers=service_headers)
        assert recorded.status_code in (200, 201), recorded.get_json()
        claimed = client.post(
            "/api/action/do", json={"actionId": recorded.get_json()["actionId"]}, headers=bearer(mint(user_id))
        )
        assert claimed.status_code == 200, claimed.get_json()
        return claimed.get_json()["newScore"]

    return _give
