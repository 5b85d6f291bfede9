"""Stage: key-field extraction from recognised lines, driven by the product's field schema.

The schema is resolved with the field catalogue (``workers.fieldspec.resolve_schema``): each
field's keywords (the schema's, else the catalogue's), normalisation and rules come from there,
so a customer's own field definition changes what is found without retraining.
:func:`check_value` is how every extractor turns a raw span into a value: trailing punctuation
trimmed, the field's normalisation, then its rules (pattern, format, check digit, date).

``FieldExtractor`` is the interface; ``RuleFieldExtractor`` is v0 (keywords + rules). The
transformer extractor implements the same ``__call__(lines, schema) -> list[FieldResult]``.

Optional fields that are not found are left out; a missing required field yields a
``FieldResult`` with ``value=""``, ``valid=False``, ``reason="required field not found"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from workers.fieldspec.catalogue import resolve_schema
from workers.fieldspec.grammar import FieldSpec, ProductSchema, normalise, validate_field

from .types import FieldResult, ModelInfo, TextLine

# Match quality multipliers (confidence = line confidence x quality).
Q_SAME_LINE = 1.0
Q_NEXT_LINE = 0.9
Q_REGEX_ONLY = 0.6
Q_INVALID = 0.5
Q_NO_DIGIT = 0.8  # regex-only token without any digit

_SEPARATORS = " \t:：#=.-_|"
_TRAILING = " \t.,;|"
_ABBREVIATION_END = re.compile(r"(?<![^\W\d_])[^\W\d_]{1,4}\.$")


class FieldExtractor(Protocol):
    """Interface of every field extractor (rules now, a transformer later)."""

    model_info: ModelInfo | None

    def __call__(
        self, lines: list[TextLine], schema: dict[str, Any] | ProductSchema | None
    ) -> list[FieldResult]: ...


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


def check_value(raw: str, spec: FieldSpec, *, today: date | None = None) -> tuple[str, bool, str]:
    """``(value, valid, reason)`` of an extracted raw span: trailing punctuation trimmed, the
    spec's normalisation, then its rules (``reason`` joins the failed rules' messages). A date
    keeps a final dot that makes it one (``16.11.``: day and month; ``16.11`` is ambiguous), free
    text (no pattern, format, date or check digit) the dot of an abbreviation (``ACME Inc.``)."""
    text = raw.strip().strip(_TRAILING)
    free = not (spec.pattern or spec.format or spec.date or spec.check_digit)
    if free and text and _ABBREVIATION_END.search(raw.rstrip(" \t,;|")):
        text += "."  # free text keeps the dot of "Inc." / "Co., Ltd." / "S.p.A."
    value = normalise(text, spec)
    if not value:
        return value, False, "empty value"
    day = today or date.today()
    check = validate_field(value, spec, today=day)
    if spec.date is not None and "date_unparsed" in check.codes and raw.rstrip().endswith("."):
        dotted = validate_field(normalise(text + ".", spec), spec, today=day)
        if "date_unparsed" not in dotted.codes:
            check = dotted
    return check.value, check.valid, "; ".join(r.message for r in check.reasons)


@dataclass
class _Candidate:
    raw: str
    value: str
    valid: bool
    reason: str
    quality: float
    line_index: int
    confidence: float


@dataclass(frozen=True)
class _Spec:
    """A resolved field as the rule extractor uses it: keywords longest first; ``keyless``:
    a bare value that satisfies the rules may be taken without a keyword."""

    spec: FieldSpec
    keywords: tuple[str, ...]
    keyless: bool

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def required(self) -> bool:
        return self.spec.required


class RuleFieldExtractor:
    """v0 extractor: keyword on the same line, else the line below, else a bare value that
    satisfies the field's rules (keyless fields only)."""

    model_info: ModelInfo | None = ModelInfo(
        stage="fields", name="rule-field-extractor", version="v0", sha256=None
    )

    def __init__(self) -> None:
        self._kw_cache: dict[str, re.Pattern[str]] = {}

    def _kw(self, keyword: str) -> re.Pattern[str]:
        if keyword not in self._kw_cache:
            self._kw_cache[keyword] = _keyword_regex(keyword)
        return self._kw_cache[keyword]

    def __call__(
        self, lines: list[TextLine], schema: dict[str, Any] | ProductSchema | None
    ) -> list[FieldResult]:
        ps = resolve_schema(schema)
        specs = [
            _Spec(f, tuple(sorted(set(f.keywords), key=len, reverse=True)), f.name in ps.keyless)
            for f in ps.fields
        ]
        all_keywords = [k for s in specs for k in s.keywords]
        results: dict[str, FieldResult] = {}
        used: set[tuple[int, str]] = set()  # (line index, value) already taken by a field
        for spec in specs:  # pass 1: keyword-anchored
            cand = self._by_keyword(spec, lines, all_keywords)
            if cand is not None:
                results[spec.name] = self._result(spec, cand, lines)
                used.add((cand.line_index, cand.value))
        for spec in specs:  # pass 2: a bare value matching the rules, for keyless fields
            if spec.name in results or not spec.keyless:
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
    def _result(self, spec: _Spec, c: _Candidate, lines: list[TextLine]) -> FieldResult:
        reason = "" if c.valid else (c.reason or "empty value")
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

    def _pick_value(self, spec: _Spec, rest: str) -> tuple[str, str, bool, str]:
        """From the text after a keyword choose (raw, value, valid, reason): the whole rest,
        else the first token (or token run) that satisfies the rules, else the first token."""
        rest = rest.strip().lstrip(_SEPARATORS).strip()
        if not rest:
            return "", "", False, "empty value"
        value, ok, why = check_value(rest, spec.spec)
        if ok:
            return rest, value, True, ""
        tokens = rest.split()
        for i in range(len(tokens)):
            for j in range(len(tokens), i, -1):
                raw = " ".join(tokens[i:j])
                value, ok, _why = check_value(raw, spec.spec)
                if ok:
                    return raw, value, True, ""
        if tokens:
            value, _ok, why = check_value(tokens[0], spec.spec)
            return tokens[0], value, False, why
        return rest, value, ok, why

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
        self, spec: _Spec, lines: list[TextLine], all_keywords: list[str]
    ) -> _Candidate | None:
        found: list[_Candidate] = []
        for i, line in enumerate(lines):
            for kw in spec.keywords:
                m = self._kw(kw).search(line.text)
                if not m:
                    continue
                rest = self._cut_at_other_keyword(line.text[m.end() :], spec.keywords, all_keywords)
                raw, value, valid, why = self._pick_value(spec, rest)
                if value:
                    q = Q_SAME_LINE if valid else Q_SAME_LINE * Q_INVALID
                    found.append(_Candidate(raw, value, valid, why, q, i, line.confidence * q))
                else:
                    j = self._line_below(lines, i)
                    if j is not None:
                        raw, value, valid, why = self._pick_value(spec, lines[j].text)
                        if value:
                            q = Q_NEXT_LINE if valid else Q_NEXT_LINE * Q_INVALID
                            found.append(
                                _Candidate(raw, value, valid, why, q, j, lines[j].confidence * q)
                            )
                break  # longest keyword that matched this line wins
        if not found:
            return None
        return max(found, key=lambda c: (c.valid, c.confidence))

    def _by_regex(
        self,
        spec: _Spec,
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
                value, valid, _why = check_value(raw, spec.spec)
                if not valid or (i, value) in used:
                    continue
                q = Q_REGEX_ONLY * (1.0 if any(c.isdigit() for c in value) else Q_NO_DIGIT)
                conf = line.confidence * q
                if best is None or conf > best.confidence:
                    best = _Candidate(raw, value, True, "", q, i, conf)
        return best
