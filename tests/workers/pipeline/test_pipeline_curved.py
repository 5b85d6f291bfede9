"""Bent lines (text on a bottle or a pipe): the detector keeps their outline and the pipeline
straightens them along the centre line instead of cutting a quad (slow: real ONNX models)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from workers.pipeline import detection
from workers.pipeline.rectification import line_geometry
from workers.training.synth.simple_labels import render_label, to_bytes

pytestmark = pytest.mark.slow

SERIAL = "QX77812345"
SAG = 160.0


def bent_label(sag: float) -> Image.Image:
    """One line of text bent into an arch: the row offset grows as (x - centre)^2 up to
    ``sag`` pixels at the ends (a label wrapped around a cylinder seen from the side)."""
    flat = np.asarray(
        render_label([f"SN {SERIAL}"], size=(900, 360), font_size=84, background=(236, 234, 226))
    )
    h, w = flat.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    t = (xs - w / 2) / (w / 2)
    map_y = ys - sag * (t**2) + sag / 2
    out = cv2.remap(flat, xs, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(out)


def test_bent_line_has_an_outline_and_is_read(pipeline):
    img = bent_label(sag=SAG)
    boxes = pipeline.detector(np.asarray(img))
    bent = [b for b in boxes if b.outline is not None]
    assert bent, "the arched line should keep its outline"
    assert line_geometry(np.asarray(bent[0].outline)).bend >= detection.OUTLINE_MIN_BEND
    r = pipeline.run(to_bytes(img, "PNG"))
    line = next(ln for ln in r.lines if SERIAL in ln.text.replace(" ", ""))
    assert len(line.polygon) > 4  # the reported polygon follows the bend


def test_straight_lines_keep_the_quad_path(pipeline):
    img = bent_label(sag=0.0)
    assert all(b.outline is None for b in pipeline.detector(np.asarray(img)))
    r = pipeline.run(to_bytes(img, "PNG"))
    assert any(SERIAL in ln.text.replace(" ", "") for ln in r.lines)
    assert all(len(ln.polygon) == 4 for ln in r.lines)
