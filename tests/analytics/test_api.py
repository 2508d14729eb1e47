"""``GET /api/admin/analytics``: admins only, a clear 400 for a bad range, the answer's figures, and the
embedded mode answering from its SQLite ledger."""

import os
import subprocess
from datetime import timedelta

import pytest
import requests

from scoreboard.analytics.rollup import run_rollup
from scoreboard.extensions import db
from tests.support import ROOT, Process, bearer, free_port, python_bin, wait_http

from .ledger import NOW, assert_figures, build, clear_rollups, expected, write


@pytest.fixture
def at_now(app):
    """The app's clock at ``NOW``, the ledger written, the rollups empty; all put back afterwards."""
    made = build(seed=5, completions=600)
    with app.app_context():
        clear_rollups()
        write(made)
    app.config["CLOCK"] = lambda: NOW
    yield made
    app.config["CLOCK"] = None
    with app.app_context():
        clear_rollups()


def test_admins_get_every_range(client, mint, at_now, app):
    admin = bearer(mint("ops", "admin"))
    with app.app_context():
        run_rollup(db.engine, NOW, timedelta(minutes=5))
    for range_key in ("24h", "7d", "30d"):
        response = client.get(f"/api/admin/analytics?range={range_key}", headers=admin)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert_figures(response.get_json(), expected(at_now, range_key))
    # No range: the last 24 hours.
    assert client.get("/api/admin/analytics", headers=admin).get_json()["range"] == "24h"


@pytest.mark.parametrize("query", ["range=1h", "range=", "range=24H", "range=30d&range=7d&range=x"])
def test_a_bad_range_is_a_400(client, mint, app, query):
    response = client.get(f"/api/admin/analytics?{query}", headers=bearer(mint("ops", "admin")))
    if query.startswith("range=30d"):  # the first value counts, as for every query string
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_query"


def test_only_admins(client, mint, app):
    assert client.get("/api/admin/analytics").status_code == 401
    assert client.get("/api/admin/analytics").get_json()["error"]["code"] == "token_missing"
    for roles in ((), ("service",)):
        response = client.get("/api/admin/analytics", headers=bearer(mint("alice", *roles)))
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"


def test_the_openapi_document_describes_it(client, app):
    operation = client.get("/api/openapi.json").get_json()["paths"]["/api/admin/analytics"]["get"]
    assert operation["x-roles"] == ["admin"]
    (param,) = operation["parameters"]
    assert param["name"] == "range" and param["schema"]["enum"] == ["24h", "7d", "30d"]
    assert {"200", "400", "401", "403"} <= set(operation["responses"])


@pytest.mark.live  # `flask run` on SQLite: the embedded mode computes straight from its ledger
def test_the_embedded_mode_answers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        {
            "SCOREBOARD_SQLITE_PATH": str(tmp_path / "board.sqlite3"),
            "FLASK_APP": "wsgi",
            "SCOREBOARD_JWT_SECRET_KEY": "embedded-test-secret-0123456789abcdef",
        }
    )
    flask = [python_bin(), "-m", "flask"]

    def run(*argv):
        done = subprocess.run(
            [*flask, *argv], cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120
        )
        return done.stdout.strip()

    run("db", "upgrade")
    run("actions", "load", "scoreboard/default_catalog.json")
    service, admin, alice = (
        run("tokens", "mint", "site", "--role", "service"),
        run("tokens", "mint", "ops", "--role", "admin"),
        run("tokens", "mint", "alice"),
    )
    port = free_port()
    server = Process("embedded", [*flask, "run", "--port", str(port), "--with-threads"], env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/api/actions", proc=server.proc)
        for action in ("pass-quiz", "complete-lesson"):
            recorded = requests.post(
                f"{base}/api/actions/completions",
                json={"userId": "alice", "action": action},
                headers=bearer(service),
                timeout=5,
            ).json()
        claimed = requests.post(
            f"{base}/api/action/do", json={"actionId": recorded["actionId"]}, headers=bearer(alice), timeout=5
        )
        assert claimed.status_code == 200
        answer = requests.get(f"{base}/api/admin/analytics?range=7d", headers=bearer(admin), timeout=5).json()
        assert answer["completions"] == {"recorded": 2, "claimed": 1, "expired": 0, "pending": 1, "void": 0}
        assert sum(h["claims"] for h in answer["claimsPerHour"]) == 1 and answer["claimsPerHour"][-1]["claims"] == 1
        assert answer["activeUsers"]["daily"] == 1 and answer["newPlayers"] == 1
        assert answer["actions"] == [
            {"action": "complete-lesson", "completions": 1, "claims": 1, "points": 50},
            {"action": "pass-quiz", "completions": 1, "claims": 0, "points": 0},
        ]
        assert answer["topRewarding"] == ["complete-lesson"] and 0 <= answer["medianClaimSeconds"] < 60
    finally:
        server.stop()
