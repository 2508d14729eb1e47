"""Who may do what: token checks and roles, revoked tokens, local passwords, rate-limit keys."""

from flask import Flask

from . import revocations, tokens


def init_app(app: Flask) -> None:
    """Install the token checks and the process's revocation copy."""
    tokens.init_app(app)
    revocations.init_app(app)
