"""The schema grammar: field specs, format grammar, dates, normalisation and validation.

A product type carries a *field schema* (JSON, editable in the admin)::

    {
      "auto_accept": 0.9,
      "fields": [
        {
          "name": "serial_number",          # required, ^[a-z][a-z0-9_]*$, unique
          "label": "Serial number",         # optional, defaults to name
          "required": true,                 # optional, default false
          "pattern": "^[A-Z0-9-]{6,20}$",   # optional Python regex, always full-matched
          "format": "AA999-99999",          # optional format grammar (below)
          "check_digit": "luhn",            # optional, a key of checkdigits.CHECK_DIGITS
          "date": {                         # optional, makes it a date field
            "not_future": true,             # optional, default false
            "max_age_days": 3650,           # optional int >= 0
            "formats": ["YYYY-MM-DD"]       # optional, default DEFAULT_DATE_FORMATS
          },
          "normalise": ["upper", "strip_spaces"],  # optional list of NORMALISE_OPS
          "keywords": ["S/N", "Serial No"], # optional list of label keywords
          "scripts": ["latin"]              # optional, default: the schema's
        }
      ],
      "scripts": ["latin", "hangul"]        # optional (below)
    }

``scripts`` (schema or field level) lists the writing systems the label, or the field's
value, may hold: ``latin`` (letters, digits, punctuation, symbols: always needed, so it must
be listed), ``hangul`` (Korean), ``cjk`` (Chinese characters and Japanese kana). The
recogniser does not write characters of other scripts (a decoding-time mask); a field value
holding one fails validation with reason ``script``. A schema without ``scripts`` lets the
recogniser keep Hangul/CJK only where it reads a run of two or more such characters (a
keyword, a word), never a lone one inside Latin text (:func:`char_script`).

``auto_accept`` (0..1, default 0.9) is the confidence at or above which a read
whose fields all validate is accepted without review.

Format grammar (``format``), matched against the *whole normalised* value:

=============  ==============================================================
``A``          one letter ``A-Z``
``9``          one digit ``0-9``
``X``          one letter or digit ``A-Z0-9``
``H``          one hexadecimal digit ``0-9A-F``
``\\c``        the literal character ``c`` (e.g. ``\\A`` for a literal A)
``{n}``        the preceding token exactly ``n`` times (1 <= n <= 64)
``{m,n}``      the preceding token ``m`` to ``n`` times (0 <= m <= n, 1 <= n <= 64)
anything else  itself, literally (``-``, ``/``, ``:``, space, lowercase, digits 0-8...)
=============  ==============================================================

Examples: ``AA999-99999`` = two letters, three digits, a dash, five digits;
``SN9{6,10}`` = literal ``SN`` then 6 to 10 digits; ``HH:HH:HH:HH:HH:HH`` = MAC.

Normalisation always applies Unicode NFKC (full-width to ASCII) and trims outer
whitespace, then the listed ``normalise`` operations in order:

- per character: ``upper``, ``lower``, ``strip_spaces`` (all whitespace),
  ``strip_dashes`` (``-`` and Unicode dashes), ``strip_separators``
  (whitespace, dashes, ``.``, ``/``, ``:``, ``_``)
- whole string: ``collapse_spaces`` (runs of whitespace to one space),
  ``mac`` (12 hex digits, any separators, to ``AA:BB:CC:DD:EE:FF``)

Check digits are verified on the normalised value with separators (whitespace,
dashes, ``.``, ``/``, ``:``) removed, so ``49-015420-323751-8`` can be checked
as an IMEI even when the format keeps the dashes.

Date formats (``date.formats``) use the tokens ``YYYY``, ``YY``, ``MM``, ``DD``,
``MON`` (month name or abbreviation in English, German, French, Spanish or Italian,
accents optional: ``NOV``, ``Dez.``, ``févr.``, ``ENE``, ``GIU``), ``ww`` (ISO week); any
other character is literal (case-insensitive) and whitespace matches any amount of
whitespace. A format without a day gives the first day of the month, an ISO
week gives its Monday. In ``YYMMDD`` (GS1), ``DD = 00`` means the last day of
the month. Two-digit years are 20YY.

Dates without a year (food packs print ``16 NOV``): a format with a day and a month but no
year (``DD MON``) is a *yearless* format. :data:`DEFAULT_DATE_FORMATS` ends with the yearless
forms that cannot be read any other way (:data:`YEARLESS_DATE_FORMATS`: ``16 NOV``,
``16-NOV``, ``16. Nov.``, ``16.11.``, ``11월 16일``, ``11月16日``); ``NOV 16`` (``MON DD``) and
``16/11`` are left out because the number may as well be a year (``NOV 26`` = November 2026)
or the order month-first: a product whose labels print them lists the format explicitly.
:func:`parse_date` never returns a yearless date (it never invents a year);
:func:`parse_month_day` returns its ``(month, day)`` (29 February is a real day: it exists
in leap years). :func:`validate_field` writes a yearless date as ``iso_date = "--MM-DD"``
(ISO 8601 with the year omitted, XML Schema ``gMonthDay``: ``--11-16``) and the value as
printed (normalised). Whether that is valid is the field's ``date.require_year`` (default
true): required, the check fails with reason ``date_no_year``; not required (the catalogue's
``expiry_date``), it passes unless the field also has ``not_future`` or ``max_age_days``, which
cannot be checked without a year (reason ``date_no_year`` again). A valid yearless date goes
through the same auto-accept rule as any value (``review.decide_review``): the year is not
guessed, so there is nothing extra to get wrong; consumers that need a calendar date take the
year from the production context, never from us.

This module is pure Python (no Django); the admin form and the API call
:func:`schema_errors`, the pipeline and the web tier call :func:`validate_field`. The built-in
specs of well-known fields live in :mod:`workers.fieldspec.catalogue`.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from .checkdigits import CHECK_DIGITS
from .identifiers import DASHES, ID_SEPARATORS_RE, identifier_key

__all__ = [
    "DEFAULT_AUTO_ACCEPT",
    "DEFAULT_DATE_FORMATS",
    "NORMALISE_OPS",
    "DateRule",
    "FieldCheck",
    "FieldSpec",
    "FormatError",
    "FormatToken",
    "SCRIPTS",
    "ProductSchema",
    "Reason",
    "SchemaError",
    "char_allowed",
    "char_script",
    "check_digit_text",
    "compile_format",
    "format_to_regex",
    "normalise",
    "normalise_char",
    "YEARLESS_DATE_FORMATS",
    "month_day_iso",
    "parse_date",
    "parse_month_day",
    "schema_errors",
    "validate_field",
]

DEFAULT_AUTO_ACCEPT = 0.9
MAX_REPEAT = 64
FIELD_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

_DASHES = DASHES
_SEPARATORS_RE = ID_SEPARATORS_RE

PER_CHAR_OPS: frozenset[str] = frozenset(
    {"upper", "lower", "strip_spaces", "strip_dashes", "strip_separators"}
)
STRING_OPS: frozenset[str] = frozenset({"collapse_spaces", "mac"})
NORMALISE_OPS: frozenset[str] = PER_CHAR_OPS | STRING_OPS
"""All known ``normalise`` operation names."""

_FIELD_KEYS = frozenset(
    {
        "name",
        "label",
        "required",
        "pattern",
        "format",
        "check_digit",
        "date",
        "normalise",
        "keywords",
        "scripts",
    }
)
_DATE_KEYS = frozenset({"not_future", "max_age_days", "formats", "require_year"})
_SCHEMA_KEYS = frozenset({"auto_accept", "fields", "scripts"})

SCRIPTS: tuple[str, ...] = ("latin", "hangul", "cjk")
"""Writing systems a schema's ``scripts`` may name (``latin``: everything not Hangul/CJK)."""


def char_script(ch: str) -> str:
    """The script of one character: ``hangul`` (jamo, compatibility jamo, syllables), ``cjk``
    (CJK ideographs, hiragana, katakana) or ``latin`` (every other character: Latin, Greek and
    other letters, digits, punctuation, symbols such as ``° µ Ω € %``)."""
    o = ord(ch)
    if 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return "hangul"
    if 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
        return "cjk"
    return "latin"


def _scripts_errors(v: Any, where: str) -> list[str]:
    errs = _str_list_errors(v, where)
    if errs:
        return errs
    bad = [x for x in v if x not in SCRIPTS]
    if bad:
        return [f"{where}: unknown {bad}; known {list(SCRIPTS)}"]
    if "latin" not in v:
        return [f"{where}: must include 'latin' (digits and punctuation belong to it)"]
    return []


class SchemaError(ValueError):
    """A schema dict is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


class FormatError(ValueError):
    """A format-grammar string is malformed."""


# --------------------------------------------------------------------------------------
# Format grammar
# --------------------------------------------------------------------------------------

_CLASSES: dict[str, str] = {
    "A": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "9": "0123456789",
    "X": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "H": "0123456789ABCDEF",
}
_CLASS_REGEX = {"A": "[A-Z]", "9": "[0-9]", "X": "[A-Z0-9]", "H": "[0-9A-F]"}
_REPEAT_RE = re.compile(r"\{(\d{1,3})(?:,(\d{1,3}))?\}")


@dataclass(frozen=True)
class FormatToken:
    """One token of a compiled format: a character set repeated ``min..max`` times.

    ``chars`` is the set of allowed characters (one char for a literal);
    ``symbol`` is the grammar symbol (``A``, ``9``, ``X``, ``H``) or the literal.
    """

    chars: frozenset[str]
    symbol: str
    literal: bool
    min: int = 1
    max: int = 1

    def to_regex(self) -> str:
        body = re.escape(self.symbol) if self.literal else _CLASS_REGEX[self.symbol]
        if (self.min, self.max) == (1, 1):
            return body
        if self.min == self.max:
            return f"{body}{{{self.min}}}"
        return f"{body}{{{self.min},{self.max}}}"


@lru_cache(maxsize=512)
def compile_format(fmt: str) -> tuple[FormatToken, ...]:
    """Compile a format-grammar string into tokens; raises :class:`FormatError`."""
    if not isinstance(fmt, str) or not fmt:
        raise FormatError("format must be a non-empty string")
    tokens: list[FormatToken] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "\\":
            if i + 1 >= len(fmt):
                raise FormatError("format ends with a lone backslash")
            lit = fmt[i + 1]
            tokens.append(FormatToken(frozenset(lit), lit, True))
            i += 2
        elif ch == "{":
            m = _REPEAT_RE.match(fmt, i)
            if not m:
                raise FormatError(
                    f"malformed repetition at position {i}: expected {{n}} or {{m,n}}"
                )
            if not tokens:
                raise FormatError("repetition at the start of the format has nothing to repeat")
            prev = tokens[-1]
            if (prev.min, prev.max) != (1, 1):
                raise FormatError(f"repetition at position {i} follows another repetition")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < 1 or lo > hi or hi > MAX_REPEAT:
                raise FormatError(
                    f"bad repetition {m.group(0)}: need 0 <= m <= n, 1 <= n <= {MAX_REPEAT}"
                )
            tokens[-1] = FormatToken(prev.chars, prev.symbol, prev.literal, lo, hi)
            i = m.end()
        elif ch == "}":
            raise FormatError(f"unmatched '}}' at position {i}")
        elif ch in _CLASSES:
            tokens.append(FormatToken(frozenset(_CLASSES[ch]), ch, False))
            i += 1
        else:
            tokens.append(FormatToken(frozenset(ch), ch, True))
            i += 1
    if all(t.max == 0 for t in tokens):
        raise FormatError("format matches nothing")
    return tuple(tokens)


@lru_cache(maxsize=512)
def format_to_regex(fmt: str) -> str:
    """Anchored regex (``^...$``) equivalent to a format-grammar string.

    >>> format_to_regex("AA999-9{2,3}")
    '^[A-Z]{2}[0-9]{3}\\\\-[0-9]{2,3}$'
    """
    tokens = compile_format(fmt)
    # Merge runs of identical single class tokens for readability: AA -> [A-Z]{2}.
    parts: list[str] = []
    merged: list[FormatToken] = []
    for t in tokens:
        if (
            merged
            and not t.literal
            and (t.min, t.max) == (1, 1)
            and merged[-1].symbol == t.symbol
            and not merged[-1].literal
            and merged[-1].min == merged[-1].max
        ):
            last = merged[-1]
            merged[-1] = FormatToken(last.chars, last.symbol, False, last.min + 1, last.max + 1)
        else:
            merged.append(t)
    parts = [t.to_regex() for t in merged]
    return "^" + "".join(parts) + "$"


@lru_cache(maxsize=512)
def _format_re(fmt: str) -> re.Pattern[str]:
    return re.compile(format_to_regex(fmt))


@lru_cache(maxsize=512)
def _pattern_re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_CATEGORY_TESTS: dict[str, Callable[[str], bool]] = {
    "CATEGORY_DIGIT": lambda c: c.isdigit(),
    "CATEGORY_NOT_DIGIT": lambda c: not c.isdigit(),
    "CATEGORY_SPACE": lambda c: c.isspace(),
    "CATEGORY_NOT_SPACE": lambda c: not c.isspace(),
    "CATEGORY_WORD": lambda c: c.isalnum() or c == "_",
    "CATEGORY_NOT_WORD": lambda c: not (c.isalnum() or c == "_"),
}


@lru_cache(maxsize=256)
def _pattern_chars(pattern: str) -> tuple[frozenset[str], tuple[Callable[[str], bool], ...]] | None:
    """Characters a full match of ``pattern`` can consume: (literal set, predicates), or None
    when any character can appear (``.``, a negated class, a back-reference, an unknown node).
    Look-around assertions consume nothing and are skipped."""
    import re._parser as sre  # the stdlib's own regex parser (Python 3.11+)

    chars: set[str] = set()
    tests: list[Callable[[str], bool]] = []

    def walk(items: Any) -> bool:
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                chars.add(chr(av))
            elif name == "IN":
                for iop, iav in av:
                    iname = str(iop)
                    if iname == "LITERAL":
                        chars.add(chr(iav))
                    elif iname == "RANGE":
                        lo, hi = iav
                        tests.append(lambda c, lo=lo, hi=hi: lo <= ord(c) <= hi)
                    elif iname == "CATEGORY" and str(iav) in _CATEGORY_TESTS:
                        tests.append(_CATEGORY_TESTS[str(iav)])
                    else:  # NEGATE and anything unexpected: any character
                        return False
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                if not walk(av[2]):
                    return False
            elif name == "SUBPATTERN":
                if not walk(av[-1]):
                    return False
            elif name == "ATOMIC_GROUP":
                if not walk(av):
                    return False
            elif name == "BRANCH":
                if not all(walk(b) for b in av[1]):
                    return False
            elif name in ("ASSERT", "ASSERT_NOT", "AT"):
                continue
            else:  # ANY, NOT_LITERAL, GROUPREF, CATEGORY outside a class...
                return False
        return True

    parsed = sre.parse(pattern)
    if not walk(parsed):
        return None
    if parsed.state.flags & re.IGNORECASE:  # both cases of every literal and range
        both = {x for c in chars for x in (c, c.upper(), c.lower())}
        folded = [lambda c, t=t: t(c) or t(c.upper()) or t(c.lower()) for t in tests]
        return frozenset(both), tuple(folded)
    return frozenset(chars), tuple(tests)


def char_allowed(ch: str, spec: FieldSpec) -> bool:
    """Whether the recognised character ``ch`` can be part of a valid value of ``spec``: its
    script is one of ``spec.scripts`` and, normalised (``normalise_char``), it is a character
    the ``format`` or ``pattern`` can consume. A character normalisation removes is allowed;
    date fields and fields without rules allow every character of their scripts. Used to keep
    a value free of impossible characters when the recogniser offers a possible one."""
    if spec.scripts is not None and char_script(ch) not in spec.scripts:
        return False
    n = normalise_char(ch, spec)
    if not n:
        return True
    if spec.format:
        allowed = set().union(*(t.chars for t in compile_format(spec.format)))
        if not all(c in allowed for c in n):
            return False
    if spec.pattern:
        got = _pattern_chars(spec.pattern)
        if got is not None:
            lits, tests = got
            if not all(c in lits or any(t(c) for t in tests) for c in n):
                return False
    return True


# --------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------

YEARLESS_DATE_FORMATS: tuple[str, ...] = (
    "DD MON",
    "DD-MON",
    "DD/MON",
    "DD. MON",
    "DD.MM.",
    "MM월 DD일",
    "MM月DD日",
)
"""Day + month without a year that :func:`parse_month_day` reads by default (module
docstring: ``MON DD`` and ``DD/MM`` are not here, being ambiguous)."""

DEFAULT_DATE_FORMATS: tuple[str, ...] = (
    "YYYY-MM-DD",
    "YYYY.MM.DD",
    "YYYY/MM/DD",
    "YYYYMMDD",
    "YYYY년 MM월 DD일",
    "DD/MM/YYYY",
    "DD.MM.YYYY",
    "DD-MM-YYYY",
    "DD MON YYYY",
    "DD-MON-YYYY",
    "YYYY-MM",
    "YYYY.MM",
    "YYYY/MM",
    "YYYY년 MM월",
    "MM/YYYY",
    "MM.YYYY",
    "MM-YYYY",
    "MON YYYY",
    "MON-YYYY",
    "YYYY-Www",
    "YYWww",
    *YEARLESS_DATE_FORMATS,
)
"""Formats tried by :func:`parse_date` (those with a year) and :func:`parse_month_day` (the
yearless ones) when none are given (day-first before month-first; ``MM/DD/YYYY`` and
``YYMMDD`` only when listed explicitly, being ambiguous)."""

# Month names and abbreviations, compared lower-case without accents and without a final
# dot. English, German, French, Spanish, Italian (the languages of ``keys.FIELD_KEYS``; CJK and
# Korean dates are numeric: ``11月``, ``11월``). No spelling names two months.
_MONTH_NAMES: dict[int, tuple[str, ...]] = {
    1: (
        "jan",
        "january",
        "januar",
        "jän",
        "jänner",
        "janv",
        "janvier",
        "ene",
        "enero",
        "gen",
        "gennaio",
    ),
    2: (
        "feb",
        "february",
        "febr",
        "februar",
        "fév",
        "févr",
        "février",
        "fevrier",
        "febrero",
        "febbraio",
    ),
    3: ("mar", "march", "mär", "märz", "mrz", "mars", "marzo"),
    4: ("apr", "april", "avr", "avril", "abr", "abril", "aprile"),
    5: ("may", "mai", "mayo", "mag", "maggio"),
    6: ("jun", "june", "juni", "juin", "junio", "giu", "giugno"),
    7: ("jul", "july", "juli", "juil", "juillet", "julio", "lug", "luglio"),
    8: ("aug", "august", "août", "aout", "ago", "agosto"),
    9: ("sep", "sept", "september", "septembre", "septiembre", "set", "sett", "settembre"),
    10: ("oct", "october", "okt", "oktober", "octobre", "octubre", "ott", "ottobre"),
    11: ("nov", "november", "novembre", "noviembre"),
    12: ("dec", "december", "dez", "dezember", "déc", "décembre", "dic", "diciembre", "dicembre"),
}


def _fold_month(name: str) -> str:
    s = unicodedata.normalize("NFKD", name.lower().rstrip("."))
    return "".join(c for c in s if unicodedata.category(c) != "Mn")


_MONTHS: dict[str, int] = {}
for _m, _names in _MONTH_NAMES.items():
    for _n in _names:
        _k = _fold_month(_n)
        assert _MONTHS.get(_k, _m) == _m, f"month name {_n!r} names two months"
        _MONTHS[_k] = _m
del _m, _names, _n, _k
_DATE_TOKEN_RE = re.compile(r"(YYYY|YY|MM|DD|MON|ww)")
_NUMERIC_TOKENS = {"YYYY", "YY", "MM", "DD", "ww"}


def _is_yearless(fmt: str) -> bool:
    parts = _DATE_TOKEN_RE.split(fmt)
    return "YYYY" not in parts and "YY" not in parts


@lru_cache(maxsize=256)
def _compile_date_format(fmt: str) -> re.Pattern[str]:
    parts = [p for p in _DATE_TOKEN_RE.split(fmt) if p]
    if not any(p in ("MM", "MON", "ww") for p in parts):
        raise ValueError(f"date format {fmt!r} has no month (MM, MON) or week (ww)")
    if not any(p in ("YYYY", "YY") for p in parts):
        if "ww" in parts or "DD" not in parts:
            raise ValueError(
                f"date format {fmt!r} has no year (YYYY or YY): without one it needs a day "
                "(DD) and a month (MM or MON)"
            )
    seen: set[str] = set()
    out: list[str] = []
    for idx, p in enumerate(parts):
        if p in _NUMERIC_TOKENS or p == "MON":
            if p in seen:
                raise ValueError(f"date format {fmt!r} repeats {p}")
            seen.add(p)
        prev_num = idx > 0 and parts[idx - 1] in _NUMERIC_TOKENS
        next_num = idx + 1 < len(parts) and parts[idx + 1] in _NUMERIC_TOKENS
        tight = prev_num or next_num  # digits run together: fixed widths
        if p == "YYYY":
            out.append(r"(?P<Y>\d{4})")
        elif p == "YY":
            out.append(r"(?P<y>\d{2})")
        elif p in ("MM", "DD", "ww"):
            group = {"MM": "m", "DD": "d", "ww": "w"}[p]
            out.append(rf"(?P<{group}>\d{{2}})" if tight else rf"(?P<{group}>\d{{1,2}})")
        elif p == "MON":
            out.append(r"(?P<b>[^\W\d_]{3,10})\.?")
        else:
            for ch in p:
                out.append(r"\s*" if ch.isspace() else r"\s*" + re.escape(ch) + r"\s*")
    return re.compile("".join(out), re.IGNORECASE)


def _expand_year(yy: int, today: date | None) -> int:
    """Two-digit year to four digits: 20YY, or with ``today`` the GS1 sliding
    window (more than 50 years ahead -> previous century, 50 or more years back
    -> next century)."""
    if today is None:
        return 2000 + yy
    century = today.year // 100 * 100
    diff = yy - today.year % 100
    if diff >= 51:
        return century - 100 + yy
    if diff <= -50:
        return century + 100 + yy
    return century + yy


def parse_date(
    value: str, formats: Iterable[str] | None = None, *, today: date | None = None
) -> date | None:
    """Parse a printed date; ``None`` when no format matches a real date.

    Args:
        value: the text, e.g. ``2024-03-15``, ``15/03/2024``, ``03/2024``, ``24W11``,
            ``2024년 03월 15일``, ``240315`` (with ``YYMMDD`` in ``formats``).
        formats: date-format strings (module docstring); default
            :data:`DEFAULT_DATE_FORMATS`. Tried in order; the first real date wins.
        today: enables the GS1 century window for two-digit years.
    """
    # a yearless format is never a calendar date: see parse_month_day
    for fmt, g in _date_matches(value, formats, yearless=False):
        d = _date_from_groups(g, gs1_zero_day=(fmt == "YYMMDD"), today=today)
        if d is not None:
            return d
    return None


def _date_matches(
    value: str, formats: Iterable[str] | None, *, yearless: bool
) -> Iterator[tuple[str, dict[str, str | None]]]:
    """``(format, groups)`` of each format among ``formats`` (default
    :data:`DEFAULT_DATE_FORMATS`) that is (``yearless``) or is not a format without a year and
    matches all of ``value`` (NFKC, stripped), in order; an invalid format is skipped."""
    if not isinstance(value, str):
        return
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        return
    for fmt in tuple(formats) if formats else DEFAULT_DATE_FORMATS:
        if _is_yearless(fmt) != yearless:
            continue
        try:
            rx = _compile_date_format(fmt)
        except ValueError:
            continue
        m = rx.fullmatch(text)
        if m:
            yield fmt, m.groupdict()


def parse_month_day(value: str, formats: Iterable[str] | None = None) -> tuple[int, int] | None:
    """``(month, day)`` of a date printed without a year (``16 NOV``, ``16.11.``,
    ``11월 16일``), by the yearless formats among ``formats`` (default
    :data:`DEFAULT_DATE_FORMATS`, i.e. :data:`YEARLESS_DATE_FORMATS`); None when none matches a
    day that exists in some year (``29 FEB`` does, ``31 NOV`` does not). A text with a year
    (``16 NOV 2026``) is not yearless: None (use :func:`parse_date`)."""
    for _fmt, g in _date_matches(value, formats, yearless=True):
        month = _month_of(g)
        if month is None:
            continue
        day = int(g["d"])
        if 1 <= day <= calendar.monthrange(2000, month)[1]:  # 2000: a leap year
            return month, day
    return None


def month_day_iso(month: int, day: int) -> str:
    """The ISO 8601 form of a date without a year: ``--MM-DD`` (``--11-16``)."""
    return f"--{month:02d}-{day:02d}"


def _month_of(g: Mapping[str, str | None]) -> int | None:
    if g.get("b"):
        month = _MONTHS.get(_fold_month(g["b"]))  # type: ignore[arg-type]
        if month is None:
            return None
    else:
        month = int(g["m"])  # type: ignore[arg-type]
    return month if 1 <= month <= 12 else None


def _date_from_groups(g: Mapping[str, str | None], *, gs1_zero_day: bool, today: date | None):
    if g.get("Y"):
        year = int(g["Y"])  # type: ignore[arg-type]
    else:
        year = _expand_year(int(g["y"]), today)  # type: ignore[arg-type]
    if year < 1900 or year > 2199:
        return None
    if g.get("w"):
        try:
            return date.fromisocalendar(year, int(g["w"]), 1)  # type: ignore[arg-type]
        except ValueError:
            return None
    month = _month_of(g)
    if month is None:
        return None
    day = int(g["d"]) if g.get("d") else 1
    if day == 0 and gs1_zero_day:
        day = calendar.monthrange(year, month)[1]
    try:
        return date(year, month, day)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------
# Schema model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateRule:
    """Rules for a date field."""

    not_future: bool = False
    max_age_days: int | None = None
    formats: tuple[str, ...] = ()
    require_year: bool = True
    """False: a date printed without a year (``16 NOV``) is valid (module docstring)."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DateRule:
        return cls(
            not_future=bool(d.get("not_future", False)),
            max_age_days=d.get("max_age_days"),
            formats=tuple(d.get("formats") or ()),
            require_year=bool(d.get("require_year", True)),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"not_future": self.not_future}
        if self.max_age_days is not None:
            out["max_age_days"] = self.max_age_days
        if self.formats:
            out["formats"] = list(self.formats)
        if not self.require_year:
            out["require_year"] = False
        return out


@dataclass(frozen=True)
class FieldSpec:
    """One key field of a product type (see the module docstring for the JSON form)."""

    name: str
    label: str = ""
    required: bool = False
    pattern: str | None = None
    format: str | None = None
    check_digit: str | None = None
    date: DateRule | None = None
    normalise: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    scripts: tuple[str, ...] | None = None
    """Scripts the value may hold (``SCRIPTS``); None: any."""

    @property
    def display_label(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FieldSpec:
        """Build from the JSON form; raises :class:`SchemaError` when invalid."""
        errors = _field_errors(d, "field")
        if errors:
            raise SchemaError(errors)
        return cls(
            name=d["name"],
            label=d.get("label") or d["name"].replace("_", " ").capitalize(),
            required=bool(d.get("required", False)),
            pattern=d.get("pattern") or None,
            format=d.get("format") or None,
            check_digit=d.get("check_digit") or None,
            date=DateRule.from_dict(d["date"]) if d.get("date") is not None else None,
            normalise=tuple(d.get("normalise") or ()),
            keywords=tuple(d.get("keywords") or ()),
            scripts=tuple(d["scripts"]) if d.get("scripts") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "label": self.display_label}
        out["required"] = self.required
        if self.pattern:
            out["pattern"] = self.pattern
        if self.format:
            out["format"] = self.format
        if self.check_digit:
            out["check_digit"] = self.check_digit
        if self.date is not None:
            out["date"] = self.date.to_dict()
        if self.normalise:
            out["normalise"] = list(self.normalise)
        if self.keywords:
            out["keywords"] = list(self.keywords)
        if self.scripts:
            out["scripts"] = list(self.scripts)
        return out


@dataclass(frozen=True)
class ProductSchema:
    """The field schema of a product type."""

    fields: tuple[FieldSpec, ...] = ()
    auto_accept: float = DEFAULT_AUTO_ACCEPT
    keyless: frozenset[str] = frozenset()
    """Fields an extractor may take without a key (set by ``catalogue.resolve_schema``)."""
    scripts: tuple[str, ...] | None = None
    """Scripts the label may hold (the recogniser's decoding mask); None: the default rule
    (Hangul/CJK only in runs of two or more characters)."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProductSchema:
        """Build from the JSON form; raises :class:`SchemaError` listing all problems."""
        errors = schema_errors(d)
        if errors:
            raise SchemaError(errors)
        return cls(
            fields=tuple(FieldSpec.from_dict(f) for f in d.get("fields", [])),
            auto_accept=float(d.get("auto_accept", DEFAULT_AUTO_ACCEPT)),
            scripts=tuple(d["scripts"]) if d.get("scripts") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "auto_accept": self.auto_accept,
            "fields": [f.to_dict() for f in self.fields],
        }
        if self.scripts:
            out["scripts"] = list(self.scripts)
        return out

    def field(self, name: str) -> FieldSpec | None:
        """The spec named ``name`` or ``None``."""
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str_list_errors(v: Any, where: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        return [f"{where}: must be a list of strings"]
    return []


def _field_errors(f: Any, where: str) -> list[str]:
    if not isinstance(f, Mapping):
        return [f"{where}: must be an object"]
    errors: list[str] = []
    unknown = sorted(set(f) - _FIELD_KEYS)
    if unknown:
        errors.append(f"{where}: unknown keys {unknown}; allowed {sorted(_FIELD_KEYS)}")
    name = f.get("name")
    if not isinstance(name, str) or not FIELD_NAME_RE.fullmatch(name):
        errors.append(f"{where}.name: required, lowercase identifier like 'serial_number'")
    if "label" in f and not isinstance(f["label"], str):
        errors.append(f"{where}.label: must be a string")
    if "required" in f and not isinstance(f["required"], bool):
        errors.append(f"{where}.required: must be true or false")
    pattern = f.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            errors.append(f"{where}.pattern: must be a non-empty string")
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors.append(f"{where}.pattern: invalid regular expression: {exc}")
    fmt = f.get("format")
    if fmt is not None:
        try:
            compile_format(fmt if isinstance(fmt, str) else "")
        except FormatError as exc:
            errors.append(f"{where}.format: {exc}")
    cd = f.get("check_digit")
    if cd is not None and cd not in CHECK_DIGITS:
        errors.append(f"{where}.check_digit: unknown {cd!r}; known {sorted(CHECK_DIGITS)}")
    if "date" in f and f["date"] is not None:
        errors.extend(_date_errors(f["date"], f"{where}.date"))
    if "normalise" in f:
        errs = _str_list_errors(f["normalise"], f"{where}.normalise")
        if not errs:
            bad = [op for op in f["normalise"] if op not in NORMALISE_OPS]
            if bad:
                errs = [f"{where}.normalise: unknown {bad}; known {sorted(NORMALISE_OPS)}"]
        errors.extend(errs)
    if "keywords" in f:
        errors.extend(_str_list_errors(f["keywords"], f"{where}.keywords"))
    if "scripts" in f:
        errors.extend(_scripts_errors(f["scripts"], f"{where}.scripts"))
    return errors


def _date_errors(d: Any, where: str) -> list[str]:
    if not isinstance(d, Mapping):
        return [f"{where}: must be an object"]
    errors: list[str] = []
    unknown = sorted(set(d) - _DATE_KEYS)
    if unknown:
        errors.append(f"{where}: unknown keys {unknown}; allowed {sorted(_DATE_KEYS)}")
    for key in ("not_future", "require_year"):
        if key in d and not isinstance(d[key], bool):
            errors.append(f"{where}.{key}: must be true or false")
    mad = d.get("max_age_days")
    if mad is not None and (not _is_int(mad) or mad < 0):
        errors.append(f"{where}.max_age_days: must be a non-negative integer")
    if "formats" in d:
        errs = _str_list_errors(d["formats"], f"{where}.formats")
        if not errs:
            for fmt in d["formats"]:
                try:
                    _compile_date_format(fmt)
                except ValueError as exc:
                    errs.append(f"{where}.formats: {exc}")
        errors.extend(errs)
    return errors


def schema_errors(d: Any) -> list[str]:
    """Every problem with a schema dict (empty list when valid).

    Used by the admin form and the API before storing a schema. Messages name
    the offending path, e.g. ``fields[1].pattern: invalid regular expression: ...``.
    """
    if not isinstance(d, Mapping):
        return ["schema: must be an object"]
    errors: list[str] = []
    unknown = sorted(set(d) - _SCHEMA_KEYS)
    if unknown:
        errors.append(f"schema: unknown keys {unknown}; allowed {sorted(_SCHEMA_KEYS)}")
    if "auto_accept" in d:
        aa = d["auto_accept"]
        if isinstance(aa, bool) or not isinstance(aa, int | float) or not 0.0 <= aa <= 1.0:
            errors.append("auto_accept: must be a number between 0 and 1")
    if "scripts" in d:
        errors.extend(_scripts_errors(d["scripts"], "scripts"))
    fields = d.get("fields", [])
    if not isinstance(fields, list):
        errors.append("fields: must be a list")
        return errors
    seen: set[str] = set()
    for i, f in enumerate(fields):
        errors.extend(_field_errors(f, f"fields[{i}]"))
        name = f.get("name") if isinstance(f, Mapping) else None
        if isinstance(name, str):
            if name in seen:
                errors.append(f"fields[{i}].name: duplicate field name {name!r}")
            seen.add(name)
    return errors


# --------------------------------------------------------------------------------------
# Normalisation and validation
# --------------------------------------------------------------------------------------


def _char_op(op: str) -> Callable[[str], str]:
    if op == "upper":
        return str.upper
    if op == "lower":
        return str.lower
    if op == "strip_spaces":
        return lambda s: "" if s.isspace() else s
    if op == "strip_dashes":
        return lambda s: "" if s in _DASHES else s
    if op == "strip_separators":
        return lambda s: "" if _SEPARATORS_RE.fullmatch(s) else s
    raise KeyError(op)


def normalise_char(ch: str, spec: FieldSpec) -> str:
    """Per-character part of :func:`normalise`: NFKC then the per-character ops
    of ``spec`` (whole-string ops are ignored). Returns '' for a removed char.
    Used by the corrector to normalise its alternatives position by position."""
    out = unicodedata.normalize("NFKC", ch)
    for op in spec.normalise:
        if op in PER_CHAR_OPS:
            out = "".join(_char_op(op)(c) for c in out)
    return out


def _normalise_mac(s: str) -> str:
    hexes = _SEPARATORS_RE.sub("", s).upper()
    if len(hexes) == 12 and all(c in _CLASSES["H"] for c in hexes):
        return ":".join(hexes[i : i + 2] for i in range(0, 12, 2))
    return hexes


def normalise(value: str, spec: FieldSpec) -> str:
    """Normalised value: NFKC, outer whitespace trimmed, then ``spec.normalise`` in order."""
    s = unicodedata.normalize("NFKC", value or "").strip()
    for op in spec.normalise:
        if op in PER_CHAR_OPS:
            fn = _char_op(op)
            s = "".join(fn(c) for c in s)
        elif op == "collapse_spaces":
            s = re.sub(r"\s+", " ", s)
        elif op == "mac":
            s = _normalise_mac(s)
        s = s.strip()
    return s


def check_digit_text(value: str) -> str:
    """The text a check digit is verified on: the identifier key (separators removed,
    upper-cased)."""
    return identifier_key(value)


@dataclass(frozen=True)
class Reason:
    """Why a value failed validation. ``code`` is stable (``required``, ``pattern``,
    ``format``, ``check_digit``, ``script``, ``date_unparsed``, ``date_no_year``, ``date_future``,
    ``date_too_old``);
    ``message`` is for people."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class FieldCheck:
    """Result of :func:`validate_field`.

    ``value`` is the normalised value; ``iso_date`` the parsed date (ISO 8601)
    for date fields that parsed: ``YYYY-MM-DD``, or ``--MM-DD`` for a date printed without a
    year (never a guessed year).
    """

    name: str
    valid: bool
    value: str
    reasons: tuple[Reason, ...] = ()
    iso_date: str | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "valid": self.valid,
            "value": self.value,
            "reasons": [r.to_dict() for r in self.reasons],
            "iso_date": self.iso_date,
        }


def validate_field(value: str | None, spec: FieldSpec, *, today: date) -> FieldCheck:
    """Normalise ``value`` and check it against ``spec``.

    An empty value is valid unless the field is required. All failing rules are
    reported, not just the first. ``today`` anchors the date rules.
    """
    v = normalise(value or "", spec)
    if not v:
        if spec.required:
            return FieldCheck(
                spec.name, False, v, (Reason("required", f"{spec.display_label} is required"),)
            )
        return FieldCheck(spec.name, True, v)
    reasons: list[Reason] = []
    if spec.scripts is not None:
        foreign = sorted({ch for ch in v if char_script(ch) not in spec.scripts})
        if foreign:
            reasons.append(
                Reason("script", f"{v!r} holds {''.join(foreign)!r}, not of {list(spec.scripts)}")
            )
    if spec.pattern and not _pattern_re(spec.pattern).fullmatch(v):
        reasons.append(Reason("pattern", f"{v!r} does not match the pattern {spec.pattern!r}"))
    if spec.format and not _format_re(spec.format).fullmatch(v):
        reasons.append(Reason("format", f"{v!r} does not match the format {spec.format!r}"))
    if spec.check_digit:
        algo = CHECK_DIGITS[spec.check_digit]
        if not algo.validate(check_digit_text(v)):
            reasons.append(Reason("check_digit", f"{v!r} fails the {spec.check_digit} check digit"))
    iso: str | None = None
    if spec.date is not None:
        rule = spec.date
        d = parse_date(v, rule.formats or None)
        md = parse_month_day(v, rule.formats or None) if d is None else None
        if md is not None:
            iso = month_day_iso(*md)
            needs = [
                why
                for why, on in (
                    ("the field requires a full date", rule.require_year),
                    ("'not in the future' cannot be checked", rule.not_future),
                    ("the maximum age cannot be checked", rule.max_age_days is not None),
                )
                if on
            ]
            if needs:
                reasons.append(
                    Reason("date_no_year", f"{v!r} has no year ({iso}): {'; '.join(needs)}")
                )
        elif d is None:
            reasons.append(Reason("date_unparsed", f"{v!r} is not a recognised date"))
        else:
            iso = d.isoformat()
            if spec.date.not_future and d > today:
                reasons.append(Reason("date_future", f"{iso} is in the future"))
            if spec.date.max_age_days is not None and (today - d).days > spec.date.max_age_days:
                reasons.append(
                    Reason("date_too_old", f"{iso} is more than {spec.date.max_age_days} days ago")
                )
    return FieldCheck(spec.name, not reasons, v, tuple(reasons), iso)
