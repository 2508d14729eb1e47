"""What the mirror holds for one user."""

from dataclasses import dataclass

# Ties rank by who reached the score first. Redis orders equal scores by member,
# so members start with this base minus the time reached: earlier sorts higher.
INVERTED_TIME_BASE = 10**17 - 1


@dataclass(frozen=True, slots=True)
class RankEntry:
    """One user's mirrored state; ``version`` only grows, so older states never overwrite newer."""

    user_id: str
    score: int
    reached_us: int
    version: int
    visible: bool

    @property
    def member(self):
        """The sorted-set member: ``<inverted time>:<user id>``."""
        return f"{INVERTED_TIME_BASE - self.reached_us:017d}:{self.user_id}"


def board_message(kind, version, top_json, changed_at=None):
    """The wire form of a board message; ``top_json`` is already serialised, so it is never parsed again.

    The Lua in ``redis_store`` builds the same shape for broadcasts.
    """
    changed = "" if changed_at is None else f',"changedAt":{int(changed_at)}'
    return f'{{"type":"{kind}","version":{int(version)},"top":{top_json}{changed}}}'


def user_of(member):
    """The user id inside a sorted-set member."""
    return member.split(":", 1)[1]
