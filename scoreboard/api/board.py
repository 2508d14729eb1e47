"""``GET /api/score/top``: the top list, highest first."""

from flask import Blueprint, current_app, jsonify

from ..auth import board_reader
from ..board.pipeline import read_board
from ..live.relay import memory_relay
from ..ops import metrics
from .openapi import Reply, documented
from .schemas import TopEntry

bp = Blueprint("board", __name__, url_prefix="/api/score")


def _from_memory(app):
    """``(version, body)`` from this process's relay, or None when it cannot vouch for being current."""
    relay = memory_relay(app, "BOARD_IN_MEMORY")
    return relay.current() if relay else None


@bp.get("/top")
@documented(
    "The top list, highest first",
    auth="board",
    responses={
        200: Reply(
            list[TopEntry],
            "Highest score first; equal scores by who reached them first.",
            headers={"X-Board-Version": "The `version` of the socket message holding this list."},
            required_headers=("X-Board-Version",),
        )
    },
)
@board_reader
def top():
    """The current top list; ``X-Board-Version`` matches the socket messages' ``version``."""
    app = current_app._get_current_object()
    held = _from_memory(app)
    if held is not None:
        # The body was serialised once when the broadcast arrived: nothing to build per request.
        version, body = held
        metrics.CACHE.labels(result="memory").inc()
        response = app.response_class(body, mimetype="application/json")
    else:
        board = read_board()
        version = board["version"]
        response = jsonify(board["top"])
    response.headers["X-Board-Version"] = str(version)
    return response
