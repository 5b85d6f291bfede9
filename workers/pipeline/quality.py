"""Stage: photo quality (blur, exposure, glare), computed on a downscaled gray/HSV copy.

Input: the decoded RGB (H, W, 3) uint8 image and the text quads (original pixels).
All measures are computed at a canonical working size (long side ``WORK_SIDE`` = 1024 px,
never upscaled) so they are comparable across image sizes.

Measures and thresholds (module constants; checked on rendered labels, see the tests):

- ``blur``: variance of the Laplacian of the gray working image, over the text boxes when any
  were detected (plain background would look "blurry"), else over the whole image.
  Warning ``blur`` when < ``BLUR_MIN``.
- ``exposure``: mean gray level / 255 in [0, 1]. The warnings read the histogram of the
  text-bearing area (the extended text quads; the whole image when no text was found), not the
  share of bright pixels: ``underexposed`` when its 95th percentile < ``DARK_P95`` (0.35) or
  the image mean < ``DARK_MEAN`` (0.15); ``overexposed`` when its 5th percentile (the print
  itself) > ``BRIGHT_P5`` (0.75). White paper with dark print is not overexposed.
- ``glare_fraction``: share of the image covered by specular highlights
  (``glare.glare_mask``: saturated colourless cores with a bright falloff, small relative to
  the photo; white paper is not glare). Warning ``glare_photo`` when > ``GLARE_MAX`` (3 %).
- ``text_glare_fraction``: share of the text area (quads extended along the line by one line
  height each side, since glare often cuts a line short) covered by glare blobs. Warning
  ``glare`` with the "Strong glare over the text" message when > ``TEXT_GLARE_MAX`` (5 %).
- ``no_text``: no text line was read.

Image statistics kept for the dashboard's drift check (no warning of their own; they say what a
line's photos usually look like): ``exposure`` (mean luminance) and ``blur`` (sharpness) above,
``contrast`` (standard deviation of the gray level / 255), and of the text boxes (the quads
passed in, i.e. what detection found): ``text_boxes`` (count), ``text_height`` (median box
height / the image's short side), ``text_area`` (share of the image the boxes cover, summed)
and ``text_cx`` / ``text_cy`` (mean box centre / width, height: 0.5 = centred). A moved camera
shows as smaller or shifted boxes, a failing lamp as a lower luminance and contrast.

Glare masks are :mod:`glare`'s: without a mask this stage computes ``glare.glare_mask``; the
pipeline passes ``glare.image_glare_mask`` (computed once per image) and the per-line ``glare_text``
warnings come from ``glare.line_glare_warnings``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .glare import glare_mask
from .types import QualityReport, QualityWarning

WORK_SIDE = 1024
BLUR_MIN = 300.0
DARK_P95 = 0.35
DARK_MEAN = 0.15
BRIGHT_P5 = 0.75
GLARE_MAX = 0.03
TEXT_GLARE_MAX = 0.05

MSG = {
    "blur": "The photo is blurred: hold the camera still and focus on the label.",
    "underexposed": "The photo is too dark: add light or move closer to a light source.",
    "overexposed": "The photo is too bright: reduce the light or avoid direct flash.",
    "glare_photo": "Glare on the photo: avoid direct light or flash reflections on the label.",
    "glare": "Strong glare over the text: retake the photo at a different angle.",
    "no_text": "No text was found: frame the label so the text is clearly visible.",
}


class QualityAssessor:
    """``__call__(rgb, polygons, n_lines) -> QualityReport``. No model."""

    def __init__(self, work_side: int = WORK_SIDE) -> None:
        self.work_side = work_side

    def __call__(
        self,
        rgb: np.ndarray,
        polygons: list[np.ndarray] | None = None,
        n_lines: int | None = None,
        *,
        glare: np.ndarray | None = None,
    ) -> QualityReport:
        """``rgb``: (H, W, 3) uint8; ``polygons``: (4, 2) float quads in original pixels;
        ``n_lines``: number of recognised lines (None: do not judge ``no_text``);
        ``glare``: optional precomputed (H, W) uint8 glare mask (nonzero = glare, original
        pixels, e.g. ``glare.glare_mask(rgb).mask``), used instead of this module's own blob
        mask so the pipeline computes glare once per image."""
        h, w = rgb.shape[:2]
        scale = min(1.0, self.work_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        else:
            small = rgb
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        polys = [np.asarray(p, dtype=np.float32) * scale for p in (polygons or [])]

        text_mask = self._text_mask(gray.shape, polys) if polys else None
        blur = self._blur(gray, text_mask)
        g = gray.astype(np.float32) / 255.0
        exposure = float(g.mean())
        # exposure judged on the text-bearing area when there is one: white paper around dark
        # print is not overexposure, washed-out print is
        area = g[text_mask > 0] if text_mask is not None and text_mask.sum() >= 64 else g
        p5, p95 = (float(v) for v in np.percentile(area, [5, 95]))

        if glare is not None:
            glare = np.asarray(glare)
            if glare.shape[:2] != gray.shape:
                glare = cv2.resize(
                    (glare > 0).astype(np.uint8),
                    (gray.shape[1], gray.shape[0]),
                    interpolation=cv2.INTER_NEAREST,
                )
            glare = glare > 0
        else:
            glare = glare_mask(rgb).mask
            glare = (
                cv2.resize(glare, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_NEAREST)
                if glare.shape[:2] != gray.shape
                else glare
            ) > 0
        glare_fraction = float(glare.mean())
        text_glare = 0.0
        if text_mask is not None and text_mask.any():
            text_glare = float(glare[text_mask > 0].mean())

        warnings: list[QualityWarning] = []
        if blur < BLUR_MIN:
            warnings.append(QualityWarning("blur", MSG["blur"]))
        if p95 < DARK_P95 or exposure < DARK_MEAN:
            warnings.append(QualityWarning("underexposed", MSG["underexposed"]))
        elif p5 > BRIGHT_P5:
            warnings.append(QualityWarning("overexposed", MSG["overexposed"]))
        if text_glare > TEXT_GLARE_MAX:
            warnings.append(QualityWarning("glare", MSG["glare"]))
        elif glare_fraction > GLARE_MAX:
            warnings.append(QualityWarning("glare_photo", MSG["glare_photo"]))
        if n_lines is not None and n_lines == 0:
            warnings.append(QualityWarning("no_text", MSG["no_text"]))
        return QualityReport(
            blur=blur,
            exposure=exposure,
            glare_fraction=glare_fraction,
            text_glare_fraction=text_glare,
            warnings=tuple(warnings),
            contrast=float(g.std()),
            **self._text_stats(gray.shape, polys),
        )

    @staticmethod
    def _text_stats(shape: tuple[int, ...], polys: list[np.ndarray]) -> dict:
        """Box statistics of the text quads (working-size pixels) relative to the image:
        ``text_boxes``, ``text_height`` (median, / short side), ``text_area`` (summed box areas
        / image area, capped at 1), ``text_cx`` / ``text_cy`` (mean centre / width, height).
        Without boxes: count 0 and the rest None (nothing to compare)."""
        h, w = shape[:2]
        if not polys:
            return {"text_boxes": 0, "text_height": None, "text_area": None,
                    "text_cx": None, "text_cy": None}  # fmt: skip
        heights, areas, cx, cy = [], [], [], []
        for q in polys:
            q = np.asarray(q, np.float32).reshape(-1, 2)
            (_, _), (rw, rh), _ = cv2.minAreaRect(q)
            heights.append(min(rw, rh))
            areas.append(abs(float(cv2.contourArea(q))))
            cx.append(float(q[:, 0].mean()))
            cy.append(float(q[:, 1].mean()))
        return {
            "text_boxes": len(polys),
            "text_height": float(np.median(heights)) / max(1, min(h, w)),
            "text_area": min(1.0, sum(areas) / max(1, h * w)),
            "text_cx": float(np.mean(cx)) / max(1, w),
            "text_cy": float(np.mean(cy)) / max(1, h),
        }

    @staticmethod
    def _text_mask(shape: tuple[int, ...], polys: list[np.ndarray]) -> np.ndarray:
        """uint8 (h, w) mask of the text quads, each extended along its line by its height.
        A bent line's 2N-point polygon is filled as it is (no extension)."""
        mask = np.zeros(shape[:2], dtype=np.uint8)
        for q in polys:
            q = np.asarray(q, np.float64).reshape(-1, 2)
            if len(q) != 4:
                cv2.fillPoly(mask, [np.round(q).astype(np.int32)], 1)
                continue
            tl, tr, br, bl = q
            along = (tr - tl) + (br - bl)
            n = float(np.linalg.norm(along))
            height = 0.5 * (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr))
            d = along / n * height if n > 0 else np.zeros(2, np.float32)
            ext = np.stack([tl - d, tr + d, br + d, bl - d])
            cv2.fillPoly(mask, [np.round(ext).astype(np.int32)], 1)
        return mask

    @staticmethod
    def _blur(gray: np.ndarray, mask: np.ndarray | None) -> float:
        lap = cv2.Laplacian(gray, cv2.CV_64F, ksize=3)
        if mask is not None and mask.sum() >= 64:
            return float(lap[mask > 0].var())
        return float(lap.var())
