"""Barcode / 2D-code decoding (zxing-cpp) and the printed-vs-coded cross-check.

:func:`decode_codes` reads every DataMatrix, QR, Code 128 / GS1-128, EAN/UPC,
Code 39/93, ITF, DataBar, PDF417 and Aztec symbol in an image. GS1 content
(announced by zxing's content type or the symbology identifier ``]C1``,
``]d2``, ``]Q3`` ...) is parsed into Application Identifiers with
:mod:`workers.fieldspec.gs1`.

:func:`cross_check` compares printed key fields with what the codes carry and
returns the disagreements: the mislabel alarm (a label printed for one unit,
stuck on another).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.fieldspec.checkdigits import CHECK_DIGITS
from workers.fieldspec.grammar import DEFAULT_DATE_FORMATS, parse_date, parse_month_day
from workers.fieldspec.gs1 import (
    GS1_SYMBOLOGY_IDENTIFIERS,
    GS1Element,
    looks_like_digital_link,
    parse_digital_link,
    parse_gs1,
)
from workers.fieldspec.identifiers import identifier_key

__all__ = [
    "DEFAULT_FORMATS",
    "CodeResult",
    "Mismatch",
    "cross_check",
    "CodeReader",
    "decode_codes",
]

DEFAULT_FORMATS: tuple[str, ...] = (
    "DataMatrix",
    "QRCode",
    "MicroQRCode",
    "Aztec",
    "PDF417",
    "Code128",
    "Code39",
    "Code93",
    "ITF",
    "EAN13",
    "EAN8",
    "UPCA",
    "UPCE",
    "DataBar",
    "DataBarExpanded",
)
"""zxing-cpp format names read by default (all common industrial and retail codes)."""


@dataclass(frozen=True)
class CodeResult:
    """One decoded symbol.

    ``format``: zxing-cpp format name (``DataMatrix``, ``QRCode``, ``Code128``, ``EAN13`` ...).
    ``text``: decoded text; GS1 content in human-readable form ``(01)...(21)...``.
    ``raw_bytes_b64``: the symbol's raw data bytes (base64; GS1 separators as 0x1D),
    ``None`` when empty. ``polygon``: four ``[x, y]`` corners (top-left, top-right,
    bottom-right, bottom-left of the symbol) in input-image pixel coordinates.
    ``gs1``: parsed elements for GS1 content, else ``None``. ``gs1_errors``: parse
    problems. ``symbology_identifier``: e.g. ``]d2``; ``content_type``: zxing's
    (``Text``, ``Binary``, ``GS1`` ...); ``orientation``: degrees.
    """

    format: str
    text: str
    raw_bytes_b64: str | None
    polygon: tuple[tuple[int, int], ...]
    gs1: tuple[GS1Element, ...] | None = None
    gs1_errors: tuple[str, ...] = ()
    symbology_identifier: str = ""
    content_type: str = ""
    orientation: int = 0

    @property
    def raw_bytes(self) -> bytes:
        return base64.b64decode(self.raw_bytes_b64) if self.raw_bytes_b64 else b""

    def gs1_value(self, ai: str) -> str | None:
        """Value of a valid GS1 element (normalised, e.g. ISO date), or None."""
        for e in self.gs1 or ():
            if e.ai == ai and e.valid:
                return e.normalised or e.value
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "text": self.text,
            "raw_bytes_b64": self.raw_bytes_b64,
            "polygon": [list(p) for p in self.polygon],
            "gs1": [e.to_dict() for e in self.gs1] if self.gs1 is not None else None,
            "gs1_errors": list(self.gs1_errors),
            "symbology_identifier": self.symbology_identifier,
            "content_type": self.content_type,
            "orientation": self.orientation,
        }


class CodeReader:
    """Stage: every code on the photo. ``__call__(rgb) -> list[CodeResult]`` (see
    :func:`decode_codes`); ``enabled=False`` (``OCR_CODES=0``) reads nothing."""

    def __init__(self, *, enabled: bool = True, formats: Sequence[str] = DEFAULT_FORMATS) -> None:
        self.enabled = enabled
        self.formats = tuple(formats)

    def __call__(self, rgb: np.ndarray) -> list[CodeResult]:
        return decode_codes(rgb, formats=self.formats) if self.enabled else []


def _to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 HxW luminance from HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(a.max()) <= 1.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        rgb = a[:, :, :3].astype(np.float32)
        a = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) + 0.5).astype(np.uint8)
    if a.ndim != 2:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _polygon(position: Any) -> tuple[tuple[int, int], ...]:
    corners = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    return tuple((int(p.x), int(p.y)) for p in corners)


def decode_codes(
    rgb: np.ndarray,
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    try_harder: bool = True,
) -> list[CodeResult]:
    """Decode all barcodes and 2D codes in an image.

    Args:
        rgb: HxWx3 uint8 RGB (HxW gray and HxWx4 RGBA accepted too), image pixel frame.
        formats: zxing-cpp format names to look for.
        try_harder: search rotated and downscaled versions, inverted symbols, and
            retry with a global-histogram binariser when the first pass finds nothing.

    Returns:
        One :class:`CodeResult` per distinct symbol (same format + text reported once),
        in reading order (top to bottom, left to right).
    """
    import zxingcpp  # local import: only the worker pays for the extension

    gray = _to_gray(rgb)
    if gray.size == 0:
        return []
    fmts = zxingcpp.barcode_formats_from_str(",".join(formats))
    kwargs: dict[str, Any] = {
        "formats": fmts,
        "try_rotate": try_harder,
        "try_downscale": try_harder,
        "try_invert": try_harder,
        "text_mode": zxingcpp.TextMode.HRI,
    }
    found = list(zxingcpp.read_barcodes(gray, **kwargs))
    if not found and try_harder:
        found = list(
            zxingcpp.read_barcodes(gray, binarizer=zxingcpp.Binarizer.GlobalHistogram, **kwargs)
        )
    results: list[CodeResult] = []
    seen: set[tuple[str, str]] = set()
    for b in found:
        if not b.valid:
            continue
        fmt = b.format.name
        key = (fmt, b.text)
        if key in seen:
            continue
        seen.add(key)
        raw = bytes(b.bytes)
        sym = b.symbology_identifier or ""
        ctype = b.content_type.name
        gs1 = None
        gs1_errors: tuple[str, ...] = ()
        if ctype == "GS1" or sym in GS1_SYMBOLOGY_IDENTIFIERS:
            parsed = parse_gs1(raw if raw else b.text)
            if parsed.elements or ctype == "GS1":
                gs1, gs1_errors = parsed.elements, parsed.errors
        elif looks_like_digital_link(b.text):  # a QR code holding a GS1 Digital Link URI
            parsed = parse_digital_link(b.text)
            if parsed.elements:
                gs1, gs1_errors = parsed.elements, parsed.errors
        results.append(
            CodeResult(
                format=fmt,
                text=b.text,
                raw_bytes_b64=base64.b64encode(raw).decode("ascii") if raw else None,
                polygon=_polygon(b.position),
                gs1=gs1,
                gs1_errors=gs1_errors,
                symbology_identifier=sym,
                content_type=ctype,
                orientation=int(b.orientation),
            )
        )
    results.sort(key=lambda r: (min(p[1] for p in r.polygon), min(p[0] for p in r.polygon)))
    return results


# --------------------------------------------------------------------------------------
# Cross-check
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """A printed field disagrees with a code. ``printed``/``coded`` are the values as
    read; ``code_format`` says which symbol; ``source`` is ``gs1:<AI>`` when the code
    value came from a GS1 element, ``text`` when it is the code's whole text."""

    field: str
    printed: str
    coded: str
    code_format: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "field": self.field,
            "printed": self.printed,
            "coded": self.coded,
            "code_format": self.code_format,
            "source": self.source,
        }


_SERIALISH = re.compile(r"[A-Z0-9][A-Z0-9./_-]{3,39}")
KEYED_SERIAL = re.compile(
    r"(?:^|[\s;,|&?])(?:S/?N|SER(?:IAL)?(?:[ _]?(?:NO|NUMBER))?)\s*[:=#]\s*([A-Z0-9][A-Z0-9./_-]*)",
    re.IGNORECASE,
)
_GS1_COMPARED = {"21": "serial_number", "10": "lot", "01": "gtin", "240": "part_number",
                 "11": "mfg_date", "17": "expiry_date"}  # fmt: skip


_DAY_FORMATS = [f for f in DEFAULT_DATE_FORMATS if "DD" in f] + ["YYMMDD"]


def _same(field: str, printed: str, coded: str) -> bool:
    if field in ("mfg_date", "expiry_date"):
        b = parse_date(coded)
        if b is not None:
            a = parse_date(printed, _DAY_FORMATS)
            if a is not None:
                return a == b
            day = parse_month_day(printed)  # printed without a year (16 NOV): day and month
            if day is not None:
                return day == (b.month, b.day)
            a = parse_date(printed)  # month or ISO-week precision: compare at that precision
            if a is not None:
                if "W" in printed.upper():
                    return a.isocalendar()[:2] == b.isocalendar()[:2]
                return (a.year, a.month) == (b.year, b.month)
    if field == "gtin":
        # GTIN-8/12/13 printed vs GTIN-14 in AI (01): compare with leading zeros removed.
        return identifier_key(printed).lstrip("0") == identifier_key(coded).lstrip("0")
    return identifier_key(printed) == identifier_key(coded)


def _whole_text_kind(text: str) -> str | None:
    """Which field a non-GS1 code's whole text most likely is, or None."""
    t = identifier_key(text)
    if len(t) == 15 and t.isdigit() and CHECK_DIGITS["luhn"].validate(t):
        return "imei"
    if len(t) in (8, 12, 13, 14) and t.isdigit() and CHECK_DIGITS["gs1"].validate(t):
        return "gtin"
    if _SERIALISH.fullmatch("".join(text.split()).upper()):  # as printed: a URL is no serial
        return "serial_number"
    return None


def cross_check(fields: Mapping[str, str | None], codes: Iterable[CodeResult]) -> list[Mismatch]:
    """Printed fields that disagree with the codes on the same label.

    Compared: GS1 elements (21 serial, 10 lot, 01 GTIN, 240 part number, 11
    production date, 17 expiry date) against the printed field of the same meaning; for
    non-GS1 codes, a keyed serial in the text (``SN: ...``, ``S/N=...``) or the whole text
    when it looks like a serial, an IMEI or a GTIN. Identifiers are compared
    upper-cased without spaces or dashes; dates as dates (a date printed without a year,
    ``16 NOV``, by its day and month).

    GS1 elements are authoritative: every disagreeing one is reported. Values
    guessed from a code's whole text are weaker evidence: a whole text equal to
    any other printed field (e.g. a Code 128 of the part number) is not a
    serial, and they raise a mismatch only when no code agrees with the printed
    value.
    """
    printed = {k: v.strip() for k, v in fields.items() if isinstance(v, str) and v.strip()}
    printed_norm = {identifier_key(v) for v in printed.values()}
    mismatches: list[Mismatch] = []
    guesses: dict[str, list[tuple[str, str]]] = {}  # field -> [(coded, format)]
    agreed: set[str] = set()
    for code in codes:
        if code.gs1 is not None:
            for e in code.gs1:
                name = _GS1_COMPARED.get(e.ai)
                if not name or not e.valid or name not in printed:
                    continue
                coded = e.normalised or e.value
                if _same(name, printed[name], coded):
                    agreed.add(name)
                else:
                    mismatches.append(
                        Mismatch(name, printed[name], e.value, code.format, f"gs1:{e.ai}")
                    )
            continue
        text = code.text.strip()
        keyed = KEYED_SERIAL.search(text)
        if keyed:
            guesses.setdefault("serial_number", []).append((keyed.group(1), code.format))
            continue
        kind = _whole_text_kind(text)
        if kind is None:
            continue
        if kind == "serial_number" and identifier_key(text) in printed_norm:
            # It is one of the printed fields (serial or another one): consistent.
            if identifier_key(text) == identifier_key(printed.get("serial_number", "")):
                agreed.add("serial_number")
            continue
        guesses.setdefault(kind, []).append((text, code.format))
    for name, values in guesses.items():
        if name not in printed or name in agreed:
            continue
        if any(_same(name, printed[name], v) for v, _ in values):
            continue
        for v, fmt in values:
            mismatches.append(Mismatch(name, printed[name], v, fmt, "text"))
    return mismatches
