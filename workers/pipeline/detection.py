"""Stage: text detection with a PP-OCR DB (Differentiable Binarization) ONNX model.

pre:  RGB (H, W, 3) uint8 -> BGR float32 (1, 3, h, w) normalised with the model's mean/std;
      h, w are multiples of 32, the long side capped at ``det_limit_side`` (type ``max``) or
      the short side raised to it (type ``min``), aspect kept.
fwd:  probability map (1, 1, h, w) float32 in [0, 1].
post: binarise at ``det_thresh`` -> dilate 2x2 -> external contours -> min-area rectangle ->
      mean probability inside the contour (score) >= ``det_box_thresh`` -> unclip (pyclipper
      offset by area * ratio / perimeter) -> min-area rectangle -> scale to original pixels.
out:  list[DetectedBox] with quads (TL, TR, BR, BL) in original image pixel coordinates; a
      bent line also gets its ``outline`` (``det_polygons.line_polygon`` of the contour, 2N
      points) so the rectifier can straighten it along its centre line.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pyclipper

from .config import PipelineConfig
from .det_polygons import line_polygon
from .errors import TransientError
from .geometry import order_quad
from .rectification import line_geometry
from .types import DetectedBox

_MIN_SIDE = 3.0
# A detector outline counts as bent above this centre-line deviation (in line heights). The
# contour of straight text already deviates by up to ~0.25 (ascenders, descenders, glyph gaps:
# measured on 12 clean and 12 perspective synthetic labels), so only clearly bent lines
# (bottles, pipes) leave the 4-point path.
OUTLINE_MIN_BEND = 0.3


class TextDetector:
    def __init__(
        self,
        config: PipelineConfig,
        session: Any,
        *,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        self.config = config
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.mean = np.array(mean, dtype=np.float32).reshape(1, 1, 3)
        self.std = np.array(std, dtype=np.float32).reshape(1, 1, 3)

    # ---- pre -------------------------------------------------------------------------------
    def target_size(self, h: int, w: int) -> tuple[int, int]:
        """Network input (h, w): multiples of 32 following the limit rule."""
        side = float(self.config.det_limit_side)
        if self.config.det_limit_type == "max":
            ratio = min(1.0, side / max(h, w))
        else:
            ratio = max(1.0, side / min(h, w))
            # never let the long side explode (e.g. a very wide strip)
            ratio = min(ratio, 4000.0 / max(h, w)) if max(h, w) * ratio > 4000 else ratio
        nh = max(32, int(round(h * ratio / 32)) * 32)
        nw = max(32, int(round(w * ratio / 32)) * 32)
        return nh, nw

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """(H, W, 3) uint8 RGB -> ((1, 3, h, w) float32 BGR-normalised, (sx, sy) to original)."""
        h, w = rgb.shape[:2]
        nh, nw = self.target_size(h, w)
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        bgr = resized[:, :, ::-1].astype(np.float32) * (1.0 / 255.0)
        x = ((bgr - self.mean) / self.std).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(x, dtype=np.float32), (w / nw, h / nh)

    # ---- post ------------------------------------------------------------------------------
    def postprocess(
        self, prob: np.ndarray, scale: tuple[float, float], orig_hw: tuple[int, int]
    ) -> list[DetectedBox]:
        """``prob``: (h, w) float32 probability map -> boxes in original pixels."""
        cfg = self.config
        bitmap = (prob > cfg.det_thresh).astype(np.uint8)
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        sx, sy = scale
        oh, ow = orig_hw
        boxes: list[DetectedBox] = []
        for contour in contours[: cfg.det_max_candidates]:
            if len(contour) < 4:
                continue
            rect = cv2.minAreaRect(contour)
            if min(rect[1]) < _MIN_SIDE:
                continue
            score = self._contour_score(prob, contour.reshape(-1, 2))
            if score < cfg.det_box_thresh:
                continue
            expanded = self._unclip(cv2.boxPoints(rect), cfg.det_unclip_ratio)
            if expanded is None:
                continue
            rect2 = cv2.minAreaRect(expanded)
            if min(rect2[1]) < _MIN_SIDE + 2:
                continue
            quad = order_quad(cv2.boxPoints(rect2))
            quad[:, 0] = np.clip(quad[:, 0] * sx, 0, ow - 1)
            quad[:, 1] = np.clip(quad[:, 1] * sy, 0, oh - 1)
            if (
                np.linalg.norm(quad[0] - quad[1]) < _MIN_SIDE
                or np.linalg.norm(quad[0] - quad[3]) < _MIN_SIDE
            ):
                continue
            boxes.append(
                DetectedBox(
                    polygon=tuple((float(x), float(y)) for x, y in quad),
                    score=float(score),
                    outline=self._outline(contour, (sx, sy), (oh, ow)),
                )
            )
        return boxes

    def _outline(
        self, contour: np.ndarray, scale: tuple[float, float], orig_hw: tuple[int, int]
    ) -> tuple[tuple[float, float], ...] | None:
        """The contour's line polygon in original pixels when the line is bent, else None
        (straight lines keep the 4-point path; their outline would add nothing)."""
        if len(contour) < 8:  # a few-vertex contour is a box, not a bend
            return None
        poly = line_polygon(contour.reshape(-1, 2), self.config.det_unclip_ratio)
        if poly is None:
            return None
        poly = poly * np.asarray(scale, np.float64)
        poly[:, 0] = np.clip(poly[:, 0], 0, orig_hw[1] - 1)
        poly[:, 1] = np.clip(poly[:, 1], 0, orig_hw[0] - 1)
        if len(poly) <= 4 or line_geometry(poly).bend < OUTLINE_MIN_BEND:
            return None
        return tuple((float(x), float(y)) for x, y in poly)

    @staticmethod
    def _contour_score(prob: np.ndarray, pts: np.ndarray) -> float:
        """Mean probability inside the contour polygon (exact, on its bounding-box window)."""
        h, w = prob.shape
        x0, y0 = np.clip(pts.min(0), 0, [w - 1, h - 1])
        x1, y1 = np.clip(pts.max(0), 0, [w - 1, h - 1])
        mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
        cv2.fillPoly(mask, [(pts - [x0, y0]).astype(np.int32)], 1)
        return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])

    @staticmethod
    def _unclip(box: np.ndarray, ratio: float) -> np.ndarray | None:
        """Offset the polygon outward by area * ratio / perimeter (DB's unclip)."""
        poly = box.astype(np.float64)
        area = abs(cv2.contourArea(poly.astype(np.float32)))
        length = cv2.arcLength(poly.astype(np.float32), True)
        if length <= 0:
            return None
        distance = area * ratio / length
        pco = pyclipper.PyclipperOffset()
        pco.AddPath(
            [tuple(p) for p in poly.round().astype(int)],
            pyclipper.JT_ROUND,
            pyclipper.ET_CLOSEDPOLYGON,
        )
        out = pco.Execute(distance)
        if len(out) != 1:
            return None
        return np.array(out[0], dtype=np.float32).reshape(-1, 1, 2)

    # ---- call ------------------------------------------------------------------------------
    def __call__(self, rgb: np.ndarray) -> list[DetectedBox]:
        """(H, W, 3) uint8 RGB -> text quads in original pixel coordinates."""
        x, scale = self.preprocess(rgb)
        try:
            out = self.session.run(None, {self.input_name: x})[0]
        except Exception as exc:
            raise TransientError(f"text detection failed: {exc}") from exc
        prob = np.asarray(out, dtype=np.float32).reshape(out.shape[-2], out.shape[-1])
        return self.postprocess(prob, scale, rgb.shape[:2])
