"""The histogram of recorded -> claimed delays: buckets whose width grows with the delay.

A bucket is named by its lower bound in whole seconds. Widths: 1 s below a minute, 10 s below ten
minutes, 1 min below an hour, 10 min below a day, 1 h beyond. A median read from the histogram is the
midpoint of the bucket holding the middle claim (of the two middle ones, averaged), so it is within half a
bucket's width of the exact median: 0.5 s, 5 s, 30 s, 5 min, 30 min.
"""

import math

from sqlalchemy import Integer, case, cast, func
from sqlalchemy.sql.elements import ColumnElement

# (below this many seconds, the width of the buckets), in order; the last width applies beyond.
BANDS: tuple[tuple[float, int], ...] = ((60, 1), (600, 10), (3600, 60), (86400, 600), (math.inf, 3600))


def width(bucket: int) -> int:
    """The width in seconds of the bucket whose lower bound is ``bucket``."""
    return next(w for upper, w in BANDS if bucket < upper)


def bucket_of(seconds: float) -> int:
    """The bucket of a delay (a negative one, from clock skew between hosts, counts as 0)."""
    seconds = max(seconds, 0.0)
    w = next(w for upper, w in BANDS if seconds < upper)
    return int(seconds // w) * w


def bucket_sql(seconds: ColumnElement, dialect: str) -> ColumnElement:
    """:func:`bucket_of` as a SQL expression over a delay in seconds."""

    def floor_to(width_: int) -> ColumnElement:
        scaled = seconds / width_
        # SQLite's CAST truncates (the delay is positive here); PostgreSQL's rounds, so floor first.
        whole = cast(scaled, Integer) if dialect == "sqlite" else cast(func.floor(scaled), Integer)
        return whole * width_

    whens = [(seconds < 1, 0)]
    whens += [(seconds < upper, floor_to(w)) for upper, w in BANDS if upper != math.inf]
    return case(*whens, else_=floor_to(BANDS[-1][1]))


def median(histogram: dict[int, int]) -> float | None:
    """The median delay read from a histogram ``{bucket: claims}``: None without claims."""
    total = sum(histogram.values())
    if total == 0:
        return None
    ordered = sorted((b, n) for b, n in histogram.items() if n)

    def midpoint_of(rank: int) -> float:
        """The midpoint of the bucket holding the ``rank``-th smallest delay (1-based)."""
        seen = 0
        for bucket, count in ordered:
            seen += count
            if seen >= rank:
                return bucket + width(bucket) / 2
        raise AssertionError("rank beyond the histogram")

    if total % 2:
        return midpoint_of((total + 1) // 2)
    return (midpoint_of(total // 2) + midpoint_of(total // 2 + 1)) / 2
