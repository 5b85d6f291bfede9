"""Per-product auto-accept thresholds from the calibration's risk-coverage table: a new
product type defaults to the recommended threshold, and the admin shows the held-out risk of
the threshold a product type has."""

from __future__ import annotations

import json

import pytest

from ocrapp import services
from ocrapp.admin import calibrated_risk_text
from workers.fieldspec import review

pytestmark = pytest.mark.django_db

TABLE = {
    "format": 1,
    "recommended": {
        "threshold": 0.93,
        "expected_wrong": 0.004,
        "coverage": 0.8,
        "images_accepted": 0.7,
    },
    "risk_coverage": [
        {"threshold": 0.9, "all": {"wrong": 0.008, "coverage": 0.85, "images_accepted": 0.75}},
        {"threshold": 0.93, "all": {"wrong": 0.004, "coverage": 0.8, "images_accepted": 0.7}},
        {"threshold": 0.97, "all": {"wrong": 0.001, "coverage": 0.6, "images_accepted": 0.5}},
    ],
}


@pytest.fixture
def calibration(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(TABLE))
    monkeypatch.setattr(review, "CALIBRATION_JSON", path)
    monkeypatch.setattr(
        review.calibrated_operating_point, "__defaults__", (None, path), raising=True
    )
    return path


def test_operating_point_reads_the_table(calibration):
    assert review.calibrated_operating_point()["threshold"] == 0.93
    op = review.calibrated_operating_point(0.95)  # between rows: the lower (conservative) row
    assert op == {"threshold": 0.93, "expected_wrong": 0.004, "coverage": 0.8,
                  "images_accepted": 0.7}  # fmt: skip
    assert review.calibrated_operating_point(0.5) is None
    assert review.default_auto_accept_threshold() == 0.93


def test_new_product_type_defaults_to_the_calibrated_threshold(calibration):
    pt = services.product_type_create(
        name="calibrated", field_schema={"fields": [{"name": "serial_number"}]}
    )
    assert pt.auto_accept_threshold == pytest.approx(0.93)
    explicit = services.product_type_create(
        name="explicit", field_schema={"fields": [{"name": "serial_number"}]},
        auto_accept_threshold=0.97,
    )  # fmt: skip
    assert explicit.auto_accept_threshold == 0.97
    text = str(calibrated_risk_text(explicit.auto_accept_threshold))
    assert "0.10 %" in text and "60.0 %" in text
    assert calibrated_risk_text(0.5) == "-"


def test_without_a_calibration_the_fallback_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(
        review.calibrated_operating_point, "__defaults__", (None, tmp_path / "none.json")
    )
    assert review.default_auto_accept_threshold() == review.FALLBACK_AUTO_ACCEPT
