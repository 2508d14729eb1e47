"""The admin console at ``/admin``: one static page and its ES modules under ``static/admin/``.

The page holds no secret and no data: it signs in (a password for a token, or a pasted token) and
then does everything through the admin API with that token as a Bearer header, so the API stays
the one place its rules are enforced. The token lives in the tab's ``sessionStorage``, never in a
cookie, so no cross-site request can ride on it. The page gets the service's page headers (a
Content-Security-Policy without inline script or style) like every other page.
"""

from flask import Blueprint, Flask, Response, current_app

bp = Blueprint("console", __name__)

PAGE = "admin/index.html"


@bp.get("/admin")
def page() -> Response:
    """The admin console: sign in, then the live board, users, suspects, analytics and the audit log."""
    response = current_app.send_static_file(PAGE)
    # A new deploy's page must not be served from a stale cache alongside new modules.
    response.headers["Cache-Control"] = "no-cache"
    return response


def init_app(app: Flask) -> None:
    """Serve the console page."""
    app.register_blueprint(bp)
