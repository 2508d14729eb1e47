"""The live scoreboard service: a Flask app factory.

Parts, in the order a claim flows through them: ``api`` (REST) -> ``scoring`` (the database
write) -> the outbox -> ``workers`` (Celery) -> ``board`` (mirror and top list, in ``stores``)
-> pub/sub -> ``live`` (the socket relay). ``security``, ``stores`` and ``ops`` serve them
all; see docs/architecture.md.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import config as settings
from config import RefusedConfiguration

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask

log = logging.getLogger(__name__)


def create_app(config: dict | None = None) -> Flask:
    """Build the app; ``config`` overrides settings read from the environment."""
    # The parts are imported here, not at the top: gunicorn's master imports ``scoreboard.ops`` modules
    # for its log format and metrics hooks, and must not load the app before gevent patches the workers.
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from . import api, board, cli, console, demo, errors, ops, security, stores
    from .api.openapi import Reply, documented
    from .bodies import OrjsonProvider
    from .extensions import db, jwt, limiter, migrate, sock
    from .live import relay as live_relay
    from .live import socket as live_socket
    from .ops import log_format
    from .security import rate_limits

    app = Flask(__name__, instance_relative_config=False)
    app.json = OrjsonProvider(app)
    app.config.update(settings.load())
    if config:
        app.config.update(config)
    log_format.configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    _check_settings(app)
    ops.configure(app.config)  # before the extensions read it: the Redis clients' circuit breaker

    hops = int(app.config["PROXY_HOPS"])
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.config["MIGRATIONS_DIR"]))
    jwt.init_app(app)
    rate_limits.install(app)  # the limiter's strategy, before it is built
    limiter.init_app(app)
    sock.init_app(app)
    if app.config["EMBEDDED_DATABASE"]:
        Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        with app.app_context():
            _tune_sqlite(db.engine)

    for part in (errors, stores, security, ops, board, api, live_relay, live_socket, cli, demo, console):
        part.init_app(app)
    # The console imports nothing of the API (everything it does goes through it over HTTP), so its
    # page's entry in the OpenAPI document is declared here, where both are in reach.
    documented(
        "The admin console",
        auth="public",
        tags=("console",),
        responses={200: Reply(str, "The console page; its data comes from the admin API.", media_type="text/html")},
    )(console.page)
    celery_init_app(app)
    return app


def create_app_for_process() -> Flask:
    """``create_app`` for an entry point (wsgi, celery_app): refused settings end the process with one line."""
    try:
        return create_app()
    except RefusedConfiguration as exc:
        print(f"scoreboard: {exc}", file=sys.stderr)
        raise SystemExit(4) from None  # gunicorn's "app failed to load": the master stops instead of respawning


_warned: set[str] = set()


def _check_settings(app: Flask) -> None:
    """Refuse insecure settings unless this is the embedded demo under ``flask`` (``make run``) or a test.

    The development JWT secret is published in this repository: a server that accepts it accepts
    anyone's tokens. Under gunicorn (or any server but ``flask run``) it is refused even on SQLite.
    """
    config = app.config
    problems = settings.insecure_settings(config)
    local = config["EMBEDDED_DATABASE"] and (os.environ.get("FLASK_RUN_FROM_CLI") == "true" or config["TESTING"])
    if problems and not local:
        raise RefusedConfiguration("refusing to start: " + "; ".join(problems))
    if config["DEMO_ENABLED"] and not config["EMBEDDED_DATABASE"] and _once(settings.DEMO_ON_DATABASE):
        log.critical("%s (allowed by SCOREBOARD_DEMO_ALLOW_REAL_DATABASE)", settings.DEMO_ON_DATABASE)
    for problem in problems:
        if _once(problem):
            log.warning("insecure setting (tolerated by flask run on the embedded database): %s", problem)


def _once(message: str) -> bool:
    """True the first time this process sees ``message``."""
    if message in _warned:
        return False
    _warned.add(message)
    return True


def _tune_sqlite(engine) -> None:
    """SQLite in WAL mode, with write transactions that take the lock up front (no upgrade deadlocks)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def celery_init_app(app: Flask) -> Celery:
    """Bind a Celery app whose tasks run inside this Flask app's context."""
    from celery import Celery, Task
    from flask import has_app_context

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            # Called inside an app context (eagerly, or directly): run in that app. Another app made in
            # the same process (tests do) becomes Celery's default, and its tasks must not drag its config in.
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(app.config["CELERY"])
    celery.set_default()
    celery.flask_app = app
    app.extensions["celery"] = celery
    import workers  # registers the tasks with this Celery app

    celery.conf.beat_schedule = workers.beat_schedule(app.config)
    celery.conf.task_routes = workers.task_routes(app.config)

    return celery
