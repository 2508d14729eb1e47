"""The outbox: a score change committed with a flag the board's sweep picks up.

Every write to a user's score or standing goes through :func:`score_change`, so the row's
``version`` grows (the mirror never applies an older state) and ``board_pending`` stays set
until the board has mirrored it (``board.refresh.sync_pending`` clears it).
"""

from typing import Any

from ..models import Score

scores = Score.__table__


def score_change(**values: Any) -> dict[str, Any]:
    """SET values for an UPDATE of ``scores``: ``values`` plus the marker the board mirrors from."""
    return {**values, "version": scores.c.version + 1, "board_pending": True}
