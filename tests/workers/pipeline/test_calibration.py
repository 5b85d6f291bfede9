"""Calibration map: isotonic fit (monotone), per-field groups, the identity fallback when the
running models are not the ones it was fitted for, and the verifier/review using the
calibrated confidence against the product's threshold."""

from __future__ import annotations

import json
import logging
from datetime import date

import numpy as np
import pytest

from workers.pipeline.calibration import (
    CALIBRATION_PATH,
    IDENTITY,
    CalibrationMap,
    isotonic_fit,
    load_calibration,
    model_key,
    read_calibration,
)
from workers.pipeline.types import FieldResult, ModelInfo, TextLine
from workers.pipeline.verification import FieldVerifier

MODELS = [
    ModelInfo("detection", "det", "1", "aa"),
    ModelInfo("recognition", "rec", "2", "bb"),
    ModelInfo("fields", "extractor", "3", "cc"),
]


def test_isotonic_fit_is_monotone_and_follows_the_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 4000)
    y = (rng.uniform(0, 1, 4000) < x**3).astype(float)  # overconfident raw scores
    xs, ys = isotonic_fit(x, y)
    assert len(xs) <= 64
    assert all(b >= a for a, b in zip(xs, xs[1:], strict=False))
    assert all(b >= a for a, b in zip(ys, ys[1:], strict=False))
    cal = CalibrationMap(maps={"_all": (tuple(xs), tuple(ys))})
    grid = np.linspace(0, 1, 101)
    vals = [cal("serial_number", g) for g in grid]
    assert all(b >= a for a, b in zip(vals, vals[1:], strict=False))
    assert abs(cal("lot", 0.9) - 0.9**3) < 0.08  # P(correct) at raw 0.9 is about 0.73
    assert abs(cal("lot", 0.5) - 0.5**3) < 0.08


def test_groups_and_identity():
    cal = CalibrationMap(
        maps={"_all": ((0.0, 1.0), (0.0, 0.5)), "date": ((0.0, 1.0), (0.0, 1.0))},
    )
    assert cal("mfg_date", 0.8) == pytest.approx(0.8)  # the date group
    assert cal("serial_number", 0.8) == pytest.approx(0.4)  # pooled
    assert IDENTITY("serial_number", 0.42) == 0.42 and IDENTITY.identity


def test_non_monotone_map_is_rejected():
    with pytest.raises(ValueError):
        CalibrationMap.from_dict({"format": 1, "maps": {"_all": {"x": [0, 1], "y": [0.9, 0.1]}}})


def test_key_mismatch_falls_back_to_identity_with_a_warning(tmp_path, caplog):
    path = tmp_path / "calibration.json"
    cal = CalibrationMap(key=model_key(MODELS), maps={"_all": ((0.0, 0.9, 1.0), (0.0, 0.5, 0.99))})
    path.write_text(json.dumps(cal.to_dict()))
    got = load_calibration(MODELS, path)
    assert not got.identity and got("lot", 0.9) == pytest.approx(0.5)
    other = MODELS[:2] + [ModelInfo("fields", "extractor", "4", "dd")]  # a new extractor
    with caplog.at_level(logging.WARNING, logger="workers.pipeline.calibration"):
        fallback = load_calibration(other, path)
    assert fallback.identity and fallback("lot", 0.9) == 0.9
    assert any("fields" in r.getMessage() for r in caplog.records)
    assert load_calibration(MODELS, tmp_path / "absent.json").identity


def _line(text: str) -> TextLine:
    return TextLine(
        order=0,
        text=text,
        confidence=0.95,
        char_confidences=(0.95,) * len(text),
        alternatives=(),
        polygon=((0.0, 0.0), (300.0, 0.0), (300.0, 30.0), (0.0, 30.0)),
    )


def _serial(raw: str) -> FieldResult:
    return FieldResult(
        name="serial_number",
        raw_value=raw,
        value=raw,
        confidence=0.95,
        line_index=0,
        box=None,
        valid=True,
        extraction_confidence=1.0,
    )


def test_the_calibrated_confidence_decides_auto_accept():
    """Raw 0.95 is above a 0.9 threshold; calibrated to 0.80 it is not: the read goes to
    review. With a map that makes 0.95 worth 0.97, it is accepted."""
    lines, fields = [_line("S/N: QX77812345")], [_serial("QX77812345")]
    today = lambda: date(2026, 11, 23)  # noqa: E731
    raw = FieldVerifier(today=today)(fields, lines, None, auto_accept=0.9)
    assert raw.fields[0].confidence == pytest.approx(0.95) and not raw.review.needs_review
    low = CalibrationMap(maps={"_all": ((0.0, 1.0), (0.0, 0.842))})  # 0.95 -> 0.80
    out = FieldVerifier(today=today, calibration=low)(fields, lines, None, auto_accept=0.9)
    f = out.fields[0]
    assert f.confidence == pytest.approx(0.8, abs=1e-3)
    assert f.confidence_parts["raw"] == pytest.approx(0.95)
    assert out.review.needs_review
    assert [r.code for r in out.review.reasons] == ["low_confidence"]
    high = CalibrationMap(maps={"_all": ((0.0, 0.95, 1.0), (0.0, 0.97, 0.99))})
    ok = FieldVerifier(today=today, calibration=high)(fields, lines, None, auto_accept=0.9)
    assert not ok.review.needs_review


def test_shipped_calibration_is_readable_and_monotone():
    cal = read_calibration(CALIBRATION_PATH)
    if cal is None:
        pytest.skip("no calibration shipped")
    assert cal.maps and "_all" in cal.maps
    for _xs, ys in cal.maps.values():
        assert all(b >= a for a, b in zip(ys, ys[1:], strict=False))
    t = cal.recommended_threshold
    assert t is not None and 0.0 < t < 1.0
    assert set(cal.key) == {"detection", "recognition", "fields", "raw"}
