"""Server-side prepared statements for the statements run on every claim and every recompute (PostgreSQL).

Sent as SQL text, a statement is parsed, analysed and planned by PostgreSQL each time it arrives: for the claim
statement that was 0.17 ms of planning against 0.10 ms of execution (``pg_stat_statements`` under a steady load).
Prepared once per connection (``PREPARE name AS ...``), each later run is ``EXECUTE name(...)``: nothing is parsed
again, and after five runs PostgreSQL keeps a generic plan when it costs no more than the custom ones.

Which statements a connection holds is kept in the pool's per-connection ``info`` (emptied when the pool replaces
the connection). A statement the server no longer knows (a pooler that moved the session, a ``DISCARD ALL``) or
whose cached plan a schema change made unusable is prepared again and run once more: either error happens before
anything ran. ``SCOREBOARD_DB_PREPARED_STATEMENTS=false`` sends the plain text instead, for PgBouncer in
transaction mode, which does not carry SQL-level ``PREPARE`` across the server connections it hands out.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# invalid_sql_statement_name (no such prepared statement); feature_not_supported (cached plan must not change
# result type, after a migration).
_PREPARE_AGAIN = {"26000", "0A000"}


def _numbered(sql: str) -> tuple[str, list[str]]:
    """``sql`` with its pyformat placeholders numbered ``$1``, ``$2``...; and the parameter names in that order."""
    names: list[str] = []

    def number(match: re.Match) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, sql), names


def enabled() -> bool:
    """Whether statements go prepared (``SCOREBOARD_DB_PREPARED_STATEMENTS``, on by default)."""
    return current_app.config["DB_PREPARED_STATEMENTS"]


def execute(conn: Connection, name: str, sql: str, params: dict[str, Any]) -> Any:
    """Run ``sql`` (pyformat placeholders, as SQLAlchemy compiles for psycopg2) as the prepared statement ``name``
    of this connection, preparing it first if the connection does not hold it yet; returns the result."""
    run = statements(conn, {name: sql})[name]
    try:
        return conn.exec_driver_sql(run, params)
    except DBAPIError as exc:
        code = getattr(exc.orig, "pgcode", None)
        if run == sql or code not in _PREPARE_AGAIN or exc.connection_invalidated:
            raise
        _held(conn).pop(name, None)
        if code == "0A000":  # the server still holds the statement, with a plan it can no longer use
            conn.exec_driver_sql(f"DEALLOCATE {name}")
    return conn.exec_driver_sql(statements(conn, {name: sql})[name], params)


def _held(conn: Connection) -> dict[str, str]:
    """The statements this connection holds prepared: name -> what runs it."""
    return conn.connection.info.setdefault("prepared", {})


def statements(conn: Connection, sql_by_name: dict[str, str]) -> dict[str, str]:
    """What to send for each of these statements on this connection, to be joined into one multi-statement string:
    ``EXECUTE name(...)`` (any the connection does not hold yet prepared first, together in one round trip), or
    the statement's own text when prepared statements are off.

    A statement lost on the server fails its string; the caller's connection is then replaced, and the next
    string prepares on the new one.
    """
    if not enabled():
        return sql_by_name
    held = _held(conn)
    missing = {name: _numbered(sql) for name, sql in sql_by_name.items() if name not in held}
    if missing:
        # Sent without parameters, so the driver formats nothing: a literal ``%%`` is the server's ``%``.
        conn.exec_driver_sql(
            "; ".join(f"PREPARE {name} AS " + numbered.replace("%%", "%") for name, (numbered, _) in missing.items())
        )
        for name, (_, names) in missing.items():
            held[name] = f"EXECUTE {name}(" + ", ".join(f"%({n})s" for n in names) + ")"
    return {name: held[name] for name in sql_by_name}
