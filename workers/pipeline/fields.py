"""Stage: key-field extraction from recognised lines, driven by a product-type schema.

Schema (JSON on ProductType; the full grammar is ``workers.pipeline.validation``)::

    {"fields": [{"name": "serial_number", "label": "Serial number", "required": true,
                 "pattern": "^[A-Z0-9-]{6,20}$", "keywords": ["S/N", "SN"]}, ...]}

``keywords`` defaults per well-known name (``DEFAULT_KEYWORDS``). v0 normalises by field name
(``DEFAULT_NORMALIZE``): ``serial`` (strip, uppercase, remove inner spaces), ``code`` (strip,
uppercase, single spaces) or ``text`` (strip), else ``code``. ``pattern`` is matched
(``re.fullmatch``) against the normalised value.

``FieldExtractor`` is the interface; ``RuleFieldExtractor`` is v0 (keywords + regex). A learned
extractor will implement the same ``__call__(lines, schema) -> list[FieldResult]``.

Optional fields that are not found are left out; a missing required field yields a
``FieldResult`` with ``value=""``, ``valid=False``, ``reason="required field not found"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from .types import FieldResult, ModelInfo, TextLine

DEFAULT_KEYWORDS: dict[str, list[str]] = {
    "serial_number": [
        "S/N",
        "SN",
        "Serial No.",
        "Serial No",
        "Serial Number",
        "Serial",
        "SER NO",
        "제조번호",
        "일련번호",
        "시리얼",
        "시리얼번호",
    ],
    "part_number": ["P/N", "PN", "Part No.", "Part No", "Part Number", "품번", "부품번호"],
    "lot": ["LOT", "Lot No.", "Lot No", "Batch", "Batch No.", "로트", "로트번호"],
    "mfg_date": [
        "MFG",
        "MFD",
        "MFG Date",
        "MFD Date",
        "Mfg. Date",
        "Date",
        "Manufactured",
        "Production Date",
        "제조일자",
        "제조일",
        "제조년월일",
    ],
    "model": ["Model", "Model No.", "Model No", "Type", "모델명", "모델"],
    "mac": ["MAC", "MAC Address", "MAC ADDR"],
    "imei": ["IMEI", "IMEI No."],
    "manufacturer": ["Manufacturer", "Mfr", "Made by", "제조사", "제조원"],
}

DEFAULT_NORMALIZE: dict[str, str] = {
    "serial_number": "serial",
    "imei": "serial",
    "mac": "serial",
    "part_number": "code",
    "lot": "serial",
    "model": "code",
    "mfg_date": "text",
    "manufacturer": "text",
    "company": "text",
    "date": "text",
    "address": "text",
    "total": "text",
}

DEFAULT_SCHEMA: dict[str, Any] = {
    "fields": [
        {
            "name": "serial_number",
            "label": "Serial number",
            "required": True,
            "pattern": r"^(?=.*[0-9])[A-Z0-9][A-Z0-9-]{4,24}$",
        },
        {"name": "part_number", "label": "Part number", "required": False},
        {"name": "lot", "label": "Lot / batch", "required": False},
        {
            "name": "mfg_date",
            "label": "Manufacturing date",
            "required": False,
            "pattern": r"^\d{2,4}[-./ ]?\d{1,2}([-./ ]?\d{1,4})?$",
        },
        {"name": "model", "label": "Model", "required": False},
        {
            "name": "mac",
            "label": "MAC address",
            "required": False,
            "pattern": r"^([0-9A-F]{2}[:-]?){5}[0-9A-F]{2}$",
        },
        {"name": "imei", "label": "IMEI", "required": False, "pattern": r"^[0-9]{15}$"},
        {"name": "manufacturer", "label": "Manufacturer", "required": False},
    ]
}

# Match quality multipliers (confidence = line confidence x quality).
Q_SAME_LINE = 1.0
Q_NEXT_LINE = 0.9
Q_REGEX_ONLY = 0.6
Q_INVALID = 0.5
Q_NO_DIGIT = 0.8  # regex-only token without any digit

_SEPARATORS = " \t:：#=.-_|"
_TRAILING = " \t.,;|"


class FieldExtractor(Protocol):
    """Interface of every field extractor (rules now, a transformer later)."""

    model_info: ModelInfo | None

    def __call__(
        self, lines: list[TextLine], schema: dict[str, Any] | None
    ) -> list[FieldResult]: ...


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    required: bool
    pattern: re.Pattern[str] | None
    keywords: tuple[str, ...]
    normalize: str


# OCR look-alikes tolerated inside keywords of 4+ characters ("SeriaI" -> "Serial").
_CONFUSABLE = {
    "I": "[IiLl1|]",
    "L": "[IiLl1|]",
    "O": "[Oo0]",
    "S": "[Ss5]",
}


def _is_ascii(s: str) -> bool:
    return all(ord(c) < 128 for c in s)


def _keyword_regex(keyword: str) -> re.Pattern[str]:
    """Tolerant keyword regex: separators between parts are optional ("S/N" ~ "SN" ~ "S N")."""
    parts = [p for p in re.split(r"[^0-9A-Za-z\uac00-\ud7a3]+", keyword) if p]
    tolerant = len("".join(parts)) >= 4  # short keywords ("SN", "PN") must match exactly
    body = r"[\s./\\]*".join(
        "".join(_CONFUSABLE.get(c.upper(), re.escape(c)) if tolerant else re.escape(c) for c in p)
        for p in parts
    )
    if _is_ascii(keyword):
        return re.compile(rf"(?<![0-9A-Za-z]){body}\.?(?![0-9A-Za-z])", re.IGNORECASE)
    return re.compile(body)


def parse_schema(schema: dict[str, Any] | None) -> list[FieldSpec]:
    """Validate a schema dict (None -> ``DEFAULT_SCHEMA``) into ``FieldSpec``s.

    Raises ``ValueError`` on a malformed schema (bad regex, missing name).
    """
    schema = DEFAULT_SCHEMA if schema is None else schema
    raw_fields = schema.get("fields") if isinstance(schema, dict) else None
    if not isinstance(raw_fields, list):
        raise ValueError("schema must be a dict with a 'fields' list")
    specs: list[FieldSpec] = []
    for f in raw_fields:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
            raise ValueError(f"schema field without a name: {f!r}")
        name = f["name"]
        pattern = f.get("pattern")
        try:
            compiled = re.compile(pattern) if pattern else None
        except re.error as exc:
            raise ValueError(f"field {name!r}: bad pattern {pattern!r}: {exc}") from exc
        keywords = f.get("keywords") or DEFAULT_KEYWORDS.get(name, [])
        specs.append(
            FieldSpec(
                name=name,
                label=str(f.get("label") or name),
                required=bool(f.get("required", False)),
                pattern=compiled,
                keywords=tuple(sorted({str(k) for k in keywords}, key=len, reverse=True)),
                normalize=DEFAULT_NORMALIZE.get(name, "code"),
            )
        )
    return specs


def missing_required(name: str) -> FieldResult:
    """The result for a required field that was not found (what every extractor reports)."""
    return FieldResult(
        name=name,
        raw_value="",
        value="",
        confidence=0.0,
        line_index=None,
        box=None,
        valid=False,
        reason="required field not found",
    )


def normalize_value(raw: str, mode: str) -> str:
    v = raw.strip().strip(_TRAILING)
    if mode == "serial":
        return re.sub(r"\s+", "", v).upper()
    if mode == "code":
        return re.sub(r"\s+", " ", v).upper()
    return re.sub(r"\s+", " ", v)


@dataclass
class _Candidate:
    raw: str
    value: str
    valid: bool
    quality: float
    line_index: int
    confidence: float


class RuleFieldExtractor:
    """v0 extractor: keyword on the same line, else the line below, else a bare regex match."""

    model_info: ModelInfo | None = ModelInfo(
        stage="fields", name="rule-field-extractor", version="v0", sha256=None
    )

    def __init__(self) -> None:
        self._kw_cache: dict[str, re.Pattern[str]] = {}

    def _kw(self, keyword: str) -> re.Pattern[str]:
        if keyword not in self._kw_cache:
            self._kw_cache[keyword] = _keyword_regex(keyword)
        return self._kw_cache[keyword]

    def __call__(self, lines: list[TextLine], schema: dict[str, Any] | None) -> list[FieldResult]:
        specs = parse_schema(schema)
        all_keywords = [k for s in specs for k in s.keywords]
        results: dict[str, FieldResult] = {}
        used: set[tuple[int, str]] = set()  # (line index, value) already taken by a field
        for spec in specs:  # pass 1: keyword-anchored
            cand = self._by_keyword(spec, lines, all_keywords)
            if cand is not None:
                results[spec.name] = self._result(spec, cand, lines)
                used.add((cand.line_index, cand.value))
        for spec in specs:  # pass 2: bare regex for the rest
            if spec.name in results or spec.pattern is None:
                continue
            cand = self._by_regex(spec, lines, used, all_keywords)
            if cand is not None:
                results[spec.name] = self._result(spec, cand, lines)
                used.add((cand.line_index, cand.value))
        out: list[FieldResult] = []
        for spec in specs:
            if spec.name in results:
                out.append(results[spec.name])
            elif spec.required:
                out.append(missing_required(spec.name))
        return out

    # ---- helpers ---------------------------------------------------------------------------
    def _result(self, spec: FieldSpec, c: _Candidate, lines: list[TextLine]) -> FieldResult:
        reason = ""
        if not c.valid:
            reason = (
                f"value {c.value!r} does not match the format {spec.pattern.pattern!r}"
                if spec.pattern
                else "empty value"
            )
        return FieldResult(
            name=spec.name,
            raw_value=c.raw,
            value=c.value,
            confidence=c.confidence,
            extraction_confidence=c.quality,
            line_index=c.line_index,
            box=lines[c.line_index].polygon,
            valid=c.valid,
            reason=reason,
        )

    def _check(self, spec: FieldSpec, raw: str) -> tuple[str, bool]:
        value = normalize_value(raw, spec.normalize)
        if not value:
            return value, False
        return value, spec.pattern is None or spec.pattern.fullmatch(value) is not None

    def _pick_value(self, spec: FieldSpec, rest: str) -> tuple[str, str, bool]:
        """From the text after a keyword choose (raw, value, valid): the whole rest, else the
        first token (or token run) that matches the pattern, else the first token."""
        rest = rest.strip().lstrip(_SEPARATORS).strip()
        if not rest:
            return "", "", False
        value, ok = self._check(spec, rest)
        if ok:
            return rest, value, True
        tokens = rest.split()
        for i in range(len(tokens)):
            for j in range(len(tokens), i, -1):
                raw = " ".join(tokens[i:j])
                value, ok = self._check(spec, raw)
                if ok:
                    return raw, value, True
        if spec.pattern is not None and tokens:
            value, _ = self._check(spec, tokens[0])
            return tokens[0], value, False
        value, ok = self._check(spec, rest)
        return rest, value, ok

    def _cut_at_other_keyword(
        self, rest: str, own: tuple[str, ...], all_keywords: list[str]
    ) -> str:
        cut = len(rest)
        for kw in all_keywords:
            if kw in own:
                continue
            m = self._kw(kw).search(rest)
            if m and m.start() > 0 and m.start() < cut:
                cut = m.start()
        return rest[:cut]

    def _line_below(self, lines: list[TextLine], i: int) -> int | None:
        """Index of the nearest line under line ``i`` that overlaps it horizontally."""
        p = lines[i].polygon
        x0, x1 = min(x for x, _ in p), max(x for x, _ in p)
        cy = sum(y for _, y in p) / len(p)
        h = max(y for _, y in p) - min(y for _, y in p)
        best, best_d = None, float("inf")
        for j, ln in enumerate(lines):
            if j == i:
                continue
            q = ln.polygon
            qx0, qx1 = min(x for x, _ in q), max(x for x, _ in q)
            qcy = sum(y for _, y in q) / len(q)
            if qcy <= cy + 0.5 * h or min(x1, qx1) - max(x0, qx0) <= 0:
                continue
            d = qcy - cy
            if d < best_d and d < 4 * max(h, 1.0):
                best, best_d = j, d
        if best is None and i + 1 < len(lines):
            return i + 1
        return best

    def _by_keyword(
        self, spec: FieldSpec, lines: list[TextLine], all_keywords: list[str]
    ) -> _Candidate | None:
        found: list[_Candidate] = []
        for i, line in enumerate(lines):
            for kw in spec.keywords:
                m = self._kw(kw).search(line.text)
                if not m:
                    continue
                rest = self._cut_at_other_keyword(line.text[m.end() :], spec.keywords, all_keywords)
                raw, value, valid = self._pick_value(spec, rest)
                if value:
                    q = Q_SAME_LINE if valid else Q_SAME_LINE * Q_INVALID
                    found.append(_Candidate(raw, value, valid, q, i, line.confidence * q))
                else:
                    j = self._line_below(lines, i)
                    if j is not None:
                        raw, value, valid = self._pick_value(spec, lines[j].text)
                        if value:
                            q = Q_NEXT_LINE if valid else Q_NEXT_LINE * Q_INVALID
                            found.append(
                                _Candidate(raw, value, valid, q, j, lines[j].confidence * q)
                            )
                break  # longest keyword that matched this line wins
        if not found:
            return None
        return max(found, key=lambda c: (c.valid, c.confidence))

    def _by_regex(
        self,
        spec: FieldSpec,
        lines: list[TextLine],
        used: set[tuple[int, str]],
        all_keywords: list[str],
    ) -> _Candidate | None:
        """Best single whitespace token matching the pattern anywhere. Tokens without a digit
        get a lower quality (codes on labels nearly always contain digits; words rarely do)."""
        best: _Candidate | None = None
        for i, line in enumerate(lines):
            for raw in line.text.split():
                raw = raw.strip(_SEPARATORS)
                if not raw or any(self._kw(k).fullmatch(raw) for k in all_keywords):
                    continue
                value, valid = self._check(spec, raw)
                if not valid or (i, value) in used:
                    continue
                q = Q_REGEX_ONLY * (1.0 if any(c.isdigit() for c in value) else Q_NO_DIGIT)
                conf = line.confidence * q
                if best is None or conf > best.confidence:
                    best = _Candidate(raw, value, True, q, i, conf)
        return best
