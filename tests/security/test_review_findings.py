"""Findings of the outside security review, each with the behaviour that closes it.

Numbers refer to the rows of SECURITY.md's "Review findings" table.
"""

import json
import logging
import os
import socket
import subprocess
import time
from collections import Counter

import jwt as pyjwt
import pytest
from sqlalchemy import func, select

from config import RefusedConfiguration
from scoreboard.extensions import db
from scoreboard.models import Action, Completion, Score, User
from scoreboard.scoring.catalog import CatalogError, load_catalog
from tests.conftest import PREFIX, TEST_ENV
from tests.support import ROOT, bearer, python_bin, sample


def limited_app(**config):
    """An app with rate limits on (in Redis, under the tests' prefix)."""
    from scoreboard import create_app

    return create_app({"TESTING": True, "RATELIMIT_ENABLED": True, **config})


def from_ip(ip):
    return {"environ_base": {"REMOTE_ADDR": ip}}


# 2. Routes with their own limits no longer escape the per-IP limit.


def test_the_per_ip_limit_covers_every_route_and_refused_tokens(app, mint):
    limited = limited_app(RATELIMIT_APPLICATION="20/minute", RATE_LIMIT_USER="1000/minute")
    client = limited.test_client()
    with_tokens = [
        client.post(
            "/api/action/do", json={"actionId": "none"}, headers=bearer(mint(f"u{i}")), **from_ip("10.9.0.1")
        ).status_code
        for i in range(30)
    ]
    assert Counter(with_tokens) == {404: 20, 429: 10}
    without = [
        client.post("/api/action/do", json={"actionId": "x"}, **from_ip("10.9.0.2")).status_code for _ in range(30)
    ]
    assert Counter(without) == {401: 20, 429: 10}
    # One budget for the whole app: the IP that used its claims budget is refused everywhere else too.
    assert client.get("/api/actions", headers=bearer(mint("u0")), **from_ip("10.9.0.1")).status_code == 429
    assert client.get("/healthz", **from_ip("10.9.0.1")).status_code == 200  # liveness is never limited


# 16. Rate-limit counters live under SCOREBOARD_REDIS_PREFIX.


def test_rate_limit_counters_are_under_the_prefix(app, mint, redis_client):
    client = limited_app().test_client()
    assert client.get("/api/actions", headers=bearer(mint("someone")), **from_ip("10.9.1.1")).status_code == 200
    ours = list(redis_client.scan_iter(f"{PREFIX}ratelimit*"))
    assert ours, "no rate-limit counter under the prefix"
    assert not list(redis_client.scan_iter(f"LIMITS*{PREFIX}*"))


# 3. The demo cannot run against a real database by accident.


def test_the_demo_on_a_real_database_needs_a_second_setting(app, caplog, monkeypatch):
    import scoreboard
    from scoreboard import create_app

    # The warning is logged once a process: an app an earlier test built may have logged it already.
    monkeypatch.setattr(scoreboard, "_warned", set())

    with pytest.raises(RefusedConfiguration, match="SCOREBOARD_DEMO_ALLOW_REAL_DATABASE"):
        create_app({"TESTING": True, "DEMO_ENABLED": True})
    with caplog.at_level(logging.CRITICAL, logger="scoreboard"):
        allowed = create_app({"TESTING": True, "DEMO_ENABLED": True, "DEMO_ALLOW_REAL_DATABASE": True})
    assert allowed.test_client().get("/").status_code == 200
    assert any(r.levelno == logging.CRITICAL and "/demo/complete" in r.getMessage() for r in caplog.records)


# 5. The published development secret is refused under gunicorn even on SQLite.


def embedded_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_") and k != "FLASK_RUN_FROM_CLI"}
    return {**env, "SCOREBOARD_SQLITE_PATH": str(tmp_path / "embedded.sqlite3"), "FLASK_APP": "wsgi"}


@pytest.mark.live
def test_gunicorn_refuses_the_development_secret_on_the_embedded_database(tmp_path):
    env = {**embedded_env(tmp_path), "SCOREBOARD_BIND": "127.0.0.1:0", "SCOREBOARD_WEB_WORKERS": "1"}
    run = subprocess.run(
        [python_bin(), "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "refusing to start: SCOREBOARD_JWT_SECRET_KEY is not set" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.unit
def test_flask_commands_still_accept_it_on_the_embedded_database(tmp_path):
    minted = subprocess.run(
        [str(ROOT / ".venv/bin/flask"), "tokens", "mint", "alice"],
        cwd=ROOT,
        env=embedded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert minted.returncode == 0, minted.stderr
    assert pyjwt.decode(minted.stdout.strip(), options={"verify_signature": False})["sub"] == "alice"


# 6. /readyz reuses one check a second.


def test_a_flood_of_probes_runs_one_check_a_second(client):
    before = sample("scoreboard_readiness_checks_total")
    started = time.monotonic()
    answers = Counter(client.get("/readyz").status_code for _ in range(200))
    elapsed = time.monotonic() - started
    assert answers == {200: 200}
    assert sample("scoreboard_readiness_checks_total") - before <= elapsed + 1


# 7. A sub with a NUL (or anything no user id can be) is a malformed identity.


@pytest.mark.parametrize("sub", ["a\x00b", "has space", "x" * 65, ""])
def test_a_sub_that_is_no_user_id_is_refused_with_401(client, sub):
    token = pyjwt.encode(
        {"sub": sub, "exp": int(time.time()) + 60, "roles": []}, TEST_ENV["SCOREBOARD_JWT_SECRET_KEY"], "HS256"
    )
    for answer in (
        client.get("/api/actions", headers=bearer(token)),
        client.post("/api/action/do", json={"actionId": "abc"}, headers=bearer(token)),
    ):
        assert answer.status_code == 401
        assert answer.get_json()["error"] == {"code": "token_invalid", "message": "The token failed verification."}


# 16. Token errors say what is wrong in general, not what the parser saw.


def test_token_errors_carry_no_parser_text(client):
    answer = client.get("/api/actions", headers={"Authorization": "Bearer not.a.jwt"})
    assert answer.status_code == 401
    assert answer.get_json()["error"] == {"code": "token_invalid", "message": "The token is invalid."}


# 8. Look-alike and direction-changing display names.


@pytest.mark.parametrize("name", ["\u202eevil", "Ali\u200bce", "tab\there", "  ", "\u2066x\u2069"])
def test_hidden_and_bidi_characters_in_display_names_are_refused(app, client, service_headers, name):
    answer = client.post(
        "/api/actions/completions",
        json={"userId": "named", "action": "complete-lesson", "displayName": name},
        headers=service_headers,
    )
    assert answer.status_code == 400 and answer.get_json()["error"]["problems"][0]["field"] == "displayName"
    with app.app_context():
        assert db.session.get(User, "named") is None


def test_display_names_are_normalised(app, record):
    record("wide", displayName="\uff21\uff4c\uff49\uff43\uff45  ")  # fullwidth "Alice"
    with app.app_context():
        assert db.session.get(User, "wide").display_name == "Alice"


def test_the_cli_checks_ids_and_names_as_the_api_does(app):
    runner = app.test_cli_runner()
    for args in (["bad id"], ["ok-id", "--display-name", "\u202eevil"], ["x" * 65]):
        result = runner.invoke(args=["users", "create", *args, "--password", "pw"])
        assert result.exit_code != 0 and "Invalid value" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


# 9. A mandatory reason has visible text.


@pytest.mark.parametrize("reason", ["   ", "\u200b\u200b\u200b\u200b", "a \u200b b", "\t\n\t"])
def test_blank_reasons_are_refused(app, client, mint, record_and_claim, reason):
    record_and_claim("target")
    answer = client.post(
        "/api/admin/users/target/status",
        json={"status": "hidden", "reason": reason},
        headers=bearer(mint("mod", "admin")),
    )
    assert answer.status_code == 400 and answer.get_json()["error"]["problems"][0]["field"] == "reason"
    with app.app_context():
        assert db.session.get(User, "target").status == "active"


# 12. A 400 stays small whatever the body.


def test_a_400_lists_at_most_ten_problems(client, mint):
    body = {"actionId": "abc", **{f"k{i}": i for i in range(1000)}}  # under the 16 KiB body limit
    answer = client.post("/api/action/do", json=body, headers=bearer(mint("u")))
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and len(error["problems"]) == 10 and error["moreProblems"] == 990
    assert len(answer.data) < len(json.dumps(body)) / 10


# 13. Gunicorn's own refusals are JSON too.


def raw_request(base, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.live
def test_requests_gunicorn_refuses_get_json_answers(live_stack):
    long_line = b"GET /api/score/top?token=eyJ" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"  # one read
    huge_headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n"
    for request, status, code in ((long_line, 400, "bad_request"), (huge_headers, 431, "headers_too_large")):
        answered, headers, body = raw_request(live_stack, request)
        assert answered == status and headers["Content-Type"] == "application/json"
        assert json.loads(body)["error"]["code"] == code
        assert b"eyJ" not in body


# 14. Scores never go below zero.


def test_adjustments_and_voids_never_take_a_score_below_zero(app, client, mint, record_and_claim):
    admin = bearer(mint("mod", "admin"))
    action_id = record_and_claim("low")["actionId"]  # 50 points
    too_far = client.post("/api/admin/users/low/adjustments", json={"delta": -51, "reason": "too much"}, headers=admin)
    assert too_far.status_code == 409 and too_far.get_json()["error"]["code"] == "score_below_zero"
    down = client.post("/api/admin/users/low/adjustments", json={"delta": -50, "reason": "to zero"}, headers=admin)
    assert down.status_code == 201 and down.get_json()["newScore"] == 0
    void = client.post(f"/api/admin/completions/{action_id}/void", json={"reason": "was a bot"}, headers=admin)
    assert void.status_code == 409 and void.get_json()["error"]["code"] == "score_below_zero"
    with app.app_context():
        assert db.session.scalar(select(Score.score).where(Score.user_id == "low")) == 0
        ledger = db.session.scalars(select(Completion).where(Completion.user_id == "low")).all()
        assert sorted((c.status, c.points) for c in ledger) == [("adjustment", -50), ("claimed", 50)]


# 15. The catalog loader is strict and names every bad row; nothing is written.


@pytest.mark.parametrize(
    ("suffix", "content", "expected"),
    [
        (".json", [{"key": "a", "points": True}], ["entry 1 (a): points"]),
        (".json", [{"key": "a", "points": 10, "enabled": 1}], ["entry 1 (a): enabled"]),
        (".json", [{"key": "a", "points": 10, "cooldownSeconds": 10**12}], ["entry 1 (a): cooldownSeconds"]),
        (".csv", "key,points\na,1_000\nb,5\nc,true\n", ["entry 1 (a): points", "entry 3 (c): points"]),
        (".csv", "key,points,enabled\na,5,yes\n", ["entry 1 (a): enabled"]),
        (".json", [{"key": "a", "points": 5}, {"key": "a", "points": 6}], ["duplicate action keys: a"]),
        (".json", "{not json", ["not valid JSON"]),
    ],
)
def test_bad_catalog_rows_are_named_and_nothing_is_written(app, tmp_path, suffix, content, expected):
    path = tmp_path / f"catalog{suffix}"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with app.app_context():
        before = db.session.scalars(select(Action.key)).all()
        with pytest.raises(CatalogError) as refused:
            load_catalog(path)
        assert db.session.scalars(select(Action.key)).all() == before
    lines = str(refused.value).splitlines()
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start)


def test_a_good_csv_catalog_still_loads(app, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("key,points,enabled,maxPerUserPerDay,cooldownSeconds\nread-faq,3,true,,\nrare,40,false,2,3600\n")
    with app.app_context():
        assert load_catalog(path) == 2
        rare = db.session.get(Action, "rare")
        assert (rare.points, rare.enabled, rare.max_per_user_per_day, rare.cooldown_seconds) == (40, False, 2, 3600)
        assert db.session.get(Action, "read-faq").max_per_user_per_day is None
