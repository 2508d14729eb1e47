"""The anomaly detection's benchmark: a simulated population of people and automated players, scanned."""
