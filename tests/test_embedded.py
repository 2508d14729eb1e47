"""Embedded mode: no PostgreSQL or Redis configured; SQLite and in-process stand-ins, a real server."""

import json
import os
import subprocess

import pytest
import requests
from websockets.sync.client import connect

from tests.support import ROOT, Process, bearer, free_port, python_bin, wait_http, ws_url

pytestmark = pytest.mark.live  # `flask run`, on SQLite and in-process stand-ins: no PostgreSQL or Redis


def test_whole_flow_with_no_services_configured(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        {
            "SCOREBOARD_SQLITE_PATH": str(tmp_path / "board.sqlite3"),
            "FLASK_APP": "wsgi",
            "SCOREBOARD_JWT_SECRET_KEY": "embedded-test-secret-0123456789abcdef",
        }
    )
    flask = [python_bin(), "-m", "flask"]
    for argv in (
        ["db", "upgrade"],
        ["actions", "load", "scoreboard/default_catalog.json"],
        ["users", "create", "alice", "--password", "pw-alice", "--display-name", "Alice"],
    ):
        subprocess.run([*flask, *argv], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    service = subprocess.run(
        [*flask, "tokens", "mint", "site", "--role", "service"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()

    port = free_port()
    server = Process("embedded", [*flask, "run", "--port", str(port), "--with-threads"], env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/api/actions", proc=server.proc)
        login = requests.post(f"{base}/api/auth/login", json={"username": "alice", "password": "pw-alice"}, timeout=5)
        assert login.status_code == 200 and login.json()["tokenType"] == "Bearer"
        alice = bearer(login.json()["accessToken"])

        completion = requests.post(
            f"{base}/api/actions/completions",
            json={"userId": "alice", "action": "pass-quiz"},
            headers=bearer(service),
            timeout=5,
        )
        assert completion.status_code == 201

        with connect(ws_url(base), additional_headers=alice, open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["top"] == []
            claim = requests.post(
                f"{base}/api/action/do", json={"actionId": completion.json()["actionId"]}, headers=alice, timeout=5
            )
            assert claim.json() == {"success": True, "newScore": 100}
            update = json.loads(ws.recv(timeout=1))
            assert update["type"] == "update"
            assert update["top"] == [{"rank": 1, "userId": "alice", "displayName": "Alice", "score": 100}]

        top = requests.get(f"{base}/api/score/top", headers=alice, timeout=5)
        assert top.json() == update["top"]

        # The period boards, ranks and history work the same on SQLite and the in-process stores.
        for period in ("all", "day", "week", "month"):
            page = requests.get(f"{base}/api/scores", params={"period": period}, headers=alice, timeout=5).json()
            assert (page["entries"], page["total"], page["next"]) == (update["top"], 1, None), period
        me = requests.get(f"{base}/api/scores/me", params={"period": "week"}, headers=alice, timeout=5).json()
        assert (me["rank"], me["score"], me["total"]) == (1, 100, 1)
        history = requests.get(f"{base}/api/scores/alice/history", headers=alice, timeout=5).json()
        assert [(e["delta"], e["score"], e["action"]) for e in history["entries"]] == [(100, 100, "pass-quiz")]
        with connect(ws_url(base, "?period=day"), additional_headers=alice, open_timeout=5) as ws:
            snapshot = json.loads(ws.recv(timeout=5))
            assert (snapshot["period"], snapshot["top"]) == ("day", update["top"])
        assert (tmp_path / "board.sqlite3").exists()
    finally:
        server.stop()
