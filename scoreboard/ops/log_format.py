"""Structured logs: one JSON object a line, with the request id and the user id, secrets scrubbed."""

import logging
import re
import sys
from datetime import UTC, datetime

import orjson
from flask import g, has_request_context
from pythonjsonlogger.orjson import OrjsonFormatter

# Scrubbed from every formatted line, whatever logged it (an exception text can quote a header or
# a bound SQL parameter): JWTs, Bearer credentials, and values of password/secret/token fields.
_KEY = r"(?i)((?:[\w-]*(?:password|passwd|secret|token|ticket)[\w-]*)\\?[\"']?\s*[:=]\s*)"
SECRETS = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{16,}"), r"\1[redacted]"),
    # A quoted value, to its closing quote (spaces and all); then a bare one, to the next separator.
    (re.compile(_KEY + r"(\\?[\"'])((?:(?!\2).)*)\2"), r"\1\2[redacted]\2"),
    (re.compile(_KEY + r"(?![\\\"'\[])[^\s,;&}\\\"']+"), r"\1[redacted]"),
)


# Terminal colour codes (the development server colours its own lines): noise in a file or JSON.
# Matched raw (text lines) and as JSON writes it (\u001b).
ANSI_ESCAPES = re.compile(r"(?:\x1b|\\u001b)\[[0-9;]*[A-Za-z]")


# Every pattern above needs one of these (lower-cased) to match at all: a line holding none of them, as
# almost every access line, is returned as it is without running the four expressions (~200 us a line).
_TRIGGERS = ("eyj", "bearer", "passw", "secret", "token", "ticket", "\x1b", "\\u001b")


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[redacted]``, colour codes dropped."""
    lowered = text.lower()
    if not any(word in lowered for word in _TRIGGERS):
        return text
    text = ANSI_ESCAPES.sub("", text)
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


# The attribute of an access line's record holding its fields (``ops.request_log``), context included.
ACCESS_FIELDS = "_access_fields"


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``user_id`` inside a request, ``task_id`` inside a Celery task."""

    def filter(self, record):
        """Attach the context fields; never drops a record."""
        if ACCESS_FIELDS in record.__dict__:
            return True  # an access line brings its own
        if has_request_context():
            record.request_id = g.get("request_id")
            user_id = verified_user_id()
            if user_id is not None:
                record.user_id = user_id
        else:
            task = _current_task()
            if task is not None:
                record.task_id, record.task_name = task
        return True


def verified_user_id():
    """The ``sub`` of the request's token once it has been verified, else None."""
    from flask_jwt_extended import get_jwt_identity

    try:
        return get_jwt_identity()
    except RuntimeError:  # no verified token in this request (yet)
        return None


def _current_task():
    """``(id, name)`` of the Celery task running in this thread, if any."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    if current_task and request is not None and getattr(request, "id", None):
        return request.id, current_task.name
    return None


class Formatter(OrjsonFormatter):
    """python-json-logger's formatter (encoding with orjson, a third of the standard library's time on an access
    line), with secrets scrubbed from the finished line."""

    def format(self, record):
        """Format as JSON, then redact."""
        fields = record.__dict__.get(ACCESS_FIELDS)
        if fields is not None and not record.exc_info and not record.stack_info:
            # An access line, one a request: the same object the general path builds, without its generic walk
            # over the record's attributes (about half of the line's cost).
            line = {
                "level": record.levelname,
                "logger": record.name,
                "pid": record.process,
                "message": record.getMessage(),
                **fields,
                "time": datetime.fromtimestamp(record.created, tz=UTC),
            }
            return redact(orjson.dumps(line, default=str).decode())
        return redact(super().format(record))


class TextFormatter(logging.Formatter):
    """A plain one-line format for reading logs in a terminal, scrubbed the same way."""

    def format(self, record):
        """Format as text, then redact."""
        return redact(super().format(record))


class DevServerRequestLines(logging.Filter):
    """Drops the development server's access lines (``127.0.0.1 - - [date] "GET / HTTP/1.1" 200 -``)."""

    def filter(self, record):
        """Keep everything but request lines."""
        return record.levelno > logging.INFO or " - - [" not in record.getMessage()


def make_formatter(kind: str = "json") -> logging.Formatter:
    """The formatter for ``SCOREBOARD_LOG_FORMAT``: ``json`` (default) or ``text``."""
    if kind == "text":
        return TextFormatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s", defaults={"request_id": "-"}
        )
    return Formatter(
        "{levelname}{name}{process}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
        timestamp="time",
    )


def configure(level: str = "INFO", kind: str = "json") -> logging.Handler:
    """Send the root logger's records to stderr as JSON (or plain ``text``); idempotent.

    The app writes one line per request itself (``ops.request_log``), so the development
    server's own request lines (with terminal colours) are dropped.
    """
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, DevServerRequestLines) for f in werkzeug.filters):
        werkzeug.addFilter(DevServerRequestLines())
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_scoreboard", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._scoreboard = True
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    handler.setFormatter(make_formatter(kind))
    # No line of ours names the calling function or the thread: the logging HOWTO's "Optimization" settings
    # skip looking them up (47 -> 34 us an access line). Process names stay: Celery's own lines use them.
    logging._srcfile = None
    logging.logThreads = False
    root.setLevel(level)
    return handler
