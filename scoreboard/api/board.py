"""``GET /api/score/top``: the top list, highest first."""

from flask import Blueprint, jsonify

from ..auth import board_reader
from ..board.pipeline import read_board

bp = Blueprint("board", __name__, url_prefix="/api/score")


@bp.get("/top")
@board_reader
def top():
    """The current top list; ``X-Board-Version`` matches the socket messages' ``version``."""
    board = read_board()
    response = jsonify(board["top"])
    response.headers["X-Board-Version"] = str(board["version"])
    return response
