"""Operations: health and readiness probes, Prometheus metrics, JSON logs with request ids,
graceful shutdown. See ``docs/operations.md``."""

from ..extensions import limiter
from . import health, requests


def init_app(app):
    """Register the probes and ``/metrics`` (exempt from rate limits) and the per-request hooks."""
    limiter.exempt(health.bp)
    app.register_blueprint(health.bp)
    requests.init_app(app)
