"""Stage after field extraction: schema validation, format-constrained correction, codes
(DataMatrix / QR / 1-D, GS1) filling and cross-checking printed fields, per-field confidence and
the read's ``needs_review`` decision.

Inputs: the recognised lines (with per-character confidences and top-k alternatives), the
extractor's ``FieldResult``s, the product schema (JSON, or already resolved by ``workers.fieldspec.resolve_schema``), the decoded codes
and the product's auto-accept threshold.

Per field:

1. ``workers.fieldspec.validate_field`` on the extracted text (schema normalisation, pattern, format,
   check digit, date plausibility).
2. When it fails and the value is one line's text, ``correction.correct`` searches the most
   probable string over the recogniser's per-character alternatives that validates. The field
   keeps the raw read (``raw_value``), the corrected value (``value``) and ``corrected=True``
   with the changes. A correction whose changed characters the recogniser gave less than
   ``MIN_CHANGE_PROB`` for is not taken: it would be a guess, not a reading (this is what keeps
   wrong values from passing a check digit).
3. Confidence = recognition x extraction x validation x look-alike doubt:

   - recognition: the lowest character confidence of the value (after glare lowering; a
     corrected character counts with the probability of its chosen alternative; a character
     counts with its alternatives that the field's normalisation makes the same character,
     ``_value_confidences``: "c" for "C" in an upper-cased serial);
   - extraction: the extractor's own score (``FieldResult.extraction_confidence``);
   - validation: 1 when valid as read, ``CORRECTED_FACTOR`` when valid after correction,
     ``INVALID_FACTOR`` when invalid. A check-digit field with two or more characters below
     ``CHECK_SURE_PROB`` is invalid (``uncertain``) even when its check digit passes;
   - look-alike doubt: x (1 - ``LOOKALIKE_WEIGHT`` x (the recogniser's probability of a
     look-alike character that would make *another valid* value, ``confidence_parts
     ["lookalike"]``, less ``LOOKALIKE_FLOOR``)): "BI-0976W" read with "O" at 4 % is also a valid model "BI-O976W", so a
     sure-looking read is not sure; a GTIN or date has no such second reading.

   That product is the *raw* confidence (``confidence_parts["raw"]``); ``confidence`` is its
   calibrated probability of being right (``calibration.CalibrationMap``, fitted on held-out
   data for the running models; the identity when there is none for them).
   A field whose value a code confirms gets at least ``CODE_CONFIDENCE`` (codes carry their
   own error detection); a field only a code carries is added with ``source="code"``.

The read's ``needs_review`` is the rule of ``workers.fieldspec.review`` (missing or invalid
fields, confidence below the auto-accept threshold, a value that may be truncated -- its line
is cut at the value's end by glare, the frame edge or the detector, ``truncation.line_cuts`` --
a code that disagrees with the print).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from workers.fieldspec.catalogue import resolve_schema, spec_for
from workers.fieldspec.grammar import FieldSpec, ProductSchema, normalise, validate_field
from workers.fieldspec.identifiers import identifier_key
from workers.fieldspec.review import ReviewDecision, decide_review

from .barcodes import KEYED_SERIAL, CodeResult, cross_check
from .calibration import IDENTITY, CalibrationMap
from .correction import LOOKALIKES, constrain_chars, correct
from .truncation import LineCut, value_cut
from .types import FieldResult, TextLine

CORRECTED_FACTOR = 0.9
INVALID_FACTOR = 0.3
CODE_CONFIDENCE = 0.99
# A changed character must have had at least this probability among the recogniser's
# alternatives (look-alike fallbacks are priced at 5 % of the character they replace).
MIN_CHANGE_PROB = 0.03
# With a check digit, every character the correction keeps must be this sure: when an
# uncertain character is left alone, the check digit was satisfied by luck, not by evidence
# (two misread digits, one "repaired" into another wrong digit that happens to pass).
CHECKED_KEEP_PROB = 0.6
# A value that passes its check digit with two or more characters below this confidence is
# not trusted (reason ``uncertain``): the check digit detects one error, not several.
CHECK_SURE_PROB = 0.8
LOOKALIKE_PRIOR = 0.05  # ``correction.correct``'s default ``lookalike_prior``
# The raw confidence is lowered by this many times the look-alike doubt above a floor
# (``_lookalike_doubt``: the recogniser's probability for a look-alike character that would
# make another valid value). The recogniser is over-sure there: on the calibration fit half
# (synth + clean labels), valid values with raw >= 0.7 were wrong 7 times in 25 with a doubt
# >= 0.04, 4 times in 443 below it; codes with an O/0 at a letter/digit edge and a doubt
# > 0.01 were wrong 12 times in 44, the others 2 in 218 (bench/NOTES-calibration.md,
# 2026-12-02). Weights 4..16 and floors 0..0.02 fit that half about equally well.
LOOKALIKE_WEIGHT = 8.0
LOOKALIKE_FLOOR = 0.01
# ``_in_run``: a value whose other characters (at least this many) are all digits (letters)
# allows no letter (digit) look-alike
_RUN_MIN = 4


def product_schema(schema: Mapping[str, Any] | ProductSchema | None) -> ProductSchema:
    """The validation schema of a product type's JSON (None: the default schema), resolved
    with the field catalogue (``workers.fieldspec.catalogue.resolve_schema``)."""
    return resolve_schema(schema)


@dataclasses.dataclass(frozen=True)
class _Span:
    """Where a field's raw value sits in one line: characters ``start:end`` of its text."""

    line: TextLine
    start: int
    end: int

    @property
    def confidences(self) -> tuple[float, ...]:
        return tuple(self.line.char_confidences[self.start : self.end])

    @property
    def alternatives(self) -> list[list[tuple[str, float]]] | None:
        alts = self.line.alternatives
        if len(alts) != len(self.line.text):
            return None
        text = self.line.text
        out: list[list[tuple[str, float]]] = []
        for i in range(self.start, self.end):
            a = [(str(c), float(p)) for c, p in alts[i]]
            if not any(c == text[i] for c, _ in a):  # the read char first, at its confidence
                a.insert(0, (text[i], float(self.line.char_confidences[i])))
            out.append(a)
        return out


def locate(raw: str, lines: Sequence[TextLine], line_index: int | None) -> _Span | None:
    """The raw value's characters in its line (exact, else with any whitespace between its
    words), or None (value assembled from several lines, or not found)."""
    if line_index is None or not (0 <= line_index < len(lines)) or not raw.strip():
        return None
    line = lines[line_index]
    if len(line.char_confidences) != len(line.text):
        return None
    k = line.text.find(raw)
    if k >= 0:
        return _Span(line, k, k + len(raw))
    words = raw.split()
    m = re.search(r"\s+".join(re.escape(w) for w in words), line.text)
    if m:
        return _Span(line, m.start(), m.end())
    return None


@dataclasses.dataclass(frozen=True)
class Verified:
    """What the stage returns: the checked fields, the review decision and the mislabel
    alarms (``barcodes.Mismatch.to_dict()``)."""

    fields: tuple[FieldResult, ...]
    review: ReviewDecision
    mismatches: tuple[dict[str, str], ...] = ()


class FieldVerifier:
    """Validation, correction, codes, confidence and review (see the module docstring).
    ``today``: returns the date the date rules are anchored to (tests pin it)."""

    def __init__(
        self,
        *,
        today: Callable[[], date] = date.today,
        calibration: CalibrationMap = IDENTITY,
    ) -> None:
        self.today = today
        self.calibration = calibration

    def __call__(
        self,
        fields: Sequence[FieldResult],
        lines: Sequence[TextLine],
        schema: Mapping[str, Any] | ProductSchema | None,
        codes: Sequence[CodeResult] = (),
        *,
        auto_accept: float | None = None,
        cuts: Mapping[int, LineCut] | None = None,
    ) -> Verified:
        """``cuts``: truncation causes per line (``TextLine.order`` -> ``LineCut``, from
        ``truncation.line_cuts``); None: no truncation guard (lines without pixels)."""
        ps = product_schema(schema)
        threshold = float(auto_accept if auto_accept is not None else ps.auto_accept)
        today = self.today()
        out: list[FieldResult] = []
        seen: set[str] = set()
        for f in fields:
            spec = spec_for(f.name, ps)
            out.append(self._verify(f, spec, lines, today))
            seen.add(f.name)

        # Codes. Valid printed values are cross-checked (mislabel alarm when a code says
        # otherwise); a field the print lacks, or read invalid, takes a valid GS1 value.
        printed = {f.name: f.value for f in out if f.value and f.valid}
        mismatches = cross_check(printed, codes)
        mismatch_by_field = {m.field: m for m in mismatches}
        coded = _coded_values(codes)
        plain = _plain_code_values(codes)
        merged: list[FieldResult] = []
        for f in out:
            cv = coded.get(f.name)
            if f.name in mismatch_by_field:
                f = dataclasses.replace(
                    f, code_value=mismatch_by_field[f.name].coded, code_match=False
                )
            elif (
                f.value
                and f.valid
                and ((cv is not None and _agrees(f, cv)) or identifier_key(f.value) in plain)
            ):
                f = dataclasses.replace(
                    f,
                    code_value=cv if cv is not None else f.value,
                    code_match=True,
                    source="text+code",
                    confidence=max(f.confidence, CODE_CONFIDENCE),
                )
            elif cv is not None and not (f.value and f.valid):
                got = self._from_code(f.name, cv, ps, today)
                if got is not None:
                    note = f"printed value {f.raw_value!r} " + (
                        "invalid" if f.raw_value else "not found"
                    )
                    f = dataclasses.replace(
                        got, raw_value=f.raw_value or got.raw_value, reason=got.reason or note
                    )
            merged.append(f)
        for name, cv in coded.items():
            if name in seen or ps.field(name) is None:
                continue
            got = self._from_code(name, cv, ps, today)
            if got is not None:
                merged.append(got)
        truncated = _truncated(merged, lines, cuts) if cuts else {}
        return Verified(
            fields=tuple(merged),
            review=decide_review(merged, ps, threshold, mismatches, truncated),
            mismatches=tuple(m.to_dict() for m in mismatches),
        )

    # ---- one field ---------------------------------------------------------------------------
    def _verify(
        self, f: FieldResult, spec: FieldSpec, lines: Sequence[TextLine], today: date
    ) -> FieldResult:
        extraction = f.extraction_confidence
        if extraction is None:  # an extractor that only gives one number: treat it as both
            extraction = 1.0
        if not f.raw_value.strip():  # required and not found
            check = validate_field("", spec, today=today)
            return dataclasses.replace(
                f,
                valid=check.valid,
                reason=f.reason or "; ".join(r.message for r in check.reasons),
                reasons=tuple((r.code, r.message) for r in check.reasons)
                or (("required", f.reason or "required field not found"),),
                confidence=0.0,
                confidence_parts={"recognition": 0.0, "extraction": 0.0, "validation": 0.0},
            )
        span = locate(f.raw_value, lines, f.line_index)
        if span is not None:
            raw = (
                f.raw_value
                if f.raw_value == span.line.text[span.start : span.end]
                else (span.line.text[span.start : span.end])
            )
            char_conf = _value_confidences(span, spec)
        else:
            raw = f.raw_value
            line_conf = (
                lines[f.line_index].confidence
                if f.line_index is not None and 0 <= f.line_index < len(lines)
                else f.confidence
            )
            char_conf = [line_conf]
        # the value as extracted (the extractor may trim a span: "RM9.00" -> "9.00")
        extracted = f.value if f.value else raw
        check = validate_field(extracted, spec, today=today)
        correction = None
        if not check.valid and span is not None and _correctable(spec) and _value_is_span(f, raw):
            c = correct(raw, span.alternatives, spec, today=today, lookalike_prior=LOOKALIKE_PRIOR)
            if c is not None and c.corrected and _plausible(c, span, spec):
                correction = c
        if not check.valid and correction is None and span is not None and _value_is_span(f, raw):
            # characters the field cannot hold (another script, a sign outside its rule) give
            # way to the recogniser's own possible alternative, whatever the grammar's precision
            correction = constrain_chars(raw, span.alternatives, spec)
        if correction is not None:
            check = validate_field(correction.value, spec, today=today)
            # a changed character counts with the probability of what it became
            for pos, _frm, to in correction.changes:
                p = _alt_prob(span, pos, to)
                char_conf[pos] = p
        recognition = min(char_conf) if char_conf else 0.0
        reasons = tuple((r.code, r.message) for r in check.reasons)
        valid = check.valid
        lookalike = (
            _lookalike_doubt(span, check.value, spec, today)
            if span is not None and valid and correction is None and _value_is_span(f, raw)
            else 0.0
        )
        if valid and spec.check_digit and span is not None:
            # A check digit catches one misread character, not several: with two or more
            # unsure characters a wrong value passes it one time in ten.
            unsure = [
                i for i, c in enumerate(char_conf) if c < CHECK_SURE_PROB and not raw[i].isspace()
            ]
            if len(unsure) >= 2:
                valid = False
                reasons = (
                    (
                        "uncertain",
                        f"passes the {spec.check_digit} check digit, but {len(unsure)} "
                        f"characters were read with confidence below {CHECK_SURE_PROB:.1f}",
                    ),
                )
        if valid:
            validation = CORRECTED_FACTOR if correction is not None else 1.0
        else:
            validation = INVALID_FACTOR
        doubt = max(0.0, 1.0 - LOOKALIKE_WEIGHT * max(0.0, lookalike - LOOKALIKE_FLOOR))
        raw_conf = float(recognition) * float(extraction) * validation * doubt
        conf = self.calibration(f.name, raw_conf)
        return dataclasses.replace(
            f,
            raw_value=f.raw_value,
            value=check.value,
            valid=valid,
            reason="; ".join(m for _c, m in reasons),
            reasons=reasons,
            corrected=correction is not None,
            correction=None
            if correction is None
            else {
                "from": raw,
                "to": check.value,
                "probability": round(correction.probability, 6),
                "changes": [
                    {"position": pos, "from": frm, "to": to} for pos, frm, to in correction.changes
                ],
            },
            iso_date=check.iso_date,
            confidence=conf,
            confidence_parts={
                "recognition": round(float(recognition), 5),
                "extraction": round(float(extraction), 5),
                "validation": validation,
                "lookalike": round(float(lookalike), 5),
                "raw": round(raw_conf, 5),
            },
        )

    def _from_code(
        self, name: str, value: str, ps: ProductSchema, today: date
    ) -> FieldResult | None:
        spec = spec_for(name, ps)
        check = validate_field(value, spec, today=today)
        if not check.value:
            return None
        reasons = tuple((r.code, r.message) for r in check.reasons)
        return FieldResult(
            name=name,
            raw_value=value,
            value=check.value,
            confidence=CODE_CONFIDENCE if check.valid else CODE_CONFIDENCE * INVALID_FACTOR,
            line_index=None,
            box=None,
            valid=check.valid,
            reason="; ".join(m for _c, m in reasons),
            reasons=reasons,
            source="code",
            code_value=value,
            code_match=True,
            iso_date=check.iso_date,
            confidence_parts={"code": CODE_CONFIDENCE},
        )


def _truncated(
    fields: Sequence[FieldResult], lines: Sequence[TextLine], cuts: Mapping[int, LineCut]
) -> dict[str, dict[str, Any]]:
    """Field name -> ``{"side", "causes"}`` for printed values whose line may be cut at the
    value's end (``truncation.value_cut``). A value a code confirms is not truncated."""
    out: dict[str, dict[str, Any]] = {}
    for f in fields:
        if not f.value or f.source != "text" or f.line_index is None:
            continue
        if not 0 <= f.line_index < len(lines):
            continue
        line = lines[f.line_index]
        span = locate(f.raw_value, lines, f.line_index)
        got = value_cut(
            cuts.get(line.order),
            line.text,
            None if span is None else span.start,
            None if span is None else span.end,
        )
        if got is not None:
            out[f.name] = got
    return out


def _value_confidences(span: _Span, spec: FieldSpec) -> list[float]:
    """Per character of the span: its confidence (glare-lowered) times the share of the
    recogniser's alternatives that normalise to the same stored character for this field
    (``fieldspec.grammar.normalise``: "c" for "C" in an upper-cased serial, "-" for " " where
    separators are dropped), i.e. the confidence in the *value*, not in the glyph's case or
    the separator's kind. A separator the field drops counts only the alternatives that would
    put a character into the value (space or nothing is the same value). An alternative that
    changes the value counts against it as before."""
    confs = list(span.confidences)
    alts = span.alternatives
    if not alts or not spec.normalise:
        return confs
    text = span.line.text[span.start : span.end]
    whole = normalise(text, spec)
    for i, (ch, a) in enumerate(zip(text, alts, strict=False)):
        if not ch.isalnum() and normalise(text[:i] + text[i + 1 :], spec) == whole:
            # a separator the field drops ("7470 0170 7178" -> "747001707178"): whether the
            # recogniser wrote it or nothing (CTC blank) is the same value; only an
            # alternative that would leave a character in the value counts against it
            confs[i] = max(
                0.0, 1.0 - sum(float(p) for c, p in a if c != ch and normalise(c, spec).strip())
            )
            continue
        key = normalise(ch, spec)
        same = {ch}
        p_read = next((float(p) for c, p in a if c == ch), 0.0)
        mass = p_read
        for c, p in a:
            if c not in same and normalise(c, spec) == key:
                same.add(c)
                mass += float(p)
        if p_read > 0.0 and mass > p_read:
            confs[i] = min(1.0, confs[i] * mass / p_read)
    return confs


def _lookalike_doubt(span: _Span, value: str, spec: FieldSpec, today: date) -> float:
    """The largest probability the recogniser gave a look-alike of a character it read
    (``correction.LOOKALIKES``: 0/O, 1/I, 5/S, 8/B, ...) when the value with that one
    character swapped is *also valid* for the field and differs from it: the chance that a
    sure-looking read chose the wrong one of two readings the rules cannot tell apart
    ("BI-0976W" / "BI-O976W" for a model; a GTIN or a date has no such second reading).
    Characters inside a run of their own kind are left out (``_in_run``). Only for values as
    read (a corrected value is priced by the correction)."""
    alts = span.alternatives
    if not alts:
        return 0.0
    text = span.line.text[span.start : span.end]
    best = 0.0
    for i, (ch, a) in enumerate(zip(text, alts, strict=False)):
        if ch.isspace() or _in_run(text, i):
            continue
        look = set(LOOKALIKES.get(ch, ()) + LOOKALIKES.get(ch.upper(), ()))
        look |= {c.lower() for c in look} | {c.upper() for c in look}
        look.discard(ch)
        for c, p in a:
            if c == ch or c not in look or float(p) <= best:
                continue
            other = validate_field(text[:i] + c + text[i + 1 :], spec, today=today)
            if other.valid and identifier_key(other.value) != identifier_key(value):
                best = float(p)
    return best


def _in_run(text: str, i: int) -> bool:
    """Whether ``text[i]`` sits inside a run of its own kind (a digit between two digits, a
    letter between two letters, separators skipped: "7470 0170" holds its "0"s on both sides),
    or the value's other characters are all of its kind (at least ``_RUN_MIN`` of them:
    "7470 0170 7178"): there a look-alike of the other kind ("O" inside "2091") is not a
    reading the value's context allows; at a group's edge next to the other kind or at the
    value's end in a mixed value ("BI-0976W", "L191126O") it is."""
    ch = text[i]
    if not ch.isalnum():
        return False
    digit = ch.isdigit()
    others = [c for j, c in enumerate(text) if j != i and c.isalnum()]
    if len(others) >= _RUN_MIN and all(c.isdigit() == digit for c in others):
        return True
    left = next((c for c in reversed(text[:i]) if c.isalnum()), None)
    right = next((c for c in text[i + 1 :] if c.isalnum()), None)
    if left is None or right is None:
        return False
    return left.isdigit() == digit and right.isdigit() == digit


def _value_is_span(f: FieldResult, raw: str) -> bool:
    """Correct only values that are the located characters themselves (not a part the
    extractor cut out of them, e.g. a receipt total "RM9.00" -> "9.00")."""
    return bool(raw.strip()) and (not f.value or identifier_key(raw) == identifier_key(f.value))


def _alt_prob(span: _Span, pos: int, to: str) -> float:
    """Probability the corrector priced character ``pos`` becoming ``to`` at: the recogniser's
    alternative, or a look-alike of one at ``LOOKALIKE_PRIOR`` times its probability."""
    alts = span.alternatives or []
    if to == "" or pos >= len(alts):
        return 0.0
    best = 0.0
    for c, p in alts[pos]:
        if c == to:
            best = max(best, float(p))
        if to in LOOKALIKES.get(c, ()) + LOOKALIKES.get(c.upper(), ()):
            best = max(best, LOOKALIKE_PRIOR * float(p))
    return best


def _correctable(spec: FieldSpec) -> bool:
    """Correction needs a precise grammar: a format, a check digit or a date rule. A loose regex
    alone (e.g. "letters and digits, one digit at least") would let a look-alike change turn
    any word into a "valid" value."""
    return bool(spec.format or spec.check_digit or spec.date)


def _plausible(c: Any, span: _Span, spec: FieldSpec) -> bool:
    """Every change has real evidence (``MIN_CHANGE_PROB``); with a check digit, also every
    kept character is sure (``CHECKED_KEEP_PROB``)."""
    if any(_alt_prob(span, pos, to) < MIN_CHANGE_PROB for pos, _frm, to in c.changes):
        return False
    if spec.check_digit:
        changed = {pos for pos, _frm, _to in c.changes}
        text, confs = span.line.text, span.line.char_confidences  # glare-lowered confidences
        for i in range(span.end - span.start):
            if i in changed or text[span.start + i].isspace():
                continue
            if confs[span.start + i] < CHECKED_KEEP_PROB:
                return False
    return True


def _agrees(f: FieldResult, coded: str) -> bool:
    """Printed value == coded value (dates as dates, identifiers without separators; a date
    printed without a year, ``--11-16``, by its day and month)."""
    if f.iso_date and re.fullmatch(r"\d{4}-\d{2}-\d{2}", coded):
        if f.iso_date.startswith("--"):
            return f.iso_date[1:] == coded[4:]
        return f.iso_date == coded
    if f.name == "gtin":
        return identifier_key(f.value).lstrip("0") == identifier_key(coded).lstrip("0")
    return identifier_key(f.value) == identifier_key(coded)


def _plain_code_values(codes: Sequence[CodeResult]) -> set[str]:
    """Identifiers carried by non-GS1 codes: the whole text and keyed serials (``SN: ...``)."""
    out: set[str] = set()
    for code in codes:
        if code.gs1 is not None:
            continue
        out.add(identifier_key(code.text))
        for m in KEYED_SERIAL.finditer(code.text):
            out.add(identifier_key(m.group(1)))
    return out


def _coded_values(codes: Sequence[CodeResult]) -> dict[str, str]:
    """Field values carried by GS1 elements of the codes (first valid one per field;
    ``gs1.AI_FIELD_MAP``: 21 serial, 10 lot, 01 GTIN, 240 part number, 11 / 17 dates)."""
    out: dict[str, str] = {}
    for code in codes:
        for e in code.gs1 or ():
            name = e.field
            if name and e.valid and name not in out:
                out[name] = e.normalised or e.value
    return out
