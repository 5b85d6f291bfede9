"""Layout of the field extractor's input: OCR lines -> words with boxes -> model windows.

Coordinate frame: pixels of the decoded image (x right, y down), the pipeline's ``TextLine``
polygons, which start at their text's own top-left and run clockwise (top edge first).

- ``words_from_lines``: lines are put in ``geometry.reading_order`` (the pipeline's own line
  order: rows top to bottom, left to right in a row), split into words on whitespace (and
  ``KEY:VALUE`` is split after the colon), and every word gets an axis-aligned pixel box
  interpolated along its line's polygon by (width-weighted) character offsets. A page whose
  text runs more than ``UPRIGHT_MIN_DEG`` off the x axis is ordered (and boxed for the model)
  turned upright.
- ``normalize_boxes``: boxes -> ``[x0, y0, x1, y1, w, h]`` ints in 0..``COORD_MAX`` by the
  extent of all words, one scale for x and y (aspect kept).
- ``encode_words``: word pieces (WordPiece, ``is_split_into_words``) cut into windows of at
  most ``max_len`` tokens at word boundaries; only a word's first piece carries its label.
- ``bio_labels``: the label names of a field list (``O``, then ``B-f``/``I-f`` per field).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from ..geometry import reading_order
from ..types import Polygon

COORD_MAX = 1000


@dataclass(frozen=True)
class Word:
    """One OCR word. ``box``: axis-aligned (x0, y0, x1, y1) in image pixels; ``line_index``:
    index of its line in the caller's list; ``start``/``end``: char offsets in that line."""

    text: str
    box: tuple[float, float, float, float]
    line_index: int
    start: int
    end: int
    # the box in the text's upright frame (the whole page turned so that its text runs left
    # to right), what the model sees; None when the page is already upright
    layout_box: tuple[float, float, float, float] | None = None


_WORD_RE = re.compile(r"\S+")
# "S/N:ABC123" -> "S/N:" + "ABC123"; a key is letters (Latin or Hangul) with ./#() inside.
_KEY_COLON_RE = re.compile(r"^([A-Za-z\uac00-\ud7a3][A-Za-z\uac00-\ud7a3./#()]*[:：])(\S+)$")
_HEX2 = re.compile(r"^[0-9A-Fa-f]{2}[:：]$")


def _char_width(ch: str) -> float:
    """Relative advance width used to place words inside a line (wide for CJK/Hangul)."""
    o = ord(ch)
    if 0x1100 <= o <= 0x11FF or 0x3000 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7A3 or o >= 0xF900:
        return 1.8
    if ch == " ":
        return 0.6
    return 1.0


def split_words(text: str) -> list[tuple[int, int]]:
    """Char spans of the words of ``text``: whitespace split, and ``KEY:VALUE`` split after the
    colon when the key is alphabetic (not a MAC octet like ``AB:``, not a time ``19:21``)."""
    spans: list[tuple[int, int]] = []
    for m in _WORD_RE.finditer(text):
        s, e = m.span()
        km = _KEY_COLON_RE.match(m.group())
        if km and not _HEX2.match(km.group(1)) and len(km.group(1)) >= 3:
            cut = s + len(km.group(1))
            spans.append((s, cut))
            spans.append((cut, e))
        else:
            spans.append((s, e))
    return spans


def _edges(poly: Polygon) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(top edge left->right, bottom edge left->right) of a line polygon (clockwise from the
    top-left of the text). A non-quad polygon: first half is the top, second half the bottom."""
    pts = [(float(x), float(y)) for x, y in poly]
    if len(pts) < 4:
        xs = [p[0] for p in pts] or [0.0]
        ys = [p[1] for p in pts] or [0.0]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        return [(x0, y0), (x1, y0)], [(x0, y1), (x1, y1)]
    half = len(pts) // 2
    return pts[:half], list(reversed(pts[half:]))


def _along(edge: list[tuple[float, float]], t: float) -> tuple[float, float]:
    """Point at arc-length fraction ``t`` (0..1) along a polyline."""
    if len(edge) == 1:
        return edge[0]
    seg = [
        ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5
        for a, b in zip(edge, edge[1:], strict=False)
    ]
    total = sum(seg)
    if total <= 0:
        return edge[0]
    target = min(max(t, 0.0), 1.0) * total
    for (a, b), s in zip(zip(edge, edge[1:], strict=False), seg, strict=False):
        if target <= s or s == seg[-1]:
            u = 0.0 if s <= 0 else min(target / s, 1.0)
            return (a[0] + u * (b[0] - a[0]), a[1] + u * (b[1] - a[1]))
        target -= s
    return edge[-1]


def line_words(text: str, polygon: Polygon, line_index: int) -> list[Word]:
    """Words of one line with boxes interpolated along the polygon by char offsets."""
    spans = split_words(text)
    if not spans:
        return []
    cum = [0.0]
    for ch in text:
        cum.append(cum[-1] + _char_width(ch))
    total = cum[-1] or 1.0
    top, bottom = _edges(polygon)
    out: list[Word] = []
    for s, e in spans:
        t0, t1 = cum[s] / total, cum[e] / total
        pts = [_along(top, t0), _along(top, t1), _along(bottom, t1), _along(bottom, t0)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        out.append(Word(text[s:e], (min(xs), min(ys), max(xs), max(ys)), line_index, s, e))
    return out


# Pages whose text runs more than this many degrees off the x axis are turned upright first.
UPRIGHT_MIN_DEG = 20.0


def text_direction(polygons: list[Polygon]) -> float:
    """Dominant reading direction of the lines in degrees (0 = left to right, 180 = upside
    down, 90 = top to bottom): length-weighted mean of each polygon's top edge direction (the
    polygons start at their text's own top-left)."""
    vx = vy = 0.0
    for p in polygons:
        top, _ = _edges(p)
        (x0, y0), (x1, y1) = top[0], top[-1]
        vx += x1 - x0
        vy += y1 - y0
    if vx == 0.0 and vy == 0.0:
        return 0.0
    return math.degrees(math.atan2(vy, vx))


def _rotate(poly: Polygon, c: float, s: float) -> Polygon:
    return tuple((c * x + s * y, -s * x + c * y) for x, y in poly)


def words_from_lines(lines: list[tuple[str, Polygon]]) -> list[Word]:
    """All words of ``(text, polygon)`` lines in reading order (``Word.line_index`` refers to
    the position in ``lines``). When the text runs more than ``UPRIGHT_MIN_DEG`` off the x
    axis (an upside-down or sideways label), reading order and ``Word.layout_box`` come from
    the polygons turned upright; ``Word.box`` stays in image pixels."""
    angle = text_direction([p for _, p in lines])
    if abs(angle) <= UPRIGHT_MIN_DEG:
        order = reading_order([p for _, p in lines])
        words: list[Word] = []
        for i in order:
            text, poly = lines[i]
            words.extend(line_words(text, poly, i))
        return words
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    upright = [_rotate(p, c, s) for _, p in lines]
    words = []
    for i in reading_order(upright):
        text, poly = lines[i]
        for w, u in zip(line_words(text, poly, i), line_words(text, upright[i], i), strict=True):
            words.append(dataclasses.replace(w, layout_box=u.box))
    return words


def normalize_boxes(boxes: list[tuple[float, float, float, float]]) -> list[list[int]]:
    """Pixel boxes -> [x0, y0, x1, y1, w, h] ints in 0..1000, origin at the top-left of the
    words' extent, one scale (the larger extent side) for both axes."""
    if not boxes:
        return []
    mx = min(b[0] for b in boxes)
    my = min(b[1] for b in boxes)
    scale = max(max(b[2] for b in boxes) - mx, max(b[3] for b in boxes) - my, 1e-6)

    def q(v: float) -> int:
        return int(min(max(round(v * COORD_MAX / scale), 0), COORD_MAX))

    out = []
    for x0, y0, x1, y1 in boxes:
        a, b, c, d = q(x0 - mx), q(y0 - my), q(x1 - mx), q(y1 - my)
        out.append([a, b, c, d, max(c - a, 0), max(d - b, 0)])
    return out


# ---------------------------------------------------------------------------- windows


@dataclass
class Window:
    """One model input: ``input_ids``/``bbox`` of length L (CLS + pieces + SEP), ``word_index``
    (L,) the document word index of each piece whose label counts (first piece), else -1."""

    input_ids: list[int]
    bbox: list[list[int]]
    word_index: list[int]


def encode_words(
    tokenizer: Any,
    words: list[str],
    nboxes: list[list[int]],
    *,
    max_len: int = 384,
    overlap: int = 64,
) -> list[Window]:
    """Tokenise a document's words (``is_split_into_words``; alignment with ``word_ids()``) and
    cut it into windows of at most ``max_len`` tokens at word boundaries, consecutive windows
    sharing about ``overlap`` tokens. An empty document gives no windows."""
    if not words:
        return []
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    ids: list[int] = enc["input_ids"]
    wids = enc.word_ids()
    # pieces per word (words that produce no piece are skipped: they stay "O")
    pieces: list[tuple[int, int]] = []  # (start, end) piece range per word that has pieces
    owners: list[int] = []
    for k, w in enumerate(wids):
        if w is None:
            continue
        if pieces and owners[-1] == w:
            pieces[-1] = (pieces[-1][0], k + 1)
        else:
            pieces.append((k, k + 1))
            owners.append(w)
    budget = max_len - 2
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    windows: list[Window] = []
    start = 0
    n = len(pieces)
    while start < n:
        end = start
        while end < n and pieces[end][1] - pieces[start][0] <= budget:
            end += 1
        if end == start:  # a single word longer than the budget: truncate its pieces
            end = start + 1
        t_ids = [cls_id]
        t_box = [[0, 0, 0, 0, 0, 0]]
        t_word = [-1]
        for j in range(start, end):
            a, b = pieces[j]
            b = min(b, a + budget)
            w = owners[j]
            for k in range(a, b):
                t_ids.append(ids[k])
                t_box.append(nboxes[w])
                t_word.append(w if k == a else -1)
        t_ids.append(sep_id)
        t_box.append([COORD_MAX] * 4 + [0, 0])
        t_word.append(-1)
        windows.append(Window(t_ids, t_box, t_word))
        if end >= n:
            break
        # next window starts so that ~overlap tokens are shared (always progresses)
        nxt = end
        while nxt > start + 1 and pieces[end - 1][1] - pieces[nxt - 1][0] < overlap:
            nxt -= 1
        start = max(nxt, start + 1)
    return windows


def bio_labels(fields: tuple[str, ...]) -> list[str]:
    return ["O"] + [f"{p}-{f}" for f in fields for p in ("B", "I")]
