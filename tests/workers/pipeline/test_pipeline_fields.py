"""Rule field extractor v0 (pure Python, no models)."""

from __future__ import annotations

import pytest

from workers.fieldspec.catalogue import resolve_schema as parse_schema
from workers.pipeline.fields import RuleFieldExtractor
from workers.pipeline.types import TextLine


def _lines(*texts: str, conf: float = 0.9) -> list[TextLine]:
    """One line per text, stacked 60 px apart, 400 px wide."""
    out = []
    for i, t in enumerate(texts):
        y = 20 + 60 * i
        out.append(
            TextLine(
                order=i,
                text=t,
                confidence=conf,
                char_confidences=(conf,) * len(t),
                alternatives=(),
                polygon=((10.0, y), (410.0, y), (410.0, y + 40.0), (10.0, y + 40.0)),
            )
        )
    return out


SERIAL_SCHEMA = {
    "fields": [
        {"name": "serial_number", "required": True, "pattern": "^[A-Z0-9-]{6,20}$"},
        {"name": "part_number", "required": False, "pattern": "^[0-9]{3}-[0-9]{4}$"},
    ]
}


@pytest.fixture
def extract():
    return RuleFieldExtractor()


def _get(results, name):
    return next(f for f in results if f.name == name)


def test_keyword_same_line(extract):
    res = extract(_lines("MODEL XR-500", "S/N: ab12 345678", "P/N 123-4567"), SERIAL_SCHEMA)
    sn = _get(res, "serial_number")
    assert sn.value == "AB12345678" and sn.valid and sn.reason == ""
    assert sn.raw_value == "ab12 345678"
    assert sn.line_index == 1 and sn.box == _lines("", "x")[1].polygon
    assert sn.confidence == pytest.approx(0.9)
    assert _get(res, "part_number").value == "123-4567"


def test_keyword_then_value_on_next_line(extract):
    res = extract(_lines("Serial Number", "QX-99812A", "something else"), SERIAL_SCHEMA)
    sn = _get(res, "serial_number")
    assert sn.value == "QX-99812A" and sn.valid and sn.line_index == 1
    assert sn.confidence == pytest.approx(0.9 * 0.9)


def test_korean_keyword(extract):
    res = extract(_lines("제조번호: KR2024A0001", "모델명 ABC-12"), None)
    sn = _get(res, "serial_number")
    assert sn.value == "KR2024A0001" and sn.valid
    assert _get(res, "model").value == "ABC-12"


def test_regex_only_bare_token(extract):
    res = extract(_lines("ACME GMBH", "ZX81234567"), SERIAL_SCHEMA)
    sn = _get(res, "serial_number")
    assert sn.value == "ZX81234567" and sn.valid and sn.line_index == 1
    assert sn.confidence == pytest.approx(0.9 * 0.6)


def test_required_missing(extract):
    res = extract(_lines("hello", "world"), SERIAL_SCHEMA)
    sn = _get(res, "serial_number")
    assert sn.value == "" and not sn.valid and sn.reason == "required field not found"
    assert sn.line_index is None and sn.box is None
    assert all(f.name != "part_number" for f in res)  # optional and absent: left out


def test_invalid_format_reported(extract):
    res = extract(_lines("S/N: AB#1"), SERIAL_SCHEMA)
    sn = _get(res, "serial_number")
    assert sn.value == "AB#1" and not sn.valid
    assert "does not match" in sn.reason
    assert sn.confidence == pytest.approx(0.9 * 0.5)


def test_two_fields_on_one_line_and_ocr_lookalike_keyword(extract):
    res = extract(_lines("SeriaI No. QQ123456 P/N: 555-0001"), SERIAL_SCHEMA)
    assert _get(res, "serial_number").value == "QQ123456"
    assert _get(res, "part_number").value == "555-0001"


def test_short_keyword_not_matched_inside_words(extract):
    # "SN" inside "SNAP" and "PN" inside "PNEUMATIC" are not keywords
    res = extract(
        _lines("SNAP-ON PNEUMATIC"), {"fields": [{"name": "serial_number", "required": True}]}
    )
    assert _get(res, "serial_number").reason == "required field not found"


def test_bad_schema_raises():
    with pytest.raises(ValueError):
        parse_schema({"fields": [{"name": "x", "pattern": "("}]})
    with pytest.raises(ValueError):
        parse_schema({"nope": []})
