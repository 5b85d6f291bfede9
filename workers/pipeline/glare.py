"""Glare mask: blown-out specular highlights (saturated, colourless cores with a bright
falloff, small relative to the photo) in an RGB photo, and how much of a text line they cover.
numpy + OpenCV only, no model. White paper with dark print is not glare: it is one huge, evenly
bright region without a halo (see :func:`glare_mask`).

Frame: image pixels of the input, x right, y down; polygons (K, 2) float in that frame (the
detector's quads or 2N-point curved polygons, see ``rectification``). The mask is computed on a
copy downscaled to a long side of ``GlareConfig.work_side`` (512) px, so its cost does not grow
with the photo, and returned at full size.
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


@dataclass(frozen=True)
class GlareConfig:
    """Thresholds of :func:`glare_mask` (HSV 0..255 on the working copy)."""

    core_v: int = 250
    core_s: int = 40
    bloom_v: int = 215
    bloom_s: int = 70
    min_area_frac: float = 0.0002
    max_area_frac: float = 0.12
    ring_delta: float = 12.0
    min_solidity: float = 0.75
    halo_frac: float = 0.15
    halo_min: float = 2.0
    bloom_factor: float = 0.6
    work_side: int = 512


@dataclass(frozen=True)
class GlareComponent:
    """One highlight, full-resolution pixels: ``bbox`` (x, y, w, h) of core + bloom, ``area``
    (mask pixels), ``core_area``, ``centroid`` (x, y) of the core, ``ring_v`` median V of the
    surroundings (1.5 to 2.5 equivalent radii away), ``halo_v`` median V just outside the core
    (up to half a radius away)."""

    bbox: tuple[int, int, int, int]
    area: int
    core_area: int
    centroid: tuple[float, float]
    ring_v: float
    halo_v: float = 0.0


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


def _downscale(rgb: np.ndarray, work_side: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    scale = min(1.0, work_side / max(h, w))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def glare_mask(rgb: np.ndarray, config: GlareConfig | None = None) -> GlareResult:
    """(H, W, 3) uint8 RGB -> :class:`GlareResult`: blown-out specular highlights, not white
    paper. On a copy downscaled to a long side of ``work_side`` px (the mask is returned at
    full size, nearest neighbour):

    1. core = V >= ``core_v`` and S <= ``core_s``: saturated, colourless pixels, opened with a
       3 px disc (specks, anti-aliased strokes);
    2. a core component is a highlight when it is small relative to the photo
       (``min_area_frac`` <= area <= ``max_area_frac``: a sheet of white paper, a receipt or a
       white sticker that fills the frame is one huge component and is rejected), compact
       (solidity: area / (convex hull area + half its perimeter) >= ``min_solidity``; bright
       paper between lines of print is ragged), clearly brighter than its surroundings (median
       V of the ring 1.5..2.5 equivalent radii away <= the core's median - ``ring_delta``:
       paper lit a little unevenly is not a hot spot) and has a bright falloff (halo: the median V of the band up to half a
       radius outside it exceeds the ring by ``halo_frac`` x (core - ring), at least
       ``halo_min``): a white sticker or a paper edge ends sharply, a specular highlight blooms;
    3. bloom: pixels within ``bloom_factor`` x the equivalent radius of a kept core whose
       V >= ``bloom_v`` and S <= ``bloom_s`` join the mask. Dark strokes that stay visible in
       the highlight are not in the mask (they can be read).
    """
    cfg = config or GlareConfig()
    h, w = rgb.shape[:2]
    small, scale = _downscale(rgb, cfg.work_side)
    sh, sw = small.shape[:2]
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    s, v = hsv[..., 1], hsv[..., 2]
    core = ((v >= cfg.core_v) & (s <= cfg.core_s)).astype(np.uint8)
    core = cv2.morphologyEx(
        core, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    )
    small_mask = np.zeros((sh, sw), np.uint8)
    comps: list[GlareComponent] = []
    if not core.any():
        return GlareResult(np.zeros((h, w), np.uint8), ())
    n, labels, stats, cents = cv2.connectedComponentsWithStats(core, connectivity=8)
    min_area = cfg.min_area_frac * sh * sw
    max_area = cfg.max_area_frac * sh * sw
    inv = 1.0 / scale
    for i in range(1, n):
        area = int(stats[i, cv2.CC_STAT_AREA])
        if area < min_area or area > max_area:
            continue
        r = math.sqrt(area / math.pi)
        x, y, bw, bh = (int(t) for t in stats[i, :4])
        pad = int(2.5 * r) + 3
        y0, y1 = max(0, y - pad), min(sh, y + bh + pad)
        x0, x1 = max(0, x - pad), min(sw, x + bw + pad)
        blob = labels[y0:y1, x0:x1] == i
        d = cv2.distanceTransform((~blob).astype(np.uint8), cv2.DIST_L2, 3)
        vw = v[y0:y1, x0:x1]
        ring = (d >= 1.5 * r) & (d <= 2.5 * r + 1)
        near = (d > 0) & (d <= max(2.0, 0.5 * r))
        if not ring.any() or not near.any():
            continue
        ring_v = float(np.median(vw[ring]))
        halo_v = float(np.median(vw[near]))
        core_v = float(np.median(vw[blob]))
        hull = cv2.convexHull(np.argwhere(blob)[:, ::-1].astype(np.int32))
        solidity = area / max(1.0, cv2.contourArea(hull) + 0.5 * cv2.arcLength(hull, True))
        if solidity < cfg.min_solidity:
            continue  # ragged: paper between print, not one compact hot spot
        if ring_v > core_v - cfg.ring_delta:
            continue  # evenly bright: paper, not a hot spot
        if halo_v - ring_v < max(cfg.halo_min, cfg.halo_frac * (core_v - ring_v)):
            continue  # sharp edge: a white object, not a highlight
        sel = blob | (
            (d <= cfg.bloom_factor * r) & (vw >= cfg.bloom_v) & (s[y0:y1, x0:x1] <= cfg.bloom_s)
        )
        small_mask[y0:y1, x0:x1][sel] = 255
        ys, xs = np.nonzero(sel)
        comps.append(
            GlareComponent(
                bbox=(
                    int((x0 + xs.min()) * inv),
                    int((y0 + ys.min()) * inv),
                    int(math.ceil((xs.max() - xs.min() + 1) * inv)),
                    int(math.ceil((ys.max() - ys.min() + 1) * inv)),
                ),
                area=int(round(len(xs) * inv * inv)),
                core_area=int(round(area * inv * inv)),
                centroid=(float(cents[i][0] * inv), float(cents[i][1] * inv)),
                ring_v=ring_v,
                halo_v=halo_v,
            )
        )
    mask = (
        cv2.resize(small_mask, (w, h), interpolation=cv2.INTER_NEAREST)
        if scale < 1.0
        else small_mask
    )
    return GlareResult(mask=mask, components=tuple(comps))


def _polygon_window(
    shape: tuple[int, int], polygon: np.ndarray
) -> tuple[int, int, np.ndarray] | None:
    """(x0, y0, window mask) of a polygon: its bounding box clipped to the image and the
    polygon filled inside it (cheap on big images); None when it lies outside."""
    pts = np.round(np.asarray(polygon, np.float64).reshape(-1, 2)).astype(np.int32)
    h, w = shape[:2]
    x0, y0 = max(0, int(pts[:, 0].min())), max(0, int(pts[:, 1].min()))
    x1, y1 = min(w, int(pts[:, 0].max()) + 1), min(h, int(pts[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(m, [pts - np.array([x0, y0], np.int32)], 1)
    return x0, y0, m


def glare_over_polygon(mask: np.ndarray, polygon: np.ndarray) -> float:
    """Fraction in [0, 1] of the polygon's pixels that are glare. ``mask``: (H, W) uint8
    (nonzero = glare); ``polygon``: (K, 2) float pixels. 0.0 for an empty polygon."""
    win = _polygon_window(mask.shape[:2], polygon)
    if win is None:
        return 0.0
    x0, y0, pm = win
    n = int(pm.sum())
    sub = mask[y0 : y0 + pm.shape[0], x0 : x0 + pm.shape[1]]
    return float(np.count_nonzero(sub[pm > 0])) / n if n else 0.0


def line_glare(mask: np.ndarray, polygon: np.ndarray, *, bins: int = 64) -> LineGlare:
    """Glare over a text line, by area and by columns along the line's main direction (the
    principal axis of the polygon's points): each of ``bins`` slices across the line counts as
    washed out when at least half of its pixels are glare, which is what hides characters."""
    win = _polygon_window(mask.shape[:2], polygon)
    if win is None:
        return LineGlare(0.0, 0.0, False)
    x0, y0, pm = win
    ys, xs = np.nonzero(pm)
    if len(xs) == 0:
        return LineGlare(0.0, 0.0, False)
    ys, xs = ys + y0, xs + x0
    g = mask[ys, xs] > 0
    if not g.any():
        return LineGlare(0.0, 0.0, False)
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


def image_glare_mask(rgb: np.ndarray, work_side: int | None = None) -> np.ndarray:
    """The one glare mask of a photo, computed once per image: (H, W, 3) uint8 RGB -> (H, W)
    uint8 (255 = glare), :func:`glare_mask` at a long side of ``work_side`` px (default
    ``GlareConfig.work_side``)."""
    cfg = GlareConfig() if work_side is None else GlareConfig(work_side=work_side)
    return glare_mask(rgb, cfg).mask


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
    if not np.any(mask):  # nothing washed out: no per-line work (big receipts stay cheap)
        return list(lines), tuple(LineQuality(ln.order, 0.0, 0.0, False) for ln in lines)
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
