"""The live scoreboard service: a Flask app factory."""

import logging
from pathlib import Path

from celery import Celery, Task
from flask import Flask, has_app_context
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, insecure_settings

from . import api, auth, board, cli, demo, errors, ops
from .extensions import db, jwt, limiter, migrate, sock
from .live import socket as live_socket
from .ops import logging as ops_logging


def create_app(config=None):
    """Build the app; ``config`` overrides settings read from the environment."""
    app = Flask(__name__, instance_relative_config=False)
    app.config.from_object(Config())
    if config:
        app.config.update(config)
    ops_logging.configure(app.config["LOG_LEVEL"])

    problems = insecure_settings(app.config)
    if problems and not app.config["EMBEDDED_DATABASE"]:
        raise RuntimeError("refusing to start: " + "; ".join(problems))
    for problem in problems:
        logging.getLogger(__name__).warning("insecure setting (tolerated in embedded mode): %s", problem)

    if app.config["EMBEDDED_DATABASE"]:
        Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    hops = int(app.config.get("PROXY_HOPS", 0))
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.config["MIGRATIONS_DIR"]))
    jwt.init_app(app)
    limiter.init_app(app)
    sock.init_app(app)
    with app.app_context():
        if app.config["EMBEDDED_DATABASE"]:
            _tune_sqlite(db.engine)

    errors.init_app(app)
    auth.init_app(app)
    ops.init_app(app)
    board.init_app(app)
    api.init_app(app)
    live_socket.init_app(app)
    cli.init_app(app)
    celery_init_app(app)
    demo.init_app(app)

    return app


def _tune_sqlite(engine):
    """SQLite in WAL mode, with write transactions that take the lock up front (no upgrade deadlocks)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def celery_init_app(app):
    """Bind a Celery app whose tasks run inside this Flask app's context."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            # Called inside an app context (eagerly, or directly): run in that app. Another app made in
            # the same process (tests do) becomes Celery's default, and its tasks must not drag its config in.
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    import workers  # noqa: F401  (registers the tasks with this Celery app)

    return celery_app
