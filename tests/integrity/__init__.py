"""Tests of the anomaly detection's features and model (scoreboard.integrity)."""
