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
