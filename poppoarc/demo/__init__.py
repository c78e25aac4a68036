"""Deterministic demo installations and a concurrent SQLite writer for tests and benchmarks."""
