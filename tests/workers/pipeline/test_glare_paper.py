"""The glare measure sees a blown-out highlight over text on a light label and does not take
white paper for glare (issue 10: a receipt page was one huge glare blob, ``overexposed`` on
most flat scans). Rendered with PIL, no model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from workers.pipeline.glare import glare_mask, image_glare_mask, line_glare
from workers.pipeline.quality import QualityAssessor
from workers.training.synth.simple_labels import load_font

SERIAL_LINE = "S/N: QX77812345"


def specular(rgb: np.ndarray, centre: tuple[float, float], radius: float) -> np.ndarray:
    """A saturated Gaussian highlight: intensity 1.6 at the centre, added toward white and
    clipped, so the core blows out and the rim falls off softly."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    a = np.clip(1.6 * np.exp(-d2 / (2 * (radius / 1.5) ** 2)), 0, 1)[..., None]
    return np.clip(rgb.astype(np.float64) * (1 - a) + 255.0 * a, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def light_label() -> tuple[np.ndarray, list[np.ndarray]]:
    """(H, W, 3) uint8 light label (paper 238, the whole photo) with three lines; the text
    quads (4, 2) float, the serial line second."""
    img = Image.new("RGB", (1000, 480), (238, 238, 234))
    d = ImageDraw.Draw(img)
    font = load_font(48)
    quads = []
    for i, t in enumerate(["MODEL: XR-500", SERIAL_LINE, "MFG DATE: 2024-05-17"]):
        y = 70 + i * 120
        d.text((80, y), t, fill=(25, 25, 30), font=font)
        x0, y0, x1, y1 = d.textbbox((80, y), t, font=font)
        quads.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))
    rng = np.random.default_rng(1)
    arr = np.clip(np.asarray(img, np.float32) + rng.normal(0, 3, (480, 1000, 3)), 0, 255)
    return arr.astype(np.uint8), quads


def test_highlight_over_the_serial_end_is_glare_over_that_line(light_label):
    rgb, quads = light_label
    serial = quads[1]
    # the highlight sits over the last characters of the serial ("...2345")
    cx = float(serial[1, 0]) - 70
    cy = float(serial[:, 1].mean())
    glared = specular(rgb, (cx, cy), 55)
    assert glare_mask(rgb).fraction == 0.0  # the clean label has none
    res = glare_mask(glared)
    assert len(res.components) == 1
    comp = res.components[0]
    assert abs(comp.centroid[0] - cx) < 15 and abs(comp.centroid[1] - cy) < 15
    lg = line_glare(res.mask, serial)
    assert lg.area_fraction > 0.1 and lg.column_fraction > 0.1
    # ... at the end of the line, not its start
    x_mid = float(serial[:, 0].mean())
    ys, xs = np.nonzero(res.mask)
    assert xs.min() > x_mid
    # the other lines are (almost) untouched
    assert line_glare(res.mask, quads[0]).area_fraction < 0.05
    report = QualityAssessor()(glared, quads, n_lines=3, glare=image_glare_mask(glared))
    assert report.text_glare_fraction > 0.02


def receipt_page(seed: int = 0, paper: int = 252) -> tuple[np.ndarray, list[np.ndarray]]:
    """A flat scan of a white receipt: (2000, 900, 3) uint8 near-white paper (``paper``, a
    little uneven, sensor noise) filling the frame, 40 lines of black print; the quads."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (900, 2000), (paper,) * 3)
    d = ImageDraw.Draw(img)
    font = load_font(28, 2)
    quads = []
    words = ["TOTAL", "CASH", "ITEM", "QTY", "RM", "12.50", "GST", "0.00", "TAX", "INVOICE"]
    for i in range(40):
        t = " ".join(rng.choice(words, size=int(rng.integers(2, 6))))
        y = 60 + i * 47
        d.text((60, y), t, fill=(15, 15, 15), font=font)
        x0, y0, x1, y1 = d.textbbox((60, y), t, font=font)
        quads.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))
    arr = np.asarray(img, np.float32)
    yy = np.linspace(-1, 1, 2000)[:, None, None]
    arr = arr + 3.0 * yy + rng.normal(0, 2.5, arr.shape)  # uneven light, noise
    return np.clip(arr, 0, 255).astype(np.uint8), quads


@pytest.mark.parametrize("paper", [246, 252, 255])
def test_white_receipt_paper_is_neither_glare_nor_overexposed(paper):
    rgb, quads = receipt_page(paper=paper)
    mask = image_glare_mask(rgb)
    assert not mask.any()
    report = QualityAssessor()(rgb, quads, n_lines=len(quads), glare=mask)
    codes = {w.code for w in report.warnings}
    assert "overexposed" not in codes and "glare" not in codes and "glare_photo" not in codes
    assert report.glare_fraction == 0.0
    # the stage's own mask (no precomputed one) agrees
    assert QualityAssessor()(rgb, quads, n_lines=len(quads)).glare_fraction == 0.0


def test_washed_out_print_is_still_overexposed():
    """The exposure rule reads the text-bearing area: print at grey 200 on white is."""
    rgb, quads = receipt_page(paper=255)
    faded = np.clip(rgb.astype(np.float32) * 0.25 + 195, 0, 255).astype(np.uint8)
    codes = {w.code for w in QualityAssessor()(faded, quads, n_lines=len(quads)).warnings}
    assert "overexposed" in codes
