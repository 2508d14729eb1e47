"""Operations: health and readiness probes, Prometheus metrics, logs with request ids,
graceful shutdown, the worker's metrics endpoint. See ``docs/operations.md``."""


def init_app(app) -> None:
    """Register the probes and ``/metrics`` (exempt from rate limits) and the per-request hooks."""
    from ..extensions import limiter
    from . import health, request_log

    limiter.exempt(health.bp)
    app.register_blueprint(health.bp)
    request_log.init_app(app)
