"""The admin API (role ``admin``): ledgers, hide / ban, adjustments, voids, revocations, audit."""

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from ..auth import current_user_id, role_required
from ..board.pipeline import request_refresh
from ..extensions import db
from ..models import AuditEntry
from ..scoring import admin as rules
from .schemas import AdjustBody, RevokeBody, StatusBody, VoidBody, parse_body

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


@bp.before_request
@role_required("admin")
def _admins_only():
    """Every admin route needs the ``admin`` role."""


def _actor():
    return current_user_id(), request.remote_addr


@bp.get("/users/<user_id>")
def user_ledger(user_id):
    """A user's status, score, ledger and the admin acts about them."""
    user, score, rows, audits = rules.ledger(user_id)
    return jsonify(
        user={"userId": user.id, "displayName": user.display_name, "status": user.status,
              "createdAt": user.created_at.isoformat()},
        score=int(score.score) if score else 0,
        ledger=[row.to_ledger_dict() for row in rows],
        audit=[entry.to_dict() for entry in audits],
    )


@bp.post("/users/<user_id>/status")
def set_status(user_id):
    """Hide, unhide, ban or unban a user; the public board follows."""
    body = parse_body(StatusBody)
    user = rules.set_status(user_id, body.status, body.reason, *_actor())
    request_refresh()
    return jsonify(userId=user.id, status=user.status)


@bp.post("/users/<user_id>/adjustments")
def adjust(user_id):
    """Add or remove points with a mandatory reason, as a ledger row."""
    body = parse_body(AdjustBody)
    row, new_score = rules.adjust(user_id, body.delta, body.reason, *_actor())
    request_refresh()
    return jsonify(adjustmentId=row.id, userId=user_id, delta=body.delta, newScore=new_score), 201


@bp.post("/completions/<action_id>/void")
def void(action_id):
    """Void a completion; a claimed one gives its points back."""
    body = parse_body(VoidBody)
    completion, new_score = rules.void(action_id, body.reason, *_actor())
    request_refresh()
    return jsonify(actionId=completion.id, userId=completion.user_id, status="void", newScore=new_score)


@bp.post("/tokens/revoke")
def revoke_token():
    """Refuse a token by its ``jti`` from now on (for as long as any token lives)."""
    body = parse_body(RevokeBody)
    ttl = current_app.config["REVOCATION_TTL"]
    current_app.extensions["scoreboard.store"].revoke_token(body.jti, ttl)
    actor, ip = _actor()
    rules.audit(actor, ip, "revoke", body.reason, jti=body.jti)
    db.session.commit()
    return jsonify(jti=body.jti, revoked=True)


@bp.get("/board")
def full_board():
    """The top list including hidden and banned users, with their status."""
    return jsonify(rules.full_board(current_app.config["BOARD_SIZE"]))


@bp.get("/audit")
def audit_log():
    """The latest admin acts, newest first (``?limit=``, at most 500)."""
    limit = min(max(request.args.get("limit", 100, type=int), 1), 500)
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)).all()
    return jsonify([entry.to_dict() for entry in entries])
