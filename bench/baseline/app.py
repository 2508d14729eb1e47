"""The baseline app: Flask, SQLAlchemy on psycopg2 and flask-sock, the scoreboard's endpoints' shape.

``gunicorn -c bench/baseline/gunicorn_conf.py bench.baseline.app:app``. The design the project's
brief describes before any of the scoreboard's machinery: a claim is one transaction (the
completion marked claimed, the user's score raised, the top 10 recomputed with ``ORDER BY ...
LIMIT 10``), and its request then publishes that board, synchronously, on a Redis channel every
web process listens to and writes to each of its sockets in turn. ``GET /api/score/top`` runs the
same query. Tokens are the scoreboard's (HS256, the same secret), checked with PyJWT. No rate
limits, no request log lines, no metrics: those are costs the scoreboard pays and this does not.

Settings (environment): ``BASELINE_DATABASE_URL``, ``BASELINE_REDIS_URL``, ``BASELINE_CHANNEL``,
``BASELINE_JWT_SECRET`` (``bench.baseline.setup`` sets them all).
"""

import json
import os
import threading
import time

import jwt
import redis
from flask import Flask, jsonify, request
from flask_sock import Sock
from sqlalchemy import create_engine, text

TOP = text(
    "SELECT id, display_name, score FROM baseline_users WHERE score > 0 ORDER BY score DESC, reached_at LIMIT 10"
)
CLAIM = text(
    "UPDATE baseline_completions SET status = 'claimed', claimed_at = now() "
    "WHERE id = :id AND user_id = :uid AND status = 'pending' AND expires_at > now() RETURNING points"
)
RAISE = text("UPDATE baseline_users SET score = score + :points, reached_at = now() WHERE id = :uid RETURNING score")
VERSION = text("SELECT nextval('baseline_board_version')")

app = Flask(__name__)
sock = Sock(app)
engine = create_engine(
    os.environ.get("BASELINE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/scoreboard_bench_baseline"),
    pool_size=int(os.environ.get("BASELINE_DB_POOL_SIZE", "8")),
    max_overflow=0,
)
store = redis.Redis.from_url(os.environ.get("BASELINE_REDIS_URL", "redis://127.0.0.1:6379/14"))
CHANNEL = os.environ.get("BASELINE_CHANNEL", "baseline:board")
# No default: without the secret every token is refused.
SECRET = os.environ.get("BASELINE_JWT_SECRET", "")
# Every board this process publishes starts with its pid, so its relay skips it.
ORIGIN = f'{{"origin": {os.getpid()}, '
sockets: set = set()
sockets_lock = threading.Lock()


def user_of(header: str | None) -> str | None:
    """The ``sub`` of a valid access token in ``Authorization: Bearer``, or None."""
    if not header or not header.startswith("Bearer "):
        return None
    try:
        claims = jwt.decode(header[7:], SECRET, algorithms=["HS256"], leeway=10, options={"verify_aud": False})
    except jwt.PyJWTError:
        return None
    return claims.get("sub") if claims.get("type") == "access" else None


def board(conn, version: int) -> dict:
    """The top 10 as the scoreboard's answer has it."""
    rows = conn.execute(TOP).all()
    top = [{"rank": i + 1, "userId": r[0], "name": r[1], "score": r[2]} for i, r in enumerate(rows)]
    return {"version": version, "top": top}


@app.get("/healthz")
def healthz():
    """Liveness."""
    return jsonify(status="ok")


@app.get("/api/score/top")
def top():
    """The top 10, queried from the database on every read."""
    if user_of(request.headers.get("Authorization")) is None:
        return jsonify(error="unauthorized"), 401
    with engine.connect() as conn:
        return jsonify(board(conn, 0))


@app.post("/api/action/do")
def do_action():
    """Claim a completion: update the database, recompute the top 10, broadcast it, then answer."""
    uid = user_of(request.headers.get("Authorization"))
    if uid is None:
        return jsonify(error="unauthorized"), 401
    body = request.get_json(silent=True) or {}
    action_id = body.get("actionId")
    if not isinstance(action_id, str):
        return jsonify(error="bad_request"), 400
    with engine.begin() as conn:
        points = conn.scalar(CLAIM, {"id": action_id, "uid": uid})
        if points is None:
            return jsonify(error="not_found"), 404
        score = conn.scalar(RAISE, {"points": points, "uid": uid})
        payload = board(conn, conn.scalar(VERSION))
    # This process's sockets get the board from this request; the other processes' through the channel.
    frame = ORIGIN + json.dumps(payload)[1:]
    send_all(frame)
    store.publish(CHANNEL, frame)
    return jsonify(success=True, newScore=score)


@sock.route("/ws/scoreboard")
def scoreboard_socket(ws):
    """Send the current board, then every broadcast, until the client goes."""
    with engine.connect() as conn:
        ws.send(json.dumps(board(conn, 0)))
    with sockets_lock:
        sockets.add(ws)
    try:
        while ws.receive() is not None:
            pass
    finally:
        with sockets_lock:
            sockets.discard(ws)


def send_all(frame: str) -> None:
    """Write ``frame`` to each of this process's sockets, one after another."""
    with sockets_lock:
        targets = list(sockets)
    for ws in targets:
        try:
            ws.send(frame)
        except Exception:  # a socket that went away: no more frames for it
            with sockets_lock:
                sockets.discard(ws)


def relay() -> None:
    """Write every board another process published to this process's sockets (resubscribing if Redis drops it)."""
    while True:
        try:
            pubsub = store.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(CHANNEL)
            for message in pubsub.listen():
                frame = message["data"].decode()
                if not frame.startswith(ORIGIN):
                    send_all(frame)
        except redis.RedisError:
            time.sleep(0.5)


def start_relay() -> None:
    """Start this process's relay (gunicorn's ``post_worker_init``: one per web worker, after the fork)."""
    threading.Thread(target=relay, daemon=True).start()
