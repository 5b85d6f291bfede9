"""Glare mask on a rendered label with a synthetic specular highlight (clipped white core with a
soft bloom) placed over the text vs beside it."""

from __future__ import annotations

import numpy as np
import pytest

from workers.pipeline.glare import glare_mask, glare_over_polygon, line_glare

TEXT = "SN 4471-B09K"


@pytest.fixture(scope="module")
def label():
    """(rgb (480, 800, 3) uint8 grey-ish plate with dark text, text quad (4, 2))."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=40)
    img = Image.new("RGB", (800, 480), (150, 152, 156))  # brushed-metal grey
    draw = ImageDraw.Draw(img)
    draw.text((200, 200), TEXT, font=font, fill=(30, 30, 35))
    x0, y0, x1, y1 = draw.textbbox((200, 200), TEXT, font=font)
    quad = np.array([[x0 - 4, y0 - 4], [x1 + 4, y0 - 4], [x1 + 4, y1 + 4], [x0 - 4, y1 + 4]], float)
    return np.asarray(img), quad


def add_highlight(rgb: np.ndarray, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Specular highlight: intensity 1.6 at the centre falling off as a Gaussian, added toward
    white and clipped, so the core (about 0.6 radius) saturates and the rim blooms."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    a = np.clip(1.6 * np.exp(-d2 / (2 * (radius / 1.5) ** 2)), 0, 1)[..., None]
    out = rgb.astype(np.float64) * (1 - a) + 255.0 * a
    out = np.minimum(out + 255.0 * np.clip(a - 0.6, 0, 1), 255)
    return out.astype(np.uint8)


def test_highlight_over_text_covers_characters(label):
    rgb, quad = label
    cx = float(quad[:, 0].mean())
    cy = float(quad[:, 1].mean())
    img = add_highlight(rgb, (cx, cy), 70)
    res = glare_mask(img)
    assert res.mask.shape == rgb.shape[:2] and res.mask.dtype == np.uint8
    assert len(res.components) == 1
    comp = res.components[0]
    assert abs(comp.centroid[0] - cx) < 10 and abs(comp.centroid[1] - cy) < 10
    assert comp.area > comp.core_area  # bloom around the core
    frac = glare_over_polygon(res.mask, quad)
    assert 0.15 < frac < 0.9
    lg = line_glare(res.mask, quad)
    assert lg.retake and lg.column_fraction > 0.2


def test_highlight_beside_text_does_not_count(label):
    rgb, quad = label
    img = add_highlight(rgb, (650, 90), 60)
    res = glare_mask(img)
    assert len(res.components) == 1
    assert res.fraction > 0.005  # the highlight is found ...
    assert glare_over_polygon(res.mask, quad) == 0.0  # ... but not over the line
    assert not line_glare(res.mask, quad).retake


def test_clean_and_evenly_white_images_have_no_glare(label):
    rgb, quad = label
    assert glare_mask(rgb).fraction == 0.0
    # a white sticker filling the photo, exposed to near-clipping: not a highlight
    white = np.full_like(rgb, 252)
    white[200:240, 200:500] = 20
    res = glare_mask(white)
    assert res.components == ()
    assert glare_over_polygon(res.mask, quad) == 0.0


def test_large_image_is_processed_downscaled_but_mask_is_full_size(label):
    rgb, quad = label
    big = np.kron(add_highlight(rgb, (300, 220), 70), np.ones((3, 3, 1), np.uint8))  # 1440 x 2400
    res = glare_mask(big)
    assert res.mask.shape == big.shape[:2]
    assert glare_over_polygon(res.mask, quad * 3) > 0.1
