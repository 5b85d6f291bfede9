"""Real-model reads of rendered labels (slow: runs the PP-OCR ONNX models on CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from workers.pipeline.errors import BadImageError
from workers.training.synth.simple_labels import add_glare, load_font, to_bytes

pytestmark = pytest.mark.slow

SERIAL = "AB12345678"


def _label(rotate180: bool = False) -> tuple[bytes, tuple[int, int, int, int]]:
    """900x500 JPEG with three lines; returns bytes and the serial line's text bbox (x0,y0,x1,y1)
    in the final (possibly rotated) image."""
    img = Image.new("RGB", (900, 500), (75, 80, 90))
    d = ImageDraw.Draw(img)
    d.rectangle([50, 50, 850, 450], fill=(230, 228, 220))
    font = load_font(46)
    lines = ["MODEL: XR-500", f"S/N: {SERIAL}", "P/N: 555-0001"]
    bbox = (0, 0, 0, 0)
    for i, t in enumerate(lines):
        pos = (100, 110 + i * 100)
        d.text(pos, t, fill=(20, 20, 25), font=font)
        if i == 1:
            bbox = d.textbbox(pos, t, font=font)
    if rotate180:
        img = img.rotate(180)
        bbox = (900 - bbox[2], 500 - bbox[3], 900 - bbox[0], 500 - bbox[1])
    return to_bytes(img, "JPEG"), bbox


def test_reads_serial_with_polygon_around_text(pipeline):
    data, (x0, y0, x1, y1) = _label()
    r = pipeline.run(data)
    sn = r.get_field("serial_number")
    assert sn is not None and sn.value == SERIAL and sn.valid, [ln.text for ln in r.lines]
    line = r.lines[sn.line_index]
    assert SERIAL in line.text.replace(" ", "")
    poly = np.array(line.polygon)
    # the line polygon surrounds the rendered text (a little padding from unclip)
    assert poly[:, 0].min() <= x0 + 5 and poly[:, 0].max() >= x1 - 5
    assert poly[:, 1].min() <= y0 + 5 and poly[:, 1].max() >= y1 - 5
    assert poly[:, 0].min() >= x0 - 40 and poly[:, 0].max() <= x1 + 40
    assert poly[:, 1].min() >= y0 - 30 and poly[:, 1].max() <= y1 + 30
    assert [ln.order for ln in r.lines] == list(range(len(r.lines)))
    assert r.lines[0].text.replace(" ", "").startswith("MODEL")  # reading order
    # per-character outputs line up with the text
    assert len(line.char_confidences) == len(line.text) == len(line.alternatives)
    assert all(len(a) == 3 and a[0][1] >= a[1][1] >= a[2][1] for a in line.alternatives)
    assert r.quality.ok, r.quality.warnings


def test_upside_down_label_is_read(pipeline):
    data, (x0, y0, x1, y1) = _label(rotate180=True)
    r = pipeline.run(data)
    sn = r.get_field("serial_number")
    assert sn is not None and sn.value == SERIAL, [ln.text for ln in r.lines]
    poly = np.array(r.lines[sn.line_index].polygon)
    assert (
        abs(poly[:, 0].mean() - (x0 + x1) / 2) < 30 and abs(poly[:, 1].mean() - (y0 + y1) / 2) < 30
    )


def test_to_dict_shape_and_json(pipeline):
    data, _ = _label()
    d = pipeline.run(
        data, schema={"fields": [{"name": "serial_number", "required": True}]}
    ).to_dict()
    json.dumps(d, allow_nan=False)
    assert list(d) == [
        "image",
        "quality",
        "lines",
        "fields",
        "timings_ms",
        "models",
        "device",
        "providers",
        "config",
        "codes",
        "mismatches",
        "needs_review",
        "review",
    ]
    assert d["image"] == {"width": 900, "height": 500, "format": "JPEG", "exif_orientation": 1}
    assert set(d["quality"]) == {
        "blur",
        "exposure",
        "glare_fraction",
        "text_glare_fraction",
        # image statistics the dashboard's drift check compares (ocrapp/dashboard.py)
        "contrast",
        "text_boxes",
        "text_height",
        "text_area",
        "text_cx",
        "text_cy",
        "ok",
        "warnings",
        "lines",
    }
    assert set(d["lines"][0]) == {
        "order",
        "text",
        "confidence",
        "char_confidences",
        "alternatives",
        "polygon",
    }
    assert set(d["fields"][0]) == {
        "name",
        "raw_value",
        "value",
        "confidence",
        "line_index",
        "box",
        "valid",
        "reason",
        "reasons",
        "corrected",
        "correction",
        "source",
        "code_value",
        "code_match",
        "iso_date",
        "confidence_parts",
    }
    assert set(d["timings_ms"]) == {
        "decode",
        "quality",
        "detection",
        "recognition",
        "codes",
        "fields",
        "total",
    }
    stages = {m["stage"] for m in d["models"]}
    assert {"detection", "recognition", "fields"} <= stages
    for m in d["models"]:
        if m["stage"] != "fields":
            assert len(m["sha256"]) == 64 and "==" in m["version"]
    assert d["device"] == "cpu" and d["providers"] == ["CPUExecutionProvider"]
    assert d["config"]["max_image_pixels"] == 40_000_000


def test_glare_over_serial_is_warned(pipeline):
    data, (x0, y0, x1, y1) = _label()
    img = add_glare(
        Image.open(__import__("io").BytesIO(data)), ((x0 + x1) // 2, (y0 + y1) // 2), 80
    )
    r = pipeline.run(to_bytes(img, "JPEG"))
    assert r.quality.text_glare_fraction > 0.05
    assert any(w.code == "glare" and "over the text" in w.message for w in r.quality.warnings)


def test_blank_image_gives_no_text_and_missing_serial(pipeline):
    r = pipeline.run(to_bytes(Image.new("RGB", (400, 300), (128, 130, 120)), "PNG"))
    assert r.lines == ()
    assert "no_text" in {w.code for w in r.quality.warnings}
    sn = r.get_field("serial_number")
    assert sn is not None and not sn.valid and sn.reason == "required field not found"


def test_bad_input_raises_terminal_error(pipeline):
    with pytest.raises(BadImageError) as e:
        pipeline.run(b"not an image at all")
    assert e.value.code == "bad_image"


def test_loader_caches_per_process():
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.loader import clear_pipeline_cache, get_pipeline

    cfg = PipelineConfig(device="cpu", use_cls=False)
    try:
        assert get_pipeline(cfg) is get_pipeline(cfg)
    finally:
        clear_pipeline_cache()


def test_a_real_read_satisfies_the_typed_contract(pipeline):
    """The JSON of a real read (real models, real pixels) validates against workers.contract and round-trips through its dataclasses."""
    from workers.contract import ContractError, parse_read_result

    data, _box = _label()
    payload = json.loads(json.dumps(pipeline.run(data).to_dict()))
    typed = parse_read_result(payload)
    assert typed.to_dict() == payload
    assert typed.fields and all(f.name for f in typed.fields)
    assert all(
        set(w.params) >= {"line", "order"} for w in typed.quality.warnings if w.code == "glare_text"
    )
    broken = dict(payload, fields=[{**payload["fields"][0], "valid": "yes"}])
    with pytest.raises(ContractError, match=r"fields\[0\]\.valid"):
        parse_read_result(broken)
