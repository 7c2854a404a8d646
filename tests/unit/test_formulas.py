"""The formula-neutralisation rule on every payload class: what gets the quote, what stays."""

from __future__ import annotations

import pytest

from shared.formulas import IGNORABLE_RANGES, TRIGGERS, needs_quote, neutralize
from tests.support.payloads import DANGEROUS, HARMLESS


@pytest.mark.parametrize("text", DANGEROUS)
def test_dangerous_cells_get_the_quote(text):
    assert needs_quote(text)
    assert neutralize(text) == "'" + text


@pytest.mark.parametrize("text", HARMLESS)
def test_harmless_cells_and_strict_numbers_stay_as_they_are(text):
    assert not needs_quote(text)
    assert neutralize(text) == text


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_every_trigger_behind_every_ignorable_character_is_caught(trigger):
    for lo, hi in IGNORABLE_RANGES:
        for code in (lo, hi):
            assert needs_quote(chr(code) + trigger + "x"), (hex(code), trigger)
