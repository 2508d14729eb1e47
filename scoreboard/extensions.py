"""Flask extensions, created unbound here and bound to the app in ``create_app``.

The service's own per-app objects (the stores, the in-memory board and revocation copies,
the relay) live in ``app.extensions`` too; each has one accessor in the module that owns it.
"""

from celery import Celery
from flask import current_app
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Stable constraint names so Alembic migrations read the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
jwt = JWTManager()
limiter = Limiter(key_func=get_remote_address)
sock = Sock()


def celery_app(app=None) -> Celery:
    """The Celery app bound to ``app`` (default: the current Flask app) by ``celery_init_app``."""
    return (app or current_app).extensions["celery"]
