"""This process's copy of the latest broadcast board, so a read costs no round trip.

The live relay's listener feeds it each broadcast (and marks it current while subscribed);
``GET /api/score/top`` and socket snapshots read it.
"""

from __future__ import annotations

from flask import Flask, current_app

_EXTENSION = "scoreboard.local_board"


class LocalBoard:
    """The latest board: its version and its top list as a ready JSON body."""

    def __init__(self, enabled: bool = True) -> None:
        # Off under in-process tests: they reset Redis between tests, which a copy would not notice.
        self.enabled = enabled
        self.current = False  # set by the listener while subscribed and hearing every broadcast
        self._board: tuple[int, bytes] = (-1, b"")  # one tuple, swapped whole: a reader never sees halves

    @property
    def version(self) -> int:
        """The version held (-1 before the first board)."""
        return self._board[0]

    def offer(self, version: int, top_json: str) -> bool:
        """Keep this board if it is newer than the one held; returns whether it was (the listener's thread only)."""
        if version <= self._board[0]:
            return False
        self._board = (version, top_json.encode())
        return True

    def held(self) -> tuple[int, bytes] | None:
        """``(version, top list JSON bytes)``, or None when the copy may be stale (not subscribed)."""
        board = self._board
        if not (self.enabled and self.current) or board[0] < 0:
            return None
        return board


def local_board(app: Flask | None = None) -> LocalBoard:
    """The process's copy, bound in :func:`init_app`."""
    return (app or current_app).extensions[_EXTENSION]


def init_app(app: Flask) -> None:
    """Create the process's copy."""
    app.extensions[_EXTENSION] = LocalBoard(enabled=not app.testing)
