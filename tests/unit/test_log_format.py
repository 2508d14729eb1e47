"""Log lines in both formats: colour codes from the development server never reach a line."""

import json
import logging

import pytest

from scoreboard.ops.log_format import ANSI_ESCAPES, SECRETS, DevServerRequestLines, make_formatter, redact

pytestmark = pytest.mark.unit


def record(message: str, level: int = logging.INFO, name: str = "werkzeug") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_colour_codes_are_dropped_in_text_and_json():
    coloured = "\x1b[31m\x1b[1mWARNING: This is a development server.\x1b[0m"
    text = make_formatter("text").format(record(coloured))
    assert "\x1b" not in text and text.endswith("WARNING: This is a development server.")
    line = make_formatter("json").format(record(coloured))
    assert "u001b" not in line and json.loads(line)["message"] == "WARNING: This is a development server."


def test_the_dev_server_request_lines_are_dropped_but_its_banner_kept():
    keep = DevServerRequestLines()
    assert not keep.filter(record('127.0.0.1 - - [01/Dec/2026 22:12:51] "GET / HTTP/1.1" 200 -'))
    assert keep.filter(record(" * Running on http://127.0.0.1:5000"))
    assert keep.filter(record('127.0.0.1 - - [01/Dec/2026] "GET / HTTP/1.1" 500 -', level=logging.ERROR))


@pytest.mark.parametrize(
    "line",
    [
        'msg "password": "two words" and passwd=abc',
        "Authorization: bearer abcdefghijklmnopqrstuvwxyz",
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl",
        "client_secret=s3cr3t; ticket: 'abc def'",
        '{"message": "\\u001b[31mred\\u001b[0m"} \x1b[1mbold\x1b[0m',
        "GET /api/score/top 200 in 1.2 ms",
    ],
)
def test_the_quick_path_changes_nothing_the_expressions_would_catch(line):
    """The trigger words only skip work: every line is scrubbed exactly as the expressions alone would."""
    slow = ANSI_ESCAPES.sub("", line)
    for pattern, replacement in SECRETS:
        slow = pattern.sub(replacement, slow)
    assert redact(line) == slow
