"""bench/indep_nameplates.py: the independent nameplate source renders every layout family and
condition deterministically, with ground truth that matches what it drew.

Renders real images with the system fonts (no model, no data set); skipped where the fonts
the source draws with are not installed.
"""

from __future__ import annotations

import functools
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import indep_nameplates as ind  # noqa: E402

pytestmark = pytest.mark.skipif(
    not ind._fonts(ind._SANS) or not ind._fonts(ind._CJK["ko"]),
    reason="system fonts (DejaVu/Liberation/Nanum) not installed",
)


def test_same_seed_same_sample_other_seed_other_sample() -> None:
    a = ind.generate(7_000_123)
    b = ind.generate(7_000_123)
    c = ind.generate(7_000_124)
    assert a.jpeg == b.jpeg
    assert [ln.text for ln in a.lines] == [ln.text for ln in b.lines]
    assert all(np.array_equal(p.quad, q.quad) for p, q in zip(a.lines, b.lines, strict=True))
    assert a.fields == b.fields and (a.layout, a.condition) == (b.layout, b.condition)
    assert a.jpeg != c.jpeg


@pytest.mark.parametrize("layout", ind.LAYOUTS)
def test_every_layout_renders_with_consistent_ground_truth(layout: str) -> None:
    for k in range(1):
        s = ind.generate(7_100_000 + k, layout=layout, condition="clean")
        assert s.layout == layout
        assert "serial_number" in s.fields
        h, w = s.image.shape[:2]
        assert Image.open(io.BytesIO(s.jpeg)).size == (w, h)
        assert len(s.lines) >= 3
        for name, value in s.fields.items():
            holders = [ln for ln in s.lines if ln.field == name]
            assert holders, (layout, name)
            assert any(value in ln.text for ln in holders), (layout, name, value)
        for ln in s.lines:
            assert ln.quad.shape == (4, 2)
            assert (ln.quad[:, 0] >= 0).all() and (ln.quad[:, 0] <= w - 1).all()
            assert (ln.quad[:, 1] >= 0).all() and (ln.quad[:, 1] <= h - 1).all()
            # something was drawn inside the box: the crop is not flat
            x0, y0 = ln.quad.min(0).astype(int)
            x1, y1 = ln.quad.max(0).astype(int)
            crop = s.image[y0 : y1 + 1, x0 : x1 + 1].astype(np.float32)
            assert crop.std() > 8.0, (layout, ln.text)


@functools.lru_cache(maxsize=1)
def _clean() -> ind.Sample:
    return ind.generate(7_200_000, layout="vertical_list", condition="clean")


@pytest.mark.parametrize("condition", ind.CONDITIONS)
def test_every_condition_renders_and_is_recorded(condition: str) -> None:
    s = ind.generate(7_200_000, layout="vertical_list", condition=condition)
    assert s.condition == condition
    clean = _clean()
    if condition == "clean":
        assert s.jpeg == clean.jpeg
    else:
        assert s.jpeg != clean.jpeg
    if condition == "glare":
        assert s.glare_line is not None
        q = s.lines[s.glare_line].quad
        x0, y0 = q.min(0).astype(int)
        x1, y1 = q.max(0).astype(int)
        region = s.image[y0 : y1 + 1, x0 : x1 + 1]
        assert (region.min(axis=2) >= 245).mean() > 0.05  # a blown-out patch over the text
    if condition == "jpeg":
        assert s.meta["jpeg_quality"] <= 30


def test_sample_set_is_balanced_and_uses_many_languages() -> None:
    ss = ind.sample_set(14)
    assert [s.seed for s in ss] == list(range(ind.SEED_BASE, ind.SEED_BASE + 14))
    assert {s.layout for s in ss} == set(ind.LAYOUTS)
    assert {s.condition for s in ss} == set(ind.CONDITIONS)
    text = " ".join(ln.text for s in ss for ln in s.lines)
    assert any("\uac00" <= ch <= "\ud7af" for ch in text)  # Korean
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)  # kanji / hanzi


def test_glyph_coverage_check() -> None:
    sans = str(ind._FD / "truetype/dejavu/DejaVuSans.ttf")
    nanum = ind._fonts(ind._CJK["ko"])[0]
    assert ind.covers(sans, "N° de série 1234")
    assert not ind.covers(sans, "일련번호")
    assert ind.covers(nanum, "일련번호")


def test_serial_formats_fit_the_catalogue_rule() -> None:
    import random
    from datetime import date

    from workers.fieldspec.catalogue import spec_for
    from workers.fieldspec.grammar import normalise, validate_field

    rng = random.Random(5)
    spec = spec_for("serial_number")
    kinds = set()
    for _ in range(200):
        v, kind = ind.serial_value(rng)
        kinds.add(kind)
        assert validate_field(normalise(v, spec), spec, today=date(2026, 1, 1)).valid, v
    assert kinds == {"spaced", "hyphenated", "yearweek", "prefix", "digits", "alnum"}
