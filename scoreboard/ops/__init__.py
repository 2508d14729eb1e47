"""Operations: health and readiness probes, Prometheus metrics, logs with request ids,
graceful shutdown, the worker's metrics endpoint. See ``docs/operations.md``."""


def init_app(app) -> None:
    """Register the probes and ``/metrics`` and the per-request hooks.

    ``/healthz`` and ``/metrics`` are exempt from rate limits (they touch no backing service);
    ``/readyz`` counts against the per-IP limit like every other endpoint.
    """
    from ..extensions import limiter
    from . import health, request_log

    limiter.exempt(health.healthz)
    limiter.exempt(health.prometheus_metrics)
    app.register_blueprint(health.bp)
    request_log.init_app(app)
