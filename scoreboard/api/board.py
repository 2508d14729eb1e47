"""``GET /api/score/top``: the top list, highest first."""

from flask import Blueprint, current_app

from ..board.reads import current_top
from ..security.tokens import board_reader
from .openapi import Reply, documented
from .schemas import TopEntry

bp = Blueprint("board", __name__, url_prefix="/api/score")


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
    # From memory the body was serialised once, when the broadcast arrived: nothing to build per request.
    version, body = current_top()
    response = current_app.response_class(body, mimetype="application/json")
    response.headers["X-Board-Version"] = str(version)
    return response
