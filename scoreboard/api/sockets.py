"""``POST /api/socket-ticket``: trade the caller's token for a short-lived, single-use socket ticket.

The widget opens ``/ws/scoreboard?ticket=<ticket>`` with it, so no long-lived token ever sits in
a socket URL (and so in an access log); see ``security.socket_tickets``.
"""

from flask import Blueprint, jsonify
from flask_jwt_extended import get_jwt

from ..extensions import limiter
from ..security.rate_limits import user_key, user_limit
from ..security.socket_tickets import TICKET_SECONDS, issue_ticket
from ..security.tokens import login_required
from .openapi import Reply, documented
from .schemas import SocketTicket

bp = Blueprint("sockets", __name__, url_prefix="/api")


@bp.post("/socket-ticket")
@documented(
    "Trade the caller's token for a socket ticket",
    auth="token",
    responses={
        200: Reply(
            SocketTicket,
            f"A ticket for one `/ws/scoreboard?ticket=` handshake within `expiresIn` seconds ({TICKET_SECONDS} at "
            "most, never past the token's own expiry). The socket it opens belongs to this token: it closes with "
            "4001 when the token expires or is revoked.",
        )
    },
)
@login_required
@limiter.limit(user_limit, key_func=user_key)
def socket_ticket():
    """A ticket that opens one board socket for the caller, once, within seconds."""
    ticket, expires_in = issue_ticket(get_jwt())
    return jsonify(ticket=ticket, expiresIn=expires_in)
