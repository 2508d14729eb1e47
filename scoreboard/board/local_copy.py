"""This process's copy of the latest broadcast board of each kind, so a read costs no round trip.

The live relay's listener feeds it each broadcast (and marks it current while subscribed);
``GET /api/score/top`` and socket snapshots read it. There is one copy per board kind: the
all-time board and the current day, ISO week and month (each copy also holds the key of the
period its board belongs to, so a reader can tell a board of a period that has ended).
"""

from __future__ import annotations

from flask import Flask, current_app

from ..periods import ALL, KINDS

_EXTENSION = "scoreboard.local_board"


class LocalBoard:
    """The latest board of one kind: its version, its period's key and its top list as a ready JSON body."""

    def __init__(self, enabled: bool = True, period: str = ALL) -> None:
        # Off under in-process tests: they reset Redis between tests, which a copy would not notice.
        self.enabled = enabled
        self.period = period
        self.current = False  # set by the listener while subscribed and hearing every broadcast
        # One tuple, swapped whole: a reader never sees halves.
        self._board: tuple[int, bytes, str | None] = (-1, b"", None)

    @property
    def version(self) -> int:
        """The version held (-1 before the first board)."""
        return self._board[0]

    @property
    def key(self) -> str | None:
        """The period key of the board held (None for the all-time board, or before the first one)."""
        return self._board[2]

    def offer(self, version: int, top_json: str, key: str | None = None) -> bool:
        """Keep this board if it is newer than the one held; returns whether it was (the relay's, under its lock)."""
        if version <= self._board[0]:
            return False
        self._board = (version, top_json.encode(), key)
        return True

    def held(self, key: str | None = None) -> tuple[int, bytes] | None:
        """``(version, top list JSON bytes)``, or None when the copy may be stale.

        Stale: not subscribed, nothing held yet, or (given the current period's ``key``) a board of another period.
        """
        board = self._board
        if not (self.enabled and self.current) or board[0] < 0:
            return None
        if key is not None and board[2] != key:
            return None
        return board[0], board[1]


class LocalBoards(dict[str, LocalBoard]):
    """The process's copies, one per board kind (``"all"``, ``"day"``, ``"week"``, ``"month"``)."""

    @property
    def current(self) -> bool:
        """Whether the copies are fed by a live subscription."""
        return self[ALL].current

    @current.setter
    def current(self, value: bool) -> None:
        for board in self.values():
            board.current = value


def local_boards(app: Flask | None = None) -> LocalBoards:
    """Every copy of the process, by kind."""
    return (app or current_app).extensions[_EXTENSION]


def local_board(app: Flask | None = None, kind: str = ALL) -> LocalBoard:
    """The process's copy of one board kind (default: the all-time board), bound in :func:`init_app`."""
    return local_boards(app)[kind]


def init_app(app: Flask) -> None:
    """Create the process's copies."""
    app.extensions[_EXTENSION] = LocalBoards({kind: LocalBoard(not app.testing, kind) for kind in KINDS})
