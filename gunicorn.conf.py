"""Gunicorn settings for ``gunicorn -c gunicorn.conf.py wsgi:app``; each can be set from the environment.

Every open WebSocket holds one worker thread for its lifetime, so ``threads`` bounds
the sockets a worker holds; the relay thread and the request threads share the rest.
"""

import multiprocessing
import os


def _env(name, default):
    return os.environ.get(f"SCOREBOARD_{name}", default)


bind = _env("BIND", "127.0.0.1:5000")
workers = int(_env("WEB_WORKERS", max(2, multiprocessing.cpu_count())))
worker_class = _env("WORKER_CLASS", "gthread")
threads = int(_env("WEB_THREADS", 256))
worker_connections = int(_env("WORKER_CONNECTIONS", 10000))
# Sockets stay open indefinitely; the timeout only guards against a stuck worker.
timeout = int(_env("WEB_TIMEOUT", 60))
graceful_timeout = int(_env("GRACEFUL_TIMEOUT", 20))
keepalive = 5
accesslog = _env("ACCESS_LOG", None)
errorlog = "-"
loglevel = _env("LOG_LEVEL", "info").lower()
# No preload: each worker builds its own app, pools and relay after the fork.
preload_app = False
