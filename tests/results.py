"""Hand-built pipeline result dicts (the ReadResult.to_dict() shape) for service and view tests.

Only storage, search and rendering are tested with these; reading is tested on real models.
"""

from __future__ import annotations


def result_dict(serial: str = "SN20260042", *, part: str = "PN-7731") -> dict:
    lines = [
        {
            "order": 0,
            "text": f"S/N: {serial}",
            "confidence": 0.97,
            "char_confidences": [0.97] * (5 + len(serial)),
            "alternatives": [],
            "polygon": [[40, 40], [600, 40], [600, 100], [40, 100]],
        },
        {
            "order": 1,
            "text": f"P/N: {part}",
            "confidence": 0.93,
            "char_confidences": [0.93] * (5 + len(part)),
            "alternatives": [],
            "polygon": [[40, 130], [520, 130], [520, 190], [40, 190]],
        },
    ]
    fields = [
        {
            "name": "serial_number",
            "raw_value": serial,
            "value": serial,
            "confidence": 0.95,
            "line_index": 0,
            "box": lines[0]["polygon"],
            "valid": True,
            "reason": "",
        },
        {
            "name": "part_number",
            "raw_value": part,
            "value": part,
            "confidence": 0.9,
            "line_index": 1,
            "box": lines[1]["polygon"],
            "valid": True,
            "reason": "",
        },
    ]
    return {
        "image": {"width": 900, "height": 420, "format": "PNG", "exif_orientation": 1},
        "quality": {
            "blur": 500.0,
            "exposure": 0.8,
            "glare_fraction": 0.0,
            "text_glare_fraction": 0.0,
            "ok": True,
            "warnings": [],
        },
        "lines": lines,
        "fields": fields,
        "timings_ms": {
            "decode": 1.0,
            "quality": 1.0,
            "detection": 50.0,
            "recognition": 40.0,
            "fields": 0.5,
            "total": 93.0,
        },
        "models": [{"stage": "detection", "name": "test-det", "version": "0", "sha256": None}],
        "device": "cpu",
        "providers": ["CPUExecutionProvider"],
        "config": {"test": True},
    }


# The verification stage's output for a mislabelled label: the printed serial was corrected
# (O -> 0) and a DataMatrix carries another serial, the part number agrees with the code, the lot
# only the code carries, the date is in the future and the model reads with low confidence.
REVIEW_SERIAL = "SN20260042"
REVIEW_RAW_SERIAL = "SN2O260042"
REVIEW_CODED_SERIAL = "SN20260099"
REVIEW_GS1 = "(01)09506000134352(21)SN20260099(10)L2026A(240)PN-7731"


def review_result_dict() -> dict:
    result = result_dict(REVIEW_SERIAL)
    lines = result["lines"]
    lines[0]["text"] = f"S/N: {REVIEW_RAW_SERIAL}"
    lines.append(
        {
            "order": 2,
            "text": "MFG 2099-01-01 MODEL X7",
            "confidence": 0.6,
            "char_confidences": [0.6] * 23,
            "alternatives": [],
            "polygon": [[40, 220], [600, 220], [600, 280], [40, 280]],
        }
    )
    serial, part = result["fields"]
    serial.update(
        raw_value=REVIEW_RAW_SERIAL,
        value=REVIEW_SERIAL,
        confidence=0.86,
        corrected=True,
        correction={
            "from": REVIEW_RAW_SERIAL,
            "to": REVIEW_SERIAL,
            "probability": 0.41,
            "changes": [{"position": 3, "from": "O", "to": "0"}],
        },
        source="text",
        code_value=REVIEW_CODED_SERIAL,
        code_match=False,
        confidence_parts={"recognition": 0.96, "extraction": 1.0, "validation": 0.9},
    )
    part.update(source="text+code", code_value="PN-7731", code_match=True, confidence=0.99)
    result["fields"] += [
        {
            "name": "lot",
            "raw_value": "",
            "value": "L2026A",
            "confidence": 0.99,
            "line_index": None,
            "box": None,
            "valid": True,
            "reason": "",
            "source": "code",
            "code_value": "L2026A",
            "code_match": True,
            "confidence_parts": {"code": 0.99},
        },
        {
            "name": "mfg_date",
            "raw_value": "2099-01-01",
            "value": "2099-01-01",
            "confidence": 0.18,
            "line_index": 2,
            "box": None,
            "valid": False,
            "reason": "2099-01-01 is in the future",
            "reasons": [{"code": "date_future", "message": "2099-01-01 is in the future"}],
            "iso_date": "2099-01-01",
        },
        {
            "name": "model",
            "raw_value": "X7",
            "value": "X7",
            "confidence": 0.6,
            "line_index": 2,
            "box": None,
            "valid": True,
            "reason": "",
        },
    ]
    result["codes"] = [
        {
            "format": "DataMatrix",
            "text": REVIEW_GS1,
            "raw_bytes_b64": None,
            "polygon": [[680, 40], [860, 40], [860, 220], [680, 220]],
            "gs1": [
                {
                    "ai": "01",
                    "name": "GTIN",
                    "value": "09506000134352",
                    "valid": True,
                    "reason": None,
                    "normalised": "09506000134352",
                    "field": "gtin",
                },
                {
                    "ai": "21",
                    "name": "SERIAL",
                    "value": REVIEW_CODED_SERIAL,
                    "valid": True,
                    "reason": None,
                    "normalised": REVIEW_CODED_SERIAL,
                    "field": "serial_number",
                },
                {
                    "ai": "10",
                    "name": "BATCH/LOT",
                    "value": "L2026A",
                    "valid": True,
                    "reason": None,
                    "normalised": "L2026A",
                    "field": "lot",
                },
                {
                    "ai": "240",
                    "name": "ADDITIONAL ID",
                    "value": "PN-7731",
                    "valid": True,
                    "reason": None,
                    "normalised": "PN-7731",
                    "field": "part_number",
                },
            ],
            "gs1_errors": [],
            "symbology_identifier": "]d2",
            "content_type": "GS1",
            "orientation": 0,
        }
    ]
    result["mismatches"] = [
        {
            "field": "serial_number",
            "printed": REVIEW_SERIAL,
            "coded": REVIEW_CODED_SERIAL,
            "code_format": "DataMatrix",
            "source": "gs1:21",
        }
    ]
    reasons = [
        ("invalid", "mfg_date", "2099-01-01 is in the future"),
        ("low_confidence", "model", "confidence 0.60 is below the auto-accept threshold 0.85"),
        ("missing", "imei", "IMEI was not found"),
        (
            "mislabel",
            "serial_number",
            "printed 'SN20260042' but the DataMatrix code says 'SN20260099'",
        ),
    ]
    result["needs_review"] = True
    result["review"] = {
        "needs_review": True,
        "auto_accept": 0.85,
        "reasons": [{"code": c, "field": f, "message": m} for c, f, m in reasons],
    }
    return result


def accepted_result_dict(serial: str = "SN20260777") -> dict:
    """A clean read the verification stage auto-accepted."""
    result = result_dict(serial)
    result["needs_review"] = False
    result["review"] = {"needs_review": False, "auto_accept": 0.85, "reasons": []}
    return result
