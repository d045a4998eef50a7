"""Benchmarks that time whole runs (targets live here, never in unit tests)."""
