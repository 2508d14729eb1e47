"""The admin API (role ``admin``): ledgers, hide / ban, adjustments, voids, revocations, audit, the anomaly
scan's suspects and their review."""

import json

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from workers.board import request_refresh

from ..board.source import top_of_everyone
from ..extensions import db
from ..models import AuditEntry, CompletionStatus
from ..scoring import moderation
from ..security.revocations import revoke_jti
from ..security.tokens import current_user_id, role_required
from .openapi import Reply, documented
from .schemas import (
    AdjustBody,
    AdjustmentResult,
    AdminTopEntry,
    AuditOut,
    AuditQuery,
    ClearedSuspect,
    ClearSuspectBody,
    ConfirmedSuspect,
    ConfirmSuspectBody,
    RevokeBody,
    RevokeResult,
    StatusBody,
    StatusResult,
    SuspectsList,
    SuspectsQuery,
    UserLedger,
    VoidBody,
    VoidResult,
    parse_body,
    parse_query,
)

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


@bp.before_request
@role_required("admin")
def _admins_only():
    """Every admin route needs the ``admin`` role."""


def _actor():
    return current_user_id(), request.remote_addr


@bp.get("/users/<user_id>")
@documented(
    "A user's status, score, ledger and audit",
    auth="admin",
    tags=("admin",),
    responses={200: UserLedger},
    errors={404: "`user_not_found`: no such user."},
)
def user_ledger(user_id):
    """A user's status, score, ledger and the admin acts about them."""
    user, score, rows, audits = moderation.ledger(user_id)
    return jsonify(
        user={
            "userId": user.id,
            "displayName": user.display_name,
            "status": user.status,
            "createdAt": user.created_at.isoformat(),
        },
        score=int(score.score) if score else 0,
        ledger=[row.to_ledger_dict() for row in rows],
        audit=[entry.to_dict() for entry in audits],
    )


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
    responses={200: Reply(list[AdminTopEntry], "Highest score first, hidden and banned users included.")},
)
def full_board():
    """The top list including hidden and banned users, with their status."""
    return jsonify(top_of_everyone(current_app.config["BOARD_SIZE"]))


@bp.get("/audit")
@documented(
    "The latest admin acts, newest first",
    auth="admin",
    tags=("admin",),
    query=AuditQuery,
    responses={200: list[AuditOut]},
)
def audit_log():
    """The latest admin acts, newest first (``?limit=``, at most 500)."""
    limit = min(max(request.args.get("limit", 100, type=int), 1), 500)
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)).all()
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
