"""Writing a simulated :class:`~.simulate.Ledger` into a bench database, in bulk (``COPY ... FROM STDIN``)."""

from __future__ import annotations

import io

import numpy as np
from sqlalchemy import Engine, text

from .simulate import KEYS, POINTS, Ledger

CHUNK = 200_000  # rows per COPY buffer: a few tens of MB of text at a time
VOID_SHARE = 0.003  # claimed completions an admin voided later


def user_id(n: int) -> str:
    """The id of simulated user ``n`` (0-based)."""
    return f"u{n + 1:07d}"


def _stamps(seconds: np.ndarray) -> np.ndarray:
    """Seconds since 1970 as PostgreSQL timestamptz text (microseconds, UTC)."""
    micros = np.round(seconds * 1e6).astype("int64").astype("datetime64[us]")
    return np.char.add(np.datetime_as_string(micros, unit="us"), "+00")


def _copy(engine: Engine, table: str, columns: list[str], values: list) -> None:
    """``COPY table (columns) FROM STDIN`` of parallel columns (strings, or None for NULL), in chunks."""
    rows = len(values[0]) if values else 0
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            for first in range(0, rows, CHUNK):
                lines = zip(*(column[first : first + CHUNK] for column in values), strict=True)
                buffer = io.StringIO("".join("\t".join(r"\N" if v is None else v for v in row) + "\n" for row in lines))
                cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
        raw.commit()
    finally:
        raw.close()


def write(engine: Engine, ledger: Ledger, ttl: float, seed: int) -> dict[str, int]:
    """Insert the ledger's users, completions (statuses as of the window's end) and refusals; returns counts.

    A completion is claimed if its claim came before the end within its time to live; pending if
    it is still claimable at the end; expired otherwise. Rows recorded after the end are left out.
    """
    rng = np.random.default_rng(seed + 10_000)
    end = ledger.end
    users = [user_id(n) for n in range(len(ledger.kinds))]
    _copy(
        engine,
        "users",
        ["id", "display_name", "status", "roles", "created_at"],
        [
            users,
            [f"Player {n + 1}" for n in range(len(users))],
            ["active"] * len(users),
            [""] * len(users),
            list(_stamps(np.full(len(users), ledger.start - 30 * 86400.0))),
        ],
    )

    c = ledger.completions()
    recorded = c["created"] < end
    c = {name: array[recorded] for name, array in c.items()}
    count = len(c["created"])
    claimed_at = c["created"] + c["delay"]
    claimed = (c["delay"] <= ttl) & (claimed_at < end)
    pending = ~claimed & (c["created"] + ttl > end)
    void = claimed & (rng.random(count) < VOID_SHARE)
    status = np.where(claimed, "claimed", np.where(pending, "pending", "expired")).astype(object)
    status[void] = "void"
    voided_at = np.minimum(claimed_at + rng.uniform(600, 7200, count), end - 1)
    action = c["action"].astype(int)
    claimed_text = np.where(claimed, _stamps(np.where(claimed, claimed_at, 0.0)), None)
    _copy(
        engine,
        "completions",
        [
            "id",
            "user_id",
            "action_key",
            "points",
            "status",
            "created_at",
            "expires_at",
            "claimed_at",
            "voided_at",
            "client_ip",
            "user_agent",
        ],
        [
            [f"sim{seed}-{i:09d}" for i in range(count)],
            [users[u] for u in c["user"].astype(int)],
            [KEYS[a] for a in action],
            [str(p) for p in POINTS[action]],
            list(status),
            list(_stamps(c["created"])),
            list(_stamps(c["created"] + ttl)),
            list(claimed_text),
            list(np.where(void, _stamps(voided_at), None)),
            [ledger.ips[i] if ok else None for i, ok in zip(c["ip"].astype(int), claimed, strict=True)],
            [ledger.agents[i] if ok else None for i, ok in zip(c["agent"].astype(int), claimed, strict=True)],
        ],
    )

    at = np.array(ledger.refusal_at, dtype=float)
    keep = np.flatnonzero(at < end)
    _copy(
        engine,
        "claim_refusals",
        ["user_id", "at", "reason", "client_ip"],
        [
            [users[ledger.refusal_user[i]] for i in keep],
            list(_stamps(at[keep])),
            [ledger.refusal_reason[i] for i in keep],
            [ledger.ips[ledger.refusal_ip[i]] for i in keep],
        ],
    )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    return {
        "users": len(users),
        "completions": count,
        "claimed": int(claimed.sum()),
        "pending": int(pending.sum()),
        "refusals": len(keep),
    }
