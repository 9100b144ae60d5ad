"""Benchmarks of gatehouse against privacyIDEA; run with `make bench`."""
