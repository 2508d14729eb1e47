"""The REST API: one blueprint per resource, all JSON."""

from . import actions, auth, board, claims


def init_app(app):
    """Register every API blueprint."""
    for module in (auth, actions, claims, board):
        app.register_blueprint(module.bp)
