"""Operations: health and readiness probes, Prometheus metrics, logs with request ids,
graceful shutdown, the worker's metrics endpoint, and the bounds on every wait (the database's
wait callback, Redis's circuit breaker, the request body's deadline). See ``docs/operations.md``."""


def configure(config: dict) -> None:
    """Adjust the settings before the extensions read them: Redis clients get the circuit breaker."""
    from . import redis_breaker

    redis_breaker.configure(config)


def init_app(app) -> None:
    """Register the probes and ``/metrics`` and the per-request hooks.

    ``/healthz`` and ``/metrics`` are exempt from rate limits (they touch no backing service);
    ``/readyz`` counts against the per-IP limit like every other endpoint.
    """
    from ..extensions import limiter
    from . import body_timeout, db_waits, health, request_log

    limiter.exempt(health.healthz)
    limiter.exempt(health.prometheus_metrics)
    app.register_blueprint(health.bp)
    request_log.init_app(app)
    db_waits.init_app(app)
    body_timeout.init_app(app)
