"""Anomaly detection: per-user features of the completion ledger and an Isolation Forest over them."""
