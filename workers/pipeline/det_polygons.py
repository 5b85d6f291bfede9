"""Polygon (not only quad) output for DB text detection: curved lines keep more than 4 points.

``TextDetector.postprocess`` (detection.py) turns each contour of the binarised probability
map into a min-area rectangle, which is right for flat text and loses the shape of a line
printed on a cylinder. :func:`line_polygon` is the alternative for one contour: it returns the
unclipped outline as a *line polygon* in the format ``workers.pipeline.rectification`` expects,
so a bent line can be straightened by column sampling instead of a quad warp.

Method (contour approximation instead of the min-area box):

1. expand the contour polygon itself (not its box) with DB's unclip: pyclipper offset by
   ``area * unclip_ratio / perimeter`` (round joins);
2. frame: the min-area rectangle of the expanded outline gives the line's long axis ``u``
   (oriented so it points to the image's right, i.e. reading order by image position as
   ``geometry.order_quad`` does; a 180-degree line is settled later by the orientation step)
   and the normal ``v`` (pointing down);
3. ``n`` equally spaced stations along ``u`` between the outline's extremes; at each station
   the outline is cut by the line ``u = const`` and the smallest / largest ``v`` crossing are
   the top / bottom points (exact segment intersections, not pixel columns);
4. output (2n, 2): top points start -> end, then bottom points end -> start (the synthetic
   engine's and rectification's convention). A straight line gives (nearly) collinear top and
   bottom points, so ``rectification.classify_line`` still picks "axis"/"perspective" for it.

Coordinates: whatever frame the contour is in (the probability map's pixels); scale them the
same way the quads are scaled. Pure numpy + OpenCV + pyclipper; no model.

Wired in ``detection.TextDetector._outline``: a contour whose line polygon bends by at least
``detection.OUTLINE_MIN_BEND`` line heights is reported as ``DetectedBox.outline`` next to its
4-point ``polygon``, and the pipeline straightens it with ``rectification.rectify_curved``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper


def unclip_polygon(poly: np.ndarray, ratio: float) -> np.ndarray | None:
    """Offset a closed polygon (K, 2) outward by ``area * ratio / perimeter``; None if the
    offset does not give exactly one polygon."""
    p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    area = abs(cv2.contourArea(p.astype(np.float32)))
    length = cv2.arcLength(p.astype(np.float32), True)
    if length <= 0 or area <= 0:
        return None
    pco = pyclipper.PyclipperOffset()
    pco.AddPath(
        [tuple(q) for q in p.round().astype(int)], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON
    )
    out = pco.Execute(area * ratio / length)
    if len(out) != 1:
        return None
    return np.asarray(out[0], dtype=np.float64)


def _cuts(outline: np.ndarray, u_vals: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """For each station ``u_vals[i]``: (min v, max v) of the closed outline's crossings."""
    pu, pv = outline @ u, outline @ v
    a_u, b_u = pu, np.roll(pu, -1)
    a_v, b_v = pv, np.roll(pv, -1)
    out = np.empty((len(u_vals), 2))
    for i, s in enumerate(u_vals):
        hit = ((a_u - s) * (b_u - s) <= 0) & (a_u != b_u)
        if not hit.any():
            j = int(np.argmin(np.abs(pu - s)))
            out[i] = pv[j], pv[j]
            continue
        t = (s - a_u[hit]) / (b_u[hit] - a_u[hit])
        vs = a_v[hit] + t * (b_v[hit] - a_v[hit])
        out[i] = vs.min(), vs.max()
    return out


def line_polygon(
    contour: np.ndarray, unclip_ratio: float = 1.6, n: int | None = None
) -> np.ndarray | None:
    """Contour (K, 2) of one text region in map pixels -> (2n, 2) float64 line polygon (top
    edge start -> end, bottom edge end -> start), or None for a degenerate region.

    ``n`` stations along the line; default: one per line thickness of length, 3..16."""
    outline = unclip_polygon(contour, unclip_ratio)
    if outline is None or len(outline) < 3:
        return None
    (cx, cy), (rw, rh), ang = cv2.minAreaRect(outline.astype(np.float32))
    if min(rw, rh) <= 0:
        return None
    th = np.deg2rad(ang)
    u = np.array([np.cos(th), np.sin(th)])
    if rh > rw:  # long side along the rectangle's second axis
        u = np.array([-np.sin(th), np.cos(th)])
    if u[0] < 0 or (u[0] == 0 and u[1] < 0):
        u = -u
    v = np.array([-u[1], u[0]])  # u rotated by +90 degrees in image coords (y down): points down
    length = max(rw, rh)
    if n is None:  # thickness of a band ~ 2 * area / perimeter (the box height overestimates it
        # for a bent line)
        o32 = outline.astype(np.float32)
        thick = 2.0 * abs(cv2.contourArea(o32)) / max(cv2.arcLength(o32, True), 1e-6)
        n = int(np.clip(round(length / max(thick, 1.0)) + 1, 3, 16))
    pu = outline @ u
    lo, hi = pu.min(), pu.max()
    eps = 1e-3 * (hi - lo)
    stations = np.linspace(lo + eps, hi - eps, n)
    tb = _cuts(outline, stations, u, v)
    top = stations[:, None] * u + tb[:, :1] * v
    bot = stations[:, None] * u + tb[:, 1:] * v
    return np.concatenate([top, bot[::-1]])
