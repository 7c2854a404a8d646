"""File names of exports: what a request may ask for, and how a download is named.

Invariant: a stored file name matches :data:`FILENAME_PATTERN` as a whole (letters, digits,
``.``, ``_``, ``-`` and space; no path, quote, control character or line break), so the
``Content-Disposition`` of either tier can quote it as it is.
"""

from __future__ import annotations

import re

MAX_FILENAME_CHARS = 121
FILENAME_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._ -]{{0,{MAX_FILENAME_CHARS - 1}}}")
FILENAME_RULE = (
    f"1-{MAX_FILENAME_CHARS} characters of letters, digits, '.', '_', '-' or space, starting with a letter or digit"
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]")


def is_valid_filename(name: object) -> bool:
    """Whether ``name`` is a string a client may ask an export to be saved as."""
    return isinstance(name, str) and FILENAME_PATTERN.fullmatch(name) is not None


def content_disposition(filename: str, fallback: str = "export") -> str:
    """``attachment; filename="…"`` for a download, with anything outside the rule removed."""
    safe = _UNSAFE.sub("", filename).strip() or fallback
    return f'attachment; filename="{safe}"'
