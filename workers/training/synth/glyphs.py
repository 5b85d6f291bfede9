"""Font-independent glyph renderers: a 5x7 dot-grid dot matrix and a 7-segment display.

Both draw into a float32 ink mask (H x W, values 0..1, 1 = ink) in label pixel coordinates and
return exact per-character boxes, so they work on a machine with no font files at all.
"""

from __future__ import annotations

import cv2
import numpy as np

# 5 columns x 7 rows, "#" = dot. Classic 5x7 LCD/inkjet shapes.
DOT_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    " ": (".....", ".....", ".....", ".....", ".....", ".....", "....."),
}
DOT_CHARSET = frozenset(DOT_GLYPHS)
DOT_COLS, DOT_ROWS = 5, 7


def dot_glyph_array(ch: str) -> np.ndarray:
    """The 7x5 bool bitmap of one dot-matrix character (KeyError when not covered)."""
    rows = DOT_GLYPHS[ch]
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def dot_text_size(text: str, pitch: float) -> tuple[float, float]:
    """(width, height) in pixels of ``text`` drawn with dot pitch ``pitch`` (1-pitch gaps)."""
    n = len(text)
    return (max(n * (DOT_COLS + 1) - 1, 0) * pitch, DOT_ROWS * pitch)


def draw_dot_text(
    mask: np.ndarray,
    text: str,
    x: float,
    y: float,
    pitch: float,
    rng: np.random.Generator,
    *,
    dot_ratio: float = 0.42,
    jitter: float = 0.06,
) -> list[tuple[float, float, float, float]]:
    """Draw ``text`` as round dots on ``mask`` (float32 HxW, 0..1) with its top-left at (x, y).

    Returns per-character boxes (x0, y0, x1, y1) in mask pixels, spaces included, covering the
    full 5x7 cell of dots. Unknown characters raise KeyError (check against ``DOT_CHARSET``).
    """
    radius = max(pitch * dot_ratio, 0.8)
    shift = 4  # cv2 fixed-point bits for sub-pixel centres
    scale = 1 << shift
    boxes: list[tuple[float, float, float, float]] = []
    for i, ch in enumerate(text):
        glyph = dot_glyph_array(ch)
        cx0 = x + i * (DOT_COLS + 1) * pitch
        boxes.append((cx0, y, cx0 + DOT_COLS * pitch, y + DOT_ROWS * pitch))
        rr, cc = np.nonzero(glyph)
        if rr.size == 0:
            continue
        jit = rng.normal(0.0, jitter * pitch, size=(rr.size, 2))
        inten = rng.uniform(0.75, 1.0, size=rr.size)
        for k in range(rr.size):
            px = cx0 + (cc[k] + 0.5) * pitch + jit[k, 0]
            py = y + (rr[k] + 0.5) * pitch + jit[k, 1]
            cv2.circle(
                mask,
                (int(round(px * scale)), int(round(py * scale))),
                int(round(radius * scale)),
                float(inten[k]),
                -1,
                cv2.LINE_AA,
                shift,
            )
    return boxes


# ---------------------------------------------------------------- 7-segment display
#   aaa
#  f   b
#   ggg
#  e   c
#   ddd
SEG7_CHARS: dict[str, str] = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
    "A": "abcefg",
    "B": "cdefg",
    "C": "adef",
    "D": "bcdeg",
    "E": "adefg",
    "F": "aefg",
    "H": "bcefg",
    "L": "def",
    "P": "abefg",
    "U": "bcdef",
    "-": "g",
    " ": "",
}
SEG7_CHARSET = frozenset(SEG7_CHARS)


def seg7_text_size(text: str, height: float) -> tuple[float, float]:
    w = height * 0.55
    gap = height * 0.18
    return (max(len(text) * (w + gap) - gap, 0.0), height)


def _seg_polys(x: float, y: float, w: float, h: float, t: float, slant: float) -> dict:
    """Hexagonal segment polygons for one cell at (x, y), width w, height h, thickness t."""
    hh = h / 2.0
    ht = t / 2.0
    g = t * 0.15  # gap between segments

    def hseg(cx0: float, cx1: float, cy: float) -> np.ndarray:
        return np.array(
            [
                (cx0 + g, cy),
                (cx0 + g + ht, cy - ht),
                (cx1 - g - ht, cy - ht),
                (cx1 - g, cy),
                (cx1 - g - ht, cy + ht),
                (cx0 + g + ht, cy + ht),
            ]
        )

    def vseg(cx: float, cy0: float, cy1: float) -> np.ndarray:
        return np.array(
            [
                (cx, cy0 + g),
                (cx + ht, cy0 + g + ht),
                (cx + ht, cy1 - g - ht),
                (cx, cy1 - g),
                (cx - ht, cy1 - g - ht),
                (cx - ht, cy0 + g + ht),
            ]
        )

    x0, x1 = x + ht, x + w - ht
    y0, ym, y1 = y + ht, y + hh, y + h - ht
    polys = {
        "a": hseg(x0, x1, y0),
        "g": hseg(x0, x1, ym),
        "d": hseg(x0, x1, y1),
        "f": vseg(x0, y0, ym),
        "b": vseg(x1, y0, ym),
        "e": vseg(x0, ym, y1),
        "c": vseg(x1, ym, y1),
    }
    if slant:
        for p in polys.values():
            p[:, 0] += (y + h - p[:, 1]) * slant
    return polys


def draw_seg7_text(
    mask: np.ndarray,
    text: str,
    x: float,
    y: float,
    height: float,
    *,
    slant: float = 0.0,
    ghost: float = 0.0,
) -> list[tuple[float, float, float, float]]:
    """Draw ``text`` as 7-segment digits; returns per-character cell boxes (x0, y0, x1, y1).

    ``ghost`` > 0 also draws the unlit segments faintly (as on real LCDs).
    """
    w = height * 0.55
    gap = height * 0.18
    t = max(height * 0.13, 1.5)
    shift = 4
    scale = 1 << shift
    boxes = []
    for i, ch in enumerate(text):
        cx = x + i * (w + gap)
        on = SEG7_CHARS[ch]
        boxes.append((cx, y, cx + w + height * abs(slant), y + height))
        for name, poly in _seg_polys(cx, y, w, height, t, slant).items():
            val = 1.0 if name in on else ghost
            if val <= 0 or ch == " ":
                continue
            pts = np.round(poly * scale).astype(np.int32)
            cv2.fillPoly(mask, [pts], float(val), cv2.LINE_AA, shift)
    return boxes
