"""Scoring rules on the database: the catalog, completions, claims and ranking."""
