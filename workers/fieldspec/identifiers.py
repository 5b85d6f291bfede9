"""The one identifier normaliser and look-alike key (search, code cross-checks, check digits).

Identifiers (serials, part numbers, lots, IMEI, GTIN, MAC...) are compared and indexed without
their separators: :func:`identifier_key` is NFKC, upper case, with whitespace, dashes (ASCII
and Unicode), ``.``, ``/``, ``:`` and ``_`` removed. :func:`lookalike_key` also folds the
characters OCR confuses (O/Q/D -> 0, I/L -> 1, S -> 5, B -> 8, Z -> 2, G -> 6), so a misread
finds its serial.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["DASHES", "ID_SEPARATORS_RE", "LOOKALIKE_FOLD", "identifier_key", "lookalike_key"]

DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
ID_SEPARATORS_RE = re.compile(rf"[\s{re.escape(DASHES)}./:_]")
"""One separator character of an identifier."""

LOOKALIKE_FOLD = str.maketrans(
    {"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "S": "5", "B": "8", "Z": "2", "G": "6"}
)


def identifier_key(value: str | None) -> str:
    """``"sn 44-1020/a"`` -> ``"SN441020A"`` (module docstring)."""
    return ID_SEPARATORS_RE.sub("", unicodedata.normalize("NFKC", value or "")).upper()


def lookalike_key(value: str | None) -> str:
    """:func:`identifier_key` with look-alike characters folded (``QX7781234S`` ->
    ``0X77812345``)."""
    return identifier_key(value).translate(LOOKALIKE_FOLD)
