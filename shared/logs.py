"""Logging of every Spillway process: one configuration, and the export a line belongs to.

Invariant: inside :func:`log_context` every log line of the process — ours, RQ's, botocore's,
gunicorn's — carries the context's fields (``export``, ``part``, ``attempt``, ``owner``,
``request_id``), because the filter that adds them sits on the root handler, which every
logger propagates to. ``SPILLWAY_LOG_FORMAT`` picks the shape of a line: ``text`` (the
fields in brackets) or ``json`` (one object a line, the fields as keys, for a log pipeline).
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from shared.settings import LOG_FORMATS, Settings

CONTEXT_FIELDS = ("request_id", "export", "part", "attempt", "owner")  # the order they are printed in
TEXT_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s%(context)s %(message)s"
JSON_FIELDS = ("levelname", "name", "process", "message")  # and "time", then the context's fields
# gunicorn logs each request after it was answered, outside the request's context: the request id
# is read back from the response header the API set (api/requests.py), with what the line is about.
ACCESS_LOGGER = "gunicorn.access"
ACCESS_FIELDS = {"request_id": "{x-request-id}o", "method": "m", "path": "U", "status": "s", "duration_us": "D"}

_context: ContextVar[Mapping[str, str]] = ContextVar("spillway_log_context", default=MappingProxyType({}))


def open_context(**fields: object) -> Token[Mapping[str, str]]:
    """Add ``fields`` (None values are skipped) to the lines that follow, until :func:`close_context`.

    For scopes that are not one block (a request, between Flask's hooks); elsewhere use
    :func:`log_context`.
    """
    merged = {**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    return _context.set(MappingProxyType(merged))


def close_context(token: Token[Mapping[str, str]]) -> None:
    """End the scope :func:`open_context` began (and any field bound inside it)."""
    _context.reset(token)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` (None values are skipped) to every log line written inside the block."""
    token = open_context(**fields)
    try:
        yield
    finally:
        close_context(token)


def bind_log_context(**fields: object) -> None:
    """Add ``fields`` to the innermost open context, once they are known (an export's owner,
    read after its job began); they leave with that context."""
    open_context(**fields)


def current_context() -> dict[str, str]:
    """The fields of the innermost :func:`log_context`."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Sets ``record.context`` (`` [export=… part=…]`` or empty, for the text format) and one
    attribute per field that is set (for the JSON format); adds a gunicorn access line's fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(_context.get())
        if record.name == ACCESS_LOGGER and isinstance(record.args, Mapping):
            atoms = record.args  # gunicorn's atoms: also the request's headers, so only these are read
            for name, atom in ACCESS_FIELDS.items():
                value = atoms.get(atom)
                if value not in (None, "-"):
                    fields.setdefault(name, str(value))
        for name, value in fields.items():
            setattr(record, name, value)
        shown = " ".join(f"{k}={fields[k]}" for k in CONTEXT_FIELDS if k in fields)
        record.context = f" [{shown}]" if shown else ""
        return True


def json_formatter() -> JsonFormatter:
    """One JSON object a line: time (UTC, ISO 8601), level, logger, process, message, context fields."""
    return JsonFormatter(
        list(JSON_FIELDS),
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        reserved_attrs=[*RESERVED_ATTRS, "context", "taskName"],
    )


def logging_config(log_format: str = "text", level: int | str = logging.INFO) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of every process: one stderr handler on the root logger
    with the context filter; gunicorn's and RQ's loggers hand their lines to it.

    Raises:
        ValueError: ``log_format`` is not one of :data:`LOG_FORMATS`.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    formatter: dict[str, Any] = {"()": json_formatter} if log_format == "json" else {"format": TEXT_FORMAT}
    handed_over = {"handlers": [], "propagate": True, "level": level}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"spillway": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "spillway",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {"gunicorn.error": dict(handed_over), ACCESS_LOGGER: dict(handed_over)},
    }


def configure_logging(settings: Settings) -> None:
    """Apply :func:`logging_config` with ``SPILLWAY_LOG_FORMAT`` and ``SPILLWAY_LOG_LEVEL``: the
    one root handler replaces any other."""
    logging.config.dictConfig(logging_config(settings.log_format, settings.log_level.upper()))
