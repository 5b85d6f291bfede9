"""Format-constrained correction over per-character alternatives."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from datetime import date

import pytest

from workers.fieldspec.catalogue import DEFAULT_FIELD_SPECS
from workers.fieldspec.checkdigits import CHECK_DIGITS
from workers.fieldspec.grammar import (
    DateRule,
    FieldSpec,
    format_to_regex,
    validate_field,
)
from workers.pipeline.correction import LOOKALIKES, Correction, correct

TODAY = date(2025, 6, 15)
IMEI = DEFAULT_FIELD_SPECS["imei"]
SN = FieldSpec("serial_number", format="AA999-99999", normalise=("upper",))


def certain(text: str, p: float = 0.99) -> list[list[tuple[str, float]]]:
    return [[(c, p)] for c in text]


def test_o_becomes_zero_only_where_the_format_wants_a_digit():
    # 'O' at position 0 is a letter slot: kept. 'O' at position 3 is a digit slot: 0.
    r = correct("OB1O3-12345", None, SN, today=TODAY)
    assert r is not None and r.corrected
    assert r.value == "OB103-12345"
    assert r.changes == ((3, "O", "0"),)
    # And the reverse: '0' in a letter slot becomes 'O'.
    r = correct("0B123-12345", None, SN, today=TODAY)
    assert r.value == "OB123-12345" and r.changes == ((0, "0", "O"),)


def test_valid_value_is_never_corrected():
    # Even though the alternatives prefer another valid string, a valid read stays.
    alts = certain("AB123-45678")
    alts[2] = [("1", 0.4), ("7", 0.6)]
    r = correct("AB123-45678", alts, SN, today=TODAY)
    assert r == Correction("AB123-45678", "AB123-45678", False, r.probability, ())
    assert not r.corrected and r.changes == ()


def test_normalisation_is_not_a_change():
    r = correct("ab123-4567o", None, SN, today=TODAY)
    assert r.value == "AB123-45670"
    assert r.changes == ((10, "o", "0"),)


def test_luhn_failing_imei_with_one_ambiguous_char_is_repaired():
    valid = "490154203237518"
    misread = valid[:6] + "7" + valid[7:]  # position 6: '2' read as '7'
    assert not CHECK_DIGITS["luhn"].validate(misread)
    alts = certain(misread)
    alts[6] = [("7", 0.55), ("2", 0.40), ("1", 0.05)]
    r = correct(misread, alts, IMEI, today=TODAY)
    assert r is not None
    assert r.value == valid and r.corrected
    assert r.changes == ((6, "7", "2"),)
    assert r.probability == pytest.approx(0.99**14 * 0.40)


def test_imei_with_letter_lookalike_and_no_alternatives():
    r = correct("49O1542O3237518", None, IMEI, today=TODAY)
    assert r.value == "490154203237518"
    assert [c[0] for c in r.changes] == [2, 7]


def test_more_probable_of_two_valid_candidates_wins():
    valid = "490154203237518"
    # Two ambiguous positions; each alone can restore the Luhn sum.
    misread = valid[:3] + "7" + valid[4:]  # pos 3: '1' -> '7'
    alts = certain(misread)
    alts[3] = [("7", 0.5), ("1", 0.3)]
    # Position 10 alternative that also fixes the sum (with pos 3 left as '7').
    fixer = next(
        d for d in "0123456789" if CHECK_DIGITS["luhn"].validate(misread[:10] + d + misread[11:])
    )
    alts[10] = [(misread[10], 0.5), (fixer, 0.45)]
    r = correct(misread, alts, IMEI, today=TODAY)
    assert r.value == misread[:10] + fixer + misread[11:]  # 0.45/0.5 beats 0.3/0.5
    alts[10] = [(misread[10], 0.5), (fixer, 0.2)]
    r = correct(misread, alts, IMEI, today=TODAY)
    assert r.value == valid  # now 0.3/0.5 beats 0.2/0.5


def test_impossible_returns_none():
    assert correct("ABCDEFGHIJK", None, SN, today=TODAY) is None
    assert correct("AB123-4567", None, SN, today=TODAY) is None  # too short, no insertion
    assert correct("4006381333932", None, DEFAULT_FIELD_SPECS["gtin"], today=TODAY) is None
    assert correct("", None, SN, today=TODAY) is not None  # empty optional field is valid
    assert correct("", None, FieldSpec("x", required=True, format="9"), today=TODAY) is None


def test_lookalikes_can_be_disabled():
    assert correct("OB1O3-12345", None, SN, today=TODAY, lookalike_prior=0) is None


def test_drop_a_spurious_character_when_allowed():
    assert correct("AB123-456789", None, SN, today=TODAY) is None
    r = correct("AB123-456789", None, SN, today=TODAY, allow_drop=True, drop_prob=0.01)
    assert r is not None and r.value in {"AB123-45678", "AB123-45679", "AB123-45689"}
    assert len(r.changes) == 1 and r.changes[0][2] == ""
    assert r.probability == pytest.approx(0.01)


def test_general_regex_with_check_digit_uses_best_first_search():
    spec = FieldSpec("code", pattern=r"SN[0-9]{6}[0-9A-Z*]", check_digit="iso7064_37_2")
    good = "SN123456" + CHECK_DIGITS["iso7064_37_2"].compute("SN123456")
    misread = "SN12345" + "B" + good[-1]  # 6 read as B
    alts = certain(misread)
    alts[7] = [("B", 0.7), ("8", 0.2), ("6", 0.1)]
    r = correct(misread, alts, spec, today=TODAY)
    assert r is not None and r.value == good


def test_mac_whole_string_normalisation():
    spec = DEFAULT_FIELD_SPECS["mac"]
    r = correct("00-1A-2B-3C-4D-5S", None, spec, today=TODAY)
    assert r.value == "00:1A:2B:3C:4D:55" and r.changes == ((16, "S", "5"),)


def test_date_field_correction():
    spec = FieldSpec("mfg_date", date=DateRule(not_future=True, formats=("YYYY-MM-DD",)))
    r = correct("2O24-O3-I5", None, spec, today=TODAY)
    assert r.value == "2024-03-15" and len(r.changes) == 3


@pytest.mark.parametrize(
    ("fmt", "check"), [("A99-9999", "iso7064_37_2"), ("999-9999", "luhn"), ("9{3,5}", "gs1")]
)
def test_result_always_validates_and_beats_brute_force(fmt, check):
    """Random lattices over a format + check digit: the corrector's answer is valid
    and exactly as probable as the best valid string found by brute force."""
    spec = FieldSpec("x", format=fmt, check_digit=check, normalise=("upper",))
    rng = random.Random(3)
    letters, digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"
    rx = re.compile(format_to_regex(spec.format))
    checked = 0
    slots = fmt.replace("9{3,5}", "9999")
    for _ in range(40):
        alts = []
        for slot in slots:
            pool = letters if slot == "A" else digits if slot == "9" else "-"
            chars = rng.sample(pool + "O0", k=min(3, len(pool) + 2)) if pool != "-" else ["-"]
            probs = sorted((rng.random() for _ in chars), reverse=True)
            total = sum(probs)
            alts.append([(c, p / total) for c, p in zip(chars, probs, strict=True)])
        text = "".join(a[0][0] for a in alts)
        got = correct(text, alts, spec, today=TODAY, lookalike_prior=0)
        best_p, best = 0.0, None
        for combo in itertools.product(*alts):
            s = "".join(c for c, _ in combo)
            if rx.fullmatch(s) and validate_field(s, spec, today=TODAY).valid:
                p = math.prod(p for _, p in combo)
                if p > best_p:
                    best_p, best = p, s
        if validate_field(text, spec, today=TODAY).valid:
            assert got is not None and not got.corrected
            continue
        if best is None:
            assert got is None
            continue
        checked += 1
        assert got is not None
        assert validate_field(got.value, spec, today=TODAY).valid
        assert got.probability == pytest.approx(best_p)
    assert checked >= 5


def test_many_alternatives_is_fast_enough():
    # 20 positions x 5 alternatives = 5^20 strings: only a DP makes this tractable.
    spec = FieldSpec("x", format="9{20}", check_digit="gs1")
    rng = random.Random(1)
    alts = [
        [(d, 0.9 - 0.1 * k) for k, d in enumerate(rng.sample("0123456789", 5))] for _ in range(20)
    ]
    text = "".join(a[0][0] for a in alts)
    r = correct(text, alts, spec, today=TODAY)
    assert r is not None and CHECK_DIGITS["gs1"].validate(r.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="alternative lists"):
        correct("ABC", [[("A", 1.0)]], SN, today=TODAY)


def test_lookalike_table_is_symmetric():
    for a, targets in LOOKALIKES.items():
        for b in targets:
            assert a in LOOKALIKES[b]
    assert "0" in LOOKALIKES["O"] and "1" in LOOKALIKES["I"] and "8" in LOOKALIKES["B"]


def test_to_dict_json_safe():
    r = correct("OB1O3-12345", None, SN, today=TODAY)
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["changes"] == [[3, "O", "0"]]
