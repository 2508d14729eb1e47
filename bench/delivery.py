"""Claim -> socket delivery: which broadcast first carried each claim, and when each sampled socket got it."""

from bisect import bisect_left
from typing import Any


def delivery(claims: dict[str, Any], sockets: dict[str, Any]) -> tuple[list[float], list[float], int, int]:
    """Claim -> socket latencies (s) for every successful claim and every sampled socket.

    The first broadcast that carries a claim is the first whose board shows the
    claiming user at (at least) the score the claim answered; a socket received
    the claim with the first message of that version or later. Returns the
    latencies from each claim's due time, the same from its answer, the claims
    no broadcast carried, and the (claim, socket) pairs the socket never received.
    """
    per_user = {}
    for _t, version, scores in sorted(claims["broadcasts"], key=lambda b: b[1]):
        for user, score in scores.items():
            versions, values = per_user.setdefault(user, ([], []))
            if not values or score >= values[-1]:
                versions.append(version)
                values.append(score)
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
