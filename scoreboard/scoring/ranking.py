"""Ranking read straight from the database: the source of truth the board mirrors.

Order: score descending, then who reached that score first, then user id
descending (the same order Redis gives the mirror, see ``board.redis_store``).
"""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ..extensions import db
from ..models import Score, User

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment):
    """Microseconds since the epoch: an exact integer for ordering ties."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def public_entries(rows):
    """Shape ``(user_id, display_name, score)`` rows as the API's top list."""
    return [
        {"rank": rank, "userId": user_id, "displayName": name, "score": int(score)}
        for rank, (user_id, name, score) in enumerate(rows, start=1)
    ]


def top_from_db(limit):
    """The top ``limit`` visible users, served by the ``ix_scores_rank`` index."""
    rows = db.session.execute(
        select(Score.user_id, User.display_name, Score.score)
        .join(User, User.id == Score.user_id)
        .where(Score.score > 0, User.status == "active")
        .order_by(Score.score.desc(), Score.reached_at.asc(), Score.user_id.desc())
        .limit(limit)
    ).all()
    return public_entries(rows)


def display_names(user_ids):
    """Map user ids to display names in one query."""
    if not user_ids:
        return {}
    return dict(db.session.execute(select(User.id, User.display_name).where(User.id.in_(user_ids))).all())
