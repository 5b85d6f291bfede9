"""Truncation guard: line ends cut by the frame edge, glare, a neighbouring box or ink, and the
review rule that never auto-accepts a value at such an end (whatever its confidence)."""

from __future__ import annotations

from datetime import date

import numpy as np
from PIL import Image, ImageDraw

from workers.fieldspec.review import REVIEW_CODES
from workers.pipeline.truncation import LineCut, line_cuts, value_cut
from workers.pipeline.types import FieldResult, TextLine
from workers.pipeline.verification import FieldVerifier
from workers.training.synth.simple_labels import load_font


def tl(text: str, order: int, box: tuple[float, float, float, float]) -> TextLine:
    x0, y0, x1, y1 = box
    return TextLine(
        order=order,
        text=text,
        confidence=0.99,
        char_confidences=(0.99,) * len(text),
        alternatives=(),
        polygon=((x0, y0), (x1, y0), (x1, y1), (x0, y1)),
    )


def page(texts: list[tuple[str, int, int]], size=(900, 400)) -> tuple[np.ndarray, list]:
    """Gray (H, W) uint8 light page with each (text, x, y) drawn, and the text boxes padded
    by 4 px as a detector draws them."""
    img = Image.new("L", size, 235)
    d = ImageDraw.Draw(img)
    font = load_font(40)
    boxes = []
    for t, x, y in texts:
        d.text((x, y), t, fill=20, font=font)
        x0, y0, x1, y1 = d.textbbox((x, y), t, font=font)
        boxes.append((x0 - 4, y0 - 4, x1 + 4, y1 + 4))
    return np.asarray(img), boxes


def test_clean_lines_have_no_cuts():
    gray, boxes = page([("S/N: QX77812345", 60, 60), ("LOT L2231", 60, 160)])
    lines = [tl("S/N: QX77812345", 0, boxes[0]), tl("LOT L2231", 1, boxes[1])]
    cuts = line_cuts(gray, lines, np.zeros_like(gray))
    assert all(not c.any for c in cuts.values()), cuts


def test_frame_edge_glare_neighbour_and_ink_cuts():
    gray, boxes = page([("S/N: QX77812345", 60, 60), ("LOT L2231", 60, 160)])
    h, w = gray.shape
    # 1. the frame edge: the same text with its box reaching the right border
    x0, y0, _x1, y1 = boxes[0]
    edge = tl("S/N: QX778", 0, (x0, y0, w - 1, y1))
    # 2. glare right after the end of the second line's box
    bx0, by0, bx1, by1 = boxes[1]
    mask = np.zeros_like(gray)
    mask[int(by0) : int(by1), int(bx1) - 10 : int(bx1) + 60] = 255
    cuts = line_cuts(gray, [edge, tl("LOT L2231", 1, boxes[1])], mask)
    assert "edge" in cuts[0].end and "edge" not in cuts[0].start
    assert "glare" in cuts[1].end and not cuts[1].start
    # 3. a detection cut: the serial's box ends mid-serial, the rest is a second box
    sx0, sy0, sx1, sy1 = boxes[0]
    cut_x = sx0 + 0.62 * (sx1 - sx0)
    left = tl("S/N: QX77", 0, (sx0, sy0, cut_x, sy1))
    right = tl("812345", 1, (cut_x + 2, sy0, sx1, sy1))
    cuts = line_cuts(gray, [left, right], None)
    assert "neighbour" in cuts[0].end and "neighbour" in cuts[1].start
    # the box of the first part alone ends where the ink continues
    alone = line_cuts(gray, [left], None)
    assert "ink" in alone[0].end, alone


def test_a_table_rule_beside_a_value_is_not_a_cut():
    """A value printed in a table cell a few pixels right of the cell's vertical rule, and the
    next cell's text a few pixels right of the next rule: the rules run on above and below the
    text, so neither the ink band nor the neighbouring box across the rule is a cut; without
    the rules, the same boxes are (the next box continues the run)."""
    font = load_font(40)

    def draw(rules: bool) -> tuple[np.ndarray, list[TextLine]]:
        img = Image.new("L", (900, 240), 235)
        d = ImageDraw.Draw(img)
        d.text((310, 80), "FX146446", fill=20, font=font)
        b0 = d.textbbox((310, 80), "FX146446", font=font)
        x_next = b0[2] + 14
        d.text((x_next, 80), "+82 2-0233", fill=20, font=font)
        b1 = d.textbbox((x_next, 80), "+82 2-0233", font=font)
        if rules:
            d.line([(b0[0] - 8, 30), (b0[0] - 8, 200)], fill=20, width=2)
            d.line([(b0[2] + 7, 30), (b0[2] + 7, 200)], fill=20, width=2)
        boxes = [(b[0] - 4, b[1] - 4, b[2] + 4, b[3] + 4) for b in (b0, b1)]
        return np.asarray(img), [tl("FX146446", 0, boxes[0]), tl("+82 2-0233", 1, boxes[1])]

    gray, lines = draw(rules=True)
    cuts = line_cuts(gray, lines, np.zeros_like(gray))
    assert not cuts[0].any and not cuts[1].any, cuts
    gray, lines = draw(rules=False)
    cuts = line_cuts(gray, lines, np.zeros_like(gray))
    assert "neighbour" in cuts[0].end and "neighbour" in cuts[1].start, cuts
    # the box of the value alone with the rule in its band: the rule is no character
    gray, lines = draw(rules=True)
    x0, y0, x1, y1 = lines[0].polygon[0] + lines[0].polygon[2]
    hugging = tl("FX146446", 0, (x0 - 3, y0, x1, y1))
    assert "ink" not in line_cuts(gray, [hugging], None)[0].start


def test_a_faint_highlight_over_a_line_end_is_glare_without_a_mask():
    """White paper (248) with a soft hot spot a few grey levels over it at the end of the
    serial: too faint for the glare mask (it looks for cores well above their ring), but the
    last characters fade to nothing there. The end is a glare cut; the clean line is not."""
    img = Image.new("L", (900, 400), 248)
    d = ImageDraw.Draw(img)
    font = load_font(40)
    d.text((60, 60), "S/N: QX77812345", fill=40, font=font)
    d.text((60, 200), "LOT L2231", fill=40, font=font)
    b0 = d.textbbox((60, 60), "S/N: QX77812345", font=font)
    b1 = d.textbbox((60, 200), "LOT L2231", font=font)
    gray = np.asarray(img).astype(np.float64)
    yy, xx = np.mgrid[0 : gray.shape[0], 0 : gray.shape[1]]
    a = np.clip(1.5 * np.exp(-((xx - b0[2]) ** 2 + (yy - (b0[1] + b0[3]) / 2) ** 2) / 2500.0), 0, 1)
    gray = np.clip(gray * (1 - a) + 255.0 * a, 0, 255).astype(np.uint8)
    assert gray.max() - 248 <= 7  # the paper is near white: no saturated core stands out
    # the reader lost the faded "5": its box ends at the "4"
    x_end = b0[0] + font.getlength("S/N: QX7781234")
    lines = [tl("S/N: QX7781234", 0, (b0[0] - 4, b0[1] - 4, x_end + 4, b0[3] + 4))]
    lines.append(tl("LOT L2231", 1, (b1[0] - 4, b1[1] - 4, b1[2] + 4, b1[3] + 4)))
    cuts = line_cuts(gray, lines, np.zeros_like(gray))
    assert "glare" in cuts[0].end and not cuts[0].start
    assert not cuts[1].any
    untouched = line_cuts(np.asarray(img), lines[1:], None)
    assert not untouched[1].any


def test_value_cut_only_at_the_cut_end():
    cut = LineCut(0, (), ("glare",), ())
    text = "S/N: QX778"
    assert value_cut(cut, text, 5, 10) == {"side": "end", "causes": ["glare"]}
    assert value_cut(cut, text, 0, 3) is None  # the key at the start: not cut
    assert value_cut(LineCut(0, ("edge",), ()), text, 5, 10) is None
    assert value_cut(LineCut(0, ("edge",), ()), "QX778 LOT", 0, 5)["side"] == "start"
    inside = LineCut(0, (), (), (0.0,) * 7 + (0.6, 0.0, 0.0))
    assert value_cut(inside, text, 5, 10) == {"side": "inside", "causes": ["glare"]}
    assert value_cut(None, text, 5, 10) is None


def _field(name: str, raw: str, line_index: int) -> FieldResult:
    return FieldResult(
        name=name,
        raw_value=raw,
        value=raw,
        confidence=0.99,
        line_index=line_index,
        box=None,
        valid=True,
        extraction_confidence=0.999,
    )


def test_truncated_value_is_never_auto_accepted():
    """``QX778`` read at 99 % at a glare-cut line end: valid, confident, and still reviewed."""
    assert "truncated" in REVIEW_CODES
    lines = [tl("S/N: QX778", 0, (0, 0, 300, 40)), tl("LOT L2231", 1, (0, 60, 300, 100))]
    fields = [_field("serial_number", "QX778", 0), _field("lot", "L2231", 1)]
    verify = FieldVerifier(today=lambda: date(2026, 11, 23))
    clean = verify(fields, lines, None, auto_accept=0.9, cuts={0: LineCut(0), 1: LineCut(1)})
    assert not clean.review.needs_review, clean.review
    cuts = {0: LineCut(0, (), ("glare",)), 1: LineCut(1)}
    out = verify(fields, lines, None, auto_accept=0.9, cuts=cuts)
    sn = next(f for f in out.fields if f.name == "serial_number")
    assert sn.valid and sn.confidence > 0.9
    assert out.review.needs_review
    reasons = [(r.code, r.field, dict(r.params)) for r in out.review.reasons]
    assert reasons == [("truncated", "serial_number", {"side": "end", "causes": ["glare"]})]
    d = out.review.to_dict()
    assert d["reasons"][0]["code"] == "truncated"


def test_a_rule_that_ends_at_the_row_border_and_light_print_on_a_dark_label():
    """A table's last row: the vertical rule left of the value runs up past the text and stops
    at the table's bottom border right under it; it is still a rule, no ink cut. Light print on
    a dark label: a whole line's box is no cut, a box that stops inside the serial is one
    (the ink is the light print there)."""
    font = load_font(40)
    img = Image.new("L", (900, 240), 235)
    d = ImageDraw.Draw(img)
    d.text((310, 120), "W7J471183", fill=20, font=font)
    b = d.textbbox((310, 120), "W7J471183", font=font)
    d.line([(b[0] - 8, 20), (b[0] - 8, b[3] + 6)], fill=20, width=2)
    d.line([(100, b[3] + 6), (800, b[3] + 6)], fill=20, width=2)
    box = (b[0] - 4, b[1] - 4, b[2] + 4, b[3] + 4)
    cuts = line_cuts(np.asarray(img), [tl("W7J471183", 0, box)], None)
    assert not cuts[0].any, cuts

    dark = Image.new("L", (900, 240), 35)
    d = ImageDraw.Draw(dark)
    d.text((60, 80), "S/N: QX77812345", fill=225, font=font)
    b = d.textbbox((60, 80), "S/N: QX77812345", font=font)
    whole = tl("S/N: QX77812345", 0, (b[0] - 4, b[1] - 4, b[2] + 4, b[3] + 4))
    assert not line_cuts(np.asarray(dark), [whole], None)[0].any
    cut_x = b[0] + font.getlength("S/N: QX778") + 2
    part = tl("S/N: QX778", 0, (b[0] - 4, b[1] - 4, cut_x, b[3] + 4))
    assert "ink" in line_cuts(np.asarray(dark), [part], None)[0].end
