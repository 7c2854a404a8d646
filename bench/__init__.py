"""Benchmarks (not part of the tests): ``make bench``."""
