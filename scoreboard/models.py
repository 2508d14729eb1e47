"""Database models: users, their scores, the action catalog and the completion ledger.

PostgreSQL is the source of truth; Redis only mirrors it and can be rebuilt.
"""

import json
from datetime import UTC, date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator

from .extensions import db


def utcnow():
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp that is always UTC-aware in Python, on PostgreSQL and SQLite alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        """SQLite stores naive text: store UTC so text order is time order."""
        if value is not None and dialect.name == "sqlite":
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        """Give back aware datetimes whatever the driver returned."""
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class UserStatus:
    """A user's standing: only ``ACTIVE`` users appear on public boards; ``BANNED`` ones may not claim.

    ``HELD`` is a suspect of the anomaly detection awaiting review: off every public board like a
    hidden user, while their claims keep committing and their own view of their place is unchanged.
    """

    ACTIVE = "active"
    HIDDEN = "hidden"
    BANNED = "banned"
    HELD = "held"
    ALL = (ACTIVE, HIDDEN, BANNED, HELD)


class CompletionStatus:
    """A ledger row's state. ``ADJUSTMENT`` rows are admin corrections: no action, a signed delta, a reason."""

    PENDING = "pending"
    CLAIMED = "claimed"
    EXPIRED = "expired"
    VOID = "void"
    ADJUSTMENT = "adjustment"
    OF_ACTIONS = (PENDING, CLAIMED, EXPIRED, VOID)
    ALL = (*OF_ACTIONS, ADJUSTMENT)


class User(db.Model):
    """A player; ``id`` is the JWT ``sub`` the site's auth server issues."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(80))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE, server_default=UserStatus.ACTIVE)
    # Roles granted to local accounts at login (comma-separated: "admin", "service").
    roles: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    score: Mapped["Score"] = relationship(back_populates="user", uselist=False)

    # The admin search (scoring.moderation.search_users), PostgreSQL only (SQLite matches with LIKE): names by
    # substring through trigrams (pg_trgm); the id and name prefix indexes follow the class.
    __table_args__ = (
        Index(
            "ix_users_display_name_trgm",
            "display_name",
            postgresql_using="gin",
            postgresql_ops={"display_name": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )


# Id and name prefixes as byte-order ranges (text_pattern_ops), whatever the database's collation.
for _column in (User.id, User.display_name):
    Index(
        f"ix_users_{_column.key}_lower",
        func.lower(_column).label(f"{_column.key}_lower"),
        postgresql_ops={f"{_column.key}_lower": "text_pattern_ops"},
    ).ddl_if(dialect="postgresql")


class Score(db.Model):
    """A user's total; changed only by atomic SQL increments from the ledger."""

    __tablename__ = "scores"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    score: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # When the current score was reached: equal scores rank by who got there first.
    reached_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Bumped with every change, so the Redis mirror never applies an older state.
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The outbox: a change committed here but not yet mirrored to the board.
    board_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    user: Mapped[User] = relationship(back_populates="score")

    __table_args__ = (
        Index("ix_scores_rank", score.desc(), reached_at.asc(), user_id.desc()),
        Index(
            "ix_scores_board_pending",
            "user_id",
            postgresql_where=text("board_pending"),
            sqlite_where=text("board_pending"),
        ),
    )


class PeriodScore(db.Model):
    """A user's total inside one day, week or month (``scoreboard.periods``); kept like ``Score``.

    The board's worker adds each claim's points to the rows of its day, week and month (the claims
    flagged ``Completion.period_pending``, see ``board.refresh.fold_claims``), so each period's board
    is the sum of the points claimed (and adjusted) inside it.
    """

    __tablename__ = "period_scores"

    period: Mapped[str] = mapped_column(String(16), primary_key=True)  # day:2026-12-02, week:2026-W49, month:2026-12
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    score: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reached_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    board_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    __table_args__ = (
        Index("ix_period_scores_rank", "period", score.desc(), reached_at.asc(), user_id.desc()),
        Index("ix_period_scores_user", "user_id"),
        Index(
            "ix_period_scores_board_pending",
            "period",
            "user_id",
            postgresql_where=text("board_pending"),
            sqlite_where=text("board_pending"),
        ),
    )


class Action(db.Model):
    """One entry of the action catalog: what completing an action is worth."""

    __tablename__ = "actions"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    points: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    description: Mapped[str] = mapped_column(String(200), default="", server_default="")
    max_per_user_per_day: Mapped[int | None] = mapped_column(Integer)
    cooldown_seconds: Mapped[int | None] = mapped_column(Integer)

    def to_dict(self):
        """The public JSON shape of a catalog entry."""
        return {
            "key": self.key,
            "points": self.points,
            "enabled": self.enabled,
            "description": self.description,
            "maxPerUserPerDay": self.max_per_user_per_day,
            "cooldownSeconds": self.cooldown_seconds,
        }


class Completion(db.Model):
    """The ledger: one recorded completion, claimable once by its user through ``id``."""

    __tablename__ = "completions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the one-time actionId
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    action_key: Mapped[str | None] = mapped_column(ForeignKey("actions.key"))
    points: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(
        String(16), default=CompletionStatus.PENDING, server_default=CompletionStatus.PENDING
    )
    ref: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When an admin voided it: a claimed completion's points leave the score (and the history) then.
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    client_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    # The period outbox: set by the claim, cleared by the board's worker once it has added the points to the
    # day, week and month they were claimed in (``board.refresh.fold_claims``), in the same transaction.
    period_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    __table_args__ = (
        Index("ix_completions_user_created", "user_id", "created_at"),
        # A user's history, newest first, one index per kind of change (board.standings._events): a page reads
        # its own rows, not the whole ledger. Only the claims' is written by a claim; the others are tiny.
        Index(
            "ix_completions_user_claims",
            "user_id",
            "claimed_at",
            "id",
            postgresql_where=text("claimed_at IS NOT NULL"),
            sqlite_where=text("claimed_at IS NOT NULL"),
        ),
        Index(
            "ix_completions_user_adjustments",
            "user_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'adjustment'"),
            sqlite_where=text("status = 'adjustment'"),
        ),
        Index(
            "ix_completions_user_voids",
            "user_id",
            "voided_at",
            "id",
            postgresql_where=text("status = 'void'"),
            sqlite_where=text("status = 'void'"),
        ),
        # The anomaly scan reads the claims of its window (scoreboard.integrity).
        Index("ix_completions_claimed_at", "claimed_at"),
        Index(
            "ix_completions_period_pending",
            "claimed_at",
            postgresql_where=text("period_pending"),
            sqlite_where=text("period_pending"),
        ),
        Index(
            "ix_completions_pending_expiry",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    def to_dict(self):
        """The JSON shape answered to the service that recorded the completion."""
        return {
            "actionId": self.id,
            "userId": self.user_id,
            "action": self.action_key,
            "points": self.points,
            "status": self.status,
            "expiresAt": self.expires_at.isoformat(),
        }

    def to_ledger_dict(self):
        """The admin view of a ledger row."""
        return {
            **self.to_dict(),
            "reason": self.reason,
            "createdAt": self.created_at.isoformat(),
            "claimedAt": self.claimed_at.isoformat() if self.claimed_at else None,
            "clientIp": self.client_ip,
            "userAgent": self.user_agent,
        }


class ClaimRefusal(db.Model):
    """A refused claim (a replay, another user's id, an expired or void one): one of the anomaly scan's signals."""

    __tablename__ = "claim_refusals"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    # No foreign key: a token's user may have no row yet when its claim is refused.
    user_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(String(32))  # the refusal's error code, e.g. already_claimed
    client_ip: Mapped[str | None] = mapped_column(String(45))

    __table_args__ = (Index("ix_claim_refusals_user_at", "user_id", "at"), Index("ix_claim_refusals_at", "at"))


class SuspectStatus:
    """A suspect's review: ``HELD`` (off the boards) or ``FLAGGED`` (reported only), then ``CLEARED`` or
    ``CONFIRMED`` by an admin."""

    HELD = "held"
    FLAGGED = "flagged"
    CLEARED = "cleared"
    CONFIRMED = "confirmed"
    ALL = (HELD, FLAGGED, CLEARED, CONFIRMED)


class Suspect(db.Model):
    """A user the anomaly scan flagged: why, and what review made of it."""

    __tablename__ = "suspects"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    anomaly_score: Mapped[float] = mapped_column(Float)
    flagged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # JSON: [{"feature", "value", "typical": {"median", "p95"}}], the features that drove the flag.
    reasons: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    # JSON: every feature's value at the flag, so a cleared user is flagged again only if that changes markedly.
    features: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    # The user's status before the hold, restored when cleared.
    previous_status: Mapped[str | None] = mapped_column(String(16))
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    review_reason: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index("ix_suspects_status_flagged", "status", "flagged_at"),)


class AuditEntry(db.Model):
    """One admin act: who did what to whom, when, why and from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    actor_ip: Mapped[str | None] = mapped_column(String(45))
    act: Mapped[str] = mapped_column(String(32))
    target_user: Mapped[str | None] = mapped_column(String(64))
    target_completion: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))
    details: Mapped[str] = mapped_column(String(2000), default="{}", server_default="{}")

    # Each filter of the audit view, newest first and paged by id (scoring.moderation.audit_page).
    __table_args__ = (
        Index("ix_audit_log_target_id", "target_user", "id"),
        Index("ix_audit_log_actor_id", "actor", "id"),
        Index("ix_audit_log_act_id", "act", "id"),
    )

    def to_dict(self):
        """The JSON shape of an audit entry."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "actorIp": self.actor_ip,
            "act": self.act,
            "targetUser": self.target_user,
            "targetCompletion": self.target_completion,
            "reason": self.reason,
            "details": json.loads(self.details or "{}"),
        }


# --- analytics: rollups of the ledger kept by the worker (scoreboard.analytics) ---------------------------------

# Two partial indexes no claim ever writes to: a claimed row matches neither predicate, so the claim's
# update adds no entry to them. The analytics read the never-claimed rows by recording time, and the voided
# ones by when they were voided.
Index(
    "ix_completions_unclaimed_created",
    Completion.created_at,
    postgresql_where=text("claimed_at IS NULL"),
    sqlite_where=text("claimed_at IS NULL"),
)
Index(
    "ix_completions_voided",
    Completion.voided_at,
    postgresql_where=text("status = 'void'"),
    sqlite_where=text("status = 'void'"),
)


class AnalyticsState(db.Model):
    """The rollups' watermarks: ``claims`` (every claim and refusal before it is rolled up) and ``settled``
    (the never-claimed completions recorded before it are counted and can no longer be claimed)."""

    __tablename__ = "analytics_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class AnalyticsHour(db.Model):
    """One hour of one action: the claims made in it, and the completions recorded in it."""

    __tablename__ = "analytics_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    action_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Claims made (claimed_at) in the hour, whatever became of them later, and their points.
    claims: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    points: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Completions recorded (created_at) in the hour: claimed before the claims watermark ...
    recorded_claimed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # ... and never claimed, counted once the hour is settled ...
    recorded_unclaimed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # ... and of all those, the ones voided (before the claims watermark) after a claim, and unclaimed.
    void_claimed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    void_unclaimed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class AnalyticsDelay(db.Model):
    """The claims made in one hour by how long after their recording: a histogram (``bucket`` is its lower
    bound in seconds; the widths are in ``scoreboard.analytics.buckets``)."""

    __tablename__ = "analytics_delays"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    claims: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class AnalyticsRefusal(db.Model):
    """The refused claims of one hour, by reason."""

    __tablename__ = "analytics_refusals"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    refusals: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class AnalyticsPlayer(db.Model):
    """A user's first and last claim before the claims watermark: new players and the active ones."""

    __tablename__ = "analytics_players"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_claim_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_claim_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_analytics_players_first", "first_claim_at"),
        Index("ix_analytics_players_last", "last_claim_at"),
    )


class AnalyticsActivity(db.Model):
    """A user who claimed on a UTC day (before the claims watermark): each day's distinct claimers, exactly."""

    __tablename__ = "analytics_activity"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class AnalyticsDay(db.Model):
    """How many distinct users claimed on a UTC day (before the claims watermark)."""

    __tablename__ = "analytics_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    users: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
