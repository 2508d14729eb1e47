"""The board: a Redis (or in-process) mirror of the ranking, the cached top 10, and its broadcast."""

from flask import current_app


def get_store():
    """The process's board store, bound in ``init_app``."""
    return current_app.extensions["scoreboard.store"]


def init_app(app):
    """Bind the Redis store, or the in-process one when no Redis is configured."""
    if app.config["EMBEDDED_REDIS"]:
        from .memory_store import MemoryStore

        store = MemoryStore()
    else:
        from .redis_store import RedisStore

        store = RedisStore(app.config["REDIS_URL"], app.config["REDIS_PREFIX"])
    app.extensions["scoreboard.store"] = store
