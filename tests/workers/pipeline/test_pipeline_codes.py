"""Codes on the label through the whole pipeline (real OCR + zxing-cpp on real pixels): a GS1
DataMatrix confirms or contradicts the printed serial and fills fields the print lacks."""

from __future__ import annotations

import numpy as np
import pytest
import zxingcpp
from PIL import Image

from workers.training.synth.simple_labels import render_label, to_bytes

pytestmark = pytest.mark.slow

SCHEMA = {
    "fields": [
        {"name": "serial_number", "required": True},
        {"name": "part_number"},
        {"name": "gtin"},
        {"name": "lot"},
    ]
}


def label_with_code(printed: str, coded: str) -> bytes:
    img = np.array(
        render_label([f"S/N: {printed}", "P/N: 44-1020"], size=(1024, 640), font_size=52, seed=5)
    )
    code = zxingcpp.create_barcode(
        f"(01)09506000134352(10)LOT42(21){coded}", zxingcpp.BarcodeFormat.DataMatrix, gs1=True
    )
    sym = np.asarray(code.to_image(scale=6))
    h, w = sym.shape
    img[440 : 440 + h, 800 : 800 + w] = sym[:, :, None]
    return to_bytes(Image.fromarray(img), "PNG")


def test_code_confirms_the_print_and_fills_missing_fields(pipeline):
    r = pipeline.run(label_with_code("QX77812345", "QX77812345"), schema=SCHEMA, auto_accept=0.5)
    assert [c["format"] for c in r.to_dict()["codes"]] == ["DataMatrix"]
    by = {f.name: f for f in r.fields}
    sn = by["serial_number"]
    assert sn.value == "QX77812345" and sn.code_match is True and sn.source == "text+code"
    assert by["gtin"].source == "code" and by["gtin"].value == "09506000134352"
    assert by["lot"].value == "LOT42"
    assert r.mismatches == ()
    assert not any(x.code == "mislabel" for x in r.review.reasons)


def test_code_contradicting_the_print_is_a_mislabel(pipeline):
    r = pipeline.run(label_with_code("QX77812345", "QX77899999"), schema=SCHEMA, auto_accept=0.5)
    sn = r.get_field("serial_number")
    assert sn.value == "QX77812345" and sn.code_value == "QX77899999" and sn.code_match is False
    assert r.mismatches[0]["field"] == "serial_number"
    assert r.needs_review and any(x.code == "mislabel" for x in r.review.reasons)
    d = r.to_dict()
    assert d["needs_review"] is True and d["review"]["auto_accept"] == 0.5


def test_codes_can_be_switched_off():
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.fields import RuleFieldExtractor
    from workers.pipeline.pipeline import build_pipeline

    p = build_pipeline(
        PipelineConfig(device="cpu", codes=False), field_extractor=RuleFieldExtractor()
    )
    r = p.run(label_with_code("QX77812345", "QX77899999"), schema=SCHEMA)
    assert r.codes == () and r.mismatches == ()
