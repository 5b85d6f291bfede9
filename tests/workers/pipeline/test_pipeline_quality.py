"""Quality stage: glare, blur, exposure (no models: text quads are given)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from workers.pipeline.quality import QualityAssessor
from workers.training.synth.simple_labels import add_glare, load_font


def _label() -> tuple[np.ndarray, list[np.ndarray]]:
    """800x500 photo: light label on a dark surface, two text lines; returns image + quads."""
    img = Image.new("RGB", (800, 500), (70, 75, 85))
    d = ImageDraw.Draw(img)
    d.rectangle([60, 60, 740, 440], fill=(228, 226, 218))
    font = load_font(48)
    quads = []
    for i, t in enumerate(["S/N: AB12345678", "P/N: 555-0001"]):
        y = 120 + i * 140
        d.text((100, y), t, fill=(20, 20, 25), font=font)
        x0, y0, x1, y1 = d.textbbox((100, y), t, font=font)
        quads.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32))
    rng = np.random.default_rng(0)
    arr = np.clip(np.asarray(img, np.float32) + rng.normal(0, 3, (500, 800, 3)), 0, 255)
    return arr.astype(np.uint8), quads


def _codes(report) -> set[str]:
    return {w.code for w in report.warnings}


def test_clean_label_has_no_warnings():
    rgb, quads = _label()
    r = QualityAssessor()(rgb, quads, n_lines=2)
    assert r.ok, r.warnings
    assert r.glare_fraction < 0.005 and r.text_glare_fraction < 0.01


def test_glare_blob_over_text_is_flagged():
    rgb, quads = _label()
    cx = int(quads[0][:, 0].mean())
    cy = int(quads[0][:, 1].mean())
    glared = np.asarray(add_glare(Image.fromarray(rgb), (cx, cy), 90))
    clean = QualityAssessor()(rgb, quads, n_lines=2)
    r = QualityAssessor()(glared, quads, n_lines=2)
    assert r.text_glare_fraction > 0.1 > clean.text_glare_fraction
    assert r.glare_fraction > clean.glare_fraction
    msgs = [w.message for w in r.warnings if w.code == "glare"]
    assert msgs and msgs[0].startswith("Strong glare over the text")


def test_glare_away_from_text_is_not_text_glare():
    rgb, quads = _label()
    glared = np.asarray(add_glare(Image.fromarray(rgb), (700, 470), 40))
    r = QualityAssessor()(glared, quads, n_lines=2)
    assert r.glare_fraction > 0.0
    assert r.text_glare_fraction < 0.01


def test_blur_and_exposure_and_no_text():
    rgb, quads = _label()
    sharp = QualityAssessor()(rgb, quads, n_lines=2)
    blurred = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(4)))
    rb = QualityAssessor()(blurred, quads, n_lines=2)
    assert rb.blur < sharp.blur / 5 and "blur" in _codes(rb) and "blur" not in _codes(sharp)
    dark = (rgb.astype(np.float32) * 0.2).astype(np.uint8)
    rd = QualityAssessor()(dark, quads, n_lines=2)
    assert "underexposed" in _codes(rd) and rd.exposure < sharp.exposure
    bright = np.clip(rgb.astype(np.float32) * 0.3 + 200, 0, 255).astype(np.uint8)
    assert "overexposed" in _codes(QualityAssessor()(bright, quads, n_lines=2))
    assert "no_text" in _codes(QualityAssessor()(rgb, [], n_lines=0))
