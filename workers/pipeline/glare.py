"""Glare mask: specular highlights (clipped white cores + their bloom) in an RGB photo, and how
much of a text line they cover. numpy + OpenCV only, no model.

Frame: image pixels of the input, x right, y down; polygons (K, 2) float in that frame (the
detector's quads or 2N-point curved polygons, see ``rectification``).

Algorithm (:func:`glare_mask`), on a copy downscaled to a long side of ``work_side`` px, the
mask is returned at full size (nearest):

1. core = V >= ``core_v`` and S <= ``core_s`` (HSV, 0..255): saturated, colourless pixels.
2. morphological opening with a disc of ``open_frac`` x short side (at least 3 px) removes
   specks and anti-aliased text edges; components smaller than ``min_area_frac`` of the image
   are dropped.
3. a specular highlight is brighter than its surroundings: a component is kept when the median
   V of a ring around it (from 1x to 2x its equivalent radius beyond it) is at least
   ``ring_delta`` grey levels below ``core_v`` (an evenly exposed white sheet is not glare).
4. bloom: pixels within ``bloom_factor`` x the equivalent radius of their nearest kept core
   (distance transform with labels) whose V >= ``bloom_v`` and S <= ``bloom_s`` join the mask.
   Dark strokes that remain visible inside a highlight are NOT in the mask (they can be read),
   so the mask measures washed-out area, not the blob's outline.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .rectification import rectify_quad
from .types import LineQuality, QualityWarning, TextLine

# share of a line's columns washed out above which the advice is "glare covers characters: retake"
LINE_RETAKE_COLUMNS = 0.15
# A character cell (line split proportionally by the characters read) this much in glare -> retake.
CHAR_RETAKE_COVER = 0.5
GLARE_TEXT_MSG = "Glare covers characters on line {n}: retake the photo at a different angle."
# Blob test (:func:`blob_mask`, also the quality stage's own measure).
BLOB_V = 250
BLOB_S = 40
BLOB_MIN_AREA = 0.0005
BLOB_RING_DELTA = 20.0


@dataclass(frozen=True)
class GlareConfig:
    core_v: int = 248
    core_s: int = 40
    bloom_v: int = 215
    bloom_s: int = 70
    open_frac: float = 0.004
    min_area_frac: float = 0.0002
    ring_delta: float = 25.0
    bloom_factor: float = 0.6
    work_side: int = 1024


@dataclass(frozen=True)
class GlareComponent:
    """One highlight, full-resolution pixels: ``bbox`` (x, y, w, h) of core + bloom, ``area``
    (mask pixels), ``core_area``, ``centroid`` (x, y) of the core, ``ring_v`` median V around."""

    bbox: tuple[int, int, int, int]
    area: int
    core_area: int
    centroid: tuple[float, float]
    ring_v: float


@dataclass(frozen=True)
class GlareResult:
    """``mask``: (H, W) uint8, 255 = glare (core or bloom), 0 elsewhere; ``components``."""

    mask: np.ndarray
    components: tuple[GlareComponent, ...]

    @property
    def fraction(self) -> float:
        return float(np.count_nonzero(self.mask)) / max(self.mask.size, 1)


@dataclass(frozen=True)
class LineGlare:
    """Glare over one text line: ``area_fraction`` of the polygon's pixels in the mask;
    ``column_fraction``: share of the line's length (columns across the line, along its
    direction) at least half washed out; ``retake``: column_fraction > LINE_RETAKE_COLUMNS."""

    area_fraction: float
    column_fraction: float
    retake: bool


def glare_mask(rgb: np.ndarray, config: GlareConfig | None = None) -> GlareResult:
    """(H, W, 3) uint8 RGB -> :class:`GlareResult` (see the module docstring)."""
    cfg = config or GlareConfig()
    h, w = rgb.shape[:2]
    scale = min(1.0, cfg.work_side / max(h, w))
    small = (
        cv2.resize(
            rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        if scale < 1.0
        else rgb
    )
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    s, v = hsv[..., 1], hsv[..., 2]
    core = ((v >= cfg.core_v) & (s <= cfg.core_s)).astype(np.uint8)
    k = max(3, int(round(min(small.shape[:2]) * cfg.open_frac)) | 1)
    core = cv2.morphologyEx(
        core, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    n, labels, stats, cents = cv2.connectedComponentsWithStats(core, connectivity=8)
    min_area = cfg.min_area_frac * small.shape[0] * small.shape[1]
    keep = np.zeros(n, dtype=bool)
    radius = np.zeros(n, dtype=np.float64)
    ring_v = np.zeros(n, dtype=np.float64)
    if n > 1:
        dist_out, nearest = cv2.distanceTransformWithLabels(
            1 - core, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP
        )
        # map distance-transform labels (one per zero-pixel component = core blob) to ours
        lab_of = np.zeros(int(nearest.max()) + 1, dtype=np.int32)
        lab_of[nearest[core > 0]] = labels[core > 0]
        owner = lab_of[nearest]
        for i in range(1, n):
            area = stats[i, cv2.CC_STAT_AREA]
            if area < min_area:
                continue
            r = math.sqrt(area / math.pi)
            x, y, bw, bh = stats[i, :4]
            pad = int(2 * r) + 2
            y0, y1 = max(0, y - pad), min(small.shape[0], y + bh + pad)
            x0, x1 = max(0, x - pad), min(small.shape[1], x + bw + pad)
            d = dist_out[y0:y1, x0:x1]
            ring = (owner[y0:y1, x0:x1] == i) & (d >= r) & (d <= 2 * r)
            if not ring.any():
                continue
            ring_v[i] = float(np.median(v[y0:y1, x0:x1][ring]))
            if ring_v[i] <= cfg.core_v - cfg.ring_delta:
                keep[i], radius[i] = True, r
        kept_core = keep[labels] & (core > 0)
        bloom = (
            keep[owner]
            & (dist_out <= cfg.bloom_factor * radius[owner])
            & (v >= cfg.bloom_v)
            & (s <= cfg.bloom_s)
        )
        small_mask = (kept_core | bloom).astype(np.uint8) * 255
    else:
        small_mask = np.zeros(small.shape[:2], np.uint8)
        owner = np.zeros(small.shape[:2], np.int32)
    mask = (
        cv2.resize(small_mask, (w, h), interpolation=cv2.INTER_NEAREST)
        if scale < 1.0
        else small_mask
    )
    comps = []
    for i in np.flatnonzero(keep):
        sel = (small_mask > 0) & (owner == i)
        ys, xs = np.nonzero(sel)
        if len(xs) == 0:
            continue
        inv = 1.0 / scale
        comps.append(
            GlareComponent(
                bbox=(
                    int(xs.min() * inv),
                    int(ys.min() * inv),
                    int(math.ceil((xs.max() - xs.min() + 1) * inv)),
                    int(math.ceil((ys.max() - ys.min() + 1) * inv)),
                ),
                area=int(round(len(xs) * inv * inv)),
                core_area=int(round(stats[i, cv2.CC_STAT_AREA] * inv * inv)),
                centroid=(float(cents[i][0] * inv), float(cents[i][1] * inv)),
                ring_v=float(ring_v[i]),
            )
        )
    return GlareResult(mask=mask, components=tuple(comps))


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(np.asarray(polygon, np.float64).reshape(-1, 2)).astype(np.int32)], 1)
    return m


def glare_over_polygon(mask: np.ndarray, polygon: np.ndarray) -> float:
    """Fraction in [0, 1] of the polygon's pixels that are glare. ``mask``: (H, W) uint8
    (nonzero = glare); ``polygon``: (K, 2) float pixels. 0.0 for an empty polygon."""
    pm = _polygon_mask(mask.shape[:2], polygon)
    n = int(pm.sum())
    return float(np.count_nonzero(mask[pm > 0])) / n if n else 0.0


def line_glare(mask: np.ndarray, polygon: np.ndarray, *, bins: int = 64) -> LineGlare:
    """Glare over a text line, by area and by columns along the line's main direction (the
    principal axis of the polygon's points): each of ``bins`` slices across the line counts as
    washed out when at least half of its pixels are glare, which is what hides characters."""
    pm = _polygon_mask(mask.shape[:2], polygon)
    ys, xs = np.nonzero(pm)
    if len(xs) == 0:
        return LineGlare(0.0, 0.0, False)
    g = mask[ys, xs] > 0
    pts = np.asarray(polygon, np.float64).reshape(-1, 2)
    c = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - c, full_matrices=False)
    t = (np.stack([xs, ys], axis=1) - c) @ vt[0]
    edges = np.linspace(t.min(), t.max() + 1e-9, bins + 1)
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    tot = np.bincount(idx, minlength=bins)
    hit = np.bincount(idx, weights=g.astype(np.float64), minlength=bins)
    used = tot > 0
    col = float(((hit[used] / tot[used]) >= 0.5).mean())
    return LineGlare(float(g.mean()), col, col > LINE_RETAKE_COLUMNS)


def blob_mask(small_rgb: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """bool (h, w): pixels inside glare blobs of an RGB image and its gray copy (same size):
    near-white (V >= ``BLOB_V``), low-saturation (S <= ``BLOB_S``) pixels, opened with a
    1 %-of-short-side kernel, kept when the blob covers >= ``BLOB_MIN_AREA`` of the image and
    the median of a ring around it is darker by >= ``BLOB_RING_DELTA`` grey levels (a hot spot,
    also on a white sticker, where :func:`glare_mask`'s ring test rejects it)."""
    hsv = cv2.cvtColor(small_rgb, cv2.COLOR_RGB2HSV)
    cand = ((hsv[:, :, 2] >= BLOB_V) & (hsv[:, :, 1] <= BLOB_S)).astype(np.uint8)
    h, w = gray.shape
    out = np.zeros((h, w), dtype=bool)
    if not cand.any():
        return out
    k = max(3, int(round(0.01 * min(h, w))) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    min_area = BLOB_MIN_AREA * h * w
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        r = max(k, int(round(np.sqrt(area / np.pi))))
        x0, y0 = max(0, x - r - 1), max(0, y - r - 1)
        x1, y1 = min(w, x + bw + r + 1), min(h, y + bh + r + 1)
        blob = (labels[y0:y1, x0:x1] == i).astype(np.uint8)
        ri = max(1, r // 2)
        outer = cv2.dilate(blob, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
        inner = cv2.dilate(blob, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ri + 1,) * 2))
        ring = outer.astype(bool) & ~inner.astype(bool)
        if not ring.any():
            continue
        g = gray[y0:y1, x0:x1]
        if float(g[blob > 0].mean()) - float(np.median(g[ring])) >= BLOB_RING_DELTA:
            out[y0:y1, x0:x1] |= blob > 0
    return out


def image_glare_mask(rgb: np.ndarray, work_side: int = 1024) -> np.ndarray:
    """The one glare mask of a photo, computed once per image: (H, W, 3) uint8 RGB -> (H, W)
    uint8 (255 = glare), :func:`glare_mask` (clipped cores + bloom, dark surroundings) united
    with :func:`blob_mask` (hot spots on white stickers, which the ring test of
    ``glare_mask`` rejects; computed at a long side of ``work_side`` px, scaled back with
    nearest neighbour)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, work_side / max(h, w))
    small = (
        cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), cv2.INTER_AREA)
        if scale < 1.0
        else rgb
    )
    m = blob_mask(small, cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)).astype(np.uint8) * 255
    if scale < 1.0:
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.maximum(glare_mask(rgb).mask, m)


def line_glare_warnings(report: tuple[LineQuality, ...]) -> tuple[QualityWarning, ...]:
    """One ``glare_text`` warning per line whose characters glare hides (``retake``), with
    its 1-based ``line`` number and ``order`` as parameters."""
    return tuple(
        QualityWarning(
            "glare_text",
            GLARE_TEXT_MSG.format(n=q.order + 1),
            {"line": q.order + 1, "order": q.order},
        )
        for q in report
        if q.retake
    )


def apply_line_glare(
    lines: list[TextLine], mask: np.ndarray
) -> tuple[list[TextLine], tuple[LineQuality, ...]]:
    """Glare-aware confidences. ``mask``: (H, W) uint8 glare mask (original pixels, nonzero =
    glare); line polygons in original pixels, starting at the text's own top-left.

    Per line: ``glare.line_glare`` (area and column fractions, ``retake``). Per character: the
    mask is warped into the line's reading frame (``rectify_quad`` of the polygon) and cut into
    ``len(text)`` equal columns -- character positions are mapped proportionally along the
    polygon; character i's confidence is multiplied by (1 - share of its cell in glare). The
    line confidence becomes mean(lowered char confidences) x (1 - column_fraction), since glare
    can also hide characters the recogniser never emitted. Lines without glare are untouched.
    ``retake``: ``line_glare``'s column rule, or some character cell at least
    ``CHAR_RETAKE_COVER`` washed out (one hidden character already spoils a serial)."""
    out: list[TextLine] = []
    report: list[LineQuality] = []
    for ln in lines:
        poly = np.asarray(ln.polygon, np.float64).reshape(-1, 2)
        lg = line_glare(mask, poly)
        if lg.area_fraction <= 0.0 or not ln.char_confidences:
            report.append(LineQuality(ln.order, lg.area_fraction, lg.column_fraction, lg.retake))
            out.append(ln)
            continue
        cell = rectify_quad(mask, poly[:4] if len(poly) == 4 else _corners(poly)) > 127
        if cell.ndim == 3:
            cell = cell[..., 0]
        w = cell.shape[1]
        n = len(ln.char_confidences)
        bounds = np.linspace(0, w, n + 1)
        confs = []
        worst = 0.0
        for i, c in enumerate(ln.char_confidences):
            a, b = int(bounds[i]), max(int(bounds[i + 1]), int(bounds[i]) + 1)
            cov = float(cell[:, a:b].mean()) if b <= w else 0.0
            worst = max(worst, cov)
            confs.append(float(c) * (1.0 - cov))
        retake = lg.retake or worst >= CHAR_RETAKE_COVER
        report.append(LineQuality(ln.order, lg.area_fraction, lg.column_fraction, retake))
        conf = float(np.mean(confs)) * (1.0 - lg.column_fraction)
        out.append(
            dataclasses.replace(
                ln, confidence=min(conf, ln.confidence), char_confidences=tuple(confs)
            )
        )
    return out, tuple(report)


def _corners(poly: np.ndarray) -> np.ndarray:
    n = len(poly) // 2
    return np.stack([poly[0], poly[n - 1], poly[n], poly[2 * n - 1]])
