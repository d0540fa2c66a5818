"""Whole numbers as people and pages send them: ASCII digits that fit a database id.

`int()` alone takes "١٢" (Arabic-Indic digits), "1_000" and " 7 ", and raises on a
string of 5,000 digits; a number past 64 bits makes the database raise. Every id,
rank or count read from a request goes through here.
"""

from __future__ import annotations

#: Digits of the largest id taken: within a 64-bit signed integer.
MAX_DIGITS = 18


def whole_number(text: object) -> int | None:
    """`text` as a non-negative whole number, or None when it is anything else."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text if 0 <= text < 10**MAX_DIGITS else None
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= MAX_DIGITS else None
