"""Security headers on every page the service serves (the demo page; any HTML page added later gets them too).

One ``after_request`` hook, app-wide, sets them on every HTML (or SVG) answer, so a new page needs
no code of its own to be covered:

- ``Content-Security-Policy``: scripts, styles, images and fonts only from the service's own origin,
  no inline script or style (neither ``<script>`` bodies nor ``style=""`` attributes), no plugins
  (``object-src 'none'``), no ``<base>`` (``base-uri 'none'``), forms posting only here, and
  connections only to this origin and its own socket origin (``ws:``/``wss:`` of the same host).
  The widget's styles are constructed style sheets, which the policy does not govern.
- ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``: no page may be framed (clickjacking).
- ``Referrer-Policy: no-referrer``: a page's URL never leaves in a ``Referer`` header.

A page that really needs more (an inline script allowed by its hash, say) passes the extra
sources to :func:`content_security_policy` and sets the header itself; the hook leaves a header
that is already set alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from flask import Flask, Response, request

# Answers that are documents a browser renders (and could run scripts in).
PAGE_TYPES = frozenset({"text/html", "image/svg+xml"})
# A Host header is the client's to write: it goes into the policy only if it is a plain host[:port].
_PLAIN_HOST = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$")


def socket_origin(scheme: str, host: str) -> str | None:
    """The WebSocket origin of a page served at ``scheme://host`` (``ws://host`` or ``wss://host``)."""
    if not _PLAIN_HOST.fullmatch(host):
        return None
    return f"{'wss' if scheme == 'https' else 'ws'}://{host}"


def content_security_policy(scheme: str, host: str, extra: Mapping[str, str] | None = None) -> str:
    """The policy of a page served at ``scheme://host``; ``extra`` adds sources to a directive (e.g. a hash)."""
    origin = socket_origin(scheme, host)
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self'",
        "font-src": "'self'",
        "connect-src": "'self'" + (f" {origin}" if origin else ""),
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    for name, sources in (extra or {}).items():
        directives[name] = f"{directives[name]} {sources}" if name in directives else sources
    return "; ".join(f"{name} {sources}" for name, sources in directives.items())


PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def page_headers(response: Response) -> Response:
    """Add the page headers to an HTML or SVG answer (leaving any the view set itself)."""
    if response.mimetype in PAGE_TYPES:
        if "Content-Security-Policy" not in response.headers:
            response.headers["Content-Security-Policy"] = content_security_policy(request.scheme, request.host)
        for name, value in PAGE_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Set the page headers on every page the app serves."""
    app.after_request(page_headers)
