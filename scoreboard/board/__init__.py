"""The board: the ranking mirrored from the database, the top list recomputed from it, and its reads."""

from flask import Flask

from . import local_copy


def init_app(app: Flask) -> None:
    """Create the process's in-memory copy of the board (kept current by the live relay's listener)."""
    local_copy.init_app(app)
