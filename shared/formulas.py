"""Formula neutralisation (OWASP "CSV injection", ASVS 5.0 V1.2.10), the rule in one place.

The rule: a text cell is written with a leading ``'`` (so a spreadsheet shows it as text
instead of running it) when

1. its first character is TAB or CR (OWASP's list), or
2. after any leading characters of :data:`IGNORABLE` — whitespace, control and invisible
   characters that a spreadsheet may skip or trim (space, NBSP, U+3000, LF, VT, FF, ESC, the
   zero-width space, the BOM, bidi marks, …) — the first character is one of
   :data:`TRIGGERS`: ``=`` ``+`` ``-`` ``@`` ``|`` (DDE) or a full-width or small-form
   look-alike of one of them (``＝ ＋ － ＠ ｜ ﹦ ﹢ ﹣ ﹫``, and the minus sign ``−``);

unless the whole cell is strictly a number (``-1``, ``+3.5``, ``-2.5e3``): those stay as
they are, so negative numbers stored as text survive. Numbers, booleans, dates and JSON are
never altered (only text-like columns are neutralised). PostgreSQL applies the rule in the
SELECT list (:func:`shared.query.select_list` builds it from :func:`sql_condition`);
:func:`needs_quote` is the same rule in Python, for tests and for formats rendered here.
"""

from __future__ import annotations

import re

TRIGGERS = "=+-@|\uff1d\uff0b\uff0d\uff20\uff5c\ufe66\ufe62\ufe63\ufe6b\u2212"
ALWAYS_FIRST = "\t\r"  # OWASP: a cell starting with either is neutralised, whatever follows
# Leading characters a spreadsheet may skip before it looks for a formula, as code point ranges.
IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x01, 0x20),  # C0 controls (TAB, LF, VT, FF, CR, ESC, …) and space; NUL cannot be in text
    (0x7F, 0x7F),  # DEL
    (0x85, 0x85),  # NEL
    (0xA0, 0xA0),  # no-break space
    (0xAD, 0xAD),  # soft hyphen
    (0x1680, 0x1680),  # ogham space mark
    (0x180E, 0x180E),  # Mongolian vowel separator
    (0x2000, 0x200F),  # en quad … hair space, zero-width space/non-joiner/joiner, LRM, RLM
    (0x2028, 0x202F),  # line/paragraph separators, bidi embeddings, narrow no-break space
    (0x205F, 0x206F),  # medium mathematical space, word joiner, invisible operators, bidi isolates
    (0x3000, 0x3000),  # ideographic space
    (0xFEFF, 0xFEFF),  # zero-width no-break space (BOM)
)
STRICT_NUMBER = r"^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?$"
QUOTE = "'"


def _ranges_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"\\u{lo:04x}" if lo == hi else f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in ranges)


def _chars_class(chars: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in chars)


# One regular expression for PostgreSQL (ARE) and Python alike: \uXXXX escapes mean the same in both.
DANGER = f"^([{_chars_class(ALWAYS_FIRST)}]|[{_ranges_class(IGNORABLE_RANGES)}]*[{_chars_class(TRIGGERS)}])"
_DANGER = re.compile(DANGER)
_NUMBER = re.compile(STRICT_NUMBER)


def first_codes() -> list[int]:
    """Every code point a cell that needs the quote can start with: a cheap first filter."""
    codes = {ord(c) for c in TRIGGERS + ALWAYS_FIRST}
    for lo, hi in IGNORABLE_RANGES:
        codes.update(range(lo, hi + 1))
    return sorted(codes)


def needs_quote(text: str) -> bool:
    """Whether a text cell gets the leading quote under the rule above."""
    return bool(_DANGER.match(text)) and not _NUMBER.match(text)


def neutralize(text: str) -> str:
    """The cell as written: ``text`` with the leading quote when :func:`needs_quote`."""
    return QUOTE + text if needs_quote(text) else text
