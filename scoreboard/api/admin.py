"""The admin API (role ``admin``): search, ledgers, standings, activity, hide / ban, adjustments, voids,
revocations (one token, or every token of a user), audit, the anomaly scan's suspects and their review."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from redis.exceptions import RedisError

from workers.board import request_refresh

from ..board import standings
from ..board.source import top_of_everyone
from ..board.standings import RankingNotBuilt
from ..extensions import db
from ..models import CompletionStatus, UserStatus
from ..periods import ALL, KINDS, TIMED, clock, resolve
from ..scoring import moderation
from ..security.revocations import revoke_jti, revoke_user
from ..security.tokens import current_user_id, role_required
from .openapi import Reply, documented
from .schemas import (
    ACTIVITY_RANGES,
    ActivityQuery,
    AdjustBody,
    AdjustmentResult,
    AdminTopEntry,
    AuditOut,
    AuditQuery,
    ClearedSuspect,
    ClearSuspectBody,
    ConfirmedSuspect,
    ConfirmSuspectBody,
    LedgerPage,
    LedgerQuery,
    PeriodQuery,
    RevokeBody,
    RevokeResult,
    StatusBody,
    StatusResult,
    SuspectsList,
    SuspectsQuery,
    UserActivity,
    UserLedger,
    UserRevokeBody,
    UserRevokeResult,
    UserSearch,
    UserSearchQuery,
    VoidBody,
    VoidResult,
    parse_body,
    parse_query,
    requested_period,
)
from .scores import bad_cursor, cursor_moment, cursor_serializer, load_cursor

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


@bp.before_request
@role_required("admin")
def _admins_only():
    """Every admin route needs the ``admin`` role."""


def _actor():
    return current_user_id(), request.remote_addr


NOT_FOUND = {404: "`user_not_found`: no such user."}
LEDGER_SALT = "scoreboard.admin-ledger-cursor"


@bp.get("/users")
@documented(
    "Find users by id or display name",
    auth="admin",
    tags=("admin",),
    query=UserSearchQuery,
    responses={
        200: Reply(
            UserSearch,
            "The exact id first, then ids starting with `q`, then display names holding it (starting with it when "
            "`q` is 1 or 2 characters), ignoring case; each group by score, highest first, then id.",
        )
    },
    errors={400: "`invalid_query`: `q` missing, empty or over 64 characters, or `limit` not 1 to 50."},
)
def search_users():
    """Users by id or name, for the console's search box (bounded index reads, see README)."""
    query = parse_query(UserSearchQuery)
    return jsonify(users=moderation.search_users(query.q, query.limit))


def _standings(user_id: str, status: str, all_time_score: int) -> dict[str, dict[str, Any]]:
    """The user's place on the all-time board and each current period's, from the public rankings (a held
    user's as if ranked, marked ``held``)."""
    periods = {kind: resolve(kind) for kind in KINDS}
    scores = moderation.period_scores_of(user_id, [periods[kind].key for kind in TIMED])
    held = status == UserStatus.HELD
    found = {}
    rebuild = False
    for kind, period in periods.items():
        score = all_time_score if kind == ALL else scores.get(period.key, 0)
        try:
            standing, _, total = standings.around(period, user_id, 0)
        except (RankingNotBuilt, RedisError) as exc:
            # The rest of the user's page comes from the database: one board being rebuilt (or Redis being
            # down) leaves its rank unknown, not the whole page unanswered.
            rebuild = rebuild or isinstance(exc, RankingNotBuilt)
            standing, total, unknown = None, None, True
        else:
            unknown = False
        found[kind] = {
            "period": period.key,
            "rank": standing.rank if standing else None,
            "score": standing.score if standing else score,
            "total": total,
            "held": held,
            "rankUnknown": unknown,
        }
    if rebuild:
        request_refresh()
    return found


@bp.get("/users/<user_id>")
@documented(
    "A user's status, score, standings, latest ledger rows and audit",
    auth="admin",
    tags=("admin",),
    responses={200: UserLedger},
    errors=NOT_FOUND,
)
def user_ledger(user_id):
    """A user's status, score, rank on every current board, ledger and the admin acts about them."""
    user, score, rows, audits = moderation.ledger(user_id)
    total = int(score.score) if score else 0
    return jsonify(
        user={
            "userId": user.id,
            "displayName": user.display_name,
            "status": user.status,
            "createdAt": user.created_at.isoformat(),
        },
        score=total,
        standings=_standings(user.id, user.status, total),
        ledger=[row.to_ledger_dict() for row in rows],
        audit=[entry.to_dict() for entry in audits],
    )


def _ledger_cursor(user_id: str, key: tuple[datetime, str]) -> str:
    return cursor_serializer(LEDGER_SALT).dumps({"u": user_id, "t": key[0].isoformat(), "i": key[1]})


def _read_ledger_cursor(user_id: str, cursor: str | None) -> tuple[datetime, str] | None:
    """The row a ledger cursor resumes after (signed like the board's cursors); 400 ``bad_cursor`` otherwise."""
    if cursor is None:
        return None
    payload = load_cursor(LEDGER_SALT, cursor)
    at, row_id = payload.get("t"), payload.get("i")
    if payload.get("u") != user_id or not isinstance(at, str) or not isinstance(row_id, str):
        raise bad_cursor()
    return cursor_moment(at), row_id


@bp.get("/users/<user_id>/ledger")
@documented(
    "One page of a user's ledger, newest recorded first",
    auth="admin",
    tags=("admin",),
    query=LedgerQuery,
    responses={
        200: Reply(
            LedgerPage,
            "Completions and adjustments, newest recorded first; `next` walks on to older rows.",
            links={
                "OlderLedgerPage": {
                    "operationId": "admin.user_ledger_page",
                    "parameters": {"user_id": "$request.path.user_id", "cursor": "$response.body#/next"},
                }
            },
        )
    },
    errors={
        400: "`invalid_query`: `limit` not 1 to 200; `bad_cursor`: a cursor this endpoint did not hand out for "
        "this user (tampered, truncated, foreign).",
        **NOT_FOUND,
    },
)
def user_ledger_page(user_id):
    """A page of the user's ledger after ``cursor`` (a signed keyset on when the row was recorded)."""
    query = parse_query(LedgerQuery)
    after = _read_ledger_cursor(user_id, query.cursor)
    moderation.known_user(user_id)
    rows, last = moderation.ledger_page(user_id, after, query.limit)
    following = _ledger_cursor(user_id, last) if last else None
    return jsonify(entries=[row.to_ledger_dict() for row in rows], next=following)


@bp.get("/users/<user_id>/activity")
@documented(
    "A user's claims, points and refused claims per hour",
    auth="admin",
    tags=("admin",),
    query=ActivityQuery,
    responses={200: Reply(UserActivity, "Every hour of the range, oldest first, zeros included.")},
    errors={400: "`invalid_query`: `range` not `24h`, `7d` or `30d`.", **NOT_FOUND},
)
def user_activity(user_id):
    """The user's claim timeline: claims, their points and refusals per UTC hour, up to the current hour."""
    query = parse_query(ActivityQuery)
    moderation.known_user(user_id)
    now = clock().astimezone(UTC)
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=ACTIVITY_RANGES[query.range])
    points = moderation.activity(user_id, start, end, current_app.config["COMPLETION_TTL"])
    return jsonify(
        {"range": query.range, "from": start.isoformat(), "to": end.isoformat(), "bucket": "hour", "points": points}
    )


@bp.post("/users/<user_id>/tokens/revoke")
@documented(
    "Revoke every token a user holds now",
    auth="admin",
    tags=("admin",),
    body=UserRevokeBody,
    responses={
        200: Reply(
            UserRevokeResult,
            "Every token of the user issued before `revokedBefore` (the next whole second) is refused from now on, "
            "on every process within a second; tokens issued from then on work.",
        )
    },
    errors=NOT_FOUND,
)
def revoke_user_tokens(user_id):
    """Refuse every token of a user issued before now (a per-user cutoff on ``iat``), audited."""
    body = parse_body(UserRevokeBody)
    moderation.known_user(user_id)
    db.session.rollback()  # the lookup's transaction must not stay open while Redis is asked
    cutoff = revoke_user(user_id, current_app.config["REVOCATION_TTL"])
    revoked_before = datetime.fromtimestamp(cutoff, UTC)
    moderation.record_user_revocation(user_id, revoked_before, body.reason, *_actor())
    return jsonify(userId=user_id, revokedBefore=revoked_before.isoformat())


@bp.post("/users/<user_id>/status")
@documented(
    "Hide, ban or restore a user",
    auth="admin",
    tags=("admin",),
    body=StatusBody,
    responses={200: StatusResult},
    errors={404: "`user_not_found`: no such user."},
)
def set_status(user_id):
    """Hide, unhide, ban or unban a user; the public board follows."""
    body = parse_body(StatusBody)
    user = moderation.set_status(user_id, body.status, body.reason, *_actor())
    request_refresh()
    return jsonify(userId=user.id, status=user.status)


@bp.post("/users/<user_id>/adjustments")
@documented(
    "Add or remove points, with a reason",
    auth="admin",
    tags=("admin",),
    body=AdjustBody,
    responses={201: AdjustmentResult},
    errors={
        404: "`user_not_found`: no such user.",
        409: "`score_below_zero`: the adjustment would take the score below zero (nothing changed).",
    },
)
def adjust(user_id):
    """Add or remove points with a mandatory reason, as a ledger row."""
    body = parse_body(AdjustBody)
    row, new_score = moderation.adjust(user_id, body.delta, body.reason, *_actor())
    request_refresh()
    return jsonify(adjustmentId=row.id, userId=user_id, delta=body.delta, newScore=new_score), 201


@bp.post("/completions/<action_id>/void")
@documented(
    "Void a completion; a claimed one gives its points back",
    auth="admin",
    tags=("admin",),
    body=VoidBody,
    responses={200: VoidResult},
    errors={
        404: "`action_not_found`: no such completion.",
        409: "`already_void`: voided before; `score_below_zero`: giving the points back would take the score "
        "below zero (nothing changed).",
    },
)
def void(action_id):
    """Void a completion; a claimed one gives its points back."""
    body = parse_body(VoidBody)
    completion, new_score = moderation.void(action_id, body.reason, *_actor())
    request_refresh()
    return jsonify(actionId=completion.id, userId=completion.user_id, status=CompletionStatus.VOID, newScore=new_score)


@bp.post("/tokens/revoke")
@documented("Revoke a token by its jti", auth="admin", tags=("admin",), body=RevokeBody, responses={200: RevokeResult})
def revoke_token():
    """Refuse a token by its ``jti`` from now on (for as long as any token lives)."""
    body = parse_body(RevokeBody)
    ttl = current_app.config["REVOCATION_TTL"]
    revoke_jti(body.jti, ttl)
    actor, ip = _actor()
    moderation.record_audit(actor, ip, "revoke", body.reason, jti=body.jti)
    db.session.commit()
    return jsonify(jti=body.jti, revoked=True)


@bp.get("/board")
@documented(
    "The top list of every user, whatever their status",
    auth="admin",
    tags=("admin",),
    query=PeriodQuery,
    responses={
        200: Reply(
            list[AdminTopEntry], "Highest score first, hidden, banned and held users included, each with `status`."
        )
    },
    errors={
        400: "`bad_period`: an unknown `period`, a malformed `at`, `at` with `all`, a day in the future or in a "
        "period older than those kept."
    },
)
def full_board():
    """The top list of ``period`` (all time by default) including hidden, banned and held users, with their status."""
    period = requested_period(parse_query(PeriodQuery))
    size = current_app.config["BOARD_SIZE"]
    if period.kind == ALL:
        return jsonify(top_of_everyone(size))
    return jsonify(moderation.period_board_of_everyone(period.key, size))


@bp.get("/audit")
@documented(
    "The admin acts, newest first, filtered by actor, target and kind",
    auth="admin",
    tags=("admin",),
    query=AuditQuery,
    responses={
        200: Reply(
            list[AuditOut],
            "Newest first; with `before`, only acts older than that id (pass the last id seen for the next page).",
        )
    },
    errors={
        400: "`invalid_query`: an unknown `act`, `before` or `limit` not a whole number in range, an empty or "
        "over-long `actor` or `target`."
    },
)
def audit_log():
    """The admin acts, newest first: ``actor``, ``target`` and ``act`` filter exactly, ``before`` pages."""
    query = parse_query(AuditQuery)
    entries = moderation.audit_page(query.actor, query.target, query.act, query.before, query.limit)
    return jsonify([entry.to_dict() for entry in entries])


# --- the anomaly scan's suspects ------------------------------------------------------------------

REVIEW_ERRORS = {
    404: "`suspect_not_found`: the anomaly scan never flagged this user.",
    409: "`already_reviewed`: the suspect was cleared or confirmed before (`suspectStatus` says which).",
}


def _suspect_dict(suspect, display_name):
    return {
        "userId": suspect.user_id,
        "displayName": display_name,
        "anomalyScore": suspect.anomaly_score,
        "flaggedAt": suspect.flagged_at.isoformat(),
        "status": suspect.status,
        "reasons": json.loads(suspect.reasons or "[]"),
        "reviewedBy": suspect.reviewed_by,
        "reviewedAt": suspect.reviewed_at.isoformat() if suspect.reviewed_at else None,
        "reviewReason": suspect.review_reason,
    }


@bp.get("/suspects")
@documented(
    "The anomaly scan's suspects, newest first",
    auth="admin",
    tags=("admin",),
    query=SuspectsQuery,
    responses={200: Reply(SuspectsList, "The latest `limit` suspects (of `status`, if given), newest flag first.")},
    errors={400: "`invalid_query`: an unknown `status`, or `limit` not an integer from 1 to 500."},
)
def suspects():
    """The anomaly scan's suspects: held or flagged ones await review; ``?status=`` and ``?limit=`` (at most 500)."""
    query = parse_query(SuspectsQuery)
    found = moderation.suspects(query.status, query.limit)
    return jsonify(suspects=[_suspect_dict(suspect, name) for suspect, name in found])


@bp.post("/suspects/<user_id>/clear")
@documented(
    "Clear a suspect: no bot; a held user is back on the boards",
    auth="admin",
    tags=("admin",),
    body=ClearSuspectBody,
    responses={200: ClearedSuspect},
    errors=REVIEW_ERRORS,
)
def clear_suspect(user_id):
    """Clear a suspect: a held user gets the status they had before, and every board shows them again."""
    body = parse_body(ClearSuspectBody)
    suspect, user = moderation.clear_suspect(user_id, body.reason, *_actor())
    request_refresh()
    return jsonify(userId=user_id, status=suspect.status, userStatus=user.status)


@bp.post("/suspects/<user_id>/confirm")
@documented(
    "Confirm a suspect: ban the user, optionally voiding the window's claims",
    auth="admin",
    tags=("admin",),
    body=ConfirmSuspectBody,
    responses={200: ConfirmedSuspect},
    errors={
        **REVIEW_ERRORS,
        409: REVIEW_ERRORS[409] + " `score_below_zero`: voiding the window's claims would take the score below zero "
        "(an earlier adjustment took points already; nothing changed: confirm without `void`, or adjust first).",
    },
)
def confirm_suspect(user_id):
    """Confirm a suspect: ban them and, with ``void``, void their claims of the scan's window (the boards follow)."""
    body = parse_body(ConfirmSuspectBody)
    window = current_app.config["ANOMALY_WINDOW"]
    suspect, user, (voided, points, new_score) = moderation.confirm_suspect(
        user_id, body.reason, body.void, window, *_actor()
    )
    request_refresh()
    return jsonify(
        userId=user_id,
        status=suspect.status,
        userStatus=user.status,
        voided=voided,
        pointsVoided=points,
        newScore=new_score,
    )
