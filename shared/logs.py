"""Logging of every Spillway process: one setup, and the export a line belongs to.

Invariant: inside :func:`log_context` every log line of the process — ours, RQ's, botocore's
— carries the context's fields (``export``, ``part``, ``attempt``), because the filter that
adds them sits on the root handler, which every logger propagates to.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

CONTEXT_FIELDS = ("export", "part", "attempt")  # the order they are printed in
TEXT_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s%(context)s %(message)s"

_context: ContextVar[Mapping[str, str]] = ContextVar("spillway_log_context", default=MappingProxyType({}))


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` (None values are skipped) to every log line written inside the block."""
    merged = {**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _context.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """The fields of the innermost :func:`log_context`."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Sets ``record.context`` (`` [export=… part=… attempt=…]`` or empty) and one attribute per field."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        for name in CONTEXT_FIELDS:
            setattr(record, name, ctx.get(name))
        shown = " ".join(f"{k}={ctx[k]}" for k in CONTEXT_FIELDS if k in ctx)
        record.context = f" [{shown}]" if shown else ""
        return True


def configure_logging(level: int | str = logging.INFO) -> None:
    """One handler on the root logger, to stderr, with the context filter; replaces any other."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
