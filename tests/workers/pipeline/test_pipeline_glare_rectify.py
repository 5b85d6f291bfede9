"""Glare-aware inference and rectification in the real pipeline (slow: real ONNX models, CPU)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image

from workers.pipeline.config import PipelineConfig
from workers.pipeline.geometry import crop_quad
from workers.training.synth.simple_labels import add_glare, render_label, to_bytes

pytestmark = pytest.mark.slow

SERIAL = "KX70418293"
LINES = ["MODEL: HV-9000", f"S/N: {SERIAL}", "P/N: 310-4471"]
BG = (60, 66, 76)


@pytest.fixture(scope="module")
def flat() -> tuple[np.ndarray, int]:
    """(H, W, 3) uint8 flat label photo and the index of the serial line in LINES."""
    img = render_label(LINES, size=(1100, 700), font_size=48, background=BG, seed=3)
    return np.asarray(img), 1


def _yaw_homography(w: int, h: int, deg: float) -> np.ndarray:
    """Homography of a plane turned by ``deg`` about its vertical centre axis, seen by a camera
    with focal length ``w`` at distance ``w`` (x right, y down, image pixels)."""
    a = math.radians(deg)
    cx, cy, f = w / 2, h / 2, float(w)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    dst = []
    for x, y in src:
        X, Z = (x - cx) * math.cos(a), (x - cx) * math.sin(a)
        dst.append([cx + f * X / (f + Z), cy + f * (y - cy) / (f + Z)])
    return cv2.getPerspectiveTransform(src, np.array(dst, np.float32))


@pytest.fixture(scope="module")
def warped(flat) -> tuple[bytes, np.ndarray, tuple[int, int]]:
    """The flat label seen at 35 degrees: JPEG bytes, the (3, 3) homography flat -> warped and
    the warped image size (w, h)."""
    rgb, _ = flat
    h, w = rgb.shape[:2]
    hom = _yaw_homography(w, h, 35.0)
    out = cv2.warpPerspective(
        rgb, hom, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=BG
    )
    return to_bytes(Image.fromarray(out)), hom, (w, h)


def _serial_bbox_flat(pipeline, flat) -> np.ndarray:
    """(4, 2) corners of the serial line's polygon read on the flat image (flat pixels)."""
    rgb, _ = flat
    r = pipeline.run(to_bytes(Image.fromarray(rgb)))
    sn = r.get_field("serial_number")
    assert sn is not None and sn.value == SERIAL, [ln.text for ln in r.lines]
    return np.array(r.lines[sn.line_index].polygon)


def test_perspective_label_is_read_with_polygons_in_original_pixels(pipeline, flat, warped):
    data, hom, (w, h) = warped
    assert pipeline.config.rectify == "auto"
    calls: list[tuple[int, int]] = []
    det = pipeline.detector
    orig_call = type(det).__call__

    def counting(self, rgb):  # record the frames detection ran on
        calls.append(rgb.shape[:2])
        return orig_call(self, rgb)

    type(det).__call__ = counting
    try:
        r = pipeline.run(data)
    finally:
        type(det).__call__ = orig_call
    # the label outline was found and detection ran a second time, on the rectified label
    assert len(calls) == 2 and calls[1] != (h, w), calls
    sn = r.get_field("serial_number")
    assert sn is not None and sn.value == SERIAL, [ln.text for ln in r.lines]
    assert r.config["rectify"] == "auto"

    # every polygon lies inside the original image
    for ln in r.lines:
        p = np.array(ln.polygon)
        assert p.shape == (4, 2)
        assert (p[:, 0] >= 0).all() and (p[:, 0] <= w - 1).all(), ln
        assert (p[:, 1] >= 0).all() and (p[:, 1] <= h - 1).all(), ln
    # the serial line's polygon surrounds the warped serial text: project the polygon read on
    # the flat label through the same homography and compare (original, warped-image pixels)
    expect = cv2.perspectiveTransform(
        _serial_bbox_flat(pipeline, flat).reshape(-1, 1, 2).astype(np.float64), hom
    ).reshape(-1, 2)
    got = np.array(r.lines[sn.line_index].polygon)
    assert np.abs(got.mean(0) - expect.mean(0)).max() < 25, (got, expect)
    assert got[:, 0].min() <= expect[:, 0].min() + 25 and got[:, 0].max() >= expect[:, 0].max() - 25
    assert got[:, 0].min() >= expect[:, 0].min() - 60 and got[:, 0].max() <= expect[:, 0].max() + 60
    # the rectified label was not a fronto-parallel rectangle: this geometry is not the identity
    assert got[:, 0].max() < 0.95 * w


def test_glare_over_serial_gives_retake_and_lower_confidence(pipeline, flat):
    rgb, _ = flat
    clean = pipeline.run(to_bytes(Image.fromarray(rgb)))
    sn = clean.get_field("serial_number")
    assert sn is not None and sn.value == SERIAL
    line = clean.lines[sn.line_index]
    poly = np.array(line.polygon)
    # a highlight over the middle of the serial itself (right part of "S/N: KX70418293")
    cx = int(poly[:, 0].min() + 0.68 * (poly[:, 0].max() - poly[:, 0].min()))
    cy = int(poly[:, 1].mean())
    glared = pipeline.run(to_bytes(add_glare(Image.fromarray(rgb), (cx, cy), 55)))

    def nearest(result):
        return min(
            result.lines,
            key=lambda ln: float(np.linalg.norm(np.array(ln.polygon).mean(0) - poly.mean(0))),
        )

    g = nearest(glared)
    q = {lq.order: lq for lq in glared.quality.lines}
    assert q[g.order].retake and q[g.order].glare_fraction > 0.05, glared.quality
    codes = [(w.code, w.message) for w in glared.quality.warnings]
    assert (
        "glare_text",
        f"Glare covers characters on line {g.order + 1}: retake the photo at a different angle.",
    ) in codes, codes
    assert g.confidence < line.confidence - 0.1, (g.confidence, line.confidence)
    assert min(g.char_confidences) < 0.5
    # the clean read: no retake anywhere, per-line entries present in the JSON
    d = clean.quality.to_dict()
    assert d["lines"] and all(not e["retake"] for e in d["lines"])
    assert {e["order"] for e in d["lines"]} == {ln.order for ln in clean.lines}
    assert "glare_text" not in {w.code for w in clean.quality.warnings}
    assert glared.to_dict()["quality"]["lines"][g.order]["retake"] is True


def test_rectify_off_keeps_the_v0_path(warped):
    from workers.pipeline.pipeline import build_pipeline

    data, _, _ = warped
    cfg = PipelineConfig.from_env({"OCR_RECTIFY": "off", "OCR_DEVICE": "cpu"})
    assert cfg.rectify == "off" and cfg.to_dict()["rectify"] == "off"
    pipe = build_pipeline(cfg)
    r = pipe.run(data)
    assert r.config["rectify"] == "off"
    # v0 by hand: one detection on the original, crop_quad, classifier, recogniser
    rgb = pipe.decoder(data).rgb
    boxes = pipe.detector(rgb)
    crops = [crop_quad(rgb, np.asarray(b.polygon, np.float32)) for b in boxes]
    crops, _ = pipe.classifier(crops)
    texts = {t.text for t in pipe.recognizer(crops) if t.text.strip()}
    assert {ln.text for ln in r.lines} <= texts
    assert len(r.lines) >= 3
