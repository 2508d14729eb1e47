"""``WS /ws/scoreboard``: a snapshot on connect, then a message each time the top list changes."""

import logging

from flask import Blueprint, Flask, current_app, request
from simple_websocket import ConnectionClosed

from ..board.reads import current_top
from ..extensions import db, sock
from ..ops.request_log import long_lived
from ..stores.board_cache import board_message
from .guard import ClientPolicy, PolicyViolation, check_handshake, socket_counter
from .relay import get_relay

log = logging.getLogger(__name__)

bp = Blueprint("live", __name__)


def snapshot_message() -> tuple[str, int]:
    """The current board as a ``snapshot`` message, and its version."""
    version, top_json = current_top(counted=False)
    if isinstance(top_json, bytes):
        top_json = top_json.decode()
    return board_message("snapshot", version, top_json), version


@bp.before_request
def _no_compression():
    """Refuse permessage-deflate: a compressor per socket costs hundreds of KiB, and frames are shared."""
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


bp.before_request(check_handshake)


@sock.route("/ws/scoreboard", bp=bp)
@long_lived
def scoreboard_socket(ws) -> None:
    """Relay board broadcasts to one browser until it goes away."""
    app = current_app._get_current_object()
    relay = get_relay(app)
    relay.start()
    subscriber = relay.subscribe(ws, app.config["WS_SEND_TIMEOUT"])
    peer = request.remote_addr
    sockets = socket_counter(app)
    sockets.opened(peer)
    policy = ClientPolicy(app.config["WS_MAX_CLIENT_MESSAGES"])
    try:
        message, version = snapshot_message()
        # A socket lives for hours: it must not hold a database connection meanwhile.
        db.session.remove()
        subscriber.send_text(message, version)
        idle = app.config["WS_IDLE_WAKE"]
        while ws.connected:
            # Woken by a frame the relay could not write at once, by the client, or by its leaving.
            ws.event.wait(idle)
            incoming = ws.receive(timeout=0)  # reading also notices a close
            while incoming is not None:
                if policy.judge(incoming) == "resync":
                    subscriber.send_text(*snapshot_message())
                    db.session.remove()
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
        sockets.closed(peer)
        relay.unsubscribe(subscriber)
        log.info("socket dropped for %s; %d open", peer, relay.socket_count)


def init_app(app: Flask) -> None:
    """Register the socket blueprint."""
    app.register_blueprint(bp)
