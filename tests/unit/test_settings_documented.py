"""Every environment variable the code reads is in the README's settings table, and nothing else is."""

import ast
import re

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.unit

READERS = {"env", "env_bool", "env_int", "env_float"}  # config.py's helpers, which add the SCOREBOARD_ prefix
PREFIX = "SCOREBOARD_"


def variables_read() -> dict[str, str]:
    """``{variable: file}`` for every variable read by config.py's helpers or named in a string in the code."""
    found = {}
    files = [ROOT / "config.py", ROOT / "gunicorn.conf.py", ROOT / "wsgi.py", ROOT / "celery_app.py"]
    files += [*ROOT.joinpath("scoreboard").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in READERS and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    name = PREFIX + first.value
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"(SCOREBOARD_[A-Z0-9_]+|PROMETHEUS_MULTIPROC_DIR)", node.value)
            ):
                name = node.value
            if name:
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def variables_documented() -> set[str]:
    """The variables named in the first column of the README's settings table."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Environment variables", 1)[1].split("\n### ", 1)[0]
    names = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`((?:SCOREBOARD_[A-Z0-9_]+)|PROMETHEUS_MULTIPROC_DIR)`", line.split(" | ")[0]))
    return names


def test_the_reader_finds_the_settings():
    read = variables_read()
    assert {"SCOREBOARD_DATABASE_URL", "SCOREBOARD_BIND", "SCOREBOARD_WORKER_METRICS_PORT"} <= set(read)
    assert "PROMETHEUS_MULTIPROC_DIR" in read


def test_every_variable_the_code_reads_is_documented():
    undocumented = {name: file for name, file in variables_read().items() if name not in variables_documented()}
    assert undocumented == {}


def test_every_documented_variable_is_read():
    assert variables_documented() - set(variables_read()) == set()
