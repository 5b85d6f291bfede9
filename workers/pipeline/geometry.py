"""Geometry helpers: quad ordering, perspective crops, reading order.

All points are (x, y) float pixels in the original upright image frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def order_quad(pts: np.ndarray) -> np.ndarray:
    """Order 4 points clockwise from top-left: TL, TR, BR, BL. In/out: (4, 2) float32."""
    pts = np.asarray(pts, dtype=np.float32).reshape(4, 2)
    xs_sorted = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = xs_sorted[:2], xs_sorted[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.stack([tl, tr, br, bl]).astype(np.float32)


def crop_quad(img: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Perspective-warp the quad (TL, TR, BR, BL) of ``img`` (H, W, C uint8) to an upright crop.

    Returns (h, w, C) uint8 with w = max top/bottom edge length, h = max left/right edge length.
    Crops with h / w >= 1.5 (vertical text lines) are rotated 90 degrees counter-clockwise so the
    recogniser always sees a horizontal line.
    """
    q = quad.astype(np.float32)
    w = int(round(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[3] - q[2]))))
    h = int(round(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]))))
    w, h = max(w, 1), max(h, 1)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    crop = cv2.warpPerspective(
        img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    if h / w >= 1.5:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def reading_order(polygons: Sequence[np.ndarray | Sequence[Sequence[float]]]) -> list[int]:
    """Indices of ``polygons`` in reading order: rows top-to-bottom, then x. The one reading
    order of the product: the OCR line order (detector quads) and the field extractor's word
    order (line polygons) both come from here.

    ``polygons``: (K, 2) arrays or sequences of (x, y) points (quads or 2N-point line
    outlines), image pixels. A box's vertical centre is the mean of its points' y, its height
    the extent of its y. Two boxes share a row when their vertical centres differ by less than
    half the smaller box height (robust to slightly tilted labels); the row's centre is the
    mean of its members' centres.
    """
    if not polygons:
        return []
    info = []
    for i, poly in enumerate(polygons):
        p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        ys, xs = p[:, 1], p[:, 0]
        info.append((i, float(ys.mean()), float(ys.max() - ys.min()), float(xs.min())))
    info.sort(key=lambda t: t[1])
    rows: list[list[tuple[int, float, float, float]]] = []
    for item in info:
        if rows:
            row = rows[-1]
            cy = sum(r[1] for r in row) / len(row)
            h = min(min(r[2] for r in row), item[2])
            if abs(item[1] - cy) < 0.5 * max(h, 1.0):
                row.append(item)
                continue
        rows.append([item])
    out: list[int] = []
    for row in rows:
        out.extend(r[0] for r in sorted(row, key=lambda r: r[3]))
    return out
