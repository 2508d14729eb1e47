"""Structured logs: one JSON object a line, with the request id and the verified user id; no secrets."""

import io
import json
import logging

import pytest

from scoreboard.ops.log_format import ContextFilter, make_formatter, redact
from tests.support import bearer


@pytest.fixture
def log_lines():
    """Every record logged during the test, formatted as the service formats them; access logs on."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter("json"))
    handler.addFilter(ContextFilter())
    root, access = logging.getLogger(), logging.getLogger("scoreboard.access")
    root.addHandler(handler)
    # The migrations' fileConfig (run by the test setup) disables loggers that existed before it.
    previous = access.level, access.disabled
    access.setLevel(logging.INFO)
    access.disabled = False
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    access.level, access.disabled = previous
    root.removeHandler(handler)


@pytest.mark.unit
def test_create_app_logs_json_to_stderr():
    from scoreboard import create_app

    create_app({"TESTING": True})
    create_app({"TESTING": True})
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_scoreboard", False)]
    assert len(ours) == 1  # configured once, however many apps were built
    record = logging.LogRecord("scoreboard.test", logging.WARNING, __file__, 1, "hello %s", ("ops",), None)
    line = json.loads(ours[0].format(record))
    assert line["message"] == "hello ops" and line["level"] == "WARNING" and line["logger"] == "scoreboard.test"
    assert line["time"].endswith("+00:00")


def test_access_log_carries_request_id_and_user_id_but_no_token(client, mint, record, log_lines):
    token = mint("alice")
    action_id = record("alice")["actionId"]
    r = client.post("/api/action/do", json={"actionId": action_id}, headers={**bearer(token), "X-Request-ID": "req-7"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "req-7"
    lines = log_lines()
    access = [line for line in lines if line["logger"] == "scoreboard.access" and line.get("path") == "/api/action/do"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "req-7" and entry["user_id"] == "alice"
    assert entry["status"] == 200 and entry["method"] == "POST" and entry["duration_ms"] >= 0
    text = json.dumps(lines)
    assert token not in text and token.split(".")[2] not in text


def test_a_refused_token_is_not_logged(client, mint, log_lines):
    forged = mint("alice")[:-4] + "AAAA"
    r = client.post("/api/action/do", json={"actionId": "x"}, headers=bearer(forged))
    assert r.status_code == 401
    lines = log_lines()
    assert any(line.get("status") == 401 for line in lines)
    assert all("user_id" not in line or line["user_id"] is None for line in lines)  # never verified
    assert forged not in json.dumps(lines)


def test_login_password_never_reaches_the_log(client, app, log_lines):
    from scoreboard.extensions import db
    from scoreboard.scoring.completions import ensure_user
    from scoreboard.security.passwords import hash_password

    with app.app_context():
        ensure_user("carol")
        from scoreboard.models import User

        db.session.get(User, "carol").password_hash = hash_password("correct horse battery")
        db.session.commit()
    client.post("/api/auth/login", json={"username": "carol", "password": "wrong horse battery"})
    ok = client.post("/api/auth/login", json={"username": "carol", "password": "correct horse battery"})
    assert ok.status_code == 200
    logging.getLogger("scoreboard.test").warning("echo of a body: %s", {"password": "correct horse battery"})
    text = json.dumps(log_lines())
    assert "horse battery" not in text
    assert ok.get_json()["accessToken"] not in text


@pytest.mark.unit
def test_redaction_of_credentials_in_any_message():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    line = redact(f"Authorization: Bearer {jwt} password=hunter2 {{'password_hash': 'scrypt:1$ab'}} secret: s3cr3t")
    assert jwt not in line and "hunter2" not in line and "scrypt:1$ab" not in line and "s3cr3t" not in line
    # Ordinary words stay readable.
    assert (
        redact('{"code": "token_missing", "message": "A Bearer token is required."}')
        == '{"code": "token_missing", "message": "A Bearer token is required."}'
    )


@pytest.mark.unit
def test_an_access_line_formats_as_any_record_with_the_same_fields():
    """The JSON formatter's short path for access lines writes what its general path writes, field for field."""
    from scoreboard.ops.log_format import ACCESS_FIELDS

    fields = {
        "method": "GET",
        "path": "/api/score/top",
        "status": 200,
        "duration_ms": 0.42,
        "remote_addr": "10.0.0.1",
        "user_id": "alice",
        "request_id": "req-9",
    }
    formatter = make_formatter("json")

    def record(extra):
        made = logging.getLogger("scoreboard.access").makeRecord(
            "scoreboard.access",
            logging.INFO,
            __file__,
            1,
            "%s %s %s",
            ("GET", "/api/score/top", 200),
            None,
            extra=extra,
        )
        made.created = 1764806400.123456
        return made

    short = formatter.format(record({**fields, ACCESS_FIELDS: fields}))
    general = formatter.format(record(dict(fields)))
    assert list(json.loads(short).items()) == list(json.loads(general).items())
    assert json.loads(short)["message"] == "GET /api/score/top 200" and json.loads(short)["request_id"] == "req-9"
    # A credential in a logged path is scrubbed on the short path too.
    leaky = {**fields, "path": "/x/token=abcdefghijklmnopqrstuvwxyz"}
    assert "abcdefghij" not in formatter.format(record({**leaky, ACCESS_FIELDS: leaky}))
