"""``/api/scores``: the boards beyond the top 10 — pages, the caller's standing, chosen users, a user's history.

Each endpoint takes ``period`` (``all``, ``day``, ``week``, ``month``) and ``at`` (a day inside a past
period). The ranks are those of ``GET /api/score/top``. Pages are walked with opaque cursors, signed
so a client can only hand back what it was given: a cursor names its period (and for a history its
user), and any other cursor, or any string that is not one, is a 400 ``bad_cursor``.
"""

import re
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from itsdangerous import BadData, URLSafeSerializer

from workers.board import request_refresh

from ..board import standings
from ..board.standings import EVENT_KINDS, HistoryKey, RankingNotBuilt
from ..errors import ApiError, error_response
from ..inputs import MAX_ID_LENGTH, USER_ID_PATTERN
from ..periods import Period
from ..security.tokens import board_reader, current_roles, current_user_id, login_required
from .openapi import Reply, documented
from .schemas import (
    HistoryQuery,
    MyStanding,
    MyStandingQuery,
    ScoreHistory,
    ScoresPage,
    ScoresQuery,
    UsersQuery,
    UsersStandings,
    parse_query,
    requested_period,
)

bp = Blueprint("scores", __name__, url_prefix="/api/scores")

PAGE_SALT = "scoreboard.scores-cursor"
HISTORY_SALT = "scoreboard.history-cursor"
# A member is 19 + 17 digits, ':' and a user id; a cursor is that signed. Anything longer is no cursor of ours.
MAX_CURSOR = 1024
MAX_MEMBER = 256
USER_ID = re.compile(USER_ID_PATTERN)

PERIOD_ERRORS = {
    400: "`bad_period`: an unknown `period`, a malformed `at`, `at` with `all`, a day in the future or in a "
    "period older than those kept; `invalid_query`: a parameter out of range (`problems` names it); "
    "`bad_cursor`: a cursor this endpoint did not hand out for this period (tampered, truncated, foreign).",
    503: "`board_rebuilding`: the board's ranking is being rebuilt (Redis lost its data); retry after "
    "`Retry-After` seconds.",
}
HISTORY_ERRORS = {
    400: PERIOD_ERRORS[400],  # no 503 of its own: a history is read from the database, with no ranking to rebuild
    403: "`forbidden`: another user's history, without the `admin` role.",
    404: "`user_not_found`: no such user (answered only to those allowed to read that user's history).",
}


def answer_rebuilding(error: RankingNotBuilt) -> Response:
    """A board read while its ranking is not built: 503 ``board_rebuilding``, and the rebuild queued."""
    request_refresh()
    return error_response(
        503,
        "board_rebuilding",
        "The board is being rebuilt; retry shortly.",
        headers={"Retry-After": "1"},
        retryAfter=1,
    )


# --- cursors -------------------------------------------------------------------------------------


def cursor_serializer(salt: str) -> URLSafeSerializer:
    config = current_app.config
    # The JWT secret on HS256; on RS256 the service holds no shared secret, and the private key (when the
    # process has one) or else the public key signs. A cursor grants nothing its holder could not ask for
    # with the same query (the user is checked on every request), so signing only has to make it opaque.
    secret = config.get("JWT_SECRET_KEY") or config.get("JWT_PRIVATE_KEY") or config.get("JWT_PUBLIC_KEY")
    return URLSafeSerializer(secret, salt=salt)


def bad_cursor() -> ApiError:
    """The 400 every cursor this service did not hand out for the query gets."""
    return ApiError(400, "bad_cursor", "The cursor is not one this endpoint handed out for this query.")


def cursor_moment(at: str) -> datetime:
    """The aware timestamp a cursor carries as ISO text; a 400 ``bad_cursor`` for anything else."""
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise bad_cursor() from None
    if moment.tzinfo is None:
        raise bad_cursor()
    return moment


def load_cursor(salt: str, cursor: str) -> dict:
    """The payload of a signed cursor, a dict; a 400 ``bad_cursor`` for anything else."""
    if len(cursor) > MAX_CURSOR:
        raise bad_cursor()
    serializer = cursor_serializer(salt)
    try:
        payload = serializer.loads(cursor)
    except (BadData, UnicodeError, ValueError, TypeError):
        raise bad_cursor() from None
    # Base64 has spare bits and optional padding, so other spellings decode to the same bytes: only the
    # spelling handed out is a cursor (a changed cursor is refused, never quietly read as the original).
    if not isinstance(payload, dict) or serializer.dumps(payload) != cursor:
        raise bad_cursor()
    return payload


def page_cursor(period: Period, member: str) -> str:
    """The cursor of the page after ``member`` on ``period``'s board."""
    return cursor_serializer(PAGE_SALT).dumps({"p": period.key, "m": member})


def read_page_cursor(period: Period, cursor: str | None) -> str | None:
    """The member a page cursor resumes after; ``None`` without one."""
    if cursor is None:
        return None
    payload = load_cursor(PAGE_SALT, cursor)
    member = payload.get("m")
    if payload.get("p") != period.key or not isinstance(member, str) or not 0 < len(member) <= MAX_MEMBER:
        raise bad_cursor()
    return member


def history_cursor(period: Period, user_id: str, key: HistoryKey) -> str:
    """The cursor of the history page after the event ``key``.

    The row id it carries is a claimed, voided or adjustment row's, none of which can be claimed any more.
    """
    payload = {"p": period.key, "u": user_id, "t": key.at.isoformat(), "i": key.row_id, "k": key.kind}
    if key.before is not None:
        payload["s"] = key.before  # signed with the rest: the next page's totals start from it
    return cursor_serializer(HISTORY_SALT).dumps(payload)


def read_history_cursor(period: Period, user_id: str, cursor: str | None) -> HistoryKey | None:
    """The event a history cursor resumes after; ``None`` without one."""
    if cursor is None:
        return None
    payload = load_cursor(HISTORY_SALT, cursor)
    at, row_id, kind, total = payload.get("t"), payload.get("i"), payload.get("k"), payload.get("s")
    if (
        payload.get("p") != period.key
        or payload.get("u") != user_id
        or kind not in EVENT_KINDS
        or not isinstance(row_id, str)
        or not 0 < len(row_id) <= MAX_ID_LENGTH
        or not isinstance(at, str)
        # A cursor handed out before totals were carried has none: its page sums them instead.
        or not (total is None or (type(total) is int and abs(total) < 2**63))
    ):
        raise bad_cursor()
    return HistoryKey(cursor_moment(at), row_id, kind, total)


# --- views ---------------------------------------------------------------------------------------


def _described(period: Period, **rest: Any) -> Response:
    return jsonify({**period.to_dict(), **rest})


def _could_be_user(user_id: str) -> bool:
    return len(user_id) <= MAX_ID_LENGTH and USER_ID.fullmatch(user_id) is not None


@bp.get("")
@documented(
    "One page of a board, in rank order",
    auth="board",
    query=ScoresQuery,
    responses={
        200: Reply(
            ScoresPage,
            "The entries after the cursor (from rank 1 without one); `next` walks on. A walk while scores change "
            "never shows a user twice and never skips one whose score did not change.",
            links={"NextPage": {"operationId": "scores.page", "parameters": {"cursor": "$response.body#/next"}}},
        )
    },
    errors=PERIOD_ERRORS,
)
@board_reader
def page():
    """A page of ``period``'s board: ``limit`` entries after ``cursor``, the next page's cursor and the total."""
    query = parse_query(ScoresQuery)
    period = requested_period(query)
    after = read_page_cursor(period, query.cursor)
    found = standings.page(period, after, query.limit)
    following = page_cursor(period, found.last_member) if found.more else None
    return _described(period, entries=found.entries, next=following, total=found.total)


@bp.get("/me")
@documented(
    "The caller's rank, score and neighbours",
    auth="token",
    query=MyStandingQuery,
    responses={
        200: Reply(
            MyStanding,
            "The token's user: rank and score with the entries `radius` ranks either side; rank and score null and "
            "`around` empty when the user is not ranked (no points in the period, hidden or banned).",
        )
    },
    errors=PERIOD_ERRORS,
)
@login_required
def mine():
    """The caller's standing on the board of ``period`` and the ``radius`` entries either side."""
    query = parse_query(MyStandingQuery)
    period = requested_period(query)
    user_id = current_user_id()
    standing, near, total = standings.around(period, user_id, query.radius)
    return _described(
        period,
        userId=user_id,
        rank=standing.rank if standing else None,
        score=standing.score if standing else None,
        total=total,
        around=near,
    )


@bp.get("/users")
@documented(
    "Chosen users' standings, in rank order",
    auth="board",
    query=UsersQuery,
    responses={200: Reply(UsersStandings, "The ranked users among `ids`, in rank order; the others are left out.")},
    errors=PERIOD_ERRORS,
)
@board_reader
def of_users():
    """The entries of up to 100 users (``ids=a,b,c``) on the board of ``period``, in rank order."""
    query = parse_query(UsersQuery)
    period = requested_period(query)
    return _described(period, entries=standings.of_users(period, list(dict.fromkeys(query.ids))))


@bp.get("/<user_id>/history")
@documented(
    "A user's score changes, newest first",
    auth="token",
    query=HistoryQuery,
    responses={
        200: Reply(
            ScoreHistory,
            "Claims (+points at the claim), adjustments (their delta) and voids of claims (-points when voided), "
            "newest first; `score` is the running total (for a period, the period's score) after each.",
            links={
                "OlderPage": {
                    "operationId": "scores.history",
                    "parameters": {"user_id": "$request.path.user_id", "cursor": "$response.body#/next"},
                }
            },
        )
    },
    errors=HISTORY_ERRORS,
)
@login_required
def history(user_id):
    """A user's own history; the ``admin`` role reads anyone's. An unknown user is a 404."""
    if user_id != current_user_id() and "admin" not in current_roles():
        raise ApiError(403, "forbidden", "Only the user themselves or an admin may read this history.")
    query = parse_query(HistoryQuery)
    period = requested_period(query)
    before = read_history_cursor(period, user_id, query.cursor)
    # An id that could name no user is not looked up.
    found = standings.history(user_id, period, before, query.limit) if _could_be_user(user_id) else None
    if found is None:
        raise ApiError(404, "user_not_found", "No such user.")
    entries, last = found
    following = history_cursor(period, user_id, last) if last else None
    return _described(period, userId=user_id, entries=entries, next=following)
