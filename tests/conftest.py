"""Fixtures: a real PostgreSQL database and Redis for the tests that use them, cleaned before each of them;
and the markers by folder.

A test uses the services by asking for ``app`` (directly or through ``client``, ``record``,
``record_and_claim``, ``mint``, ``service_headers``, ``live_stack`` ...): the session's app is built
on a database ``scoreboard_test_<pid>`` of its own (created and migrated on the server at
``SCOREBOARD_TEST_PG_ADMIN_URL``, dropped at the end), and before each such test the tables and
this run's Redis keys (database 15, a key prefix unique to the run) are reset. A test that asks
for none of them touches neither service: ``pytest -m unit`` runs without PostgreSQL or Redis.
"""

import os
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.support import ROOT, bearer, pid_alive, running_stack

TESTS = Path(__file__).resolve().parent

PG_ADMIN_URL = os.environ.get("SCOREBOARD_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# One database per run, so concurrent runs on one machine never interfere.
TEST_DB = os.environ.get("SCOREBOARD_TEST_DB", f"scoreboard_test_{os.getpid()}")
DATABASE_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{TEST_DB}"
REDIS_URL = os.environ.get("SCOREBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PREFIX = f"sbtest:{uuid.uuid4().hex[:10]}:"
DEFAULT_CATALOG = ROOT / "scoreboard" / "default_catalog.json"

TEST_ENV = {
    "SCOREBOARD_DATABASE_URL": DATABASE_URL,
    "SCOREBOARD_REDIS_URL": REDIS_URL,
    "SCOREBOARD_REDIS_PREFIX": PREFIX,
    "SCOREBOARD_CELERY_QUEUE": f"board-{PREFIX}",
    "SCOREBOARD_JWT_SECRET_KEY": "test-secret-key-0123456789-abcdefghijklmnop",
    "SCOREBOARD_LOG_LEVEL": "WARNING",
    "SCOREBOARD_RATE_LIMIT_ENABLED": "false",
    # The service's bounds on PostgreSQL (2 s a statement, 1 s a lock, 1.5 s a wait) are for production, and the
    # fault stack keeps them; the functional tests share two cores with servers and browsers, where a bound is
    # not what is under test. tests/test_long_jobs.py checks the defaults.
    "SCOREBOARD_DB_STATEMENT_TIMEOUT": "30s",
    "SCOREBOARD_DB_LOCK_TIMEOUT": "20s",
    "SCOREBOARD_DB_WAIT_TIMEOUT": "30s",
}
for _name, _value in TEST_ENV.items():
    os.environ[_name] = _value
# In-process tests run the board task eagerly; the live stack below runs a real worker.
os.environ["SCOREBOARD_CELERY_EAGER"] = "true"


def _drop(conn, name):
    conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


def _recreate_database():
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        # Drop databases left by runs that were killed before their teardown.
        for (name,) in conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE 'scoreboard_test_%'")):
            suffix = name.rsplit("_", 1)[-1]
            if suffix.isdigit() and not pid_alive(int(suffix)):
                _drop(conn, name)
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{TEST_DB}'"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEST_DB}"'))
        conn.execute(text(f'CREATE DATABASE "{TEST_DB}"'))
    admin.dispose()


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(config, items):
    """The folder markers: ``faults`` for ``tests/faults/``, ``browser`` for ``tests/browser/``; both start
    server processes, so they are ``live`` too."""
    for item in items:
        folder = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if folder == "faults":
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.live)
        elif folder == "browser":
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.live)


@pytest.fixture(scope="session")
def app():
    """The app on the test database, migrated with the real migrations; built once, for the first test that
    asks for it.

    Session-scoped because session fixtures build on it (``mint``, ``live_stack``, the browser tests'
    ``demo_stack``); the per-test reset is :func:`clean`'s.
    """
    from flask_migrate import upgrade

    from scoreboard import create_app

    _recreate_database()
    app = create_app({"TESTING": True})
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        from scoreboard.extensions import db

        db.engine.dispose()
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        _drop(conn, TEST_DB)
    admin.dispose()


@pytest.fixture(scope="session")
def offline_app():
    """An app on the test settings for checks that need the app object and nothing it connects to: its routes,
    its OpenAPI document, its in-process parts (``pytest -m unit`` uses it).

    Building an app connects to nothing. It keeps the test settings' database and Redis URLs, which
    no test using it reaches (without a database URL it would be the embedded mode instead, on SQLite
    in ``instance/``); ``TESTING`` keeps its relay from listening.
    """
    from scoreboard import create_app

    return create_app({"TESTING": True})


@pytest.fixture(scope="session")
def redis_client():
    """A client on the tests' Redis database."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.ping()
    yield client
    for key in client.scan_iter(f"{PREFIX}*"):
        client.delete(key)


def reset_state(app, redis_client):
    """Empty every table, reload the default catalog, drop this run's Redis keys."""
    from scoreboard.extensions import db, limiter
    from scoreboard.scoring.catalog import load_catalog
    from scoreboard.stores import get_stores

    with app.app_context():
        # A live stack's worker may be inside a recompute (its take and fold hold one table while reaching for
        # another): PostgreSQL then picks the truncate as a deadlock's victim, and it is simply run again.
        for attempt in range(5):
            try:
                # Test set-up, not a request: the sessions' statement and lock bounds do not apply to it.
                db.session.execute(text("SET LOCAL statement_timeout = 0"))
                db.session.execute(text("SET LOCAL lock_timeout = 0"))
                db.session.execute(
                    text("TRUNCATE audit_log, claim_refusals, completions, scores, users, actions CASCADE")
                )
                db.session.commit()
                break
            except OperationalError as exc:
                db.session.rollback()
                if getattr(exc.orig, "pgcode", None) != "40P01" or attempt == 4:
                    raise
        load_catalog(DEFAULT_CATALOG)
        if limiter.enabled:
            limiter.reset()
    for key in redis_client.scan_iter(f"{PREFIX}*"):
        redis_client.delete(key)
    get_stores(app).coordination.release_refresh_slot()


@pytest.fixture(autouse=True)
def clean(request):
    """A clean database and Redis before every test that uses the app; nothing at all for the others.

    "Uses the app": ``app`` is among the test's fixtures, asked for directly or through another fixture
    (``client``, ``record``, ``mint``, ``live_stack`` ...). Only then are the database and Redis set up,
    so a test that needs neither runs without them.
    """
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    # A test that builds another app (other settings) makes its Celery app current and the default;
    # tasks called directly must run against the main one again.
    app.extensions["celery"].set_current()
    app.extensions["celery"].set_default()
    reset_state(app, request.getfixturevalue("redis_client"))
    yield


@pytest.fixture
def client(app):
    """A Flask test client."""
    return app.test_client()


@pytest.fixture(scope="session")
def mint(app):
    """``mint(user_id, *roles)`` -> a signed access token."""
    from scoreboard.security.tokens import mint_token

    def _mint(user_id, *roles, expires=None):
        with app.app_context():
            return mint_token(user_id, roles, expires)

    return _mint


@pytest.fixture(scope="session")
def service_headers(mint):
    """Headers of the site's trusted backend (role ``service``)."""
    return bearer(mint("site-backend", "service"))


@pytest.fixture
def record(client, service_headers):
    """``record(user_id, action="complete-lesson")`` -> the completion JSON."""

    def _record(user_id, action="complete-lesson", **extra):
        response = client.post(
            "/api/actions/completions", json={"userId": user_id, "action": action, **extra}, headers=service_headers
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return _record


@pytest.fixture
def record_and_claim(client, mint, record):
    """``record_and_claim(user_id, action="complete-lesson")``: a completion recorded with the service token,
    then claimed by the user (the eager worker refreshes the board). Returns ``{"actionId", "newScore"}``."""

    def _record_and_claim(user_id, action="complete-lesson", **extra):
        action_id = record(user_id, action, **extra)["actionId"]
        response = client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(mint(user_id)))
        assert response.status_code == 200, response.get_json()
        return {"actionId": action_id, "newScore": response.get_json()["newScore"]}

    return _record_and_claim


@pytest.fixture(scope="session")
def stack_env():
    """Environment for server processes: the test database and Redis, a real broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(TEST_ENV)
    return env


@pytest.fixture(scope="session")
def live_stack(app, stack_env, tmp_path_factory):
    """The production stack: gunicorn (2 workers) and a Celery worker on Redis. Yields the base URL."""
    with running_stack(stack_env, tmp_path_factory.mktemp("stack")) as base:
        yield base
