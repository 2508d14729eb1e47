"""``WS /ws/scoreboard[?period=day|week|month]``: a snapshot on connect, then a message each time the top list changes.

Without ``period`` (or with ``period=all``) the board is the all-time one; otherwise the current
day's, ISO week's or month's (its messages carry ``period`` and the period's ``key``; at the
period's end the next one's board follows, empty until somebody scores in it).

A socket opened with a token (or a ticket standing for one) belongs to that token: it is closed
with 4001 ``token expired`` at the token's ``exp``, and with 4001 ``token revoked`` as soon as the
relay hears of its revocation. A socket opened without one (a public board) never is. Such a
socket may also send ``{"type": "watch"}`` to get ``me`` messages, its viewer's own standing on
its board (``live.standings``); a socket without a viewer that asks is told
``{"type": "error", "code": "sign_in_required"}`` and stays open.
"""

import json
import logging
import socket
import time

from flask import Blueprint, Flask, current_app, g, request
from simple_websocket import ConnectionClosed, Server

from ..board.reads import current_board
from ..extensions import db, sock
from ..ops.request_log import long_lived
from ..periods import ALL
from ..security.revocations import is_refused
from ..stores.board_cache import board_message
from .guard import CLOSE_TOKEN_ENDED, ClientPolicy, PolicyViolation, check_handshake, release_slot
from .relay import get_relay

log = logging.getLogger(__name__)

bp = Blueprint("live", __name__)

# After the server closes a socket, how long to wait for the client's close reply before letting go.
CLOSE_REPLY_WAIT = 1.0


# Told to a socket without a viewer that asks for its standing; the socket stays open.
SIGN_IN_REQUIRED = json.dumps(
    {
        "type": "error",
        "code": "sign_in_required",
        "message": "Open the socket with a token or ticket to watch your standing.",
    }
)


def snapshot_message(period: str = ALL) -> tuple[str, int]:
    """The current board of ``period`` as a ``snapshot`` message, and its version."""
    board = current_board(period, counted=False)
    top_json = board.top_json.decode() if isinstance(board.top_json, bytes) else board.top_json
    return board_message("snapshot", board.version, top_json, period=period, key=board.key), board.version


@bp.before_request
def _no_compression():
    """Refuse permessage-deflate: a compressor per socket costs hundreds of KiB, and frames are shared."""
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


bp.before_request(check_handshake)
bp.teardown_request(release_slot)


def close_socket(ws: Server, code: int, reason: str) -> None:
    """Close with ``code`` and wait (briefly) for the client's reply, so the connection ends cleanly."""
    try:
        ws.close(reason=code, message=reason)
    except ConnectionClosed:
        return
    ws.thread.join(CLOSE_REPLY_WAIT)  # simple-websocket's reader ends once the reply has come


@sock.route("/ws/scoreboard", bp=bp)
@long_lived
def scoreboard_socket(ws: Server) -> None:
    """Relay board broadcasts to one browser until it goes away, or its token ends."""
    app = current_app._get_current_object()
    relay = get_relay(app)
    relay.start()
    holder = g.get("socket_holder")
    period = g.get("socket_period", ALL)
    subscriber = relay.subscribe(ws, app.config["WS_SEND_TIMEOUT"], holder, period)
    peer = request.remote_addr
    policy = ClientPolicy(app.config["WS_MAX_CLIENT_MESSAGES"])
    try:
        if holder is not None and is_refused(holder.claims()):
            # Revoked between the handshake and the subscription, too early for the relay's index to see it.
            subscriber.end(CLOSE_TOKEN_ENDED, "token revoked")
        else:
            message, version = snapshot_message(period)
            # A socket lives for hours: it must not hold a database connection meanwhile.
            db.session.remove()
            subscriber.send_text(message, version)
        idle = app.config["WS_IDLE_WAKE"]
        while ws.connected:
            # Checked after the last receive(), which clears the event: an ending set since then has set it
            # again, so the wait below returns at once and a revocation never waits for the idle wake.
            ending = subscriber.ending
            if ending is None and holder is not None and time.time() >= holder.expires_at:
                ending = (CLOSE_TOKEN_ENDED, "token expired")
            if ending is not None:
                log.info("socket of %s closed: %s", holder.user_id if holder else peer, ending[1])
                close_socket(ws, *ending)
                break
            wait = idle if holder is None else min(idle, max(0.0, holder.expires_at - time.time()))
            # Woken by a frame the relay could not write at once, by the client, by its leaving, by the
            # relay ending the socket (a revocation), or by the token's expiry.
            ws.event.wait(wait)
            incoming = ws.receive(timeout=0)  # reading also notices a close
            while incoming is not None:
                asked = policy.judge(incoming)
                if asked == "resync":
                    subscriber.send_text(*snapshot_message(period))
                    db.session.remove()
                elif holder is None:  # "watch": a standing is somebody's, and this socket is nobody's
                    subscriber.send_text(SIGN_IN_REQUIRED)
                else:
                    relay.standings.watch(subscriber)
                incoming = ws.receive(timeout=0)
            subscriber.flush()
    except PolicyViolation as violation:
        log.info("socket from %s closed: %s", peer, violation.reason)
        ws.close(reason=violation.code, message=violation.reason)
    except ConnectionClosed as closed:
        log.info("socket closed by %s (%s)", peer, getattr(closed, "reason", ""))
    except TimeoutError:
        log.info("socket to %s dropped: a send took over %ss", peer, app.config["WS_SEND_TIMEOUT"])
    finally:
        relay.unsubscribe(subscriber)
        if ws.mode == "werkzeug":
            # flask-sock answers an empty 200 once this returns, and Werkzeug's dev server writes it after the
            # close frame, where a browser reads it as a broken frame ("Invalid frame header"). Nothing may follow
            # the close frame: shut the sending side, so that write fails quietly instead.
            try:
                ws.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        log.info("socket dropped for %s; %d open", peer, relay.socket_count)


def init_app(app: Flask) -> None:
    """Register the socket blueprint."""
    app.register_blueprint(bp)
