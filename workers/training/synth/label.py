"""Lays out and renders one flat label (nameplate, sticker or marked part face).

Output frame: the *label frame*, pixels of the flat label, origin top-left, x right, y down.
All boxes here are axis-aligned (x0, y0, x1, y1) in that frame; the scene module maps them
through the camera into the final image.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageDraw

from . import content as C
from .fonts import FontChoice, FontRegistry, supports
from .glyphs import (
    DOT_CHARSET,
    SEG7_CHARSET,
    dot_text_size,
    draw_dot_text,
    draw_seg7_text,
    seg7_text_size,
)
from .textures import apply_ink, make_material, smooth_noise

Box = tuple[float, float, float, float]

LAYOUTS = ("key_before_value", "key_above_value", "value_without_key", "table", "bilingual")


@dataclass
class WordGT:
    text: str
    box: Box
    field: str | None
    role: str  # "key" | "value" | "other"


@dataclass
class LineGT:
    """One text line. ``role``: key, value, key_value (key then value on one line) or other."""

    text: str
    box: Box
    words: list[WordGT]
    field: str | None
    role: str
    style: str


@dataclass
class LabelRender:
    rgb: np.ndarray  # (H, W, 3) float32 0..255, text already applied
    alpha: np.ndarray  # (H, W) float32 0..1, the label's shape
    lines: list[LineGT]
    fields: dict[str, str]
    tags: set[str]
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


# ---------------------------------------------------------------- text styles


@dataclass(frozen=True)
class TextStyle:
    """How a run of text is drawn: a font, the dot grid or procedural 7 segments.

    ``size``: font pixel size, or glyph height in pixels for dotgrid/seg7.
    """

    renderer: str  # "font" | "dotgrid" | "seg7"
    size: float
    font: FontChoice | None = None
    slant: float = 0.0

    @property
    def name(self) -> str:
        if self.renderer == "font" and self.font is not None:
            return self.font.name
        return self.renderer

    def scaled(self, factor: float) -> TextStyle:
        size = self.size * factor
        font = self.font
        if font is not None:
            font = FontChoice(font.kind, font.path, max(int(round(size)), 6))
        return TextStyle(self.renderer, size, font, self.slant)

    def covers(self, text: str) -> bool:
        if self.renderer == "dotgrid":
            return set(text) <= DOT_CHARSET
        if self.renderer == "seg7":
            return set(text) <= SEG7_CHARSET
        return self.font is not None and (self.font.path is None or supports(self.font.path, text))

    def metrics(self) -> tuple[float, float]:
        """(ascent, descent) in pixels for baseline alignment."""
        if self.renderer == "font":
            font = self.font.load()
            if hasattr(font, "getmetrics"):
                a, d = font.getmetrics()
                return float(a), float(d)
            return self.size, 0.0
        return self.size, 0.0

    def width(self, text: str) -> float:
        if self.renderer == "dotgrid":
            return dot_text_size(text, self.size / 7.0)[0]
        if self.renderer == "seg7":
            return seg7_text_size(text, self.size)[0] + abs(self.slant) * self.size
        return float(self.font.load().getlength(text))

    def space(self) -> float:
        if self.renderer == "font":
            return max(self.width(" "), self.size * 0.25)
        return self.size * 0.6

    def draw(
        self,
        pil_draw: ImageDraw.ImageDraw,
        cv_mask: np.ndarray,
        text: str,
        x: float,
        top: float,
        rng: np.random.Generator,
    ) -> list[Box]:
        """Draw ``text`` with its ascent line at ``top``; returns one tight box per word."""
        spans = _word_spans(text)
        if self.renderer == "font":
            font = self.font.load()
            xi, yi = int(round(x)), int(round(top))
            pil_draw.text((xi, yi), text, fill=255, font=font)
            boxes = []
            for s, e in spans:
                wx = xi + font.getlength(text[:s])
                b = font.getbbox(text[s:e])
                boxes.append((wx + b[0], yi + b[1], wx + b[2], yi + b[3]))
            return boxes
        if self.renderer == "dotgrid":
            chars = draw_dot_text(cv_mask, text, x, top, self.size / 7.0, rng)
        else:
            chars = draw_seg7_text(
                cv_mask,
                text,
                x,
                top,
                self.size,
                slant=self.slant,
                ghost=float(rng.uniform(0, 0.08)),
            )
        return [_union(chars[s:e]) for s, e in spans]


def _word_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, ch in enumerate(text + " "):
        if ch != " " and start is None:
            start = i
        elif ch == " " and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _union(boxes: list[Box]) -> Box:
    xs0, ys0, xs1, ys1 = zip(*boxes, strict=True)
    return (min(xs0), min(ys0), max(xs1), max(ys1))


# ---------------------------------------------------------------- layout items


@dataclass
class Run:
    text: str
    style: TextStyle
    field: str | None
    role: str  # key / value / other


@dataclass
class Item:
    """One text line made of runs, placed with its top-left at (x, y)."""

    runs: list[Run]
    x: float = 0.0
    y: float = 0.0

    def __post_init__(self) -> None:
        self.runs = [r for r in self.runs if r.text.strip()]
        self.asc = max(r.style.metrics()[0] for r in self.runs)
        self.desc = max(r.style.metrics()[1] for r in self.runs)
        self.gap = self.runs[0].style.space() * 1.0
        self.w = sum(r.style.width(r.text) for r in self.runs) + self.gap * (len(self.runs) - 1)
        self.h = self.asc + self.desc

    @property
    def text(self) -> str:
        return " ".join(r.text for r in self.runs)


class _Builder:
    """Picks styles and content and produces rows of positioned items."""

    def __init__(
        self, rng: random.Random, nrng: np.random.Generator, fonts: FontRegistry, tags: set[str]
    ):
        self.rng, self.nrng, self.fonts, self.tags = rng, nrng, fonts, tags
        self.korean = fonts.has("korean")
        r = rng
        self.base = r.randint(20, 38)
        main_kind = r.choice(["sans", "sans", "sans", "mono", "ocr", "serif"])
        self.key_style = self._font(main_kind, int(self.base * r.uniform(0.75, 1.0)), bold=None)
        val_kind = r.choice([main_kind, main_kind, "ocr", "mono"])
        self.val_style = self._font(val_kind, self.base, bold=r.random() < 0.4)
        self.special: dict[str, TextStyle] = {}
        if "segment" in tags:
            h = self.base * r.uniform(1.2, 1.8)
            opts = ["seg7"]
            if fonts.has("segment7"):
                opts += ["segment7", "segment7"]
            if fonts.has("segment14"):
                opts += ["segment14"]
            kind = r.choice(opts)
            if kind == "seg7":
                style = TextStyle("seg7", h, slant=r.choice([0.0, 0.0, 0.1]))
            else:
                style = TextStyle("font", h, fonts.pick(kind, int(h), r, italic=False))
            self.special["serial"] = style
        if "dot_matrix" in tags:
            h = self.base * r.uniform(0.9, 1.4)
            if fonts.has("dotmatrix") and r.random() < 0.3:
                style = TextStyle("font", h, fonts.pick("dotmatrix", int(h), r))
            else:
                style = TextStyle("dotgrid", h)
            dot_fields = ("lot", "mfg_date") if "segment" in tags else ("serial", "lot", "mfg_date")
            for f in dot_fields:
                self.special[f] = style

    def _font(self, kind: str, size: int, *, bold: bool | None) -> TextStyle:
        return TextStyle("font", size, self.fonts.pick(kind, size, self.rng, bold=bold))

    def fit(self, style: TextStyle, text: str) -> TextStyle:
        """``style`` if it can draw ``text``, else a font that can (Korean, symbols)."""
        if style.covers(text):
            return style
        kinds = ["korean", "sans"] if C.has_hangul(text) else ["sans", "mono", "serif"]
        for kind in kinds:
            for face in self.fonts.faces_of(kind):
                if supports(face.path, text):
                    size = int(style.size) if style.renderer == "font" else self.base
                    return TextStyle("font", size, FontChoice(kind, face.path, size))
        return TextStyle("font", self.base, FontChoice("default", None, self.base))

    def run(self, text: str, style: TextStyle, fld: str | None, role: str) -> Run:
        return Run(text, self.fit(style, text), fld, role)

    def value_style(self, fld: str) -> TextStyle:
        return self.special.get(fld, self.val_style)

    def key_text(self, fld: str, lang: str) -> str:
        key = C.gen_key(fld, self.rng, lang=lang)
        if self.special.get(fld) is not None and self.special[fld].renderer == "dotgrid":
            key = C.gen_key(fld, self.rng, lang="en").upper()
            if not set(key) <= DOT_CHARSET:
                key = {"serial": "S/N:", "lot": "LOT:", "mfg_date": "MFG:"}[fld]
        return key

    def value_text(self, fld: str) -> str:
        style = self.special.get(fld)
        if fld == "serial" and "segment" in self.tags:
            return C.gen_serial(self.rng, charset="digits")
        if style is not None and style.renderer == "dotgrid":
            for _ in range(20):
                v = C.gen_value(fld, self.rng, korean=False).upper()
                if set(v) <= DOT_CHARSET:
                    return v
            return C.gen_serial(self.rng, charset="digits")
        return C.gen_value(fld, self.rng, korean=self.korean)


def _choose_fields(rng: random.Random, tags: set[str]) -> list[str]:
    pool = ["part_number", "lot", "mfg_date", "model", "mac", "imei", "gtin", "manufacturer"]
    weights = [3, 3, 4, 4, 1.5, 1, 1.5, 1.5]
    n = rng.choice([1, 2, 2, 3, 3, 4, 5])
    chosen: list[str] = []
    while len(chosen) < n:
        f = rng.choices(pool, weights)[0]
        if f not in chosen:
            chosen.append(f)
    if "dot_matrix" in tags and not ({"lot", "mfg_date"} & set(chosen)):
        chosen.append(rng.choice(["lot", "mfg_date"]))
    chosen.insert(rng.choice([0, 0, 0, 1]), "serial")
    if "mac" in chosen and "imei" in chosen:
        chosen.remove("imei")
    return chosen


def build_label(
    rng: random.Random,
    nrng: np.random.Generator,
    fonts: FontRegistry,
    tags: set[str],
) -> LabelRender:
    """Lay out and render a flat label. ``tags`` may hold dot_matrix, segment, engraved."""
    b = _Builder(rng, nrng, fonts, tags)
    korean = b.korean
    fields_order = _choose_fields(rng, tags)
    values = {f: b.value_text(f) for f in fields_order}
    layout = rng.choice(LAYOUTS)
    if layout == "bilingual" and not korean:
        layout = "key_before_value"

    rows: list[list[Item]] = []
    grid: list[tuple[float, float, float, float]] = []  # table line segments, filled later

    # header: brand (= manufacturer value) and product title
    header_items: list[Item] = []
    if rng.random() < 0.65:
        if "manufacturer" in values:
            brand = values["manufacturer"]
            fields_order.remove("manufacturer")
        else:
            # A brand printed as the header is the manufacturer: always labelled, so the
            # same header is never a positive on one label and a negative on the next.
            brand = C.gen_manufacturer(rng, korean=korean)
            values["manufacturer"] = brand
        hs = b._font(rng.choice(["sans", "serif"]), int(b.base * rng.uniform(1.2, 1.7)), bold=True)
        header_items.append(Item([b.run(brand, hs, "manufacturer", "value")]))
    if rng.random() < 0.5:
        title = rng.choice(
            C.PRODUCT_TITLES_KO if korean and rng.random() < 0.3 else C.PRODUCT_TITLES
        )
        ts = b._font("sans", int(b.base * rng.uniform(0.9, 1.2)), bold=True)
        header_items.append(Item([b.run(title, ts, None, "other")]))
    for it in header_items:
        rows.append([it])

    small_key = b.key_style
    lang_pool = ["en", "en", "en", "ko"] if korean else ["en"]
    table_rows: list[tuple[Item, Item]] = []

    if layout in ("key_before_value", "bilingual"):
        aligned = rng.random() < 0.35
        keys = {
            f: b.key_text(f, "bi" if layout == "bilingual" else rng.choice(lang_pool))
            for f in fields_order
        }
        pairs = []
        for f in fields_order:
            vs = b.value_style(f)
            ks = vs if vs.renderer == "dotgrid" else small_key
            if aligned and vs.renderer != "dotgrid":
                pairs.append(
                    (Item([b.run(keys[f], ks, f, "key")]), Item([b.run(values[f], vs, f, "value")]))
                )
            else:
                pairs.append(
                    (Item([b.run(keys[f], ks, f, "key"), b.run(values[f], vs, f, "value")]), None)
                )
        keycol = max((k.w for k, v in pairs if v is not None), default=0.0) + b.base * rng.uniform(
            0.8, 2.0
        )
        two_col = len(pairs) >= 4 and rng.random() < 0.35 and not aligned
        if two_col:
            half = (len(pairs) + 1) // 2
            left, right = pairs[:half], pairs[half:]
            colx = max(k.w for k, _ in left) + b.base * 2.0
            for i in range(half):
                row = [left[i][0]]
                if i < len(right):
                    right[i][0].x = colx
                    row.append(right[i][0])
                rows.append(row)
        else:
            for k, v in pairs:
                if v is None:
                    rows.append([k])
                else:
                    v.x = keycol
                    rows.append([k, v])
    elif layout == "key_above_value":
        cells = []
        for f in fields_order:
            ks = small_key.scaled(0.85)
            k = Item([b.run(b.key_text(f, rng.choice(lang_pool)), ks, f, "key")])
            v = Item([b.run(values[f], b.value_style(f), f, "value")])
            cells.append((k, v))
        ncol = 2 if len(cells) >= 3 and rng.random() < 0.5 else 1
        colw = max(max(k.w, v.w) for k, v in cells) + b.base * 1.5
        for r0 in range(0, len(cells), ncol):
            krow, vrow = [], []
            for c, (k, v) in enumerate(cells[r0 : r0 + ncol]):
                k.x = v.x = c * colw
                krow.append(k)
                vrow.append(v)
            rows.append(krow)
            rows.append(vrow)
    elif layout == "value_without_key":
        for f in fields_order:
            vs = b.value_style(f)
            if f == "serial" and vs.renderer == "font":
                vs = vs.scaled(rng.uniform(1.0, 1.4))
            rows.append([Item([b.run(values[f], vs, f, "value")])])
    else:  # table
        lang = rng.choice(["en", "ko", "bi"] if korean else ["en"])
        for f in fields_order:
            vs = b.value_style(f)
            ks = vs if vs.renderer == "dotgrid" else small_key
            table_rows.append(
                (
                    Item([b.run(b.key_text(f, lang).rstrip(":"), ks, f, "key")]),
                    Item([b.run(values[f], vs, f, "value")]),
                )
            )

    # distractors
    n_dis = rng.choice([0, 1, 1, 2, 2, 3])
    dis_style = b._font(
        rng.choice(["sans", "sans", "mono"]), int(b.base * rng.uniform(0.6, 0.85)), bold=False
    )
    dis_items = [
        Item([b.run(C.gen_distractor(rng, korean=korean), dis_style, None, "other")])
        for _ in range(n_dis)
    ]

    # ---------------------------------------------------------- place rows
    pad = b.base * rng.uniform(0.25, 0.6)
    vgap = b.base * rng.uniform(0.3, 0.8)
    y = 0.0
    placed: list[Item] = []

    def place_rows(rs: list[list[Item]], y: float) -> float:
        for row in rs:
            asc = max(it.asc for it in row)
            h = max(it.h for it in row)
            for it in row:
                it.y = y + (asc - it.asc)  # common baseline
                placed.append(it)
            y += h + vgap
        return y

    y = place_rows(rows, y)
    if table_rows:
        cellpad = b.base * rng.uniform(0.35, 0.7)
        two = len(table_rows) >= 4 and rng.random() < 0.4
        per_row = 2 if two else 1
        kw = max(k.w for k, _ in table_rows) + 2 * cellpad
        vw = max(v.w for _, v in table_rows) + 2 * cellpad
        rh = max(max(k.h, v.h) for k, v in table_rows) + 2 * cellpad
        y_top = y
        nrows = (len(table_rows) + per_row - 1) // per_row
        for i, (k, v) in enumerate(table_rows):
            r, c = divmod(i, per_row)
            x0 = c * (kw + vw)
            for it, cx in ((k, x0), (v, x0 + kw)):
                it.x = cx + cellpad
                it.y = y_top + r * rh + (rh - it.h) / 2
                placed.append(it)
        tw = per_row * (kw + vw)
        th = nrows * rh
        for r in range(nrows + 1):
            grid.append((0, y_top + r * rh, tw, y_top + r * rh))
        for c in range(per_row):
            for gx in (c * (kw + vw), c * (kw + vw) + kw):
                grid.append((gx, y_top, gx, y_top + th))
        grid.append((tw, y_top, tw, y_top + th))
        y = y_top + th + vgap
    y = place_rows([[d] for d in dis_items], y)
    content_h = y - vgap
    content_w = max(it.x + it.w for it in placed)
    if grid:
        content_w = max(content_w, max(g[2] for g in grid))

    # header centring
    if header_items and rng.random() < 0.6:
        for it in header_items:
            it.x = (content_w - it.w) / 2

    # optional graphics on the right: barcode or 2D code
    graphic = rng.choice([None, None, "barcode", "matrix"])
    gfx_w = 0.0
    gfx_box = None
    if graphic is not None:
        gs = min(max(content_h * 0.6, b.base * 3), b.base * 6)
        gw = gs * (2.2 if graphic == "barcode" else 1.0)
        gfx_box = (content_w + b.base * 1.2, (content_h - gs) / 2, gw, gs)
        gfx_w = b.base * 1.2 + gw

    rivets = rng.random() < 0.4
    margin = pad + (b.base * 1.2 if rivets else b.base * rng.uniform(0.3, 0.9))
    W = int(np.ceil(content_w + gfx_w + 2 * margin))
    H = int(np.ceil(content_h + 2 * margin))
    for it in placed:
        it.x += margin
        it.y += margin

    # ---------------------------------------------------------- material and ink
    if "engraved" in tags:
        material = rng.choice(
            ["brushed_metal", "brushed_metal", "dark_metal", "plastic", "anodized"]
        )
        mode = "emboss" if (material == "plastic" or rng.random() < 0.3) else "engrave"
    else:
        material = rng.choice(
            [
                "brushed_metal",
                "brushed_metal",
                "anodized",
                "plastic",
                "paper",
                "paper",
                "dark_metal",
                "laser_mark",
            ]
        )
        mode = {
            "brushed_metal": "print",
            "anodized": "etched" if rng.random() < 0.7 else "print",
            "plastic": "print",
            "paper": "print",
            "dark_metal": "laser_light",
            "laser_mark": "laser_dark",
        }[material]
    base, props = make_material(material, H, W, nrng)
    ink = props["ink"]
    if mode == "print" and material == "anodized":
        ink = (20, 20, 20)
    # legibility guard: marks must differ from the material by a visible margin
    lum_base = float(base.mean())
    lum_ink = float(np.mean(ink))
    if mode not in ("engrave", "emboss") and abs(lum_ink - lum_base) < 70:
        ink = (225.0, 225.0, 222.0) if lum_base < 128 else (20.0, 20.0, 24.0)

    pil_mask = Image.new("L", (W, H), 0)
    pdraw = ImageDraw.Draw(pil_mask)
    cv_mask = np.zeros((H, W), np.float32)
    lines: list[LineGT] = []
    for it in placed:
        x = it.x
        words: list[WordGT] = []
        for run in it.runs:
            boxes = run.style.draw(
                pdraw, cv_mask, run.text, x, it.y + (it.asc - run.style.metrics()[0]), nrng
            )
            for (s, e), bx in zip(_word_spans(run.text), boxes, strict=True):
                words.append(WordGT(run.text[s:e], bx, run.field, run.role))
            x += run.style.width(run.text) + it.gap
        roles = {r.role for r in it.runs}
        role = "key_value" if roles == {"key", "value"} else it.runs[0].role
        fld = next((r.field for r in it.runs if r.field), None)
        lines.append(
            LineGT(
                it.text,
                _union([w.box for w in words]),
                words,
                fld,
                role,
                "+".join(dict.fromkeys(r.style.name for r in it.runs)),
            )
        )
    lw = max(1, int(round(b.base / 14)))
    for gx0, gy0, gx1, gy1 in grid:
        p0 = (int(round(gx0 + margin)), int(round(gy0 + margin)))
        p1 = (int(round(gx1 + margin)), int(round(gy1 + margin)))
        cv2.line(cv_mask, p0, p1, 1.0, lw, cv2.LINE_AA)
    if gfx_box is not None:
        gx, gy, gw, gh = gfx_box
        _draw_graphic(cv_mask, graphic, gx + margin, gy + margin, gw, gh, nrng)
    if material == "paper" or rng.random() < 0.2:
        inset = int(max(margin * rng.uniform(0.25, 0.55), 3))
        cv2.rectangle(
            cv_mask,
            (inset, inset),
            (W - 1 - inset, H - 1 - inset),
            1.0,
            lw + int(rng.random() < 0.4),
            cv2.LINE_AA,
        )
    mask = np.maximum(np.asarray(pil_mask, np.float32) / 255.0, cv_mask)
    rgb = apply_ink(base, mask, mode, ink, nrng)

    # shape, plate edge, rivets and wear
    alpha_img = Image.new("L", (W, H), 0)
    corner = (
        int(min(W, H) * rng.uniform(0.0, 0.08))
        if material != "dark_metal"
        else int(min(W, H) * 0.02)
    )
    ImageDraw.Draw(alpha_img).rounded_rectangle((0, 0, W - 1, H - 1), radius=corner, fill=255)
    alpha = cv2.GaussianBlur(np.asarray(alpha_img, np.float32) / 255.0, (0, 0), 0.7)
    if material != "paper":
        edge = alpha - cv2.erode(alpha, np.ones((5, 5), np.uint8))
        rgb += edge[..., None] * rng.uniform(-40, 40)
    if rivets and material in ("brushed_metal", "anodized", "dark_metal", "laser_mark"):
        r = max(int(b.base * 0.35), 4)
        off = int(margin * 0.45)
        for cx, cy in ((off, off), (W - off, off), (off, H - off), (W - off, H - off)):
            cv2.circle(rgb, (cx, cy), r + 2, (40, 40, 40), -1, cv2.LINE_AA)
            cv2.circle(rgb, (cx, cy), r, (185, 185, 180), -1, cv2.LINE_AA)
            cv2.circle(
                rgb, (cx - r // 3, cy - r // 3), max(r // 3, 1), (225, 225, 220), -1, cv2.LINE_AA
            )
    if material in ("brushed_metal", "dark_metal", "anodized", "laser_mark") and rng.random() < 0.6:
        for _ in range(rng.randint(2, 10)):
            p0 = (rng.uniform(0, W), rng.uniform(0, H))
            ang, ln = rng.uniform(0, np.pi), rng.uniform(0.02, 0.12) * W
            p1 = (p0[0] + np.cos(ang) * ln, p0[1] + np.sin(ang) * ln)
            val = rng.uniform(-15, 25)
            col = tuple(
                float(c)
                for c in np.clip(rgb[int(min(p0[1], H - 1)), int(min(p0[0], W - 1))] + val, 0, 255)
            )
            cv2.line(rgb, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), col, 1, cv2.LINE_AA)
    if material != "paper" and rng.random() < 0.4:  # dirt / smudges
        dirt = np.clip(smooth_noise(H, W, rng.uniform(40, 120), nrng) - 1.0, 0, None)
        rgb *= 1 - rng.uniform(0.04, 0.12) * dirt[..., None]
    np.clip(rgb, 0, 245, out=rgb)

    present = {}
    for ln in lines:
        if ln.field and ln.role in ("value", "key_value"):
            present[ln.field] = values.get(ln.field, "")
    tags_out = set()
    styles = {ln.style for ln in lines}
    if "dot_matrix" in tags and any(("dotgrid" in s or "DotGothic" in s) for s in styles):
        tags_out.add("dot_matrix")
    if "segment" in tags and any(("seg7" in s or "DSEG" in s) for s in styles):
        tags_out.add("segment")
    if mode in ("engrave", "emboss"):
        tags_out.add("engraved")
    meta = {
        "layout": layout,
        "material": material,
        "ink_mode": mode,
        "fonts": sorted(styles),
        "graphic": graphic,
        "label_size": [W, H],
    }
    return LabelRender(rgb=rgb, alpha=alpha, lines=lines, fields=present, tags=tags_out, meta=meta)


def _draw_graphic(
    mask: np.ndarray, kind: str, x: float, y: float, w: float, h: float, rng: np.random.Generator
) -> None:
    """A barcode-like or DataMatrix-like mark (not text) into ``mask``."""
    if kind == "barcode":
        n = int(rng.integers(40, 70))
        widths = rng.integers(1, 5, size=n).astype(np.float64)
        unit = w / widths.sum()
        cx = x
        for i, wd in enumerate(widths):
            if i % 2 == 0:
                cv2.rectangle(
                    mask, (int(cx), int(y)), (int(cx + wd * unit) - 1, int(y + h)), 1.0, -1
                )
            cx += wd * unit
        return
    n = int(rng.choice([12, 14, 16, 18]))
    cell = w / n
    grid = rng.random((n, n)) < 0.5
    grid[:, 0] = True
    grid[-1, :] = True
    grid[0, ::2] = True
    grid[0, 1::2] = False
    grid[1::2, -1] = True
    grid[::2, -1] = False
    for r, c in zip(*np.nonzero(grid), strict=True):
        x0, y0 = int(x + c * cell), int(y + r * cell)
        cv2.rectangle(
            mask, (x0, y0), (int(x + (c + 1) * cell) - 1, int(y + (r + 1) * cell) - 1), 1.0, -1
        )
