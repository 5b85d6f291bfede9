"""Stage: geometric rectification of labels and text lines (numpy + OpenCV only, no model).

Coordinate frame: image pixels of the array given, x to the right, y down, origin at the centre
of the top-left pixel (OpenCV's convention), float. Images are (H, W, 3) or (H, W) uint8.

Polygons of text lines, shape (K, 2) float:

- K == 4: a quad TL, TR, BR, BL *of the text in reading direction* (for upside-down text the
  first point is at the bottom-right of the image), clockwise as the text reads.
- K == 2N (N >= 3): a curved line. Points 0..N-1 run along the top edge of the text from its
  start to its end (left -> right in reading direction); points N..2N-1 run along the bottom
  edge back from the end to the start. That is the order of the synthetic data engine
  (``workers.training.synth``) and of polygon DB post-processing.

The crop returned for a line is always upright in the polygon's reading direction: a polygon
that starts at the text's real top-left gives readable text; the detector's quads are ordered
by image position (``geometry.order_quad``), so upside-down text then comes out rotated by 180
degrees and :func:`decide_orientation` settles it.

"Applied only when it helps" (:func:`classify_line`): a line whose polygon is straight
(centre-line bend <= ``max_bend`` line heights), rectangular (opposite sides differ by at most
``max_taper``) and nearly axis-aligned (baseline within ``max_skew_deg`` of horizontal) is cut
out as a plain axis-aligned slice, bit-exact, without resampling; a straight but rotated or
tapered line gets a perspective warp; a bent one gets column sampling along its centre line.
The label-level perspective correction likewise skips outlines that are already rectangles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .types import RecognizedText

# ---- thresholds (see module docstring) --------------------------------------------------------
MAX_SKEW_DEG = 3.0  # baseline angle below which a straight line is not rotated
MAX_TAPER = 0.06  # relative difference of opposite sides below which there is no perspective
MAX_BEND = 0.12  # max centre-line deviation from its chord, in line heights, for "straight"
LABEL_MIN_AREA = 0.12  # label outline: min share of the image area
LABEL_MAX_AREA = 0.985  # ... and max (the image border itself is not a label)
LABEL_MAX_CORNER_DEV_DEG = 2.0  # outline corners within this of 90 deg + axis-aligned: no warp
ORIENT_MARGIN = 0.03  # 180-degree rotation chosen only when it beats upright by this much


@dataclass(frozen=True)
class LineGeometry:
    """Shape measures of a line polygon (pixels / degrees / ratios)."""

    length: float  # mean of the top and bottom edge lengths (along the curve)
    height: float  # mean distance between matching top and bottom points
    angle_deg: float  # direction of the chord start -> end of the centre line, y down
    bend: float  # max distance of the centre line from its chord / height
    taper: float  # max(|left - right| / max, |top - bottom| / max) of the side lengths


@dataclass(frozen=True)
class RectifiedLine:
    """``crop``: (h, w, C) uint8, text upright in the polygon's reading direction.
    ``method``: "axis" (plain slice, not resampled), "perspective" or "curved"."""

    crop: np.ndarray
    method: str
    geometry: LineGeometry


@dataclass(frozen=True)
class LabelRectification:
    """Whole-label correction. ``image``: (h, w, C) uint8 label, fronto-parallel;
    ``homography``: (3, 3) float64 mapping original image pixels -> ``image`` pixels;
    ``quad``: (4, 2) the outline found in the original image (TL, TR, BR, BL)."""

    image: np.ndarray
    homography: np.ndarray
    quad: np.ndarray

    def map_points(self, pts: np.ndarray) -> np.ndarray:
        """(K, 2) original-image points -> (K, 2) points in ``image``."""
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(p, self.homography).reshape(-1, 2)


@dataclass(frozen=True)
class OrientationDecision:
    rotate_180: bool
    score_upright: float
    score_rotated: float
    source: str  # "recognizer" or "classifier"


# ---- polygon helpers -------------------------------------------------------------------------
def split_edges(polygon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2N, 2) polygon -> (top (N, 2), bottom (N, 2)), both from the text's start to its end."""
    p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(p) < 4 or len(p) % 2:
        raise ValueError(f"a line polygon needs an even number >= 4 of points, got {len(p)}")
    n = len(p) // 2
    return p[:n], p[n:][::-1]


def _arc(pts: np.ndarray) -> np.ndarray:
    """Cumulative arc length (K,) of a (K, 2) polyline, starting at 0."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])


def line_geometry(polygon: np.ndarray) -> LineGeometry:
    top, bot = split_edges(polygon)
    heights = np.linalg.norm(top - bot, axis=1)
    height = float(max(heights.mean(), 1e-6))
    lt, lb = _arc(top)[-1], _arc(bot)[-1]
    centre = (top + bot) / 2.0
    chord = centre[-1] - centre[0]
    clen = float(np.linalg.norm(chord))
    if clen > 0:
        normal = np.array([-chord[1], chord[0]]) / clen
        dev = float(np.abs((centre - centre[0]) @ normal).max())
    else:
        dev = 0.0
    hl, hr = heights[0], heights[-1]
    taper = max(abs(hl - hr) / max(hl, hr, 1e-6), abs(lt - lb) / max(lt, lb, 1e-6))
    return LineGeometry(
        length=float((lt + lb) / 2.0),
        height=height,
        angle_deg=float(math.degrees(math.atan2(chord[1], chord[0]))),
        bend=dev / height,
        taper=float(taper),
    )


def classify_line(
    polygon: np.ndarray,
    *,
    max_skew_deg: float = MAX_SKEW_DEG,
    max_taper: float = MAX_TAPER,
    max_bend: float = MAX_BEND,
) -> str:
    """ "axis" (flat, nearly horizontal, reading left to right: slice, no warp), "perspective"
    (straight but rotated/tapered/upside down: 4-point warp) or "curved" (column sampling)."""
    g = line_geometry(polygon)
    if g.bend > max_bend and len(polygon) > 4:
        return "curved"
    if abs(g.angle_deg) <= max_skew_deg and g.taper <= max_taper:
        return "axis"
    return "perspective"


# ---- per-line rectification -------------------------------------------------------------------
def rectify_quad(
    image: np.ndarray, quad: np.ndarray, *, out_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Perspective-warp a text quad (4, 2) (TL, TR, BR, BL in reading direction) to an upright
    (h, w, C) crop. Default size: w = mean of the top and bottom edge lengths, h = mean of the
    left and right edge lengths (the aspect of the text as seen; foreshortening along the line
    is not undone, the recogniser resizes to height 48 anyway). ``out_size``: (w, h)."""
    q = np.asarray(quad, dtype=np.float32).reshape(4, 2)
    if out_size is None:
        w = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2.0
        h = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2.0
        out_size = (max(int(round(w)), 1), max(int(round(h)), 1))
    w, h = out_size
    # pixel centres: the quad's corners are the outer corners of the crop's corner pixels
    dst = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]], np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    return cv2.warpPerspective(
        image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )


def _catmull_rom(pts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Interpolate a (K, 2) polyline through all its points at arc-length fractions ``t`` (M,)
    in [0, 1] with a uniform Catmull-Rom spline over the chord-length parameter."""
    s = _arc(pts)
    if s[-1] <= 0:
        return np.repeat(pts[:1], len(t), axis=0)
    s = s / s[-1]
    if len(pts) < 3:
        return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], axis=1)
    ext = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    se = np.concatenate([[s[0] - (s[1] - s[0])], s, [s[-1] + (s[-1] - s[-2])]])
    seg = np.clip(np.searchsorted(s, t, side="right") - 1, 0, len(pts) - 2)
    p0, p1, p2, p3 = ext[seg], ext[seg + 1], ext[seg + 2], ext[seg + 3]
    t0, t1, t2, t3 = se[seg], se[seg + 1], se[seg + 2], se[seg + 3]
    u = ((t - t1) / np.maximum(t2 - t1, 1e-12))[:, None]
    # tangents scaled to the segment (non-uniform knots)
    m1 = (p2 - p0) / np.maximum(t2 - t0, 1e-12)[:, None] * (t2 - t1)[:, None]
    m2 = (p3 - p1) / np.maximum(t3 - t1, 1e-12)[:, None] * (t2 - t1)[:, None]
    u2, u3 = u * u, u * u * u
    return (
        (2 * u3 - 3 * u2 + 1) * p1
        + (u3 - 2 * u2 + u) * m1
        + (-2 * u3 + 3 * u2) * p2
        + (u3 - u2) * m2
    )


def rectify_curved(
    image: np.ndarray, polygon: np.ndarray, *, out_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Straighten a curved line polygon (2N, 2) by column sampling.

    Both edges are interpolated through their points (Catmull-Rom over arc length) and sampled
    at ``w`` equal arc-length fractions; column j of the crop is the segment from top(j) to
    bottom(j), sampled at ``h`` points (bilinear, ``cv2.remap``). Default size: w = mean edge
    arc length, h = mean top-bottom distance. Returns (h, w, C) uint8, upright."""
    top, bot = split_edges(polygon)
    g = line_geometry(polygon)
    if out_size is None:
        out_size = (max(int(round(g.length)), 1), max(int(round(g.height)), 1))
    w, h = out_size
    t = (np.arange(w) + 0.5) / w
    top_s, bot_s = _catmull_rom(top, t), _catmull_rom(bot, t)  # (w, 2) each
    v = ((np.arange(h) + 0.5) / h)[:, None, None]  # (h, 1, 1)
    grid = top_s[None] * (1 - v) + bot_s[None] * v  # (h, w, 2)
    map_x = np.ascontiguousarray(grid[..., 0], dtype=np.float32)
    map_y = np.ascontiguousarray(grid[..., 1], dtype=np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def axis_crop(image: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Plain slice of the polygon's bounding box (rounded outward, clipped): no resampling."""
    p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    hgt, wid = image.shape[:2]
    x0 = int(np.clip(np.floor(p[:, 0].min() + 0.5), 0, wid - 1))
    y0 = int(np.clip(np.floor(p[:, 1].min() + 0.5), 0, hgt - 1))
    x1 = int(np.clip(np.ceil(p[:, 0].max() - 0.5), x0, wid - 1))
    y1 = int(np.clip(np.ceil(p[:, 1].max() - 0.5), y0, hgt - 1))
    return image[y0 : y1 + 1, x0 : x1 + 1].copy()


def rectify_line(
    image: np.ndarray, polygon: np.ndarray, *, method: str | None = None
) -> RectifiedLine:
    """Upright crop of one text line; ``method`` None picks it with :func:`classify_line`."""
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    geo = line_geometry(poly)
    method = method or classify_line(poly)
    if method == "axis":
        crop = axis_crop(image, poly)
    elif method == "perspective":
        top, bot = split_edges(poly)
        crop = rectify_quad(image, np.array([top[0], top[-1], bot[-1], bot[0]]))
    elif method == "curved":
        crop = rectify_curved(image, poly)
    else:
        raise ValueError(f"unknown rectification method {method!r}")
    return RectifiedLine(crop=crop, method=method, geometry=geo)


# ---- 0/180 orientation ------------------------------------------------------------------------
def decide_orientation(
    score_upright: float, score_rotated: float, *, margin: float = ORIENT_MARGIN
) -> OrientationDecision:
    """Rotate by 180 degrees when the recogniser's confidence on the rotated crop beats the one
    on the crop as given by more than ``margin`` (ties keep the crop: no needless flips).
    Scores: mean per-character confidence in [0, 1] (0 when nothing was read)."""
    return OrientationDecision(
        rotate_180=score_rotated > score_upright + margin,
        score_upright=float(score_upright),
        score_rotated=float(score_rotated),
        source="recognizer",
    )


def orientation_from_classifier(
    probs: np.ndarray, *, threshold: float = 0.9
) -> OrientationDecision:
    """Decision from the PP-OCR 0/180 line classifier output ``probs`` (2,) = [p0, p180]:
    rotate when p180 is the larger and exceeds ``threshold`` (PaddleOCR's ``cls_thresh``)."""
    p0, p180 = float(probs[0]), float(probs[1])
    return OrientationDecision(p180 > p0 and p180 > threshold, p0, p180, "classifier")


def upright(
    crop: np.ndarray,
    score: Callable[[list[np.ndarray]], list[float]],
    *,
    margin: float = ORIENT_MARGIN,
) -> tuple[np.ndarray, OrientationDecision]:
    """Score the crop and its 180-degree rotation in one batch (``score``: crops -> mean char
    confidences, e.g. ``lambda cs: [r.confidence for r in recognizer(cs)]``) and return the
    better-oriented crop with the decision."""
    rotated = np.ascontiguousarray(crop[::-1, ::-1])
    s0, s180 = score([crop, rotated])
    d = decide_orientation(s0, s180, margin=margin)
    return (rotated if d.rotate_180 else crop), d


# ---- whole-label perspective ------------------------------------------------------------------
def _order_corners(pts: np.ndarray) -> np.ndarray:
    """(4, 2) -> TL, TR, BR, BL by angle around the centroid (robust to strong perspective)."""
    p = np.asarray(pts, dtype=np.float64).reshape(4, 2)
    c = p.mean(axis=0)
    ang = np.arctan2(p[:, 1] - c[1], p[:, 0] - c[0])
    p = p[np.argsort(ang)]  # clockwise in image coordinates (y down), starting near -pi
    start = int(np.argmin(p.sum(axis=1)))  # TL: smallest x + y
    return np.roll(p, -start, axis=0)


def _corner_deviation_deg(q: np.ndarray) -> float:
    """Max deviation from 90 degrees of the quad's corner angles and of its sides from the axes."""
    dev = 0.0
    for i in range(4):
        a, b, c = q[i - 1], q[i], q[(i + 1) % 4]
        u, v = a - b, c - b
        cos = float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-9))
        dev = max(dev, abs(math.degrees(math.acos(np.clip(cos, -1, 1))) - 90.0))
        d = c - b
        ang = math.degrees(math.atan2(d[1], d[0])) % 90.0
        dev = max(dev, min(ang, 90.0 - ang))
    return dev


def find_label_quad(
    image: np.ndarray,
    *,
    text_polygons: list[np.ndarray] | None = None,
    min_area: float = LABEL_MIN_AREA,
    max_area: float = LABEL_MAX_AREA,
) -> np.ndarray | None:
    """Find a label/plate outline: the largest convex quadrilateral contour (bright label on a
    dark part or dark plate on a bright one: Otsu in both polarities, plus Canny edges) covering
    ``min_area``..``max_area`` of the image. When ``text_polygons`` (original pixels) are given,
    at least half of their centres must lie inside. Returns (4, 2) float64 TL, TR, BR, BL in
    original pixels, or None. Works on a copy downscaled to a long side of 800 px."""
    hgt, wid = image.shape[:2]
    scale = min(1.0, 800.0 / max(hgt, wid))
    small = (
        cv2.resize(
            image,
            (max(1, round(wid * scale)), max(1, round(hgt * scale))),
            interpolation=cv2.INTER_AREA,
        )
        if scale < 1
        else image
    )
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY) if small.ndim == 3 else small
    gray = cv2.GaussianBlur(gray, (5, 5), 0)
    area_img = float(gray.shape[0] * gray.shape[1])
    _, otsu = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    edges = cv2.dilate(cv2.Canny(gray, 40, 120), np.ones((3, 3), np.uint8))
    k = max(3, int(round(min(gray.shape) * 0.02)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    candidates = []
    for binary in (otsu, 255 - otsu):
        # close the text holes so the label is one blob
        blob = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
        candidates += list(cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0])
    candidates += list(cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)[0])
    best, best_area = None, 0.0
    centres = (
        np.array([np.asarray(p, np.float64).reshape(-1, 2).mean(axis=0) for p in text_polygons])
        * scale
        if text_polygons
        else None
    )
    for c in candidates:
        area = cv2.contourArea(c)
        if not (min_area * area_img <= area <= max_area * area_img) or area <= best_area:
            continue
        hull = cv2.convexHull(c)
        approx = cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True)
        if len(approx) != 4 or not cv2.isContourConvex(approx):
            continue
        if cv2.contourArea(approx) < 0.85 * cv2.contourArea(hull):
            continue
        if centres is not None:
            inside = [
                cv2.pointPolygonTest(approx.astype(np.float32), (float(x), float(y)), False) >= 0
                for x, y in centres
            ]
            if sum(inside) < 0.5 * len(inside):
                continue
        best, best_area = approx.reshape(4, 2).astype(np.float64), area
    if best is None:
        return None
    return _order_corners(best / scale)


def rectify_label(
    image: np.ndarray,
    quad: np.ndarray | None = None,
    *,
    text_polygons: list[np.ndarray] | None = None,
    max_corner_dev_deg: float = LABEL_MAX_CORNER_DEV_DEG,
) -> LabelRectification | None:
    """Fronto-parallel view of the label outlined by ``quad`` (found with
    :func:`find_label_quad` when None). Returns None when no outline is found or when the
    outline is already an axis-aligned rectangle (within ``max_corner_dev_deg``): the image is
    then used as is. Output size: w = max(top, bottom) edge, h = max(left, right) edge."""
    if quad is None:
        quad = find_label_quad(image, text_polygons=text_polygons)
        if quad is None:
            return None
    q = _order_corners(np.asarray(quad, dtype=np.float64))
    if _corner_deviation_deg(q) <= max_corner_dev_deg:
        return None
    w = int(round(max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3]))))
    h = int(round(max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1]))))
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    hom = cv2.getPerspectiveTransform(q.astype(np.float32), dst.astype(np.float32)).astype(
        np.float64
    )
    out = cv2.warpPerspective(
        image, hom, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return LabelRectification(image=out, homography=hom, quad=q)


# ---- whole-label view (detection on the fronto-parallel label) --------------------------------
# Whole-label warp only when the outline is tilted by more than this (degrees, max deviation of
# its corners from 90 and of its sides from the axes): smaller tilts are handled per line and
# would cost a second detection pass for nothing.
LABEL_RECTIFY_MIN_DEG = 6.0


def label_view(
    rgb: np.ndarray, text_polygons: list[np.ndarray], *, min_dev_deg: float = LABEL_RECTIFY_MIN_DEG
) -> tuple[np.ndarray, np.ndarray] | None:
    """Fronto-parallel label image and the (3, 3) homography original pixels -> label pixels,
    or None (no outline holding at least half of ``text_polygons``, or one tilted by at most
    ``min_dev_deg``: corner angles and side directions, see ``rectification``). When the text
    quads, mapped into the label, run closer to vertical than to horizontal, the label image
    is turned by 90 degrees counter-clockwise (and the homography with it)."""
    quad = find_label_quad(rgb, text_polygons=text_polygons)
    if quad is None:
        return None
    if _corner_deviation_deg(_order_corners(quad)) <= min_dev_deg:
        return None
    rect = rectify_label(rgb, quad)
    if rect is None or min(rect.image.shape[:2]) < 32:
        return None
    image, hom = rect.image, rect.homography
    # dominant text direction inside the label (length-weighted, angle doubled: 0 == 180)
    vx = vy = 0.0
    for p in text_polygons:
        q = np.asarray(p, np.float64).reshape(4, 2)
        a, b = q[1] - q[0], q[3] - q[0]
        axis = a if np.linalg.norm(a) >= np.linalg.norm(b) else b
        c = q.mean(axis=0)
        ends = rect.map_points(np.stack([c - axis / 2, c + axis / 2]))
        d = ends[1] - ends[0]
        ang = 2.0 * np.arctan2(d[1], d[0])
        ln = float(np.linalg.norm(d))
        vx += ln * np.cos(ang)
        vy += ln * np.sin(ang)
    if vx < 0 and abs(vx) > abs(vy):  # mean doubled angle near 180 deg: vertical text
        hh, ww = image.shape[:2]
        image = np.ascontiguousarray(np.rot90(image))  # CCW: (x, y) -> (y, ww - 1 - x)
        turn = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, ww - 1.0], [0.0, 0.0, 1.0]])
        hom = turn @ hom
    return image, hom


# ---- 0/180 for a read's lines ---------------------------------------------------------------
# Lines read with a lower mean character confidence are also read rotated by 180 degrees.
ORIENT_CHECK_CONF = 0.9


def orient_lines(
    crops: list[np.ndarray],
    texts: list[RecognizedText],
    flipped: list[bool],
    recognize: Callable[[list[np.ndarray]], list[RecognizedText]],
    *,
    check_conf: float = ORIENT_CHECK_CONF,
) -> tuple[list[RecognizedText], list[bool]]:
    """0/180 decision beyond the classifier: lines read (``texts[i].confidence``) below
    ``check_conf`` are read again rotated by 180 degrees (one ``recognize`` batch) and the
    rotation is kept when the recogniser is more confident by ``ORIENT_MARGIN``
    (:func:`decide_orientation`). ``flipped[i]`` (whether crop i was already turned) is toggled
    for the lines turned here. Returns new lists."""
    doubt = [i for i, r in enumerate(texts) if r.confidence < check_conf]
    if not doubt:
        return texts, flipped
    rotated = [np.ascontiguousarray(crops[i][::-1, ::-1]) for i in doubt]
    again = recognize(rotated)
    texts, flipped = list(texts), list(flipped)
    for i, r2 in zip(doubt, again, strict=True):
        if decide_orientation(texts[i].confidence, r2.confidence).rotate_180:
            texts[i] = r2
            flipped[i] = not flipped[i]
    return texts, flipped
