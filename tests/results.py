"""Pipeline results built from the contract (``workers.contract``) for service and view tests.

Each builder makes a :class:`~workers.contract.ReadResult` and returns its ``to_dict()``, the JSON
that the Celery task hands to ``services.read_save``, so the shape is written out once, in the
contract. Only storage, search and rendering are tested with these; reading is tested on real
models.
"""

from __future__ import annotations

from dataclasses import replace

from workers.contract import (
    FieldResult,
    ImageInfo,
    ModelInfo,
    QualityReport,
    ReadResult,
    ReadResultDict,
    ReviewDecision,
    ReviewReason,
    TextLine,
)

AUTO_ACCEPT = 0.85


def _line(order: int, text: str, confidence: float, top: int, right: int) -> TextLine:
    return TextLine(
        order=order,
        text=text,
        confidence=confidence,
        char_confidences=(confidence,) * len(text),
        alternatives=(),
        polygon=((40, top), (right, top), (right, top + 60), (40, top + 60)),
    )


def _field(name: str, value: str, confidence: float, line: TextLine | None, **kw) -> FieldResult:
    return FieldResult(
        name=name,
        raw_value=kw.pop("raw_value", value),
        value=value,
        confidence=confidence,
        line_index=line.order if line is not None else None,
        box=kw.pop("box", line.polygon if line is not None else None),
        valid=kw.pop("valid", True),
        **kw,
    )


def read_result(serial: str = "SN20260042", *, part: str = "PN-7731") -> ReadResult:
    """A clean two-line read (serial and part number) without a review decision."""
    lines = (
        _line(0, f"S/N: {serial}", 0.97, 40, 600),
        _line(1, f"P/N: {part}", 0.93, 130, 520),
    )
    return ReadResult(
        image=ImageInfo(width=900, height=420, format="PNG", exif_orientation=1),
        quality=QualityReport(
            blur=500.0, exposure=0.8, glare_fraction=0.0, text_glare_fraction=0.0
        ),
        lines=lines,
        fields=(
            _field("serial_number", serial, 0.95, lines[0]),
            _field("part_number", part, 0.9, lines[1]),
        ),
        timings_ms={
            "decode": 1.0,
            "quality": 1.0,
            "detection": 50.0,
            "recognition": 40.0,
            "fields": 0.5,
            "total": 93.0,
        },
        models=(ModelInfo(stage="detection", name="test-det", version="0", sha256=None),),
        device="cpu",
        providers=("CPUExecutionProvider",),
        config={"test": True},
    )


def result_dict(serial: str = "SN20260042", *, part: str = "PN-7731") -> ReadResultDict:
    return read_result(serial, part=part).to_dict()


# The verification stage's output for a mislabelled label: the printed serial was corrected
# (O -> 0) and a DataMatrix carries another serial, the part number agrees with the code, the lot
# only the code carries, the date is in the future and the model reads with low confidence.
REVIEW_SERIAL = "SN20260042"
REVIEW_RAW_SERIAL = "SN2O260042"
REVIEW_CODED_SERIAL = "SN20260099"
REVIEW_GS1 = "(01)09506000134352(21)SN20260099(10)L2026A(240)PN-7731"


def _gs1(ai: str, name: str, value: str, field: str) -> dict:
    return {
        "ai": ai,
        "name": name,
        "value": value,
        "valid": True,
        "reason": None,
        "normalised": value,
        "field": field,
    }


def review_read_result() -> ReadResult:
    base = read_result(REVIEW_SERIAL)
    serial_line = replace(base.lines[0], text=f"S/N: {REVIEW_RAW_SERIAL}")
    date_line = _line(2, "MFG 2099-01-01 MODEL X7", 0.6, 220, 600)
    serial, part = base.fields
    serial = replace(
        serial,
        raw_value=REVIEW_RAW_SERIAL,
        confidence=0.86,
        corrected=True,
        correction={
            "from": REVIEW_RAW_SERIAL,
            "to": REVIEW_SERIAL,
            "probability": 0.41,
            "changes": [{"position": 3, "from": "O", "to": "0"}],
        },
        code_value=REVIEW_CODED_SERIAL,
        code_match=False,
        confidence_parts={"recognition": 0.96, "extraction": 1.0, "validation": 0.9},
    )
    part = replace(part, source="text+code", code_value="PN-7731", code_match=True, confidence=0.99)
    future = "2099-01-01 is in the future"
    fields = (
        serial,
        part,
        _field(
            "lot",
            "L2026A",
            0.99,
            None,
            raw_value="",
            source="code",
            code_value="L2026A",
            code_match=True,
            confidence_parts={"code": 0.99},
        ),
        _field(
            "mfg_date",
            "2099-01-01",
            0.18,
            date_line,
            box=None,
            valid=False,
            reason=future,
            reasons=(("date_future", future),),
            iso_date="2099-01-01",
        ),
        _field("model", "X7", 0.6, date_line, box=None),
    )
    code = {
        "format": "DataMatrix",
        "text": REVIEW_GS1,
        "raw_bytes_b64": None,
        "polygon": [[680, 40], [860, 40], [860, 220], [680, 220]],
        "gs1": [
            _gs1("01", "GTIN", "09506000134352", "gtin"),
            _gs1("21", "SERIAL", REVIEW_CODED_SERIAL, "serial_number"),
            _gs1("10", "BATCH/LOT", "L2026A", "lot"),
            _gs1("240", "ADDITIONAL ID", "PN-7731", "part_number"),
        ],
        "gs1_errors": [],
        "symbology_identifier": "]d2",
        "content_type": "GS1",
        "orientation": 0,
    }
    mismatch = {
        "field": "serial_number",
        "printed": REVIEW_SERIAL,
        "coded": REVIEW_CODED_SERIAL,
        "code_format": "DataMatrix",
        "source": "gs1:21",
    }
    reasons = (
        ReviewReason("invalid", "mfg_date", future),
        ReviewReason(
            "low_confidence",
            "model",
            "confidence 0.60 is below the auto-accept threshold 0.85",
            {"confidence": 0.6, "threshold": AUTO_ACCEPT},
        ),
        ReviewReason("missing", "imei", "IMEI was not found"),
        ReviewReason(
            "mislabel",
            "serial_number",
            f"printed {REVIEW_SERIAL!r} but the DataMatrix code says {REVIEW_CODED_SERIAL!r}",
            {"printed": REVIEW_SERIAL, "coded": REVIEW_CODED_SERIAL, "code_format": "DataMatrix"},
        ),
    )
    return replace(
        base,
        lines=(serial_line, base.lines[1], date_line),
        fields=fields,
        codes=(code,),
        mismatches=(mismatch,),
        review=ReviewDecision(needs_review=True, auto_accept=AUTO_ACCEPT, reasons=reasons),
    )


def review_result_dict() -> ReadResultDict:
    return review_read_result().to_dict()


def accepted_result_dict(serial: str = "SN20260777") -> ReadResultDict:
    """A clean read the verification stage auto-accepted."""
    accepted = ReviewDecision(needs_review=False, auto_accept=AUTO_ACCEPT)
    return replace(read_result(serial), review=accepted).to_dict()
