"""Figures of the ledger for the people who run the board: claims per hour, active and new players, what
became of the completions recorded, the time from completion to claim, actions, refused claims.

``figures`` answers ``GET /api/admin/analytics``; ``rollup`` keeps the hourly rollups it reads on PostgreSQL
(a beat job, from watermarks over the ledger's indexed timestamps); ``ledger`` computes the same figures
straight from the ledger for what the rollups do not hold yet (and for everything on SQLite); ``buckets``
is the histogram of claim delays. Each figure is defined in docs/analytics.md.
"""

from .figures import RANGES, figures

__all__ = ["RANGES", "figures"]
