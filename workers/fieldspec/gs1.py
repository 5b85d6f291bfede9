"""GS1 element strings (Application Identifiers) from barcodes and printed text.

Accepted inputs (:func:`parse_gs1`):

- raw barcode payloads: ``0109506000134352172612311 0ABC123<GS>21XYZ`` with the
  group separator ``\\x1d`` (FNC1) after variable-length fields; a leading
  FNC1/GS is ignored. ``<GS>`` and ``\\u241d`` are accepted as written forms of GS.
- a symbology identifier prefix (``]C1`` GS1-128, ``]d2`` GS1 DataMatrix,
  ``]Q3`` GS1 QR, ``]e0`` GS1 DataBar, ``]J1`` GS1 DotCode, ...).
- human-readable form: ``(01)09506000134352(17)261231(10)ABC123(21)XYZ``.
- GS1 Digital Link URIs (QR codes): ``https://id.gs1.org/01/09506000134352/21/XYZ?17=261231``
  on any domain and below any path prefix (:func:`parse_digital_link`).

Every element is validated against the AI table (length, character set,
check digit for GTIN/SSCC/GLN, real dates where ``DD = 00`` means the last day
of the month). Nothing raises: malformed input yields a :class:`GS1Result`
with ``errors`` and whatever elements could be read before the problem.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from .checkdigits import CHECK_DIGITS

__all__ = [
    "AI_FIELD_MAP",
    "AI_TABLE",
    "GS",
    "GS1_SYMBOLOGY_IDENTIFIERS",
    "AISpec",
    "GS1Element",
    "GS1Result",
    "looks_like_digital_link",
    "looks_like_gs1",
    "parse_digital_link",
    "parse_gs1",
    "parse_gs1_date",
]

GS = "\x1d"
"""ASCII group separator, the transmitted form of FNC1 between fields."""

GS1_SYMBOLOGY_IDENTIFIERS: frozenset[str] = frozenset(
    {"]C1", "]d2", "]d5", "]Q3", "]Q5", "]e0", "]e1", "]e2", "]J1", "]z1"}
)
"""Symbology identifiers (ISO/IEC 15424) that announce GS1 element strings."""

# GS1 "82" character set for alphanumeric AIs (ISO 646 invariant subset).
_CSET82 = frozenset(
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)


@dataclass(frozen=True)
class AISpec:
    """Definition of one Application Identifier.

    ``kind``: ``n`` digits, ``an`` GS1 character set 82, ``date`` YYMMDD,
    ``datetime`` YYMMDDHHMM, ``decimal`` digits with implied decimals (last AI digit).
    ``length`` is the fixed data length or ``None`` (variable, up to ``max_length``).
    ``check``: name of a check-digit algorithm over the whole data (e.g. ``gs1``).
    """

    ai: str
    name: str
    kind: str
    length: int | None
    max_length: int
    check: str | None = None


def _spec(ai: str, name: str, kind: str, length: int | None, max_length: int | None = None,
          check: str | None = None) -> AISpec:  # fmt: skip
    return AISpec(ai, name, kind, length, max_length or length or 0, check)


_BASE_SPECS = [
    _spec("00", "SSCC", "n", 18, check="gs1"),
    _spec("01", "GTIN", "n", 14, check="gs1"),
    _spec("02", "CONTENT", "n", 14, check="gs1"),
    _spec("10", "BATCH/LOT", "an", None, 20),
    _spec("11", "PROD DATE", "date", 6),
    _spec("12", "DUE DATE", "date", 6),
    _spec("13", "PACK DATE", "date", 6),
    _spec("15", "BEST BEFORE", "date", 6),
    _spec("16", "SELL BY", "date", 6),
    _spec("17", "USE BY OR EXPIRY", "date", 6),
    _spec("20", "VARIANT", "n", 2),
    _spec("21", "SERIAL", "an", None, 20),
    _spec("22", "CPV", "an", None, 20),
    _spec("30", "VAR. COUNT", "n", None, 8),
    _spec("37", "COUNT", "n", None, 8),
    _spec("240", "ADDITIONAL ID", "an", None, 30),
    _spec("241", "CUST. PART No.", "an", None, 30),
    _spec("242", "MTO VARIANT", "n", None, 6),
    _spec("250", "SECONDARY SERIAL", "an", None, 30),
    _spec("251", "REF. TO SOURCE", "an", None, 30),
    _spec("400", "ORDER NUMBER", "an", None, 30),
    _spec("410", "SHIP TO LOC", "n", 13, check="gs1"),
    _spec("414", "LOC No.", "n", 13, check="gs1"),
    _spec("422", "ORIGIN", "n", 3),
    _spec("7003", "EXPIRY TIME", "datetime", 10),
    _spec("8004", "GIAI", "an", None, 30),
    _spec("90", "INTERNAL", "an", None, 30),
] + [_spec(str(ai), "INTERNAL", "an", None, 90) for ai in range(91, 100)]
# Trade measures 310n..369n (n = implied decimal places), six digits each.
_MEASURES = {
    "310": "NET WEIGHT (kg)",
    "311": "LENGTH (m)",
    "312": "WIDTH (m)",
    "313": "HEIGHT (m)",
    "314": "AREA (m2)",
    "315": "NET VOLUME (l)",
    "316": "NET VOLUME (m3)",
    "330": "GROSS WEIGHT (kg)",
}
for _prefix, _name in _MEASURES.items():
    for _n in range(6):
        _BASE_SPECS.append(_spec(f"{_prefix}{_n}", _name, "decimal", 6))

AI_TABLE: dict[str, AISpec] = {s.ai: s for s in _BASE_SPECS}
"""Known Application Identifiers."""

# AIs whose length is predefined by the standard (no FNC1 needed after them), by prefix.
_PREDEFINED_LENGTH = {
    "00": 20, "01": 16, "02": 16, "03": 16, "04": 18, "11": 8, "12": 8, "13": 8, "14": 8,
    "15": 8, "16": 8, "17": 8, "18": 8, "19": 8, "20": 4, "31": 10, "32": 10, "33": 10,
    "34": 10, "35": 10, "36": 10, "41": 16,
}  # fmt: skip

AI_FIELD_MAP: dict[str, str] = {
    "21": "serial_number",
    "10": "lot",
    "11": "mfg_date",
    "01": "gtin",
    "240": "part_number",
    "17": "expiry_date",
}
"""Our field names for the AIs that carry key fields."""


def _ai_length(digits: str) -> int | None:
    """Length of the AI that starts ``digits`` (by its first two digits), or None."""
    if len(digits) < 2 or not digits[:2].isdigit():
        return None
    p = digits[:2]
    if p[0] in "01" or p in ("20", "21", "22", "30", "37") or p[0] == "9":
        return 2
    if p[0] == "2" or p[0] == "4":
        return 3
    if p[0] == "3" or p[0] in "78":
        return 4
    return None


@dataclass(frozen=True)
class GS1Element:
    """One parsed element. ``value`` is the data as read; ``normalised`` is the ISO
    date (``date`` AIs), ISO datetime (``datetime``), decimal string (``decimal``)
    or the value itself. ``valid`` is False with a ``reason`` when a rule fails."""

    ai: str
    name: str
    value: str
    valid: bool
    reason: str | None = None
    normalised: str | None = None

    @property
    def field(self) -> str | None:
        """Our field name for this AI, if it carries a key field."""
        return AI_FIELD_MAP.get(self.ai)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ai": self.ai,
            "name": self.name,
            "value": self.value,
            "valid": self.valid,
            "reason": self.reason,
            "normalised": self.normalised,
            "field": self.field,
        }


@dataclass(frozen=True)
class GS1Result:
    """Parsed element string: elements read, parse errors, symbology identifier seen."""

    elements: tuple[GS1Element, ...]
    errors: tuple[str, ...] = ()
    symbology_identifier: str | None = None

    @property
    def ok(self) -> bool:
        """True when parsing succeeded and every element is valid."""
        return bool(self.elements) and not self.errors and all(e.valid for e in self.elements)

    def get(self, ai: str) -> GS1Element | None:
        for e in self.elements:
            if e.ai == ai:
                return e
        return None

    def fields(self) -> dict[str, str]:
        """Key fields by our names (valid elements only); dates as ISO dates."""
        out: dict[str, str] = {}
        for e in self.elements:
            name = e.field
            if name and e.valid and name not in out:
                out[name] = e.normalised or e.value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "elements": [e.to_dict() for e in self.elements],
            "errors": list(self.errors),
            "symbology_identifier": self.symbology_identifier,
            "ok": self.ok,
        }


def parse_gs1_date(yymmdd: str, *, today: date | None = None) -> date | None:
    """GS1 date ``YYMMDD``; ``DD = 00`` is the last day of the month. The century
    follows the GS1 rule relative to ``today`` (default: 20YY)."""
    if len(yymmdd) != 6 or not yymmdd.isdigit():
        return None
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    if today is None:
        year = 2000 + yy
    else:
        century = today.year // 100 * 100
        diff = yy - today.year % 100
        year = (
            century - 100 + yy
            if diff >= 51
            else century + 100 + yy
            if diff <= -50
            else century + yy
        )
    if not 1 <= mm <= 12:
        return None
    if dd == 0:
        dd = calendar.monthrange(year, mm)[1]
    try:
        return date(year, mm, dd)
    except ValueError:
        return None


def _validate(spec: AISpec, value: str, today: date | None) -> GS1Element:
    def bad(reason: str) -> GS1Element:
        return GS1Element(spec.ai, spec.name, value, False, reason)

    if spec.length is not None and len(value) != spec.length:
        return bad(f"AI ({spec.ai}) needs {spec.length} characters, got {len(value)}")
    if not value:
        return bad(f"AI ({spec.ai}) is empty")
    if len(value) > spec.max_length:
        return bad(f"AI ({spec.ai}) allows at most {spec.max_length} characters, got {len(value)}")
    if spec.kind == "an":
        badchars = sorted({c for c in value if c not in _CSET82})
        if badchars:
            return bad(f"AI ({spec.ai}) has characters outside the GS1 set: {''.join(badchars)!r}")
        return GS1Element(spec.ai, spec.name, value, True, None, value)
    if not value.isdigit() or not value.isascii():
        return bad(f"AI ({spec.ai}) must be numeric")
    if spec.check and not CHECK_DIGITS[spec.check].validate(value):
        return bad(f"AI ({spec.ai}) check digit is wrong")
    if spec.kind == "date":
        d = parse_gs1_date(value, today=today)
        if d is None:
            return bad(f"AI ({spec.ai}) is not a valid YYMMDD date")
        return GS1Element(spec.ai, spec.name, value, True, None, d.isoformat())
    if spec.kind == "datetime":
        d = parse_gs1_date(value[:6], today=today)
        hh, mi = int(value[6:8]), int(value[8:10])
        if d is None or value[4:6] == "00" or hh > 23 or mi > 59:
            return bad(f"AI ({spec.ai}) is not a valid YYMMDDHHMM date and time")
        return GS1Element(
            spec.ai, spec.name, value, True, None, f"{d.isoformat()}T{hh:02d}:{mi:02d}"
        )
    if spec.kind == "decimal":
        places = int(spec.ai[-1])
        norm = str(int(value)) if places == 0 else f"{int(value[:-places])}.{value[-places:]}"
        return GS1Element(spec.ai, spec.name, value, True, None, norm)
    return GS1Element(spec.ai, spec.name, value, True, None, value)


def _unknown(ai: str, value: str) -> GS1Element:
    return GS1Element(ai, "UNKNOWN", value, False, f"AI ({ai}) is not supported")


_HRI_AI_RE = re.compile(r"\((\d{2,4})\)")


def _parse_hri(text: str, today: date | None) -> tuple[list[GS1Element], list[str]]:
    elements: list[GS1Element] = []
    errors: list[str] = []
    matches = list(_HRI_AI_RE.finditer(text))
    if not matches or matches[0].start() != 0:
        return elements, ["human-readable GS1 text must start with an AI in parentheses"]
    for i, m in enumerate(matches):
        ai = m.group(1)
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[m.end() : end].strip()
        spec = AI_TABLE.get(ai)
        elements.append(_validate(spec, value, today) if spec else _unknown(ai, value))
    return elements, errors


def _parse_raw(data: str, today: date | None) -> tuple[list[GS1Element], list[str]]:
    elements: list[GS1Element] = []
    errors: list[str] = []
    i, n = 0, len(data)
    while i < n:
        if data[i] == GS:
            i += 1
            continue
        ai_len = _ai_length(data[i : i + 2])
        ai = data[i : i + ai_len] if ai_len else ""
        if not ai_len or len(ai) < ai_len or not ai.isdigit():
            errors.append(f"no valid Application Identifier at position {i}: {data[i : i + 6]!r}")
            break
        spec = AI_TABLE.get(ai)
        start = i + ai_len
        if spec is not None and spec.length is not None:
            end = start + spec.length
            if end > n:
                elements.append(_validate(spec, data[start:], today))
                errors.append(f"AI ({ai}) is truncated")
                break
            value = data[start:end]
            if GS in value:
                elements.append(_validate(spec, value.split(GS, 1)[0], today))
                errors.append(f"AI ({ai}) is shorter than its fixed length {spec.length}")
                break
        else:
            predefined = _PREDEFINED_LENGTH.get(ai[:2])
            if spec is None and predefined is not None:
                end = min(i + predefined, n)
            else:
                gs = data.find(GS, start)
                end = n if gs < 0 else gs
            value = data[start:end]
            if spec is not None and len(value) > spec.max_length:
                elements.append(_validate(spec, value, today))
                errors.append(
                    f"AI ({ai}) data is longer than {spec.max_length}: missing separator (FNC1)?"
                )
                break
        elements.append(_validate(spec, value, today) if spec else _unknown(ai, value))
        i = end
    return elements, errors


# --- GS1 Digital Link URIs (GS1 Digital Link standard 1.x, uncompressed form) ---------------

# Primary keys a Digital Link path can start with, and the qualifiers each allows in the path
# (in this order; the rest, e.g. dates, travel as query attributes ``?17=261231``).
_DL_PRIMARY: dict[str, tuple[str, ...]] = {
    "01": ("22", "10", "21"),
    "00": (),
    "414": ("254",),
    "8004": (),
    "410": (),
}
# Convenience short names some Digital Links use instead of the numeric AI.
_DL_ALIASES = {"gtin": "01", "sscc": "00", "gln": "414", "giai": "8004", "cpv": "22",
               "lot": "10", "ser": "21", "exp": "17"}  # fmt: skip
_DL_RE = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)(\?[^#\s]*)?(#\S*)?$", re.IGNORECASE)


def _dl_ai(segment: str) -> str:
    return _DL_ALIASES.get(segment.lower(), segment)


def _dl_path_start(segments: list[str]) -> int | None:
    """Index of the primary key's AI among the path segments (after any path prefix)."""
    for i in range(len(segments) - 1):
        if _dl_ai(segments[i]) in _DL_PRIMARY:
            return i
    return None


def looks_like_digital_link(text: str) -> bool:
    """An http(s) URI whose path holds a GS1 primary key (``/01/<GTIN>``...), any domain."""
    if not isinstance(text, str) or len(text) > 2048:
        return False
    m = _DL_RE.match(text.strip())
    if not m:
        return False
    segments = [s for s in m.group(1).split("/") if s]
    return _dl_path_start(segments) is not None


def parse_digital_link(uri: str, *, today: date | None = None) -> GS1Result:
    """The GS1 elements of a Digital Link URI: the primary key and key qualifiers of the path
    (``/01/{gtin}/10/{lot}/21/{serial}``, percent-decoded), then the numeric query attributes
    that are Application Identifiers (``?17=261231&3103=000189``; other parameters such as
    ``linkType`` are not GS1 data and are skipped). A GTIN-8/12/13 is padded to 14 digits.
    Each element is validated as in :func:`parse_gs1`; never raises."""
    from urllib.parse import parse_qsl, unquote

    try:
        m = _DL_RE.match(uri.strip()) if isinstance(uri, str) else None
        if not m:
            return GS1Result((), ("not an http(s) URI",))
        segments = [unquote(s) for s in m.group(1).split("/") if s]
        start = _dl_path_start(segments)
        if start is None:
            return GS1Result((), ("no GS1 primary key in the URI path",))
        elements: list[GS1Element] = []
        errors: list[str] = []
        pairs = segments[start:]
        if len(pairs) % 2:
            errors.append("the URI path has an AI without a value")
            pairs = pairs[:-1]
        primary = _dl_ai(pairs[0])
        allowed = list(_DL_PRIMARY[primary])
        seen: set[str] = set()
        for i in range(0, len(pairs), 2):
            ai, value = _dl_ai(pairs[i]), pairs[i + 1]
            if i:
                if ai not in allowed:
                    errors.append(f"AI ({ai}) is not a key qualifier of ({primary}) here")
                    break
                allowed = allowed[allowed.index(ai) + 1 :]  # qualifiers keep their order
            if ai == "01" and value.isdigit() and len(value) in (8, 12, 13):
                value = value.zfill(14)
            spec = AI_TABLE.get(ai)
            elements.append(_validate(spec, value, today) if spec else _unknown(ai, value))
            seen.add(ai)
        for key, value in parse_qsl((m.group(2) or "")[1:], keep_blank_values=True):
            ai = _dl_ai(key)
            if not (ai.isdigit() and 2 <= len(ai) <= 4) or ai in seen:
                continue  # linkType, context, ... are not element data
            spec = AI_TABLE.get(ai)
            elements.append(_validate(spec, value, today) if spec else _unknown(ai, value))
            seen.add(ai)
        return GS1Result(tuple(elements), tuple(errors), None)
    except Exception as exc:  # defensive, like parse_gs1
        return GS1Result((), (f"could not parse the Digital Link: {exc}",))


def looks_like_gs1(text: str) -> bool:
    """Cheap test: symbology identifier of a GS1 symbol, a leading FNC1/GS, a GS1 Digital
    Link URI, or human-readable ``(AI)`` form starting with a known AI."""
    if not isinstance(text, str) or not text:
        return False
    if looks_like_digital_link(text):
        return True
    if text[:3] in GS1_SYMBOLOGY_IDENTIFIERS or text[0] == GS:
        return True
    m = _HRI_AI_RE.match(text)
    return bool(m and m.group(1) in AI_TABLE)


def parse_gs1(text: str | bytes, *, today: date | None = None) -> GS1Result:
    """Parse a GS1 element string (raw, with symbology identifier, human-readable, or a
    GS1 Digital Link URI).

    Never raises. ``today`` sets the century window for two-digit years
    (default 20YY).
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        if not isinstance(text, str):
            return GS1Result((), ("input is not text",))
        if looks_like_digital_link(text):
            return parse_digital_link(text, today=today)
        s = text.replace("<GS>", GS).replace("\u241d", GS).strip(" \r\n\t")
        sym = None
        if s.startswith("]") and len(s) >= 3:
            sym, s = s[:3], s[3:]
            if sym not in GS1_SYMBOLOGY_IDENTIFIERS:
                return GS1Result(
                    (), (f"symbology identifier {sym} does not announce GS1 data",), sym
                )
        if not s.strip(GS):
            return GS1Result((), ("empty GS1 element string",), sym)
        body = s.lstrip(GS)
        if body.startswith("(") or (not body[:1].isdigit() and _HRI_AI_RE.search(body)):
            elements, errors = _parse_hri(s.replace(GS, ""), today)
        else:
            elements, errors = _parse_raw(s.lstrip(GS), today)
        if not elements and not errors:
            errors = ["no GS1 elements found"]
        return GS1Result(tuple(elements), tuple(errors), sym)
    except Exception as exc:  # defensive: a parser must not take the pipeline down
        return GS1Result((), (f"could not parse GS1 data: {exc}",))
