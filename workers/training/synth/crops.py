"""Rectified line crops for recognizer training.

Crops are cut from the flat rendered label (label frame, before any camera geometry), so the
text of a crop is exactly the line's text and the crop is upright; photometric degradation
that matches the sample's conditions is then applied to the crop itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import photometric as P
from .sample import Sample


@dataclass
class Crop:
    image: np.ndarray  # (h, w, 3) uint8 RGB, text upright, reading left to right
    text: str
    field: str | None
    role: str
    style: str


def line_crops(
    sample: Sample,
    *,
    seed: int | None = None,
    degrade: bool = True,
    height: int | None = None,
) -> list[Crop]:
    """One crop per text line of ``sample`` (needs ``sample.label``).

    Padding around the tight text box is random (3..25 % of the line height, per side).
    ``degrade`` applies glare/blur/low-res/noise/JPEG following ``sample.conditions``.
    ``height`` resizes each crop to that height keeping the aspect ratio.
    """
    if sample.label is None:
        raise ValueError("sample has no flat label to crop from")
    rng = np.random.default_rng([sample.seed if seed is None else seed, 7919])
    lab = sample.label
    h_img, w_img = lab.rgb.shape[:2]
    base = lab.rgb
    conds = sample.conditions
    out: list[Crop] = []
    for ln in lab.lines:
        x0, y0, x1, y1 = ln.box
        lh = max(y1 - y0, 4.0)
        px = rng.uniform(0.03, 0.25, size=4) * lh
        cx0 = int(max(np.floor(x0 - px[0]), 0))
        cy0 = int(max(np.floor(y0 - px[1]), 0))
        cx1 = int(min(np.ceil(x1 + px[2]), w_img))
        cy1 = int(min(np.ceil(y1 + px[3]), h_img))
        crop = base[cy0:cy1, cx0:cx1].astype(np.float32)
        if degrade:
            crop = P.illumination(crop, rng, strength=float(rng.uniform(0.2, 0.8)))
            crop = P.highlight_knee(crop)
            if "glare" in conds and rng.random() < 0.7:
                hh, ww = crop.shape[:2]
                target = np.array([[0, 0], [ww - 1, 0], [ww - 1, hh - 1], [0, hh - 1]], np.float64)
                crop, _ = P.glare(crop, [target], rng)
            if "blur" in conds or rng.random() < 0.2:
                crop, _ = (
                    P.gaussian_blur(crop, rng) if rng.random() < 0.6 else P.motion_blur(crop, rng)
                )
            if "low_res" in conds and min(crop.shape[:2]) > 24:
                crop, _ = P.low_res(crop, rng)
            crop = P.sensor_noise(crop, rng, float(rng.uniform(1, 5)))
        img = P.finish(crop)
        if degrade and rng.random() < 0.5:
            img = P.jpeg(img, int(rng.integers(40, 95)))
        if height is not None:
            hh, ww = img.shape[:2]
            img = cv2.resize(
                img, (max(int(round(ww * height / hh)), 1), height), interpolation=cv2.INTER_AREA
            )
        out.append(Crop(img, ln.text, ln.field, ln.role, ln.style))
    return out
