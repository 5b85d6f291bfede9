"""Tests of the synthetic data engine (plain pytest, no Django, no database).

They do not depend on which fonts are installed: one test runs the whole engine with an empty
font registry (Pillow's default font only), and font-specific checks skip with a reason.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workers.training.synth import (
    CONDITIONS,
    DOT_CHARSET,
    FontRegistry,
    Sample,
    default_registry,
    generate_sample,
    line_crops,
)
from workers.training.synth import content as C
from workers.training.synth.glyphs import (
    DOT_COLS,
    DOT_GLYPHS,
    DOT_ROWS,
    SEG7_CHARSET,
    dot_glyph_array,
    draw_dot_text,
    draw_seg7_text,
)
from workers.training.synth.photometric import SATURATED

REPO = Path(__file__).resolve().parents[3]
SIZE = (640, 480)  # smaller canvas keeps the suite fast; the engine is size-agnostic

_cache: dict[tuple, Sample] = {}


def sample(seed: int, conditions: frozenset[str] | None = None, size=SIZE) -> Sample:
    key = (seed, conditions, size)
    if key not in _cache:
        _cache[key] = generate_sample(seed, conditions=conditions, size=size)
    return _cache[key]


def poly_mask(shape: tuple[int, int], poly: np.ndarray) -> np.ndarray:
    import cv2

    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    return m.astype(bool)


def saturated(image: np.ndarray) -> np.ndarray:
    return (image >= SATURATED).all(axis=2)


def signed_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


# ---------------------------------------------------------------- determinism and basics


def test_same_seed_gives_identical_image_and_labels():
    a = generate_sample(1234, size=SIZE)
    b = generate_sample(1234, size=SIZE)
    assert a.image.dtype == np.uint8 and a.image.shape == (SIZE[1], SIZE[0], 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())


def test_different_seeds_differ():
    assert sample(1).image.tobytes() != sample(2).image.tobytes()


def test_generation_does_not_touch_global_random_state():
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.random())
    random.seed(5)
    np.random.seed(5)
    generate_sample(77, size=SIZE)
    assert (random.random(), np.random.random()) == expected


@pytest.mark.parametrize("seed", range(12))
def test_polygons_inside_image_and_text_non_empty(seed):
    s = sample(seed)
    h, w = s.image.shape[:2]
    assert s.lines, "a label without text lines"
    for ln in s.lines:
        assert ln.text.strip()
        assert len(ln.polygon) >= 4 and len(ln.polygon) % 2 == 0
        for pts in [ln.polygon, ln.box] + [wd.polygon for wd in ln.words]:
            assert (pts[:, 0] >= 0).all() and (pts[:, 0] <= w - 1).all()
            assert (pts[:, 1] >= 0).all() and (pts[:, 1] <= h - 1).all()
        assert " ".join(wd.text for wd in ln.words) == ln.text
        # clockwise in image coordinates (y down) = positive shoelace area
        assert signed_area(ln.polygon) > 0
    for fld, idx in s.field_lines().items():
        assert fld in s.fields
        assert all(s.fields[fld] in s.lines[i].text for i in idx)


def test_to_dict_is_json_and_in_shared_format():
    rec = json.loads(json.dumps(sample(3).to_dict("images/000003.jpg")))
    assert rec["image"] == "images/000003.jpg"
    assert isinstance(rec["fields"], dict) and rec["lines"]
    for ln in rec["lines"]:
        assert isinstance(ln["text"], str)
        assert len(ln["box"]) == 4 and all(len(p) == 2 for p in ln["box"])
        assert len(ln["polygon"]) >= 4
        assert all(len(wd["box"]) == 4 for wd in ln["words"])
    assert set(rec["conditions"]) <= set(CONDITIONS)


def test_unknown_or_conflicting_conditions_are_rejected():
    with pytest.raises(ValueError):
        generate_sample(1, conditions={"sparkles"}, size=SIZE)
    with pytest.raises(ValueError):
        generate_sample(1, conditions={"clean", "glare"}, size=SIZE)
    with pytest.raises(ValueError):
        generate_sample(1, conditions={"rotated", "upside_down"}, size=SIZE)


# ---------------------------------------------------------------- check digits and content


def test_imei_luhn_valid():
    rng = random.Random(0)
    for _ in range(300):
        imei = C.gen_imei(rng)
        assert len(imei) == 15 and imei.isdigit()
        assert C.luhn_valid(imei)
        bad = imei[:-1] + str((int(imei[-1]) + 1) % 10)
        assert not C.luhn_valid(bad)
    assert C.luhn_valid("490154203237518")  # a published example IMEI


def test_gtin_gs1_check_digit_valid():
    rng = random.Random(1)
    for _ in range(300):
        g = C.gen_gtin(rng)
        assert len(g) in (13, 14) and g.isdigit()
        assert C.gs1_valid(g)
        assert not C.gs1_valid(g[:-1] + str((int(g[-1]) + 3) % 10))
    assert C.gs1_check_digit("400638133393") == "1"  # EAN-13 4006381333931
    assert C.gs1_check_digit("03600029145") == "2"  # UPC-A 036000291452


def test_content_generators_are_deterministic_and_varied():
    a = [C.gen_serial(random.Random(s)) for s in range(50)]
    b = [C.gen_serial(random.Random(s)) for s in range(50)]
    assert a == b and len(set(a)) > 40
    dates = {C.gen_date(random.Random(s)) for s in range(200)}
    assert any("년" in d for d in dates) and any("W" in d for d in dates)
    assert any("/" in d for d in dates) and any("." in d for d in dates)
    macs = {C.gen_mac(random.Random(s)) for s in range(100)}
    assert any(":" in m for m in macs) and any("-" in m for m in macs)
    assert any(len(m) == 12 for m in macs)
    assert all(
        C.gen_serial(random.Random(s), charset="digits").replace("-", "").isdigit()
        for s in range(50)
    )


# ---------------------------------------------------------------- forced conditions


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_glare_sample_saturates_pixels_on_text(seed):
    s = sample(seed, frozenset({"glare"}))
    assert "glare" in s.conditions
    sat = saturated(s.image)
    hits = [int((sat & poly_mask(sat.shape, ln.polygon)).sum()) for ln in s.lines]
    assert max(hits) >= 10, hits


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_clean_sample_has_no_saturation_on_text_and_no_effect_tags(seed):
    s = sample(seed, frozenset({"clean"}))
    assert s.conditions == frozenset({"clean"})
    sat = saturated(s.image)
    for ln in s.lines:
        assert not (sat & poly_mask(sat.shape, ln.polygon)).any(), ln.text
    cam = s.meta["camera"]
    assert abs(cam["yaw"]) <= 2 and abs(cam["pitch"]) <= 2 and abs(cam["roll"]) <= 2
    assert cam["radius"] is None
    assert "glare" not in s.meta and "blur" not in s.meta and "low_res" not in s.meta


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_upside_down_reverses_polygon_point_order(seed):
    up = sample(seed, frozenset({"clean"}))
    down = sample(seed, frozenset({"upside_down"}))
    assert "upside_down" in down.conditions
    # upright: the text's top-left point is left of its top-right and above its bottom-left
    for ln in up.lines:
        tl, tr, br, bl = ln.box
        assert tr[0] > tl[0] and bl[1] > tl[1]
    # upside down: reading direction runs right-to-left and "top" is at the bottom
    for ln in down.lines:
        tl, tr, br, bl = ln.box
        assert tr[0] < tl[0] and bl[1] < tl[1], ln.text
        assert signed_area(ln.polygon) > 0  # still clockwise as the text reads


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curved_sample_has_many_point_polygons(seed):
    s = sample(seed, frozenset({"curved"}))
    assert "curved" in s.conditions
    assert all(len(ln.polygon) > 4 for ln in s.lines)
    ln = max(s.lines, key=lambda x: len(x.polygon))
    n = len(ln.polygon) // 2
    top = ln.polygon[:n]
    # the top edge really bends: interior points are off the chord between its ends
    chord = top[-1] - top[0]
    normal = np.array([-chord[1], chord[0]]) / np.linalg.norm(chord)
    assert np.abs((top - top[0]) @ normal).max() > 0.5


def test_perspective_and_rotation_tags_follow_the_camera():
    p = sample(5, frozenset({"perspective"}))
    assert "perspective" in p.conditions
    cam = p.meta["camera"]
    assert 10 <= max(abs(cam["yaw"]), abs(cam["pitch"])) <= 40
    r = sample(5, frozenset({"rotated"}))
    assert "rotated" in r.conditions and abs(r.meta["camera"]["roll"]) >= 8
    u = sample(5, frozenset({"upside_down"}))
    assert abs(abs(u.meta["camera"]["roll"]) - 180) <= 20


@pytest.mark.parametrize("cond", ["dot_matrix", "segment", "engraved", "blur", "low_res"])
def test_forced_condition_is_reported(cond):
    s = sample(11, frozenset({cond}))
    assert cond in s.conditions
    assert s.conditions <= {cond}


def test_dot_matrix_and_segment_lines_use_their_renderers():
    dm = sample(21, frozenset({"dot_matrix"}))
    styles = {ln.style for ln in dm.lines if ln.field in ("serial", "lot", "mfg_date")}
    assert any("dotgrid" in st or "DotGothic" in st for st in styles)
    sg = sample(21, frozenset({"segment"}))
    serial = [ln for ln in sg.lines if ln.field == "serial" and ln.role != "key"]
    assert serial and any("seg7" in ln.style or "DSEG" in ln.style for ln in serial)
    assert sg.fields["serial"].replace("-", "").isdigit()


def test_random_conditions_cover_the_catalogue():
    seen: set[str] = set()
    for seed in range(60):
        from workers.training.synth.sample import SynthConfig, resolve_conditions

        seen |= resolve_conditions(None, random.Random(seed), SynthConfig()) or {"clean"}
    assert seen == set(CONDITIONS)


# ---------------------------------------------------------------- glyph renderers


def test_dot_grid_covers_every_claimed_character():
    required = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/.: ")
    assert required <= DOT_CHARSET
    bitmaps = {}
    for ch in DOT_CHARSET:
        rows = DOT_GLYPHS[ch]
        assert len(rows) == DOT_ROWS and all(len(r) == DOT_COLS for r in rows), ch
        assert set("".join(rows)) <= {"#", "."}
        g = dot_glyph_array(ch)
        assert g.any() == (ch != " "), ch
        bitmaps.setdefault(g.tobytes(), []).append(ch)
        mask = np.zeros((40, 40), np.float32)
        boxes = draw_dot_text(mask, ch, 5, 5, 4.0, np.random.default_rng(0))
        assert len(boxes) == 1
        assert (mask.max() > 0.5) == (ch != " "), ch
    assert all(len(chars) == 1 for chars in bitmaps.values()), "two characters share a glyph"


def test_seg7_renderer_draws_all_its_characters():
    for ch in SEG7_CHARSET - {" "}:
        mask = np.zeros((60, 60), np.float32)
        draw_seg7_text(mask, ch, 5, 5, 40)
        assert mask.max() > 0.5, ch


# ---------------------------------------------------------------- fonts and fallbacks


def test_engine_works_without_any_font_files():
    empty = FontRegistry(faces=[])
    s = generate_sample(3, size=SIZE, fonts=empty)
    assert s.lines and all(ln.text.strip() for ln in s.lines)
    assert not any(C.has_hangul(ln.text) for ln in s.lines)  # no Korean font -> no Hangul
    s2 = generate_sample(3, size=SIZE, fonts=empty, conditions={"dot_matrix"})
    assert "dot_matrix" in s2.conditions  # the dot grid needs no font
    s3 = generate_sample(3, size=SIZE, fonts=empty, conditions={"segment"})
    assert "segment" in s3.conditions  # procedural 7-segment needs no font


def test_registry_groups_installed_fonts():
    reg = default_registry()
    if not reg.faces:
        pytest.skip("no font files installed (see workers/training/synth/FONTS.txt)")
    summary = reg.summary()
    assert summary["sans"] + summary["mono"] + summary["serif"] > 0
    pick = reg.pick("ocr", 24, random.Random(0))
    assert pick.path is None or Path(pick.path).exists()


def test_registry_korean_font_renders_hangul():
    from workers.training.synth.fonts import supports

    reg = default_registry()
    if not reg.has("korean"):
        pytest.skip("no Korean font installed (Debian package fonts-nanum)")
    assert any(supports(f.path, "제조번호") for f in reg.faces_of("korean"))


def test_fonts_txt_lists_the_debian_packages():
    path = REPO / "workers" / "training" / "synth" / "FONTS.txt"
    pkgs = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    assert "fonts-nanum" in pkgs and "fonts-dseg" in pkgs and len(pkgs) == len(set(pkgs))


# ---------------------------------------------------------------- crops and CLI


def test_line_crops_match_line_texts():
    s = sample(8)
    crops = line_crops(s, height=32)
    assert [c.text for c in crops] == [ln.text for ln in s.lines]
    for c in crops:
        assert c.image.dtype == np.uint8 and c.image.shape[0] == 32 and c.image.shape[1] >= 4
    again = line_crops(s, height=32)
    assert all(a.image.tobytes() == b.image.tobytes() for a, b in zip(crops, again, strict=True))


def test_cli_writes_images_and_labels_json(tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "workers.training.synth", str(out), "--n", "3", "--seed", "9"]
    cmd += ["--size", "480x360", "--conditions", "glare,curved"]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=120)
    labels = json.loads((out / "labels.json").read_text())
    assert len(labels) == 3
    images = sorted((out / "images").glob("*.jpg"))
    assert len(images) == 3
    for rec in labels:
        assert (out / rec["image"]).is_file()
        assert {"glare", "curved"} <= set(rec["conditions"])
        assert rec["lines"] and all(len(ln["box"]) == 4 for ln in rec["lines"])


def test_cli_crops_mode(tmp_path):
    out = tmp_path / "crops"
    cmd = [sys.executable, "-m", "workers.training.synth", str(out), "--n", "2", "--crops"]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=120)
    recs = json.loads((out / "crops.json").read_text())
    assert recs and all((out / r["image"]).is_file() and r["text"] for r in recs)
    gt = (out / "rec_gt.txt").read_text(encoding="utf-8").splitlines()
    assert len(gt) == len(recs)


def test_trainers_refuse_to_render_without_the_fonts(monkeypatch):
    """Rendering falls back to other fonts, which would silently change training data: the
    trainers call ``require_fonts`` first, and it names the missing kinds."""
    from workers.training.synth import fonts

    empty = fonts.FontRegistry(faces=[])
    monkeypatch.setattr(fonts, "default_registry", lambda: empty)
    with pytest.raises(RuntimeError, match="korean") as err:
        fonts.require_fonts()
    assert "make system-deps" in str(err.value)
    fonts.require_fonts(kinds=())  # nothing asked, nothing missing
