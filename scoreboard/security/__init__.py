"""Who may do what: token checks and roles, revoked tokens, socket tickets, local passwords, rate-limit keys,
and the security headers of the pages served."""

from flask import Flask

from . import page_headers, revocations, tokens


def init_app(app: Flask) -> None:
    """Install the token checks, the process's revocation copy and the page headers."""
    tokens.init_app(app)
    revocations.init_app(app)
    page_headers.init_app(app)
