"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` (and ``FLASK_APP=wsgi`` for ``flask`` commands)."""

from scoreboard import create_app_for_process

app = create_app_for_process()
