"""An independent source of rendered nameplates, for evaluation only (issue 10, point 1 (a)).

Written from scratch, without reading or importing the training engine (``workers/training``)
or the extractor model (``workers/models/extractor``): other templates, another keyword
vocabulary (English, German, French, Spanish, Italian, Japanese, Chinese, Korean, abbreviations
and OCR-damaged forms), other serial formats, layouts without keys and distractor codes that
look like serials (type, catalogue, article, order numbers, phone numbers, ratings, approval
numbers). Only the product's field *names* and value rules are shared
(``workers.fieldspec.catalogue``), so that a read can be scored against the catalogue's
normalisation. **Never train on this source.**

    sample = generate(7_000_000)          # deterministic per seed
    sample.jpeg, sample.image             # what a reader gets: JPEG bytes and their RGB decode
    sample.lines                          # [GTLine(text, quad (4, 2) float image pixels, ...)]
    sample.fields                         # {"serial_number": "1234 5678 9012", ...} as printed
    sample.layout, sample.condition       # tags for the breakdown tables

Coordinates: image pixels of ``sample.image`` (H, W, 3) uint8 RGB, x right, y down; a quad is
TL, TR, BR, BL of the text as read. Fields hold the value as printed (spaces, dashes kept);
compare after the catalogue's normalisation (``workers.fieldspec.grammar.normalise``).
``ignore``: field names a reader may fill without being wrong or right (a brand name printed
as a header without a key is a manufacturer to some and not to others).
"""

from __future__ import annotations

import io
import random
import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

SEED_BASE = 7_000_000
"""Seeds of the evaluation set (``bench/generalisation.py --indep N``: SEED_BASE .. +N-1)."""

LAYOUTS = (
    "kv_grid",
    "key_above",
    "value_only",
    "rating_plate",
    "multilingual_stacked",
    "barcode_sticker",
    "qc_tag",
    "dense_spec",
    "vertical_list",
    "header_row",
    "inline_pairs",
    "cjk_plate",
    "dot_leaders",
    "caption_below",
)
CONDITIONS = ("clean", "glare", "blur", "perspective", "low_contrast", "noise", "jpeg")
LANGS = ("en", "de", "fr", "es", "it", "ja", "zh", "ko")

# ---------------------------------------------------------------------------------- fonts
_FD = Path("/usr/share/fonts")
_SANS = [
    "truetype/dejavu/DejaVuSans.ttf",
    "truetype/dejavu/DejaVuSans-Bold.ttf",
    "truetype/dejavu/DejaVuSansCondensed.ttf",
    "truetype/liberation/LiberationSans-Regular.ttf",
    "truetype/liberation/LiberationSans-Bold.ttf",
    "truetype/liberation/LiberationSansNarrow-Regular.ttf",
    "truetype/freefont/FreeSans.ttf",
    "truetype/freefont/FreeSansBold.ttf",
    "truetype/roboto/unhinted/RobotoTTF/Roboto-Regular.ttf",
    "truetype/roboto/unhinted/RobotoTTF/Roboto-Medium.ttf",
    "truetype/roboto/unhinted/RobotoCondensed-Regular.ttf",
    "truetype/dejavu/DejaVuSerif.ttf",
    "truetype/liberation/LiberationSerif-Regular.ttf",
    "truetype/freefont/FreeSerif.ttf",
]
_MONO = [
    "opentype/ocr-b/OCRB.otf",
    "truetype/ocr-a/OCRA.ttf",
    "truetype/dejavu/DejaVuSansMono.ttf",
    "truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "truetype/liberation/LiberationMono-Regular.ttf",
    "truetype/jetbrains-mono/JetBrainsMono-Regular.ttf",
    "truetype/jetbrains-mono/JetBrainsMono-Bold.ttf",
    "truetype/noto/NotoSansMono-Regular.ttf",
    "truetype/noto/NotoMono-Regular.ttf",
    "truetype/freefont/FreeMono.ttf",
    "truetype/freefont/FreeMonoBold.ttf",
    "truetype/terminus/TerminusTTF-4.46.0.ttf",
]
_CJK = {
    "ko": ["truetype/nanum/NanumGothic.ttf", "truetype/nanum/NanumBarunGothic.ttf"],
    "ja": ["truetype/dotgothic16/DotGothic16-Regular.ttf", "truetype/nanum/NanumGothic.ttf"],
    "zh": ["truetype/dotgothic16/DotGothic16-Regular.ttf", "truetype/nanum/NanumGothic.ttf"],
}
_SEG7 = "truetype/dseg/DSEG7Classic-Regular.ttf"


def _fonts(rel: list[str]) -> list[str]:
    return [str(_FD / r) for r in rel if (_FD / r).is_file()]


@lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(6, int(size)))


@lru_cache(maxsize=64)
def _notdef(path: str) -> tuple[tuple[int, int], bytes]:
    m = _font(path, 32).getmask("\U0010fffd")
    return m.size, bytes(m)


@lru_cache(maxsize=65536)
def _has_glyph(path: str, ch: str) -> bool:
    if ch.isspace():
        return True
    m = _font(path, 32).getmask(ch)
    got = (m.size, bytes(m))
    return got != _notdef(path) and m.size[0] > 0 and any(got[1])


def covers(path: str, text: str) -> bool:
    """True when the font at ``path`` has a glyph for every character of ``text``
    (a missing glyph renders as the font's .notdef box or as nothing)."""
    return all(_has_glyph(path, ch) for ch in text)


# ---------------------------------------------------------------------------- vocabulary
KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "serial_number": {
        "en": ("S/N", "SN", "Ser. No.", "Serial No.", "Serial Number", "SERIAL", "Serial #"),
        "de": ("Serien-Nr.", "Seriennummer", "Ser.-Nr.", "Fabr.-Nr.", "Fabrik-Nr.", "Geräte-Nr."),
        "fr": ("N° de série", "N° série", "No de série", "Numéro de série"),
        "es": ("Núm. de serie", "N.º de serie", "Número de serie", "Nº serie"),
        "it": ("Matricola", "N. di serie", "Numero di serie", "Matr."),
        "ja": ("製造番号", "シリアル番号", "製番"),
        "zh": ("序列号", "机身号", "出厂号"),
        "ko": ("일련번호", "시리얼번호", "제조번호", "시리얼 넘버"),
        "damaged": ("S1N", "5/N", "S/N.", "SIN", "Seria1 No.", "S/NO", "Ser1al No", "S|N"),
    },
    "model": {
        "en": ("Model", "Model No.", "MODEL", "Type", "Model Name", "MOD."),
        "de": ("Typ", "Modell", "Typ/Type", "Bauart"),
        "fr": ("Modèle", "Type", "Réf. modèle"),
        "es": ("Modelo", "Tipo"),
        "it": ("Modello", "Tipo"),
        "ja": ("型式", "型番", "形名", "モデル"),
        "zh": ("型号", "产品型号"),
        "ko": ("모델명", "모델", "형식"),
        "damaged": ("M0del", "Mode1", "Tvpe"),
    },
    "part_number": {
        "en": ("P/N", "Part No.", "PN", "Part Number", "PART NO"),
        "de": ("Teile-Nr.", "Sach-Nr.", "Materialnr."),
        "fr": ("Réf. pièce", "N° de pièce", "Référence pièce"),
        "es": ("N.º de pieza", "Núm. de pieza"),
        "it": ("Codice ricambio", "N. parte"),
        "ja": ("部品番号", "品番"),
        "zh": ("零件号", "料号"),
        "ko": ("품번", "부품번호"),
        "damaged": ("P1N", "P/N.", "Part N0"),
    },
    "lot": {
        "en": ("LOT", "Lot No.", "Batch", "Batch No."),
        "de": ("Charge", "Ch.-B.", "Los-Nr."),
        "fr": ("Lot", "N° de lot"),
        "es": ("Lote", "N.º de lote"),
        "it": ("Lotto", "N. lotto"),
        "ja": ("ロット", "ロット番号"),
        "zh": ("批号", "批次"),
        "ko": ("로트", "로트번호"),
        "damaged": ("L0T", "1OT"),
    },
    "mfg_date": {
        "en": ("MFG", "MFD", "Mfg. Date", "Date of manufacture", "DOM", "Production Date"),
        "de": ("Herstelldatum", "Prod.-Datum", "Herst.-Datum"),
        "fr": ("Date de fabrication", "Fabriqué le", "Date fab."),
        "es": ("Fecha de fabricación", "Fabricado", "Fecha fab."),
        "it": ("Data di produzione", "Data fabbricazione", "Prodotto il"),
        "ja": ("製造年月", "製造日"),
        "zh": ("制造日期", "生产日期"),
        "ko": ("제조일자", "제조년월"),
        "damaged": ("MF6", "Mfg Dat3"),
    },
    "mac": {
        "en": ("MAC", "MAC Address", "MAC ADDR"),
        "de": ("MAC-Adresse",),
        "fr": ("Adresse MAC",),
        "es": ("Dirección MAC",),
        "it": ("Indirizzo MAC",),
        "ja": ("MACアドレス",),
        "zh": ("MAC地址",),
        "ko": ("MAC 주소",),
        "damaged": ("MAC Addr.",),
    },
    "imei": {
        "en": ("IMEI", "IMEI No.", "IMEI 1"),
        "de": ("IMEI",),
        "fr": ("IMEI",),
        "es": ("IMEI",),
        "it": ("IMEI",),
        "ja": ("IMEI",),
        "zh": ("IMEI",),
        "ko": ("IMEI",),
        "damaged": ("1MEI",),
    },
    "manufacturer": {
        "en": ("Manufacturer", "Mfr.", "Manufactured by"),
        "de": ("Hersteller",),
        "fr": ("Fabricant",),
        "es": ("Fabricante",),
        "it": ("Produttore",),
        "ja": ("製造元",),
        "zh": ("制造商",),
        "ko": ("제조사",),
        "damaged": ("Manufacturer",),
    },
}
SERIAL_STACKS = (
    ("S/N", "Ser.-Nr.", "N° de série"),
    ("Serial No.", "Serien-Nr.", "N° de série", "Núm. de serie"),
    ("S/N", "Fabr.-Nr.", "Matricola"),
    ("SN", "序列号", "製造番号"),
    ("S/N", "일련번호"),
    ("Serial", "Seriennummer", "Numero di serie"),
)

_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O (as many makers print them)
_ALNUM = _LETTERS + string.digits
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int) -> str:
    s = [rng.choice(_ALNUM) for _ in range(n)]
    if not any(c.isdigit() for c in s):
        s[rng.randrange(n)] = rng.choice(string.digits)
    return "".join(s)


def serial_value(rng: random.Random) -> tuple[str, str]:
    """(printed serial, format tag)."""
    kind = rng.choice(("spaced", "hyphenated", "yearweek", "prefix", "digits", "alnum"))
    if kind == "spaced":
        g = rng.choice((3, 4))
        return " ".join(_digits(rng, g) for _ in range(rng.choice((3, 4)))), kind
    if kind == "hyphenated":
        return "-".join(_alnum(rng, 4) for _ in range(rng.choice((3, 4, 5)))), kind
    if kind == "yearweek":
        yy, ww = rng.randint(15, 26), rng.randint(1, 52)
        seq = _digits(rng, rng.choice((4, 5, 6)))
        return rng.choice(
            (f"{yy:02d}{ww:02d}-{seq}", f"{yy:02d}W{ww:02d}{seq}", f"{yy:02d}{ww:02d}{seq}")
        ), kind
    if kind == "prefix":
        p = "".join(rng.choice(_LETTERS) for _ in range(rng.choice((2, 3))))
        return p + _digits(rng, rng.choice((6, 7, 8, 9))), kind
    if kind == "digits":
        return _digits(rng, rng.choice((8, 9, 10, 12))), kind
    return _alnum(rng, rng.choice((8, 10, 12))), kind


def model_value(rng: random.Random) -> str:
    a = "".join(rng.choice(_LETTERS) for _ in range(rng.choice((2, 3))))
    return rng.choice(
        (
            f"{a}-{rng.randint(100, 9999)}",
            f"{a}{rng.randint(10, 99)}{rng.choice(_LETTERS)}",
            f"{a} {rng.randint(10, 990)} {rng.choice(_LETTERS)}",
            f"{a}-{rng.randint(10, 99)}{rng.choice(_LETTERS)}{rng.randint(10, 99)}",
            f"{a}{rng.randint(100, 999)}/{rng.choice(_LETTERS)}",
        )
    )


def part_value(rng: random.Random) -> str:
    return rng.choice(
        (
            f"{rng.randint(1, 9)}-{_digits(rng, 3)}-{_digits(rng, 3)}-{_digits(rng, 2)}",
            f"{rng.choice(_LETTERS)}{rng.randint(1, 9)}{rng.choice(_LETTERS)}{_digits(rng, 6)}",
            f"{_digits(rng, 2)}-{_digits(rng, 4)}-{_digits(rng, 2)}",
            f"{rng.choice(_LETTERS)}{_digits(rng, 4)}-{_digits(rng, 4)}",
        )
    )


def lot_value(rng: random.Random) -> str:
    return rng.choice(
        (
            f"L{rng.randint(15, 26)}{rng.randint(1, 12):02d}{rng.choice(_LETTERS)}",
            f"{rng.randint(15, 26)}{rng.choice(_LETTERS)}{_digits(rng, 3)}",
            f"LT-{_digits(rng, 4)}",
            f"{_digits(rng, 6)}",
        )
    )


def date_value(rng: random.Random, lang: str) -> str:
    y, m, d = rng.randint(2012, 2025), rng.randint(1, 12), rng.randint(1, 28)
    if lang == "ko" and rng.random() < 0.5:
        return f"{y}년 {m:02d}월" if rng.random() < 0.5 else f"{y}년 {m:02d}월 {d:02d}일"
    return rng.choice(
        (
            f"{y}-{m:02d}-{d:02d}",
            f"{d:02d}.{m:02d}.{y}",
            f"{m:02d}/{y}",
            f"{y}.{m:02d}",
            f"{_MONTHS[m - 1]} {y}",
            f"{d:02d} {_MONTHS[m - 1]} {y}",
            f"{y}/{m:02d}",
        )
    )


def mac_value(rng: random.Random) -> str:
    hx = [f"{rng.randrange(256):02X}" for _ in range(6)]
    return rng.choice((":".join(hx), "-".join(hx), "".join(hx)))


def imei_value(rng: random.Random) -> str:
    body = [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, dgt in enumerate(body):  # Luhn over the 14 digits, check digit appended
        v = dgt * 2 if i % 2 == 1 else dgt
        total += v - 9 if v > 9 else v
    return "".join(map(str, body)) + str((10 - total % 10) % 10)


_SYL = ("kor", "ven", "tal", "mex", "dra", "lum", "zen", "bro", "qua", "fel", "nor", "vik", "sol")
_SUFFIX = ("GmbH", "AG", "S.A.", "S.p.A.", "Ltd.", "Inc.", "Co., Ltd.", "SAS", "KG", "Oy")


def company_value(rng: random.Random) -> str:
    name = "".join(rng.choice(_SYL) for _ in range(rng.choice((2, 3)))).capitalize()
    return f"{name} {rng.choice(('Industrial', 'Elektro', 'Systems', 'Tech', 'Motors', ''))} {rng.choice(_SUFFIX)}".replace(
        "  ", " "
    )


def distractor(rng: random.Random, kind: str | None = None) -> tuple[str | None, str]:
    """(key, value) of a code that is not one of the fields."""
    kind = kind or rng.choice(
        ("cat", "art", "po", "order", "phone", "approval", "fcc", "standard", "reg", "rev", "ref")
    )
    if kind == "cat":
        v = f"{rng.randint(1, 9)}{rng.choice(_LETTERS)}{rng.choice(_LETTERS)}{_digits(rng, 4)}-{rng.randint(0, 9)}{rng.choice(_LETTERS)}{_digits(rng, 2)}"
        return rng.choice(("Cat. No.", "Catalog No.", "Kat.-Nr.", "N° cat.")), v
    if kind == "art":
        return rng.choice(("Art.-Nr.", "Art. No.", "Artikel-Nr.", "Art.")), rng.choice(
            (_digits(rng, 7), f"{_digits(rng, 3)}.{_digits(rng, 3)}.{_digits(rng, 2)}")
        )
    if kind == "po":
        return rng.choice(("PO", "PO No.", "P.O.", "Bestell-Nr.")), "45" + _digits(rng, 8)
    if kind == "order":
        return rng.choice(("Order No.", "Auftrag", "Commande", "Pedido")), (
            f"ORD-{rng.randint(2018, 2025)}-{_digits(rng, 5)}"
        )
    if kind == "phone":
        return rng.choice(("Tel.", "Tel", "Phone", "☎" if False else "Service")), rng.choice(
            (
                f"+49 {rng.randint(30, 899)} {_digits(rng, 3)} {_digits(rng, 4)}",
                f"+33 {rng.randint(1, 9)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}",
                f"1-800-{_digits(rng, 3)}-{_digits(rng, 4)}",
                f"+82 2-{_digits(rng, 4)}-{_digits(rng, 4)}",
            )
        )
    if kind == "approval":
        return rng.choice(("Approval No.", "Zul.-Nr.", "Homologation", "E-Nr.")), (
            f"E{rng.randint(1, 24)} {_digits(rng, 2)}R-{_digits(rng, 2)} {_digits(rng, 4)}"
        )
    if kind == "fcc":
        return "FCC ID", f"2A{_alnum(rng, 3)}-{_alnum(rng, 5)}"
    if kind == "standard":
        return None, rng.choice(
            (
                f"EN {rng.choice(('60335-1', '60204-1', '61010-1', '60950-1'))}",
                f"IEC {rng.choice(('60034-1', '61558-2-6', '60947-2'))}",
                "Made in " + rng.choice(("Germany", "Italy", "France", "Korea", "Japan", "Spain")),
            )
        )
    if kind == "reg":
        return rng.choice(("Reg. No.", "Reg.-Nr.", "N° enreg.")), _digits(rng, 6)
    if kind == "ref":
        return rng.choice(
            ("Doc.", "Manual", "BA")
        ), f"{_digits(rng, 3)}-{_digits(rng, 5)}-{rng.choice(_LETTERS)}"
    return rng.choice(("Rev.", "Version", "HW")), rng.choice(("A", "B", "C", "02", "1.3"))


def rating_lines(rng: random.Random) -> list[str]:
    v = rng.choice(("230V~", "230 V ~", "400V 3~", "120V AC", "24V DC", "100-240V~"))
    hz = rng.choice(("50/60Hz", "50 Hz", "60Hz", "50-60 Hz"))
    a = f"{rng.choice((0.5, 1.2, 2.5, 4, 6.3, 10, 16))}A"
    w = f"{rng.choice((60, 250, 750, 1500, 2200))}W"
    ip = rng.choice(("IP20", "IP44", "IP54", "IP65", "IP67"))
    out = [f"{v} {hz} {a} {ip}"]
    if rng.random() < 0.6:
        out.append(
            f"{w}  cos φ {rng.choice(('0.8', '0.85', '0.9'))}  {rng.choice(('Cl. F', 'S1', 'T40'))}"
        )
    return out


# ---------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class GTLine:
    """One printed line: ``quad`` (4, 2) float64 image pixels (TL, TR, BR, BL); ``field``: the
    field whose value this line holds (None for keys, distractors and other text)."""

    text: str
    quad: np.ndarray
    field: str | None = None
    role: str = "other"  # key | value | key_value | other | distractor


@dataclass
class Sample:
    seed: int
    image: np.ndarray  # (H, W, 3) uint8 RGB, the decode of ``jpeg``
    jpeg: bytes
    lines: list[GTLine]
    fields: dict[str, str]  # as printed
    layout: str
    condition: str
    language: str
    serial_format: str
    ignore: frozenset[str] = frozenset()
    glare_line: int | None = None  # index into ``lines`` of the line under the highlight
    meta: dict[str, object] = field(default_factory=dict)


@dataclass
class _Item:
    """A (key, value) pair to print: ``name`` is a field name or ``distractor:<kind>``."""

    name: str
    key: str | None
    value: str
    key_lang: str = "en"


# ---------------------------------------------------------------------------- canvas
class _Canvas:
    def __init__(self, w: int, h: int, bg: tuple[int, int, int]) -> None:
        self.img = Image.new("RGB", (w, h), bg)
        self.draw = ImageDraw.Draw(self.img)
        self.lines: list[GTLine] = []

    def runs(
        self,
        x: float,
        y: float,
        runs: list[tuple[str, str, int]],
        fill: tuple[int, int, int],
        *,
        field: str | None = None,
        role: str = "other",
        record: bool = True,
    ) -> tuple[float, float, float, float]:
        """Draw text runs [(text, font path, size)] left to right from (x, y) (top of the
        line box); one GT line, its text the concatenation. Returns its tight bbox."""
        cx = x
        boxes = []
        sizes = [s for _t, _p, s in runs]
        top = y
        for text, path, size in runs:
            f = _font(path, size)
            # align runs on a common baseline: shift smaller runs down by the ascent difference
            asc = f.getmetrics()[0]
            base = _font(runs[0][1], max(sizes)).getmetrics()[0]
            yy = top + (base - asc)
            if text:
                self.draw.text((cx, yy), text, font=f, fill=fill)
                b = self.draw.textbbox((cx, yy), text, font=f)
                if text.strip():
                    boxes.append(b)
                cx += f.getlength(text)
        if not boxes:
            return (x, y, x, y)
        x0 = min(b[0] for b in boxes) - 2
        y0 = min(b[1] for b in boxes) - 2
        x1 = max(b[2] for b in boxes) + 2
        y1 = max(b[3] for b in boxes) + 2
        if record:
            txt = "".join(t for t, _p, _s in runs).strip()
            quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
            self.lines.append(GTLine(txt, quad, field, role))
        return (x0, y0, x1, y1)

    def width(self, runs: list[tuple[str, str, int]]) -> float:
        return sum(_font(p, s).getlength(t) for t, p, s in runs)


class _Style:
    """Fonts and colours of one label."""

    def __init__(self, rng: random.Random) -> None:
        self.sans = rng.choice(_fonts(_SANS))
        self.bold = rng.choice(_fonts([p for p in _SANS if "Bold" in p or "Medium" in p]))
        self.mono = rng.choice(_fonts(_MONO)) if rng.random() < 0.6 else self.sans
        dark = rng.random() < 0.18
        if dark:  # light print on a dark anodised plate
            self.bg = tuple(rng.randint(20, 70) for _ in range(3))
            self.fg = tuple(rng.randint(215, 250) for _ in range(3))
        else:
            base = rng.choice(((245, 245, 240), (230, 232, 235), (250, 240, 200), (210, 215, 220)))
            self.bg = tuple(min(255, max(0, c + rng.randint(-10, 10))) for c in base)
            self.fg = rng.choice(((15, 15, 20), (30, 30, 80), (60, 20, 20), (40, 40, 40)))
        self.rule = self.fg

    def font_for(self, text: str, lang: str, rng: random.Random, mono: bool = False) -> str:
        order: list[str] = []
        if lang in _CJK or any(ord(c) > 0x2E80 for c in text):
            order += _fonts(_CJK.get(lang, [])) + _fonts(sum(_CJK.values(), []))
        order += [self.mono if mono else self.sans, self.sans, *_fonts(_SANS)]
        for p in order:
            if covers(p, text):
                return p
        raise LookupError(text)


# ---------------------------------------------------------------------------- content
def _pick_key(rng: random.Random, name: str, lang: str, style: _Style) -> tuple[str, str]:
    table = KEYS[name]
    if name in ("serial_number", "part_number", "model", "lot") and rng.random() < 0.12:
        lang = "damaged"
    cands = list(table.get(lang) or table["en"])
    rng.shuffle(cands)
    for k in cands:
        try:
            style.font_for(k, lang, rng)
            return k, lang
        except LookupError:
            continue
    return table["en"][0], "en"


def _content(
    rng: random.Random, lang: str, style: _Style, *, keyed: bool = True
) -> tuple[list[_Item], str]:
    """Field items (serial first) and distractor items; returns (items, serial format)."""
    items: list[_Item] = []
    serial, fmt = serial_value(rng)
    want = [("serial_number", serial)]
    if rng.random() < 0.75:
        want.append(("model", model_value(rng)))
    if rng.random() < 0.45:
        want.append(("part_number", part_value(rng)))
    if rng.random() < 0.35:
        want.append(("lot", lot_value(rng)))
    if rng.random() < 0.5:
        want.append(("mfg_date", date_value(rng, lang)))
    if rng.random() < 0.12:
        want.append(("mac", mac_value(rng)))
    if rng.random() < 0.08:
        want.append(("imei", imei_value(rng)))
    if rng.random() < 0.18:
        want.append(("manufacturer", company_value(rng)))
    for name, value in want:
        key_lang = rng.choice(LANGS) if lang == "mixed" else lang
        key, kl = _pick_key(rng, name, key_lang, style) if keyed else (None, key_lang)
        items.append(_Item(name, key, value, kl))
    for _ in range(rng.randint(1, 3)):
        k, v = distractor(rng)
        items.append(_Item("distractor", k, v, "en"))
    head = items[:1]
    rest = items[1:]
    rng.shuffle(rest)
    return head + rest if rng.random() < 0.4 else _shuffled(rng, items), fmt


def _shuffled(rng: random.Random, items: list[_Item]) -> list[_Item]:
    out = list(items)
    rng.shuffle(out)
    return out


def _sep(rng: random.Random, lang: str) -> str:
    if lang in ("ja", "zh"):
        return rng.choice(("：", ": ", " "))
    return rng.choice((": ", ": ", " ", ":", "  ", " # " if False else " - "))


# ---------------------------------------------------------------------------- layouts
Box = tuple[float, float, float, float]


def _kv_runs(
    st: _Style, rng: random.Random, it: _Item, ks: int, vs: int, sep: str | None = None
) -> list[tuple[str, str, int]]:
    runs: list[tuple[str, str, int]] = []
    if it.key:
        s = sep if sep is not None else _sep(rng, it.key_lang)
        runs.append((it.key + s, st.font_for(it.key + s, it.key_lang, rng), ks))
    runs.append((it.value, st.font_for(it.value, "en", rng, mono=it.name != "distractor"), vs))
    return runs


def _role(it: _Item, keyed_line: bool) -> tuple[str | None, str]:
    if it.name == "distractor":
        return None, "distractor"
    return it.name, "key_value" if keyed_line else "value"


def _fit(cv: _Canvas, runs: list[tuple[str, str, int]], max_w: float) -> list[tuple[str, str, int]]:
    w = cv.width(runs)
    if w <= max_w or w <= 0:
        return runs
    k = max_w / w
    return [(t, p, max(8, int(s * k))) for t, p, s in runs]


def _header(cv: _Canvas, st: _Style, rng: random.Random, box: Box, size: int) -> float:
    """A brand line at the top (not a field: no key). Returns the y below it."""
    x0, y0, x1, _ = box
    name = company_value(rng).split(" ")[0].upper()
    runs = _fit(cv, [(name, st.bold, size)], x1 - x0)
    b = cv.runs(x0, y0, runs, st.fg)
    return b[3] + size * 0.4


def _lay_rows(cv, st, rng, box, items, *, grid: bool, leaders: bool = False) -> None:
    """kv_grid / dot_leaders / vertical_list: one pair per row."""
    x0, y0, x1, y1 = box
    y = _header(cv, st, rng, box, int(rng.uniform(30, 46)))
    n = len(items)
    row = (y1 - y) / max(n, 1)
    vs = int(min(row * 0.62, 44))
    ks = int(vs * rng.uniform(0.6, 0.9))
    keyw = (x1 - x0) * rng.uniform(0.32, 0.45)
    if grid:
        cv.draw.rectangle([x0 - 6, y - 4, x1 + 6, y1], outline=st.rule, width=2)
        cv.draw.line([x0 + keyw - 8, y - 4, x0 + keyw - 8, y1], fill=st.rule, width=2)
    for i, it in enumerate(items):
        ry = y + i * row + (row - vs) / 2
        if grid and i > 0:
            cv.draw.line([x0 - 6, y + i * row, x1 + 6, y + i * row], fill=st.rule, width=1)
        f, _ = _role(it, False)
        if grid or leaders:
            if it.key:
                kr = _fit(cv, [(it.key, st.font_for(it.key, it.key_lang, rng), ks)], keyw - 16)
                cv.runs(x0, ry + (vs - ks) / 2, kr, st.fg, role="key")
            vr = _fit(cv, _kv_runs(st, rng, _Item(it.name, None, it.value), ks, vs), x1 - x0 - keyw)
            vx = x0 + keyw if grid else x1 - cv.width(vr)
            if leaders and it.key:
                kw = cv.width([(it.key, st.font_for(it.key, it.key_lang, rng), ks)])
                dots_w = vx - (x0 + kw) - 24
                dot = _font(st.sans, ks).getlength(".")
                if dots_w > dot * 3:  # dot leaders: drawn, not part of any GT line
                    cv.draw.text(
                        (x0 + kw + 10, ry + (vs - ks) / 2),
                        "." * int(dots_w / dot),
                        font=_font(st.sans, ks),
                        fill=st.fg,
                    )
            cv.runs(vx, ry, vr, st.fg, field=f, role="value" if f else "distractor")
        else:
            runs = _fit(cv, _kv_runs(st, rng, it, ks, vs), x1 - x0)
            cv.runs(x0, ry, runs, st.fg, field=f, role="key_value" if f and it.key else "other")


def _lay_key_above(cv, st, rng, box, items, *, caption_below: bool = False) -> None:
    x0, y0, x1, y1 = box
    y = _header(cv, st, rng, box, int(rng.uniform(28, 44)))
    cols = 2 if len(items) > 3 else 1
    rows = -(-len(items) // cols)
    cw = (x1 - x0) / cols
    rh = (y1 - y) / max(rows, 1)
    vs = int(min(rh * 0.42, 44))
    ks = int(max(12, vs * rng.uniform(0.45, 0.65)))
    for i, it in enumerate(items):
        c, r = i % cols, i // cols
        cx, cy = x0 + c * cw, y + r * rh
        cv.draw.rectangle([cx, cy, cx + cw - 10, cy + rh - 8], outline=st.rule, width=1)
        f, _ = _role(it, False)
        key_y, val_y = (cy + 6, cy + 12 + ks) if not caption_below else (cy + 8 + vs + 6, cy + 6)
        if it.key:
            kr = _fit(cv, [(it.key, st.font_for(it.key, it.key_lang, rng), ks)], cw - 28)
            cv.runs(cx + 8, key_y, kr, st.fg, role="key")
        vr = _fit(cv, _kv_runs(st, rng, _Item(it.name, None, it.value), ks, vs), cw - 28)
        cv.runs(cx + 8, val_y, vr, st.fg, field=f, role="value" if f else "distractor")


def _lay_value_only(cv, st, rng, box, items) -> None:
    """No keys: brand, a product description, the values bare, centred."""
    x0, y0, x1, y1 = box
    y = _header(cv, st, rng, box, int(rng.uniform(36, 54)))
    desc = rng.choice(
        (
            "Industrial Pump Controller",
            "Frequency Inverter",
            "Servo Drive Unit",
            "Power Supply Module",
            "Wärmepumpe Außeneinheit",
            "Contrôleur de moteur",
        )
    )
    lines = [("desc", None, desc)] + [(it.name, None, it.value) for it in items]
    rh = (y1 - y) / max(len(lines), 1)
    for name, _k, text in lines:
        size = int(min(rh * 0.6, 46 if name == "serial_number" else 34))
        path = st.font_for(text, "en", rng, mono=name == "serial_number")
        runs = _fit(cv, [(text, path, size)], x1 - x0)
        w = cv.width(runs)
        f = None if name in ("desc", "distractor") else name
        cv.runs(x0 + (x1 - x0 - w) / 2, y, runs, st.fg, field=f, role="value" if f else "other")
        y += rh


def _lay_rating(cv, st, rng, box, items) -> None:
    x0, y0, x1, y1 = box
    y = _header(cv, st, rng, box, int(rng.uniform(34, 50)))
    cv.draw.rectangle([x0 - 8, y0 - 8, x1 + 8, y1], outline=st.rule, width=3)
    ratings = rating_lines(rng)
    rows: list[tuple[str, object]] = [("item", it) for it in items[:2]]
    rows += [("rating", r) for r in ratings] + [("item", it) for it in items[2:]]
    rows.append(("ce", "CE  " + rng.choice(("⚠", "")) + rng.choice(("0123", "IP X4", "Class I"))))
    rh = (y1 - y) / len(rows)
    size = int(min(rh * 0.62, 40))
    for kind, obj in rows:
        if kind == "item":
            it = obj  # type: ignore[assignment]
            f, _ = _role(it, True)
            runs = _fit(cv, _kv_runs(st, rng, it, int(size * 0.8), size), x1 - x0)
            cv.runs(x0, y, runs, st.fg, field=f, role="key_value" if f else "distractor")
        else:
            text = str(obj).replace("⚠", "")
            path = st.font_for(text, "en", rng)
            cv.runs(x0, y, _fit(cv, [(text, path, size)], x1 - x0), st.fg, role="other")
        y += rh


def _lay_stacked(cv, st, rng, box, items) -> None:
    """Multilingual key stacks: 'S/N / Ser.-Nr. / N° de série' on one line, value below."""
    x0, y0, x1, y1 = box
    y = _header(cv, st, rng, box, int(rng.uniform(30, 44)))
    rh = (y1 - y) / max(len(items), 1)
    vs = int(min(rh * 0.42, 40))
    ks = int(max(12, vs * 0.6))
    for it in items:
        f, _ = _role(it, False)
        key = it.key
        if it.name == "serial_number":
            key = _joinable(st, rng, list(rng.choice(SERIAL_STACKS)))
        elif it.key and it.name != "distractor":
            alts = [it.key] + [_pick_key(rng, it.name, lg, st)[0] for lg in rng.sample(LANGS, 2)]
            key = _joinable(st, rng, list(dict.fromkeys(alts)))
        if key:
            kr = _fit(cv, [(key, st.font_for(key, "ja" if _cjk(key) else "en", rng), ks)], x1 - x0)
            cv.runs(x0, y, kr, st.fg, role="key")
        vr = _fit(cv, _kv_runs(st, rng, _Item(it.name, None, it.value), ks, vs), x1 - x0)
        cv.runs(
            x0 + rng.uniform(0, 40),
            y + ks + 8,
            vr,
            st.fg,
            field=f,
            role="value" if f else "distractor",
        )
        y += rh


def _cjk(s: str) -> bool:
    return any(ord(c) > 0x2E80 for c in s)


def _joinable(st: _Style, rng: random.Random, parts: list[str]) -> str:
    """'A / B / C' of the longest prefix of ``parts`` that one font can draw."""
    while len(parts) > 1 and not _try_font(st, " / ".join(parts), rng):
        parts = parts[:-1]
    return " / ".join(parts)


def _try_font(st: _Style, text: str, rng: random.Random) -> bool:
    try:
        st.font_for(text, "ja" if _cjk(text) else "en", rng)
        return True
    except LookupError:
        return False


def _bars(cv: _Canvas, rng: random.Random, x: float, y: float, w: float, h: float, fg) -> None:
    """Barcode-like bars (not a decodable symbol)."""
    cx = x
    while cx < x + w:
        bw = rng.choice((2, 2, 3, 4, 6))
        if rng.random() < 0.55:
            cv.draw.rectangle([cx, y, cx + bw - 1, y + h], fill=fg)
        cx += bw


def _lay_barcode(cv, st, rng, box, items) -> None:
    x0, y0, x1, y1 = box
    y = _header(cv, st, rng, box, int(rng.uniform(26, 38)))
    barred = [it for it in items if it.name in ("serial_number", "part_number", "mac", "imei")][:2]
    others = [it for it in items if it not in barred]
    slots = len(barred) * 2.2 + len(others)
    rh = (y1 - y) / max(slots, 1)
    size = int(min(rh * 0.55, 34))
    for it in barred:
        bh = rh * 1.1
        _bars(cv, rng, x0, y, (x1 - x0) * rng.uniform(0.6, 0.95), bh, st.fg)
        y += bh + 6
        human = it if rng.random() < 0.6 else _Item(it.name, None, it.value)
        runs = _fit(cv, _kv_runs(st, rng, human, int(size * 0.85), size), x1 - x0)
        cv.runs(x0, y, runs, st.fg, field=it.name, role="key_value" if human.key else "value")
        y += rh * 1.1
    for it in others:
        f, _ = _role(it, True)
        runs = _fit(cv, _kv_runs(st, rng, it, int(size * 0.85), size), x1 - x0)
        cv.runs(x0, y, runs, st.fg, field=f, role="key_value" if f else "distractor")
        y += rh


def _lay_qc(cv, st, rng, box, items) -> None:
    x0, y0, x1, y1 = box
    r = 18
    cv.draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=st.rule, width=3)  # hole
    title = rng.choice(("QC PASSED", "INSPECTED", "GEPRÜFT", "CONTRÔLÉ", "検査済", "QC OK"))
    tp = st.font_for(title, "ja" if _cjk(title) else "en", rng)
    b = cv.runs(x0 + 40, y0, [(title, tp, int(rng.uniform(40, 56)))], st.fg, role="other")
    y = b[3] + 14
    extra = [
        f"Inspector {rng.randint(1, 40):02d}",
        f"Station {rng.choice('ABCDE')}{rng.randint(1, 9)}",
    ]
    rows: list[object] = list(items) + extra
    rh = (y1 - y) / len(rows)
    size = int(min(rh * 0.55, 36))
    for row in rows:
        if isinstance(row, _Item):
            f, _ = _role(row, True)
            runs = _fit(cv, _kv_runs(st, rng, row, int(size * 0.85), size), x1 - x0 - 50)
            cv.draw.rectangle(
                [x0, y + 4, x0 + size * 0.7, y + 4 + size * 0.7], outline=st.rule, width=2
            )
            cv.runs(x0 + size, y, runs, st.fg, field=f, role="key_value" if f else "distractor")
        else:
            cv.runs(x0 + size, y, [(str(row), st.sans, int(size * 0.8))], st.fg, role="other")
        y += rh


def _lay_dense(cv, st, rng, box, items) -> None:
    """Many small lines in two columns: ratings, distractors, fields mixed."""
    x0, y0, x1, y1 = box
    y = _header(cv, st, rng, box, int(rng.uniform(26, 36)))
    extra = [
        _Item("distractor", k, v) for k, v in (distractor(rng) for _ in range(rng.randint(3, 6)))
    ]
    rows = _shuffled(rng, list(items) + extra)
    ratings = rating_lines(rng)
    cols = 2
    per = -(-len(rows) // cols)
    rh = (y1 - y - 60) / max(per, 1)
    size = int(min(rh * 0.6, 26))
    cw = (x1 - x0) / cols
    for i, it in enumerate(rows):
        c, r = i // per, i % per
        f, _ = _role(it, True)
        runs = _fit(cv, _kv_runs(st, rng, it, size, size), cw - 20)
        cv.runs(
            x0 + c * cw, y + r * rh, runs, st.fg, field=f, role="key_value" if f else "distractor"
        )
    yy = y + per * rh + 6
    for t in ratings[:1]:
        cv.runs(x0, yy, _fit(cv, [(t, st.font_for(t, "en", rng), size)], x1 - x0), st.fg)


def _lay_header_row(cv, st, rng, box, items) -> None:
    """Keys in a header row, values in the row below (a table of columns), two bands."""
    x0, y0, x1, y1 = box
    y = _header(cv, st, rng, box, int(rng.uniform(30, 44)))
    keyed = [it for it in items if it.key]
    bands = [keyed[i : i + 3] for i in range(0, len(keyed), 3)]
    bh = (y1 - y) / max(len(bands), 1)
    for band in bands:
        cw = (x1 - x0) / len(band)
        vs = int(min(bh * 0.3, 38))
        ks = int(vs * 0.7)
        cv.draw.rectangle([x0 - 6, y, x1 + 6, y + bh - 10], outline=st.rule, width=2)
        cv.draw.line([x0 - 6, y + ks + 16, x1 + 6, y + ks + 16], fill=st.rule, width=1)
        for j, it in enumerate(band):
            cx = x0 + j * cw
            if j:
                cv.draw.line([cx - 4, y, cx - 4, y + bh - 10], fill=st.rule, width=1)
            kr = _fit(cv, [(it.key, st.font_for(it.key, it.key_lang, rng), ks)], cw - 16)
            cv.runs(cx + 4, y + 6, kr, st.fg, role="key")
            f, _ = _role(it, False)
            vr = _fit(cv, _kv_runs(st, rng, _Item(it.name, None, it.value), ks, vs), cw - 16)
            cv.runs(cx + 4, y + ks + 26, vr, st.fg, field=f, role="value" if f else "distractor")
        y += bh


def _lay_inline(cv, st, rng, box, items) -> None:
    """Two pairs per printed row, wide gap between them (each pair its own GT line)."""
    x0, y0, x1, y1 = box
    y = _header(cv, st, rng, box, int(rng.uniform(30, 44)))
    pairs = [items[i : i + 2] for i in range(0, len(items), 2)]
    rh = (y1 - y) / max(len(pairs), 1)
    size = int(min(rh * 0.5, 34))
    half = (x1 - x0) / 2
    for row in pairs:
        for j, it in enumerate(row):
            f, _ = _role(it, True)
            runs = _fit(cv, _kv_runs(st, rng, it, int(size * 0.85), size), half - 40)
            cv.runs(x0 + j * half, y, runs, st.fg, field=f, role="key_value" if f else "distractor")
        y += rh


_LAYOUT_FN = {
    "kv_grid": lambda cv, st, rng, box, it: _lay_rows(cv, st, rng, box, it, grid=True),
    "key_above": _lay_key_above,
    "value_only": _lay_value_only,
    "rating_plate": _lay_rating,
    "multilingual_stacked": _lay_stacked,
    "barcode_sticker": _lay_barcode,
    "qc_tag": _lay_qc,
    "dense_spec": _lay_dense,
    "vertical_list": lambda cv, st, rng, box, it: _lay_rows(cv, st, rng, box, it, grid=False),
    "header_row": _lay_header_row,
    "inline_pairs": _lay_inline,
    "cjk_plate": lambda cv, st, rng, box, it: _lay_rows(
        cv, st, rng, box, it, grid=rng.random() < 0.5
    ),
    "dot_leaders": lambda cv, st, rng, box, it: _lay_rows(
        cv, st, rng, box, it, grid=False, leaders=True
    ),
    "caption_below": lambda cv, st, rng, box, it: _lay_key_above(
        cv, st, rng, box, it, caption_below=True
    ),
}


# ---------------------------------------------------------------------------- photometry
def _glare(img: np.ndarray, quad: np.ndarray, rng: random.Random) -> np.ndarray:
    """A saturated highlight over part of one line (centre on the line, radius ~ line height)."""
    h, w = img.shape[:2]
    x0, y0 = quad.min(0)
    x1, y1 = quad.max(0)
    lh = max(8.0, y1 - y0)
    cx = rng.uniform(x0 + 0.3 * (x1 - x0), x1)
    cy = (y0 + y1) / 2 + rng.uniform(-0.3, 0.3) * lh
    rx, ry = lh * rng.uniform(1.0, 2.6), lh * rng.uniform(0.7, 1.6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    peak = rng.uniform(0.75, 1.0)
    a = np.clip(peak * np.exp(-d * 1.2) * 1.4, 0, 1)[..., None]
    out = img.astype(np.float32) * (1 - a) + np.array([255, 253, 245], np.float32) * a
    return np.clip(out, 0, 255).astype(np.uint8)


def _photometric(
    img: np.ndarray, lines: list[GTLine], cond: str, rng: random.Random
) -> tuple[np.ndarray, list[GTLine], int | None, int]:
    """Apply one condition. Returns (image, lines with mapped quads, glare line, JPEG q)."""
    glare_i = None
    q = 92
    h, w = img.shape[:2]
    if cond == "perspective":
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        j = rng.uniform(0.05, 0.13)
        dst = src + np.float32(
            [[rng.uniform(-1, 1) * j * w, rng.uniform(-1, 1) * j * h] for _ in range(4)]
        )
        # keep the warped image inside the frame: shrink towards the centre
        c = np.float32([w / 2, h / 2])
        dst = c + (dst - c) * 0.88
        hom = cv2.getPerspectiveTransform(src, dst)
        img = cv2.warpPerspective(img, hom, (w, h), borderMode=cv2.BORDER_REPLICATE)
        mapped = []
        for ln in lines:
            qd = cv2.perspectiveTransform(ln.quad.reshape(-1, 1, 2).astype(np.float64), hom)
            mapped.append(GTLine(ln.text, qd.reshape(4, 2), ln.field, ln.role))
        lines = mapped
    elif cond == "glare":
        serial_lines = [i for i, ln in enumerate(lines) if ln.field == "serial_number"]
        pool = serial_lines if serial_lines and rng.random() < 0.5 else list(range(len(lines)))
        glare_i = rng.choice(pool)
        img = _glare(img, lines[glare_i].quad, rng)
    elif cond == "blur":
        if rng.random() < 0.5:
            s = rng.uniform(1.2, 2.2)
            img = cv2.GaussianBlur(img, (0, 0), s)
        else:
            k = rng.choice((5, 7, 9))
            ker = np.zeros((k, k), np.float32)
            ker[k // 2, :] = 1.0 / k
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
            ker = cv2.warpAffine(ker, rot, (k, k))
            img = cv2.filter2D(img, -1, ker / max(ker.sum(), 1e-6))
    elif cond == "low_contrast":
        lo = rng.uniform(70, 120)
        span = rng.uniform(45, 80)
        img = (lo + img.astype(np.float32) / 255.0 * span).clip(0, 255).astype(np.uint8)
    elif cond == "noise":
        nrng = np.random.default_rng(rng.randrange(2**31))
        n = nrng.normal(0, rng.uniform(10, 22), img.shape)
        img = (img.astype(np.float32) + n).clip(0, 255).astype(np.uint8)
    elif cond == "jpeg":
        q = rng.randint(12, 30)
    return img, lines, glare_i, q


def _background(rng: random.Random, w: int, h: int) -> np.ndarray:
    base = np.array([rng.randint(60, 200) for _ in range(3)], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = (xx / w - 0.5) * rng.uniform(-40, 40) + (yy / h - 0.5) * rng.uniform(-40, 40)
    nrng = np.random.default_rng(rng.randrange(2**31))
    tex = cv2.GaussianBlur(nrng.normal(0, 12, (h, w)).astype(np.float32), (0, 0), 3)
    img = base[None, None, :] + (grad + tex)[..., None]
    return img.clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- generate
def generate(seed: int, *, layout: str | None = None, condition: str | None = None) -> Sample:
    """One nameplate photo, deterministic in (seed, layout, condition)."""
    rng = random.Random(f"indep-nameplate/{seed}")
    layout = layout or LAYOUTS[rng.randrange(len(LAYOUTS))]
    if condition is None:
        condition = rng.choice(CONDITIONS + ("clean",))
    if layout not in _LAYOUT_FN:
        raise ValueError(f"unknown layout {layout!r}")
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}")
    if layout == "cjk_plate":
        lang = rng.choice(("ja", "zh", "ko"))
    elif layout == "multilingual_stacked":
        lang = "mixed"
    else:
        lang = rng.choices(LANGS + ("mixed",), weights=(30, 12, 10, 10, 8, 8, 8, 8, 6))[0]
    style = _Style(rng)
    items, fmt = _content(rng, lang, style, keyed=layout != "value_only")
    if layout == "value_only":  # bare values: only the fields a reader can know without a key
        items = [it for it in items if it.name in ("serial_number", "mfg_date", "mac", "imei")]

    W, H = rng.choice(((1280, 960), (1200, 900), (1024, 768), (1280, 800)))
    photo = _background(rng, W, H)
    lw = int(W * rng.uniform(0.72, 0.9))
    lh = int(min(H * rng.uniform(0.7, 0.9), lw * rng.uniform(0.55, 0.85)))
    lx, ly = rng.randint(10, W - lw - 10), rng.randint(10, H - lh - 10)
    cv = _Canvas(W, H, (0, 0, 0))
    cv.img.paste(Image.fromarray(photo))
    cv.draw.rounded_rectangle([lx, ly, lx + lw, ly + lh], radius=rng.randint(0, 24), fill=style.bg)
    m = int(lw * 0.05)
    box = (lx + m, ly + m, lx + lw - m, ly + lh - m)
    _LAYOUT_FN[layout](cv, style, rng, box, items)

    img = np.asarray(cv.img, np.uint8).copy()
    lines = [ln for ln in cv.lines if ln.text]
    img, lines, glare_i, q = _photometric(img, lines, condition, rng)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=q)
    jpeg = buf.getvalue()
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    h, w = decoded.shape[:2]
    lines = [
        GTLine(
            ln.text,
            np.stack([ln.quad[:, 0].clip(0, w - 1), ln.quad[:, 1].clip(0, h - 1)], 1),
            ln.field,
            ln.role,
        )
        for ln in lines
    ]
    fields = {it.name: it.value for it in items if it.name != "distractor"}
    printed = {ln.field for ln in lines if ln.field}
    fields = {k: v for k, v in fields.items() if k in printed}
    ignore = frozenset() if "manufacturer" in fields else frozenset({"manufacturer"})
    return Sample(
        seed=seed,
        image=decoded,
        jpeg=jpeg,
        lines=lines,
        fields=fields,
        layout=layout,
        condition=condition,
        language=lang,
        serial_format=fmt,
        ignore=ignore,
        glare_line=glare_i,
        meta={"jpeg_quality": q},
    )


def sample_at(base: int, k: int) -> Sample:
    """Sample ``k`` of the set that starts at seed ``base``: seed ``base + k``, its layout and
    condition by the round robin (layout k mod 14, condition (k // 14 + k) mod 7)."""
    return generate(
        base + k,
        layout=LAYOUTS[k % len(LAYOUTS)],
        condition=CONDITIONS[(k // len(LAYOUTS) + k) % len(CONDITIONS)],
    )


def sample_set(n: int, base: int = SEED_BASE) -> list[Sample]:
    """``n`` samples, seeds ``base .. base + n - 1``, layouts and conditions balanced
    round-robin (``sample_at``)."""
    return [sample_at(base, k) for k in range(n)]


if __name__ == "__main__":  # write a few to var/ for a look
    import sys

    out_dir = Path(__file__).resolve().parents[1] / "var" / "bench" / "indep_preview"
    out_dir.mkdir(parents=True, exist_ok=True)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 14
    for s in sample_set(n):
        img = s.image[:, :, ::-1].copy()
        for ln in s.lines:
            color = (0, 0, 255) if ln.field else (0, 160, 0)
            cv2.polylines(img, [ln.quad.astype(np.int32)], True, color, 1)
        cv2.imwrite(str(out_dir / f"{s.seed}_{s.layout}_{s.condition}.jpg"), img)
        print(s.seed, s.layout, s.condition, s.language, s.fields)
