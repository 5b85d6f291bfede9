"""bench/generalisation.py: the table code on 3 generated nameplates, read from their
ground-truth lines by the rule extractor (no OCR), and the field scoring rules.

Real renders (system fonts) and the real rule extractor + verifier; no model weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import generalisation as gen  # noqa: E402
from bench import indep_nameplates as ind  # noqa: E402

pytestmark = pytest.mark.skipif(
    not ind._fonts(ind._SANS), reason="system fonts (DejaVu/Liberation) not installed"
)


@pytest.fixture(scope="module")
def samples() -> list[ind.Sample]:
    return [
        ind.generate(7_300_000, layout="vertical_list", condition="clean"),
        ind.generate(7_300_001, layout="kv_grid", condition="blur"),
        ind.generate(7_300_002, layout="value_only", condition="glare"),
    ]


def test_tables_from_ground_truth_lines_with_the_rule_extractor(samples) -> None:
    ext = gen.build_extractor("rules")
    reads = [gen.gt_read(s, ext) for s in samples]
    rows = [gen.score_indep(s, r) for s, r in zip(samples, reads, strict=True)]
    # the GT lines hold every serial: the text metric is 100 % from ground truth
    assert all(r.serial_in_text for r in rows)
    assert all("serial_number" in r.per_field for r in rows)
    md = gen.indep_tables({"rules (GT lines)": rows}, "gt")
    assert "### gt (n = 3)" in md
    assert "| serial in OCR text | 100.0 % |" in md
    for needed in ("serial_number exact", "micro F1", "wrong-but-valid fields", "by condition"):
        assert needed in md
    assert "| vertical_list | 1 |" in md and "| glare | 1 |" in md
    # the numbers in the table are the rows' own
    exact = sum(r.per_field["serial_number"] for r in rows)
    assert f"| serial_number exact | {100.0 * exact / 3:.1f} % |" in md


def test_field_scoring_counts_right_wrong_missing_and_extra(samples) -> None:
    s = samples[0]
    truth = dict(s.fields)
    fields = {
        "serial_number": {"value": truth["serial_number"].lower(), "valid": True, "iso_date": None},
        "lot": {"value": "NOT-ON-LABEL-1", "valid": True, "iso_date": None},
    }
    if "lot" in truth:
        truth.pop("lot")
        s = ind.Sample(**{**s.__dict__, "fields": truth})
    row = gen.score_indep(s, gen.Read(lines=[], fields=fields, needs_review=False))
    assert row.per_field["serial_number"] is True  # compared after normalisation (upper)
    assert row.tp == 1
    assert row.fp == 1 and row.wrong_valid == 1  # a valid value for a field not on the label
    assert row.fn == len(truth) - 1
    assert row.accepted and row.accepted_fields == 2 and row.accepted_wrong == 1


def test_dates_compare_as_dates() -> None:
    assert gen.field_equal(
        "mfg_date", {"value": "2019-03-01", "iso_date": "2019-03-01"}, "01.03.2019"
    )
    assert not gen.field_equal(
        "mfg_date", {"value": "2019-04", "iso_date": "2019-04-01"}, "03/2019"
    )
    assert gen.field_equal("mac", {"value": "00:1A:2B:3C:4D:5E"}, "001a2b3c4d5e")


def test_serial_in_text_needs_a_boundary() -> None:
    assert gen.serial_in_text("1234 5678", [("S/N:12345678", None)])
    assert gen.serial_in_text("AB-12", [("Ser. No.", None), ("AB12", None)])
    assert not gen.serial_in_text("12345678", [("S/N:123456789", None)])


def test_cached_lines_keep_full_precision(samples) -> None:
    import json

    lines = gen.gt_textlines(samples[1])
    shifted = [
        type(ln)(**{**ln.__dict__, "polygon": tuple((x + 0.123456, y) for x, y in ln.polygon)})
        for ln in lines
    ]
    back = [gen._line_from_json(json.loads(json.dumps(gen._line_json(ln)))) for ln in shifted]
    assert back == shifted
