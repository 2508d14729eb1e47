"""The socket findings of the security review (SECURITY.md, "Review findings" R1, R4, R11, R19) and the server
fixes found while testing the demo page: each against real gunicorn (or Werkzeug's dev server) processes, real
sockets and the tests' Redis.
"""

import json
import re
import socket
import threading
import time
from base64 import b64encode
from datetime import timedelta

import jwt as pyjwt
import pytest
import redis
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from scoreboard.live.guard import SocketCap
from scoreboard.security.page_headers import content_security_policy
from scoreboard.stores.socket_slots import RedisSocketSlots
from scoreboard.stores.socket_tickets import ticket_digest
from tests.conftest import PREFIX
from tests.support import (
    ROOT,
    Process,
    bearer,
    free_port,
    python_bin,
    scrape,
    scraped,
    start_web,
    wait_http,
    wait_until,
    ws_url,
)

pytestmark = pytest.mark.live

ELSEWHERE = "https://elsewhere.example"  # an origin that may not open board sockets


def ticket_for(base, token):
    """``POST /api/socket-ticket`` with ``token``; the answer's JSON."""
    answer = requests.post(f"{base}/api/socket-ticket", headers=bearer(token), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def refused(url, **kwargs):
    """The status and error code a refused handshake answered."""
    with pytest.raises(InvalidStatus) as refusal, connect(url, open_timeout=5, **kwargs):
        pass
    return refusal.value.response.status_code, json.loads(refusal.value.response.body)["error"]["code"]


def close_of(ws, timeout):
    """Read until the server closes: ``(code, reason, wall-clock time the close arrived)``."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the server did not close the socket within {timeout}s"
        try:
            ws.recv(timeout=remaining)
        except TimeoutError:
            continue
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the connection dropped without a close frame"
            return closed.rcvd.code, closed.rcvd.reason, time.time()


def expires_at(token):
    """A token's ``exp`` (read without verifying it)."""
    return pyjwt.decode(token, options={"verify_signature": False})["exp"]


def settled(base, token):
    """Read the board until the process's relay has subscribed (its first request starts it)."""

    def from_memory():
        before = scraped(scrape(f"{base}/metrics"), "scoreboard_top_cache_total", result="memory")
        assert requests.get(f"{base}/api/score/top", headers=bearer(token), timeout=10).status_code == 200
        return scraped(scrape(f"{base}/metrics"), "scoreboard_top_cache_total", result="memory") > before

    wait_until(from_memory, timeout=10, interval=0.02, message=f"the relay of {base} never subscribed")


# R1. Tokens in socket URLs: a short-lived, single-use ticket instead; none of them in clear in the access log.


def test_a_socket_ticket_opens_one_socket_once_and_needs_a_token(live_stack, mint, redis_client):
    assert requests.post(f"{live_stack}/api/socket-ticket", timeout=10).status_code == 401
    token = mint("ticketed")
    answer = ticket_for(live_stack, token)
    assert answer["expiresIn"] == 30 and len(answer["ticket"]) >= 40
    # Kept under the prefix, by its hash: no redeemable ticket in the keyspace.
    key = f"{PREFIX}socket-ticket:{ticket_digest(answer['ticket'])}"
    assert 25 <= redis_client.ttl(key) <= 30
    assert not [k for k in redis_client.scan_iter(f"{PREFIX}*") if answer["ticket"] in k]

    with connect(ws_url(live_stack, f"?ticket={answer['ticket']}"), open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
        # Spent: the same ticket opens nothing more, even while its socket is open.
        assert refused(ws_url(live_stack, f"?ticket={answer['ticket']}")) == (401, "ticket_invalid")
    assert refused(ws_url(live_stack, "?ticket=made-up")) == (401, "ticket_invalid")
    assert refused(ws_url(live_stack, "?ticket=" + "x" * 500)) == (401, "ticket_invalid")
    # Old clients: the token itself still opens a socket.
    with connect(ws_url(live_stack, f"?token={token}"), open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"


def test_two_handshakes_racing_with_one_ticket_get_one_socket(live_stack, mint):
    token = mint("racer")
    for _ in range(5):
        ticket = ticket_for(live_stack, token)["ticket"]
        gate = threading.Barrier(4)
        outcomes = []

        def handshake(ticket=ticket, gate=gate, outcomes=outcomes):
            gate.wait(10)
            try:
                with connect(ws_url(live_stack, f"?ticket={ticket}"), open_timeout=5) as ws:
                    ws.recv(timeout=5)
                    outcomes.append("open")
            except InvalidStatus as refusal:
                outcomes.append(json.loads(refusal.response.body)["error"]["code"])

        threads = [threading.Thread(target=handshake) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert sorted(outcomes) == ["open", "ticket_invalid", "ticket_invalid", "ticket_invalid"]


def test_a_ticket_lapses_and_never_outlives_its_token(live_stack, mint, redis_client):
    token = mint("brief", expires=timedelta(seconds=3))
    answer = ticket_for(live_stack, token)
    assert 1 <= answer["expiresIn"] <= 3
    key = f"{PREFIX}socket-ticket:{ticket_digest(answer['ticket'])}"
    wait_until(lambda: not redis_client.exists(key), timeout=6, message="the ticket never lapsed")
    assert refused(ws_url(live_stack, f"?ticket={answer['ticket']}")) == (401, "ticket_invalid")


def test_a_ticket_of_a_token_revoked_since_opens_nothing(live_stack, mint):
    token = mint("leaver")
    ticket = ticket_for(live_stack, token)["ticket"]
    assert requests.post(f"{live_stack}/api/auth/logout", headers=bearer(token), timeout=10).status_code == 200
    assert refused(ws_url(live_stack, f"?ticket={ticket}")) == (401, "token_revoked")


def test_the_socket_ticket_endpoint_is_limited_per_user(app, mint):
    from scoreboard import create_app

    limited = create_app({"TESTING": True, "RATELIMIT_ENABLED": True, "RATE_LIMIT_USER": "3/minute"})
    client = limited.test_client()
    statuses = [client.post("/api/socket-ticket", headers=bearer(mint("greedy"))).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    # Per user, not per address: another user from the same address still gets one.
    assert client.post("/api/socket-ticket", headers=bearer(mint("patient"))).status_code == 200


def access_log_server(stack_env, tmp_path, name):
    """A gunicorn with its access log on: ``(process, base URL, log path)``."""
    log = tmp_path / f"{name}-access.log"
    web, base = start_web({**stack_env, "SCOREBOARD_ACCESS_LOG": str(log)}, tmp_path, name=name, workers=1)
    return web, base, log


def access_lines(web, log, *paths):
    """Gunicorn's access lines, read from the file ``SCOREBOARD_ACCESS_LOG`` names, once each of ``paths`` has one."""

    def complete():
        text = log.read_text() if log.exists() else ""
        lines = "\n".join(line for line in text.splitlines() if "gunicorn.access" in line or '"GET ' in line)
        return lines if all(path in lines for path in paths) else None

    return wait_until(complete, timeout=10, message=lambda: f"access lines for {paths} never came")


def test_gunicorn_access_lines_carry_no_token_or_jwt(stack_env, tmp_path, mint):
    web, base, log = access_log_server(stack_env, tmp_path, "tokens-logged")
    try:
        token = mint("logged")
        # A socket handshake refused (here for its origin) is logged with its URL, as every answer is.
        assert refused(ws_url(base, f"?token={token}"), origin=ELSEWHERE) == (403, "origin_forbidden")
        # A JWT anywhere in the line: the query string, the Referer, the User-Agent.
        requests.get(
            f"{base}/api/score/top?token={token}&page=1",
            headers={"User-Agent": f"probe/{token}", "Referer": f"https://site.example/#{token}"},
            timeout=10,
        )
        lines = access_lines(web, log, "/ws/scoreboard", "/api/score/top")
        signature = token.rsplit(".", 1)[1]
        assert token not in lines and signature not in lines, lines
        assert lines.count("token=[redacted]") == 2 and "probe/[redacted]" in lines, lines
    finally:
        web.stop()


def test_gunicorn_access_lines_carry_no_socket_ticket(stack_env, tmp_path, mint):
    web, base, log = access_log_server(stack_env, tmp_path, "ticket-logged")
    try:
        ticket = ticket_for(base, mint("logged"))["ticket"]
        # Refused for its origin before the ticket is redeemed: the ticket in this line is still good.
        assert refused(ws_url(base, f"?ticket={ticket}"), origin=ELSEWHERE) == (403, "origin_forbidden")
        lines = access_lines(web, log, "/ws/scoreboard")
        assert ticket not in lines and "ticket=[redacted]" in lines, lines
    finally:
        web.stop()


# R4. An open socket ends with its token: at its exp, and within a second of its revocation, on every process.


def test_a_revocation_through_one_process_closes_its_sockets_on_another_within_a_second(stack_env, tmp_path, mint):
    web_a, base_a = start_web(stack_env, tmp_path, name="end-a", workers=1)
    web_b, base_b = start_web(stack_env, tmp_path, name="end-b", workers=1)
    try:
        victim, bystander = mint("victim"), mint("bystander")
        settled(base_a, bystander)
        settled(base_b, bystander)
        # On B: the victim's sockets opened each way a client can, and a bystander's.
        ticketed = connect(ws_url(base_b, f"?ticket={ticket_for(base_b, victim)['ticket']}"), open_timeout=5)
        by_query = connect(ws_url(base_b, f"?token={victim}"), open_timeout=5)
        by_header = connect(ws_url(base_b), additional_headers=bearer(victim), open_timeout=5)
        other = connect(ws_url(base_b, f"?ticket={ticket_for(base_b, bystander)['ticket']}"), open_timeout=5)
        victims = (ticketed, by_query, by_header)
        try:
            for ws in (*victims, other):
                assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
            started = time.time()
            assert requests.post(f"{base_a}/api/auth/logout", headers=bearer(victim), timeout=10).status_code == 200
            for ws in victims:
                code, reason, at = close_of(ws, timeout=3)
                assert (code, reason) == (4001, "token revoked")
                assert at - started < 1.0, at - started
            # Only the revoked token's sockets: the bystander's is still served.
            other.send(json.dumps({"type": "resync"}))
            assert json.loads(other.recv(timeout=5))["type"] == "snapshot"
        finally:
            for ws in (*victims, other):
                ws.close()
    finally:
        web_a.stop()
        web_b.stop()


def test_a_socket_closes_when_its_token_expires(live_stack, mint):
    token = mint("brief", expires=timedelta(seconds=3))
    exp = expires_at(token)
    with connect(ws_url(live_stack, f"?ticket={ticket_for(live_stack, token)['ticket']}"), open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
        code, reason, at = close_of(ws, timeout=exp - time.time() + 3)
    assert (code, reason) == (4001, "token expired")
    assert exp - 0.2 <= at <= exp + 1.0, (at, exp)


def test_a_public_board_socket_without_a_token_outlives_every_token(stack_env, tmp_path, mint, record_and_claim):
    web, base = start_web({**stack_env, "SCOREBOARD_PUBLIC_BOARD": "true"}, tmp_path, name="public", workers=1)
    try:
        token = mint("viewer")
        settled(base, token)
        with (
            connect(ws_url(base), open_timeout=5) as anonymous,
            connect(ws_url(base, f"?ticket={ticket_for(base, token)['ticket']}"), open_timeout=5) as signed_in,
        ):
            anonymous.recv(timeout=5), signed_in.recv(timeout=5)
            # On a public board a credential is still checked when given: this socket belongs to the token.
            assert refused(ws_url(base, "?ticket=made-up")) == (401, "ticket_invalid")
            assert requests.post(f"{base}/api/auth/logout", headers=bearer(token), timeout=10).status_code == 200
            assert close_of(signed_in, timeout=3)[:2] == (4001, "token revoked")
            record_and_claim("someone")  # a change the anonymous socket still receives
            update = json.loads(anonymous.recv(timeout=5))
            assert update["type"] == "update" and update["top"][0]["userId"] == "someone"
    finally:
        web.stop()


# R19. One per-IP socket cap across every process, per process while Redis is down.


def test_the_per_ip_socket_cap_is_one_count_across_processes(stack_env, tmp_path, mint):
    env = {**stack_env, "SCOREBOARD_WS_MAX_PER_IP": "3"}
    web_a, base_a = start_web(env, tmp_path, name="cap-a", workers=1)
    web_b, base_b = start_web(env, tmp_path, name="cap-b", workers=1)
    headers = bearer(mint("many-tabs"))
    opened = []
    try:
        for base in (base_a, base_a, base_b):
            opened.append(connect(ws_url(base), additional_headers=headers, open_timeout=5))
            opened[-1].recv(timeout=5)
        # The fourth socket from the address is refused whichever process it reaches.
        assert refused(ws_url(base_a), additional_headers=headers) == (429, "too_many_sockets")
        assert refused(ws_url(base_b), additional_headers=headers) == (429, "too_many_sockets")
        # Closing one (on A) frees a place (here taken on B).
        opened.pop(0).close()

        def fourth():
            try:
                ws = connect(ws_url(base_b), additional_headers=headers, open_timeout=5)
            except InvalidStatus:
                return None
            opened.append(ws)
            return ws

        wait_until(fourth, timeout=5, message="closing a socket never freed its place")
        assert json.loads(opened[-1].recv(timeout=5))["type"] == "snapshot"
        assert refused(ws_url(base_a), additional_headers=headers) == (429, "too_many_sockets")
    finally:
        for ws in opened:
            ws.close()
        web_a.stop()
        web_b.stop()


@pytest.mark.unit
def test_with_redis_unreachable_the_cap_counts_per_process():
    # A real client on a port nobody listens on: every call fails as with Redis down.
    cap = SocketCap(RedisSocketSlots(redis.Redis(port=free_port(), socket_connect_timeout=1), "p:"))
    first, second = cap.admit("10.0.0.1", 2), cap.admit("10.0.0.1", 2)
    assert first and second and cap.admit("10.0.0.1", 2) is None
    assert cap.admit("10.0.0.2", 2)  # per address
    cap.release(first)
    assert cap.admit("10.0.0.1", 2)


# R11. Security headers on the served pages.


@pytest.mark.unit
def test_pages_carry_a_strict_policy():
    from scoreboard import create_app

    page_app = create_app({"TESTING": True, "DEMO_ENABLED": True, "DEMO_ALLOW_REAL_DATABASE": True})
    page = page_app.test_client().get("/", base_url="https://scores.example")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = dict(d.strip().split(" ", 1) for d in page.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"  # nothing inline
    assert policy["connect-src"] == "'self' wss://scores.example"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in page.get_data(as_text=True) and "style=" not in page.get_data(as_text=True)
    # A Host header that is no plain host never reaches the policy.
    assert content_security_policy("http", "evil.example; script-src *").count("script-src") == 1


# Server fixes found while testing the demo page.


@pytest.fixture(scope="module")
def dev_server(app, stack_env, tmp_path_factory):
    """``flask run`` (Werkzeug's dev server, as ``make run`` serves the demo) with a public board. Yields the base."""
    port = free_port()
    env = {**stack_env, "FLASK_APP": "wsgi", "SCOREBOARD_PUBLIC_BOARD": "true", "SCOREBOARD_CELERY_EAGER": "true"}
    argv = [python_bin(), "-m", "flask", "run", "--host", "127.0.0.1", "--port", str(port), "--with-threads"]
    server = Process("dev-server-wire", argv, env, tmp_path_factory.mktemp("dev-server-wire"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/api/actions", proc=server.proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"the dev server failed to start:\n{server.output()}") from None
    yield base
    server.stop()


def masked_text_frame(payload: bytes) -> bytes:
    """A client's (masked) text frame, short payloads only."""
    mask = b"\x01\x02\x03\x04"
    return bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frames_after_handshake(wire: bytes):
    """``(opcode, payload)`` of each server frame after the 101 answer, and any bytes that are no frame."""
    head, _, data = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    frames = []
    while len(data) >= 2 and data[1] & 0x7F < 126 and len(data) >= 2 + (data[1] & 0x7F):
        size = data[1] & 0x7F
        frames.append((data[0] & 0x0F, data[2 : 2 + size]))
        data = data[2 + size :]
        if frames[-1][0] == 0x8:
            break
    return frames, data


def test_on_the_dev_server_nothing_follows_the_close_frame(dev_server):
    port = int(dev_server.rsplit(":", 1)[1])
    key = b64encode(b"sixteen byte key").decode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(
            (
                f"GET /ws/scoreboard HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        wire = b""
        while b'"snapshot"' not in wire:
            wire += raw.recv(65536)
        raw.sendall(masked_text_frame(b"not a resync"))  # the server closes with 1003
        while True:  # everything the server writes, until it shuts its side
            chunk = raw.recv(65536)
            if not chunk:
                break
            wire += chunk
    frames, after = frames_after_handshake(wire)
    assert [opcode for opcode, _ in frames] == [0x1, 0x8]
    assert int.from_bytes(frames[1][1][:2], "big") == 1003
    assert after == b"", f"bytes after the close frame: {after[:80]!r}"


def test_retry_after_rounds_up_so_a_retry_is_never_early(app, mint):
    from scoreboard import create_app

    limited = create_app({"TESTING": True, "RATELIMIT_ENABLED": True, "RATE_LIMIT_USER": "1/minute"})
    client = limited.test_client()
    for user in ("r1", "r2", "r3", "r4"):
        headers = bearer(mint(user))
        assert client.post("/api/socket-ticket", headers=headers).status_code == 200
        refusal = client.post("/api/socket-ticket", headers=headers)
        answered = time.time()
        assert refusal.status_code == 429
        wait = int(refusal.headers["Retry-After"])
        # Retrying after Retry-After seconds must not be early: the window resets by then.
        assert answered + wait >= float(refusal.headers["X-RateLimit-Reset"]), (wait, refusal.headers)
        assert re.fullmatch(r"[1-9][0-9]*", refusal.headers["Retry-After"])


@pytest.mark.unit
def test_the_nginx_example_logs_no_query_string():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    nginx = guide.split("## nginx", 1)[1].split("```nginx", 1)[1].split("```", 1)[0]
    log_format = re.search(r"log_format scoreboard (.*?);", nginx, re.S).group(1)
    # $request, $request_uri, $args and $query_string would each log a ?token= or ?ticket=; so would a Referer.
    for variable in ("$request ", '$request"', "$request_uri", "$args", "$query_string", "$http_referer"):
        assert variable not in log_format, variable
    assert "$uri" in log_format
    assert re.search(r"^\s*access_log \S+ scoreboard;", nginx, re.M)


@pytest.mark.unit
def test_the_document_describes_tickets_and_the_sockets_close_codes(offline_app):
    document = offline_app.test_client().get("/api/openapi.json").get_json()
    issue = document["paths"]["/api/socket-ticket"]["post"]
    assert issue["security"] == [{"bearerAuth": []}] and {"200", "401", "429", "503"} <= set(issue["responses"])
    answer = document["components"]["schemas"]["SocketTicket"]
    assert set(answer["required"]) == {"ticket", "expiresIn"} and answer["properties"]["expiresIn"]["maximum"] == 30
    board = document["x-websockets"]["/ws/scoreboard"]
    parameters = {p["name"]: p for p in board["parameters"]}
    assert parameters["ticket"]["in"] == "query" and parameters["token"]["deprecated"] is True
    assert "token revoked" in board["closeCodes"]["4001"] and "token expired" in board["closeCodes"]["4001"]
    assert {"1001", "1003", "1008", "1009", "4001"} <= set(board["closeCodes"])
