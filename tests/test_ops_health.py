"""``/healthz`` and ``/readyz``: liveness without touching anything, readiness naming what is unreachable.

The failing cases use apps whose database, Redis or broker URL points at a port nothing listens on:
a real connection refused, not a stand-in.
"""

import pytest

from scoreboard import create_app
from tests.support import free_port


@pytest.fixture
def make_app():
    """``make_app(**config)``: another app on the same settings but for ``config``.

    Its Celery app becomes the default; the next test that uses the test app makes that one the default again.
    """

    def _make(**config):
        """A new app with ``config`` over the test settings."""
        return create_app({"TESTING": True, **config})

    return _make


def dead_url(scheme):
    """A URL of ``scheme`` on a local port that refuses connections."""
    return f"{scheme}://127.0.0.1:{free_port()}/0"


@pytest.mark.unit
def test_healthz_is_alive_and_touches_nothing(make_app):
    # Every backing service unreachable: the process itself is still alive.
    broken = make_app(
        SQLALCHEMY_DATABASE_URI=f"postgresql://postgres@127.0.0.1:{free_port()}/x", REDIS_URL=dead_url("redis")
    )
    r = broken.test_client().get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}


def test_readyz_when_everything_answers(app, client):
    celery_conf = dict(app.config["CELERY"], task_always_eager=False)
    ready = create_app({"TESTING": True, "CELERY": celery_conf}).test_client().get("/readyz")
    app.extensions["celery"].set_default()
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok", "broker": "ok"}}


@pytest.mark.parametrize("down", ["database", "redis", "broker"])
def test_readyz_names_the_service_that_is_down(app, make_app, down):
    config = {"CELERY": dict(app.config["CELERY"], task_always_eager=False)}
    if down == "database":
        config["SQLALCHEMY_DATABASE_URI"] = f"postgresql://postgres@127.0.0.1:{free_port()}/scoreboard"
    elif down == "redis":
        config["REDIS_URL"] = dead_url("redis")
    else:
        config["CELERY"]["broker_url"] = dead_url("redis")
    r = make_app(**config).test_client().get("/readyz")
    assert r.status_code == 503 and r.is_json
    error = r.get_json()["error"]
    assert error["code"] == f"{down}_unavailable"
    assert error["failing"] == [down]
    assert error["checks"][down] == "unreachable"
    assert all(state == "ok" for name, state in error["checks"].items() if name != down)
    assert r.headers["Retry-After"] == "1"


def test_probes_need_no_token_and_carry_a_request_id(client):
    r = client.get("/readyz", headers={"X-Request-ID": "probe-42"})
    assert r.status_code == 200
    assert r.headers["X-Request-ID"] == "probe-42"
    minted = client.get("/healthz").headers["X-Request-ID"]
    assert len(minted) == 32 and minted != client.get("/healthz").headers["X-Request-ID"]


@pytest.mark.unit
def test_a_forged_request_id_is_replaced(offline_app):
    r = offline_app.test_client().get("/healthz", headers={"X-Request-ID": 'x", "user_id": "admin'})
    assert r.headers["X-Request-ID"] != 'x", "user_id": "admin' and len(r.headers["X-Request-ID"]) == 32
