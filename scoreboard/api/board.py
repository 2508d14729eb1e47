"""``GET /api/score/top``: the top list, highest first (all time, or a day, week or month)."""

from flask import Blueprint, current_app, jsonify, request

from ..board import standings
from ..board.reads import current_top
from ..periods import ALL, Period, clock, period_at
from ..security.tokens import board_reader
from ..stores import get_stores
from .openapi import Reply, documented
from .schemas import PeriodQuery, TopEntry, parse_query, requested_period

bp = Blueprint("board", __name__, url_prefix="/api/score")


@bp.get("/top")
@documented(
    "The top list, highest first",
    auth="board",
    query=PeriodQuery,
    responses={
        200: Reply(
            list[TopEntry],
            "Highest score first; equal scores by who reached them first.",
            headers={
                "X-Board-Version": "The `version` of the socket message holding this list (for a past period, 0)."
            },
            required_headers=("X-Board-Version",),
        )
    },
    errors={
        400: "`bad_period`: an unknown `period`, a malformed `at`, `at` with `all`, a day in the future or in a "
        "period older than those kept.",
        503: "`board_rebuilding`: the period's ranking is being rebuilt; retry after `Retry-After` seconds.",
    },
)
@board_reader
def top():
    """The current top list; ``X-Board-Version`` matches the socket messages' ``version``."""
    # Checked on the raw query string, so the all-time read below parses nothing.
    if request.query_string:
        period = requested_period(parse_query(PeriodQuery))
        if period.kind != ALL:
            return _period_top(period)
    # From memory the body was serialised once, when the broadcast arrived: nothing to build per request.
    version, body = current_top()
    response = current_app.response_class(body, mimetype="application/json")
    response.headers["X-Board-Version"] = str(version)
    return response


def _period_top(period: Period):
    """A day's, week's or month's top list from its ranking; the version is its broadcasts' while it runs."""
    response = jsonify(standings.top(period, current_app.config["BOARD_SIZE"]))
    version = 0
    if period.key == period_at(period.kind, clock()).key:
        version = get_stores().board_cache_for(period.kind).version()
    response.headers["X-Board-Version"] = str(version)
    return response
