"""Helpers shared by the tests and the benchmark, one module per responsibility.

Invariant: test modules and ``bench/`` import helpers from here, never from a conftest or
another test module; nothing here imports pytest fixtures, so ``bench/`` can use it too.
"""
