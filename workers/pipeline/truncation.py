"""Truncation guard: where a recognised line may have lost characters at either end (glare, the
frame edge, a detection cut), and which field values sit at such an end.

A value that glare, the frame edge or a detection cut may have truncated reads as a shorter,
often still *valid* value (``QX778`` for ``QX77812345``) at high character confidence, since
the characters it lost were never recognised. Confidence cannot see what was not read, so the
review rule treats such a value as never auto-acceptable (reason ``truncated``).

Frame: original image pixels (x right, y down). A line polygon starts at the text's own
top-left (``TextLine.polygon``): corners TL, TR, BR, BL with TL -> TR the reading direction;
a bent line's 2N-point polygon is reduced to its four end corners.

Per line end (``start`` = before the first character, ``end`` = after the last), the causes:

- ``edge``: the end's corners lie within ``EDGE_MARGIN`` x line height (at least 2 px) of the
  frame border: the text may run on outside the photo;
- ``glare``: the glare mask covers at least ``GLARE_END_COVER`` of the strip from the last
  character cell to one character width beyond the box (what the highlight hides is not read);
  or that strip is a faint highlight the mask does not see (a hot spot on white paper, a few
  grey levels over it): its brightest tenth (90th percentile) is at least ``WASH_BRIGHTER``
  levels (``WASH_TEXTURE`` x the paper's interquartile range where more: brushed metal,
  printed texture; at most ``WASH_HEADROOM`` of what is left to white) over the line's paper
  (the median of its pixels over the Otsu threshold), and its ink contrast (90th - 5th
  percentile) under ``WASH_CONTRAST`` of the line's (paper - 5th percentile): the highlight
  fades the characters there until they are not read;
- ``neighbour``: another detected line on the same baseline (centre offset across the line
  <= half a line height, heights within a factor ``1.6``) starts within ``NEIGHBOUR_GAP``
  character widths of this end, with no rule column (below) between them: the detector split
  one run of characters;
- ``ink``: the box's own border cuts through characters: the band ``INK_BAND`` character
  widths either side of the box's end, at character height, holds ink like the line's own
  (dark share >= ``INK_RATIO`` x the line's, not a solid dark area), and so does the strip
  from there to one character width beyond. The detector pads the boxes it draws, so a whole
  line ends in background. A table's vertical rule or a frame line next to the text is not
  ink that continues the line, nor is the dark product around a label: columns dark without a
  break from the line's middle to most of ``RULE_REACH`` line heights above or below the box
  (a character stops at its line's height) are left out of both shares. On light print on a
  dark label the ink is the light.

Per character, ``char_glare`` is the share of its cell (the line split proportionally by the
characters read) in the glare mask, or 1 where the cell of a letter or digit is such a faint
highlight; a value with a character cell at least ``CHAR_GLARE_COVER`` washed out may have
lost characters there too (``glare`` inside the value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .types import TextLine

EDGE_MARGIN = 0.15
GLARE_END_COVER = 0.25
CHAR_GLARE_COVER = 0.3
NEIGHBOUR_GAP = 0.5
INK_RATIO = 0.5
INK_SOLID = 0.65
INK_BAND = 0.2
RULE_REACH = 0.6  # x line height above and below the box: where a rule runs on and text stops
RULE_COVER = 0.6
RULE_TILT = 0.1  # x line height: how far a rule may drift sideways over the reach
WASH_BRIGHTER = 6.0
WASH_CONTRAST = 0.4
WASH_TEXTURE = 3.0  # x the paper's interquartile range: the margin on textured paper
WASH_HEADROOM = 0.75  # x (255 - paper): the most the texture margin may ask for
WASH_MIN_LINE_CONTRAST = 40.0  # grey levels of the line itself (a faint line says nothing)
CAUSES = ("edge", "glare", "neighbour", "ink")


@dataclass(frozen=True)
class LineCut:
    """Where line ``order`` may be truncated: causes at its ``start`` and ``end`` (subsets of
    ``CAUSES``, in that order) and ``char_glare`` (glare share of each character cell)."""

    order: int
    start: tuple[str, ...] = ()
    end: tuple[str, ...] = ()
    char_glare: tuple[float, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.start or self.end)


@dataclass(frozen=True)
class _Geom:
    tl: np.ndarray
    tr: np.ndarray
    br: np.ndarray
    bl: np.ndarray
    u: np.ndarray  # unit reading direction
    n: np.ndarray  # unit normal (down the text)
    height: float
    length: float
    char_w: float


def _geom(ln: TextLine) -> _Geom | None:
    pts = np.asarray(ln.polygon, np.float64).reshape(-1, 2)
    if len(pts) < 4:
        return None
    if len(pts) != 4:
        k = len(pts) // 2
        pts = np.stack([pts[0], pts[k - 1], pts[k], pts[2 * k - 1]])
    tl, tr, br, bl = pts
    along = (tr - tl) + (br - bl)
    length = float(np.linalg.norm(along)) / 2.0
    if length < 1.0:
        return None
    u = along / (2.0 * length)
    nrm = np.array([-u[1], u[0]])
    height = 0.5 * (float(np.linalg.norm(bl - tl)) + float(np.linalg.norm(br - tr)))
    n_chars = max(1, len(ln.text.strip()))
    char_w = float(np.clip(length / n_chars, 0.3 * height, 1.2 * height))
    return _Geom(tl, tr, br, bl, u, nrm, max(height, 1.0), length, char_w)


def _warp(img: np.ndarray, quad: np.ndarray, out_h: int) -> np.ndarray:
    """Axis-aligned patch of ``quad`` (TL, TR, BR, BL) at a height of ``out_h`` px."""
    w_len = float(np.linalg.norm(quad[1] - quad[0]))
    h_len = float(np.linalg.norm(quad[3] - quad[0]))
    out_w = max(2, int(round(out_h * w_len / max(h_len, 1e-6))))
    dst = np.array([[0, 0], [out_w - 1, 0], [out_w - 1, out_h - 1], [0, out_h - 1]], np.float32)
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    return cv2.warpPerspective(
        img, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _strip(g: _Geom, side: str, inside: float, outside: float) -> np.ndarray:
    """Quad (TL, TR, BR, BL in reading order) from ``inside`` px inside the box to ``outside``
    px beyond it, at the ``side`` end."""
    if side == "end":
        a, b = g.tr, g.br
        return np.stack([a - g.u * inside, a + g.u * outside, b + g.u * outside, b - g.u * inside])
    a, b = g.tl, g.bl
    return np.stack([a - g.u * outside, a + g.u * inside, b + g.u * inside, b - g.u * outside])


def _near_edge(g: _Geom, side: str, shape: tuple[int, int]) -> bool:
    h, w = shape[:2]
    m = max(2.0, EDGE_MARGIN * g.height)
    pts = (g.tr, g.br) if side == "end" else (g.tl, g.bl)
    return any(p[0] <= m or p[1] <= m or p[0] >= w - 1 - m or p[1] >= h - 1 - m for p in pts)


def _dark_share(patch: np.ndarray, thresh: float) -> float:
    rows = patch.shape[0]
    band = patch[rows // 4 : rows - rows // 4]  # character height, away from box padding
    return float((band < thresh).mean()) if band.size else 0.0


def line_cuts(
    gray: np.ndarray, lines: Sequence[TextLine], glare: np.ndarray | None = None
) -> dict[int, LineCut]:
    """Truncation causes per line (module docstring), keyed by ``TextLine.order``.

    ``gray``: (H, W) uint8 image in the lines' pixel frame; ``glare``: optional (H, W) uint8
    glare mask (nonzero = glare) in the same frame."""
    geoms = {ln.order: _geom(ln) for ln in lines}
    all_lines = _Lines(geoms)
    has_glare = glare is not None and bool(np.any(glare))
    out: dict[int, LineCut] = {}
    inverted: np.ndarray | None = None
    for ln in lines:
        g = geoms[ln.order]
        if g is None:
            out[ln.order] = LineCut(ln.order)
            continue
        ph = 16
        line_patch = _warp(gray, np.stack([g.tl, g.tr, g.br, g.bl]), ph)
        thresh, _ = cv2.threshold(line_patch, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        # light print on a dark label: the ink is what is brighter than the threshold
        ink_img, ink_thresh, ink_patch = gray, float(thresh), line_patch
        if float(np.median(line_patch)) < float(thresh):
            if inverted is None:
                inverted = 255 - gray
            ink_img, ink_thresh, ink_patch = inverted, 255.0 - float(thresh), 255 - line_patch
        line_ink = _dark_share(ink_patch, ink_thresh)
        bright = line_patch[line_patch > thresh]
        if bright.size:
            p25, paper, p75 = _percentiles(bright, (25, 50, 75))
        else:
            p25 = paper = p75 = float(thresh)
        dark = _percentiles(line_patch, (5,))[0]
        # textured paper needs more; near-white paper has little room left to brighten
        margin = max(WASH_BRIGHTER, min(WASH_TEXTURE * (p75 - p25), WASH_HEADROOM * (255 - paper)))
        n = max(1, len(ln.text))
        edges = np.linspace(0, line_patch.shape[1], n + 1)
        spans = [(int(edges[i]), max(int(edges[i + 1]), int(edges[i]) + 1)) for i in range(n)]
        char_glare: tuple[float, ...] = ()
        if has_glare:
            cells = _warp(glare, np.stack([g.tl, g.tr, g.br, g.bl]), ph) > 127
            char_glare = tuple(float(cells[:, a:b].mean()) for a, b in spans)
        washed = [
            ch.isalnum() and _washed(line_patch[:, a:b], paper, dark, margin)
            for ch, (a, b) in zip(ln.text.ljust(n), spans, strict=True)
        ]
        if any(washed):  # a faint highlight inside the line fades its characters there
            base = char_glare or (0.0,) * n
            char_glare = tuple(1.0 if w else c for w, c in zip(washed, base, strict=True))
        causes: dict[str, list[str]] = {"start": [], "end": []}
        for side in ("start", "end"):
            if _near_edge(g, side, gray.shape):
                causes[side].append("edge")
            q = _strip(g, side, g.char_w, g.char_w)
            if has_glare and float((_warp(glare, q, ph) > 127).mean()) >= GLARE_END_COVER:
                causes[side].append("glare")
            elif _washed(_warp(gray, q, ph), paper, dark, margin):
                causes[side].append("glare")
            ink, ink2, rule_at = _border_ink(ink_img, g, side, ink_thresh)
            gap = _neighbour(g, side, ln.order, all_lines)
            if gap is not None and not (rule_at is not None and rule_at <= gap + g.char_w * 0.2):
                causes[side].append("neighbour")  # no rule between them: one run of text
            # ink at the box's own border: the box cuts through a character
            if (
                line_ink > 0.02
                and INK_RATIO * line_ink <= ink <= INK_SOLID
                and INK_RATIO * line_ink <= ink2 <= INK_SOLID
            ):
                causes[side].append("ink")
        out[ln.order] = LineCut(ln.order, tuple(causes["start"]), tuple(causes["end"]), char_glare)
    return out


def _border_ink(
    gray: np.ndarray, g: _Geom, side: str, thresh: float
) -> tuple[float, float, float | None]:
    """Dark shares at character height of the band ``INK_BAND`` character widths either side
    of the box's ``side`` border and of the strip from there to one character width beyond,
    without the columns that stay dark past the line: dark without a break from the line's
    middle row to ``RULE_COVER`` of the ``RULE_REACH`` line heights above or below the box (a
    table's vertical rule, a frame line, the dark product around a label), where a character
    stops at its line's height. Third: how far beyond the border (px, negative inside) the
    first such column lies, None without one."""
    q = _strip(g, side, INK_BAND * g.char_w, g.char_w)
    reach = RULE_REACH * g.height
    tall = np.stack(
        [q[0] - g.n * reach, q[1] - g.n * reach, q[2] + g.n * reach, q[3] + g.n * reach]
    )

    # the rule columns at native resolution (a rule may be 1 px thin), a row's dark within
    # +-w columns (a rule tilted by the view still counts as one column)
    ph = max(16, int(round(g.height)))
    top = int(round(ph * RULE_REACH))
    fine = _warp(gray, tall, ph + 2 * top) < thresh
    if side == "start":  # column 0 inside the box, as for the end
        fine = fine[:, ::-1]
    w = max(1, int(round(RULE_TILT * ph)))
    near = cv2.dilate(fine.astype(np.uint8), np.ones((1, 2 * w + 1), np.uint8)) > 0
    # dark without a break from the line's middle row to RULE_COVER of the reach beyond the
    # box, up or down: a rule runs on (a table's last row may end at its border below); a
    # character stops at its line's height, and the next line starts after a gap of paper
    mid = top + ph // 2
    run_up = _run(near[mid::-1])
    run_down = _run(near[mid:])
    past = np.maximum(run_up, run_down) >= ph - ph // 2 + RULE_COVER * top
    past = past | np.roll(past, 1) | np.roll(past, -1)  # a rule's anti-aliased sides
    # the shares as the line's own: 16 px high, the middle half of the rows (``_dark_share``)
    split = int(round(past.size * 2.0 * INK_BAND / (INK_BAND + 1.0)))  # the band's far side

    def share(quad: np.ndarray, cols: np.ndarray) -> float:
        patch = _warp(gray, quad, 16)
        if side == "start":
            patch = patch[:, ::-1]
        band = patch[4:12] < thresh
        edges = np.linspace(0, cols.size, band.shape[1] + 1).astype(int)
        # per sampled column: any rule column in [edge, max(next edge, edge + 1))
        upto = np.concatenate(([0], np.cumsum(cols)))
        stop = np.minimum(np.maximum(edges[1:], edges[:-1] + 1), cols.size)
        skip = upto[stop] > upto[np.minimum(edges[:-1], cols.size)]
        if skip.size > 2:  # the coarse sampling blurs a rule into the next column
            grown = skip.copy()
            grown[:-1] |= skip[1:]
            grown[1:] |= skip[:-1]
            skip = grown
        kept = band[:, ~skip]
        return float(kept.mean()) if kept.size else 0.0

    ink = share(_strip(g, side, INK_BAND * g.char_w, INK_BAND * g.char_w), past[:split])
    ink2 = share(_strip(g, side, -INK_BAND * g.char_w, g.char_w), past[split:])
    cols = np.flatnonzero(past)
    px = (INK_BAND + 1.0) * g.char_w / past.size  # image px per native column
    rule_at = float(cols[0] * px - INK_BAND * g.char_w) if cols.size else None
    return ink, ink2, rule_at


def _percentiles(a: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``np.percentile(a, qs)`` (linear interpolation) from one ``np.partition``: the same
    values, several times faster on the small patches read here per character."""
    flat = a.ravel()
    n = flat.size
    pos = [q / 100.0 * (n - 1) for q in qs]
    lo = [int(math.floor(p)) for p in pos]
    hi = [min(k + 1, n - 1) for k in lo]
    part = np.partition(flat, sorted(set(lo + hi)))
    return [
        float(part[a_]) + (p - a_) * (float(part[b]) - float(part[a_]))
        for p, a_, b in zip(pos, lo, hi, strict=True)
    ]


def _run(rows: np.ndarray) -> np.ndarray:
    """Per column, how many rows from the first are dark without a break."""
    broken = ~rows
    first = broken.argmax(axis=0)
    return np.where(broken.any(axis=0), first, rows.shape[0])


def _washed(strip: np.ndarray, paper: float, dark: float, margin: float) -> bool:
    """Whether a patch of a line (its end strip, a character cell) is a faint highlight over
    it (module docstring): ``margin`` grey levels over the line's paper, faded ink."""
    if paper - dark < WASH_MIN_LINE_CONTRAST or strip.size == 0:
        return False
    hi, lo = _percentiles(strip, (90, 5))
    return hi - paper >= margin and (hi - lo) <= WASH_CONTRAST * (paper - dark)


class _Lines:
    """The geometry of every line of a read as arrays, for the neighbour search."""

    def __init__(self, geoms: Mapping[int, _Geom | None]) -> None:
        items = [(k, o) for k, o in geoms.items() if o is not None]
        self.orders = np.array([k for k, _ in items], dtype=np.int64)
        self.heights = np.array([o.height for _, o in items], dtype=np.float64)

        def points(f: Callable[[_Geom], np.ndarray]) -> np.ndarray:
            return np.array([f(o) for _, o in items], dtype=np.float64).reshape(-1, 2)

        self.centres = points(lambda o: (o.tl + o.tr + o.br + o.bl) / 4.0)
        self.u = points(lambda o: o.u)
        self.starts = points(lambda o: (o.tl + o.bl) / 2.0)
        self.ends = points(lambda o: (o.tr + o.br) / 2.0)


def _neighbour(g: _Geom, side: str, order: int, lines: _Lines) -> float | None:
    """The gap (px) to another line on the same baseline that starts (ends, for ``start``)
    within ``NEIGHBOUR_GAP`` character widths of this end, None without one (the first such
    line in reading order)."""
    centre = (g.tl + g.tr + g.br + g.bl) / 4.0
    ratio = lines.heights / g.height
    ok = (lines.orders != order) & (ratio >= 1 / 1.6) & (ratio <= 1.6)
    ok &= np.abs((lines.centres - centre) @ g.n) <= 0.5 * g.height
    ok &= np.abs(lines.u @ g.u) >= math.cos(math.radians(20))
    if side == "end":
        gaps = (lines.starts - (g.tr + g.br) / 2.0) @ g.u
    else:
        gaps = ((g.tl + g.bl) / 2.0 - lines.ends) @ g.u
    ok &= (gaps >= -0.5 * g.char_w) & (gaps <= NEIGHBOUR_GAP * g.char_w)
    hit = np.flatnonzero(ok)
    return float(gaps[hit[0]]) if hit.size else None


def value_cut(
    cut: LineCut | None, text: str, start: int | None, end: int | None
) -> dict[str, object] | None:
    """Why a value at characters ``start:end`` of its line's ``text`` may be truncated, or
    None. ``start``/``end`` None: the value's place in the line is unknown (assembled from
    several lines): any cut of the line counts. Returns ``{"side": "start"|"end"|"inside",
    "causes": [...]}``."""
    if cut is None:
        return None
    if start is None or end is None:
        if cut.any:
            side = "end" if cut.end else "start"
            return {"side": side, "causes": list(cut.end or cut.start)}
        return None
    first = len(text) - len(text.lstrip())
    last = len(text.rstrip(" \t.,;:|"))
    if end >= last and cut.end:
        return {"side": "end", "causes": list(cut.end)}
    if start <= first and cut.start:
        return {"side": "start", "causes": list(cut.start)}
    cg = cut.char_glare[start:end]
    if cg and max(cg) >= CHAR_GLARE_COVER:
        return {"side": "inside", "causes": ["glare"]}
    return None
