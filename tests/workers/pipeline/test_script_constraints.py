"""Script constraints at decoding (``TextRecognizer.with_scripts``), the schema's ``scripts``
option (``fieldspec.grammar``) and per-field allowed characters in verification
(``correction.constrain_chars``): no Hangul where the label or the field cannot hold it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from workers.fieldspec.catalogue import resolve_schema, spec_for
from workers.fieldspec.grammar import (
    FieldSpec,
    char_allowed,
    char_script,
    schema_errors,
    validate_field,
)
from workers.pipeline.correction import constrain_chars

TODAY = date(2026, 6, 1)


# ---- schema grammar ------------------------------------------------------------------------
def test_char_script():
    assert [char_script(c) for c in "A7°€Ω제ㄱシ製"] == (
        ["latin"] * 5 + ["hangul", "hangul", "cjk", "cjk"]
    )


def test_schema_scripts_are_validated():
    ok = {"fields": [{"name": "serial_number"}], "scripts": ["latin", "hangul"]}
    assert schema_errors(ok) == []
    assert any("unknown" in e for e in schema_errors({**ok, "scripts": ["latin", "klingon"]}))
    assert any("'latin'" in e for e in schema_errors({**ok, "scripts": ["hangul"]}))
    bad_field = {"fields": [{"name": "model", "scripts": "latin"}]}
    assert any("fields[0].scripts" in e for e in schema_errors(bad_field))


def test_fields_inherit_the_schema_scripts_unless_they_name_their_own():
    ps = resolve_schema(
        {
            "scripts": ["latin", "hangul"],
            "fields": [{"name": "serial_number"}, {"name": "model", "scripts": ["latin"]}],
        }
    )
    assert ps.scripts == ("latin", "hangul")
    assert ps.field("serial_number").scripts == ("latin", "hangul")
    assert ps.field("model").scripts == ("latin",)
    assert resolve_schema(None).scripts is None  # the default rule
    assert resolve_schema(ps.to_dict()).scripts == ("latin", "hangul")


def test_demo_and_builtin_product_types_with_korean_keys_keep_hangul():
    from ocrapp.demo import DEMO_PRODUCT_TYPES
    from workers.fieldspec.catalogue import BUILTIN_SCHEMAS

    for pt in DEMO_PRODUCT_TYPES.values():
        assert "hangul" in resolve_schema(pt["field_schema"]).scripts
    assert "hangul" in resolve_schema(BUILTIN_SCHEMAS["nameplate"]).scripts


def test_a_field_value_of_another_script_fails_validation():
    spec = FieldSpec(name="model", normalise=("upper",), scripts=("latin",))
    assert validate_field("AX-100", spec, today=TODAY).valid
    check = validate_field("AX-1호0", spec, today=TODAY)
    assert not check.valid and check.codes == ("script",)


def test_char_allowed_follows_the_pattern_not_its_lookahead():
    serial = spec_for("serial_number")  # (?=.*[0-9])[A-Z0-9][A-Z0-9./-]{3,39}, upper-cased
    assert all(char_allowed(c, serial) for c in "AZ09az-./ ")  # lower-case: upper-cased
    assert not any(char_allowed(c, serial) for c in "°:#일€")
    assert char_allowed("호", FieldSpec(name="x"))  # no rule, no scripts: anything
    assert not char_allowed("호", FieldSpec(name="x", scripts=("latin",)))
    fmt = FieldSpec(name="x", format="AA999")
    assert char_allowed("Q", fmt) and char_allowed("7", fmt) and not char_allowed("-", fmt)


# ---- per-field allowed characters in verification -----------------------------------------
def test_constrain_chars_replaces_impossible_characters_by_a_possible_alternative():
    serial = spec_for("serial_number")
    text = "QX7°812"
    alts = [[(c, 0.99)] for c in text]
    alts[3] = [("°", 0.6), ("0", 0.3), ("o", 0.05)]
    c = constrain_chars(text, alts, serial)
    assert c is not None and c.value == "QX70812"
    assert c.changes == ((3, "°", "0"),)
    assert c.probability == pytest.approx(0.99**6 * 0.3)
    # nothing impossible: nothing to do; an impossible character without a possible
    # alternative: no change (the value fails validation as read)
    assert constrain_chars("QX70812", [[(c, 0.9)] for c in "QX70812"], serial) is None
    alts[3] = [("°", 0.6), (":", 0.3)]
    assert constrain_chars(text, alts, serial) is None


def test_verifier_keeps_hangul_and_degree_signs_out_of_a_serial():
    from workers.pipeline.types import FieldResult, TextLine
    from workers.pipeline.verification import FieldVerifier

    text = "SN 일QX7°81234"
    alts = [((c, 0.97), ("#", 0.01)) for c in text]
    alts[3] = (("일", 0.55), ("1", 0.4), ("I", 0.03))
    alts[7] = (("°", 0.7), ("0", 0.25), ("o", 0.03))
    line = TextLine(
        order=0,
        text=text,
        confidence=0.9,
        char_confidences=tuple(a[0][1] for a in alts),
        alternatives=tuple(alts),
        polygon=((0.0, 0.0), (100.0, 0.0), (100.0, 20.0), (0.0, 20.0)),
    )
    raw = text[3:]
    f = FieldResult(
        name="serial_number",
        raw_value=raw,
        value=raw,
        confidence=0.9,
        line_index=0,
        box=None,
        valid=False,
    )
    out = FieldVerifier(today=lambda: TODAY)([f], [line], resolve_schema(None), [])
    got = out.fields[0]
    assert got.value == "1QX7081234"
    assert got.valid and got.corrected
    assert got.confidence_parts["recognition"] == pytest.approx(0.25)  # the weakest change


# ---- decoding-time mask on the committed recogniser ----------------------------------------
@pytest.fixture(scope="module")
def recognizer():
    ort = pytest.importorskip("onnxruntime")
    from workers.pipeline import models
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.recognition import TextRecognizer

    ms = models.MODEL_SETS["ours"]
    sess = ort.InferenceSession(str(ms.rec.path()), providers=["CPUExecutionProvider"])
    return TextRecognizer(PipelineConfig(), sess, models.load_char_list(ms, sess))


def _frames(rec, spelled: list[list[tuple[str, float]]]) -> np.ndarray:
    """(T, C) probabilities: per character one frame with the given (char, p) pairs, then
    one blank frame (so repeats stay separate); the rest of each frame's mass on blank."""
    index = {str(c): i for i, c in enumerate(rec.labels) if i > 0}
    rows = []
    for options in spelled:
        row = np.full(len(rec.labels), 1e-6, np.float32)
        for c, p in options:
            row[index[c]] = p
        row[0] = max(0.0, 1.0 - row.sum())
        rows.append(row)
        blank = np.full(len(rec.labels), 1e-6, np.float32)
        blank[0] = 1.0 - blank[1:].sum()
        rows.append(blank)
    return np.stack(rows)


def test_default_rule_drops_a_lone_hangul_but_keeps_a_korean_word(recognizer):
    lone = _frames(
        recognizer,
        [[("일", 0.6), ("1", 0.3)], [("R", 0.9)], [("K", 0.9)], [("6", 0.9)], [("4", 0.9)]],
    )
    res = recognizer.decode(lone)
    assert res.text == "1RK64"
    assert res.char_confidences[0] == pytest.approx(0.3)  # no redistributed mass
    assert all(char_script(a) == "latin" for a, _p in res.alternatives[0])
    word = _frames(
        recognizer,
        [[("제", 0.8)], [("조", 0.8)], [("번", 0.8)], [("호", 0.8)], [(" ", 0.9)], [("A", 0.9)]],
    )
    assert recognizer.decode(word).text == "제조번호 A"
    between = _frames(recognizer, [[("E", 0.9)], [("호", 0.5), ("F", 0.4)], [("B", 0.9)]])
    assert recognizer.decode(between).text == "EFB"
    unit = _frames(
        recognizer, [[("2", 0.9)], [("4", 0.9)], [("년", 0.7), ("I", 0.2)], [(" ", 0.9)]]
    )
    assert recognizer.decode(unit).text == "24년 "  # a Korean date's unit stays
    sign = _frames(recognizer, [[("(", 0.9)], [("일", 0.5)], [(" ", 0.9)], [("0", 0.9)]])
    assert recognizer.decode(sign).text == "( 0"  # a lone syllable between signs: dropped
    korean = _frames(
        recognizer,
        [[("모", 0.9)], [("델", 0.9)], [(" ", 0.9)], [("일", 0.6), ("1", 0.3)], [(" ", 0.9)]],
    )
    assert recognizer.decode(korean).text == "모델 일 "  # in a Korean line it may stand alone
    assert recognizer.with_scripts(["latin"]).decode(word).text.strip() == "A"
    assert recognizer.with_scripts(["latin", "hangul"]).decode(lone).text == "일RK64"
    with pytest.raises(ValueError):
        recognizer.with_scripts(["latin", "klingon"])


def test_latin_mask_on_real_pixels_reads_a_rendered_serial(recognizer):
    from workers.training.synth.simple_labels import render_label

    img = np.asarray(render_label(["QX7781234"], size=(520, 160), font_size=44, seed=2))
    h, w = img.shape[:2]
    crop = img[h // 4 : 3 * h // 4, w // 10 : 9 * w // 10]
    free = recognizer([crop])[0]
    latin = recognizer.with_scripts(["latin"])([crop])[0]
    assert "QX7781234" in latin.text.replace(" ", "")
    assert not any(char_script(c) != "latin" for c in latin.text)
    assert not any(char_script(a) != "latin" for alts in latin.alternatives for a, _ in alts)
    assert latin.text == free.text  # nothing to mask on a Latin line: the same read
