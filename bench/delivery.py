"""Claim -> socket delivery: which broadcast first carried each claim, and when each sampled socket got it."""

from bisect import bisect_left
from typing import Any


def _scores_by_version(claims: dict[str, Any]) -> dict[str, tuple[list[int], list[int]]]:
    """Each user's ``(versions, scores)`` over the broadcasts, by version, keeping each score rise (both ascending)."""
    per_user: dict[str, tuple[list[int], list[int]]] = {}
    for _t, version, scores in sorted(claims["broadcasts"], key=lambda b: b[1]):
        for user, score in scores.items():
            versions, values = per_user.setdefault(user, ([], []))
            if not values or score >= values[-1]:
                versions.append(version)
                values.append(score)
    return per_user


def delivery(claims: dict[str, Any], sockets: dict[str, Any]) -> tuple[list[float], list[float], int, int]:
    """Claim -> socket latencies (s) for every successful claim and every sampled socket.

    The first broadcast that carries a claim is the first whose board shows the
    claiming user at (at least) the score the claim answered; a socket received
    the claim with the first message of that version or later. Returns the
    latencies from each claim's due time, the same from its answer, the claims
    no broadcast carried, and the (claim, socket) pairs the socket never received.
    """
    per_user = _scores_by_version(claims)
    carried = []
    undelivered = 0
    for due, done, status, user, score in claims["claims"]:
        if status != 200:
            continue
        versions, values = per_user.get(user, ([], []))
        i = bisect_left(values, score)
        if i == len(values):
            undelivered += 1
        else:
            carried.append((due, done, versions[i]))
    latencies, after_answer = [], []
    missed = 0
    for times, versions in sockets["sample"]:
        for due, done, version in carried:
            j = bisect_left(versions, version)
            if j == len(versions):
                missed += 1
            else:
                latencies.append(times[j] - due)
                after_answer.append(times[j] - done)
    return latencies, after_answer, undelivered, missed


def stages(claims: dict[str, Any], sockets: dict[str, Any]) -> dict[str, list[float]]:
    """Where each claim's delivery time goes (s), for every successful claim and every sampled socket.

    ``claim``: from due to answered (queueing and the request); ``recompute``: from the answer to the
    first broadcast carrying it, as the claim driver heard it on Redis (the worker's wait, recompute and
    publish); ``fan_out``: from that broadcast to the socket's receipt (the relay: its hold, its
    fan-out and the socket client's own read).
    """
    first_heard = {}
    for heard, version, _scores in claims["broadcasts"]:
        first_heard[version] = min(heard, first_heard.get(version, heard))
    per_user = _scores_by_version(claims)
    out: dict[str, list[float]] = {"claim": [], "recompute": [], "fan_out": []}
    carried = []
    for due, done, status, user, score in claims["claims"]:
        if status != 200:
            continue
        versions, values = per_user.get(user, ([], []))
        i = bisect_left(values, score)
        if i < len(values):
            carried.append((due, done, versions[i]))
            out["claim"].append(done - due)
            out["recompute"].append(first_heard[versions[i]] - done)
    for times, versions in sockets["sample"]:
        for _due, _done, version in carried:
            j = bisect_left(versions, version)
            if j < len(versions):
                out["fan_out"].append(times[j] - first_heard[version])
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.delivery OUT_DIR [LABEL...]``: each run's stages (p50/p99 ms) from its raw records."""
    import json
    import sys
    from pathlib import Path

    from .samplers import pct

    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0])
    labels = args[1:] or sorted(p.stem.removeprefix("claims-") for p in out_dir.glob("claims-*.json"))
    for label in labels:
        claims = json.loads((out_dir / f"claims-{label}.json").read_text())
        sockets = json.loads((out_dir / f"sockets-{label}.json").read_text())
        parts = stages(claims, sockets)
        print(
            label,
            "  ".join(
                f"{name} p50 {pct(v, 50) * 1000:.0f} p99 {pct(v, 99) * 1000:.0f} ms" for name, v in parts.items()
            ),
        )


if __name__ == "__main__":
    main()
