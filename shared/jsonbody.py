"""Strict JSON request bodies: what the API accepts as JSON, and why it refuses the rest.

Invariant: :func:`parse_json_body` returns plain JSON values (dict, list, str, int, float,
bool, None) or raises :class:`BodyError` naming the problem; it never lets an exception of
the parser through (deep nesting, a 5,000-digit number, ``NaN``, a lone surrogate, another
encoding), so nothing in a body can become a 500. Integers too long to be any column's value
come back as :class:`OversizedNumber`, so that validation can name the field that holds one.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # nesting of objects and arrays; a request needs 4
MAX_NUMBER_CHARS = 100  # longer numbers are no column's value (numeric is checked further)
JSON_TYPES = ("application/json",)


class BodyError(ValueError):
    """The body is not acceptable JSON; ``status`` is 400, or 415 for another media type."""

    def __init__(self, message: str, status: int = 400, code: str = "malformed_json") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class OversizedNumber:
    """A JSON number with more than :data:`MAX_NUMBER_CHARS` characters, kept unparsed."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"a number of {len(self.text)} characters"


def check_media_type(content_type: str | None) -> None:
    """Accept ``application/json`` (or ``*/*+json``), optionally with ``charset=utf-8``."""
    if not content_type:
        raise BodyError("Content-Type must be application/json", 415, "unsupported_media_type")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise BodyError(f"Content-Type must be application/json, not {media!r}", 415, "unsupported_media_type")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BodyError(f"the body must be UTF-8, not {value.strip()!r}", 415, "unsupported_media_type")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BodyError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def _constant(name: str) -> Any:
    raise BodyError(f"{name} is not a JSON value")


def _integer(text: str) -> int | OversizedNumber:
    return OversizedNumber(text) if len(text) > MAX_NUMBER_CHARS else int(text)


def _number(text: str) -> float | OversizedNumber:
    return OversizedNumber(text) if len(text) > MAX_NUMBER_CHARS else float(text)


def _check(value: Any, depth: int = 1) -> None:
    if depth > MAX_DEPTH:
        raise BodyError(f"the body is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BodyError(f"the string {value[:40]!r} holds a lone surrogate (\\ud800-\\udfff)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def parse_json_body(raw: bytes) -> Any:
    """Decode a request body as strict JSON (RFC 8259: UTF-8, no BOM, unique keys, no NaN).

    Raises:
        BodyError: the body is empty, not UTF-8, not JSON, nested too deeply, has duplicate
            keys, ``NaN``/``Infinity`` or a string with a lone surrogate.
    """
    if not raw:
        raise BodyError("the request body is empty; send a JSON object", code="invalid_request")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise BodyError("the body starts with a byte order mark; send UTF-8 JSON without one")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not UTF-8 (byte {exc.start}); JSON must be UTF-8") from None
    try:
        value = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_constant, parse_int=_integer, parse_float=_number
        )
    except RecursionError:
        raise BodyError(f"the body is nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise BodyError(f"the request body is not valid JSON: {exc}") from None
    _check(value)
    return value
