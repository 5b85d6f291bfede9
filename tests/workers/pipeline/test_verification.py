"""The verification stage: schema validation of extracted fields, constrained correction from
the recogniser's alternatives, GS1 code filling and mislabel flagging, confidence, review."""

from __future__ import annotations

from datetime import date

import pytest

from workers.fieldspec.grammar import SchemaError
from workers.fieldspec.gs1 import parse_gs1
from workers.pipeline.barcodes import CodeResult
from workers.pipeline.types import FieldResult, TextLine
from workers.pipeline.verification import FieldVerifier, locate, product_schema

TODAY = date(2026, 11, 23)


def line(text: str, order: int = 0, *, confs=None, alts=None) -> TextLine:
    confs = confs or [0.99] * len(text)
    alts = alts or [[(c, p)] for c, p in zip(text, confs, strict=True)]
    y = 40.0 * order
    return TextLine(
        order=order,
        text=text,
        confidence=min(confs),
        char_confidences=tuple(confs),
        alternatives=tuple(tuple(a) for a in alts),
        polygon=((0.0, y), (300.0, y), (300.0, y + 30), (0.0, y + 30)),
    )


def extracted(name: str, raw: str, line_index: int | None, score: float = 0.98) -> FieldResult:
    return FieldResult(
        name=name,
        raw_value=raw,
        value=raw.upper().replace(" ", ""),
        confidence=score,
        line_index=line_index,
        box=None,
        valid=True,
        extraction_confidence=score,
    )


def gs1(hri: str) -> CodeResult:
    return CodeResult("DataMatrix", hri, None, ((0, 0), (1, 0), (1, 1), (0, 1)),
                      gs1=parse_gs1(hri).elements)  # fmt: skip


@pytest.fixture
def verify():
    return FieldVerifier(today=lambda: TODAY)


IMEI_SCHEMA = {"fields": [{"name": "serial_number", "required": True}, {"name": "imei"}]}


def test_well_known_field_inherits_default_rules_but_an_explicit_rule_replaces_them():
    ps = product_schema(
        {"fields": [{"name": "imei"}, {"name": "serial_number", "format": "AA9{6}"}]}
    )
    imei = ps.field("imei")
    assert imei.check_digit == "luhn" and imei.format == "9{15}"
    sn = ps.field("serial_number")
    assert sn.format == "AA9{6}" and sn.pattern is None  # the default pattern is not added
    assert sn.normalise == ("upper", "strip_spaces")  # normalisation still inherited
    with pytest.raises(SchemaError):
        product_schema({"fields": [{"name": "imei", "check_digit": "nope"}]})


def test_clean_read_is_valid_and_auto_accepted(verify):
    lines = [line("S/N: QX77812345", 0), line("IMEI 490154203237518", 1)]
    fields = [extracted("serial_number", "QX77812345", 0), extracted("imei", "490154203237518", 1)]
    out = verify(fields, lines, IMEI_SCHEMA, auto_accept=0.9)
    assert all(f.valid and not f.corrected for f in out.fields)
    assert out.fields[0].confidence == pytest.approx(0.99 * 0.98)
    assert out.fields[0].confidence_parts == {
        "recognition": 0.99,
        "extraction": 0.98,
        "validation": 1.0,
        "lookalike": 0.0,
        "raw": 0.9702,  # recognition x extraction x validation, before calibration
    }
    assert not out.review.needs_review and out.review.reasons == ()


def test_luhn_failure_is_corrected_from_the_recogniser_alternatives(verify):
    text = "IMEI 490154203237518"
    confs = [0.99] * len(text)
    alts = [[(c, 0.99)] for c in text]
    k = text.index("3237518") + 1  # the '2' of '3237518'
    text = text[:k] + "7" + text[k + 1 :]  # read '7' instead of '2': Luhn fails
    confs[k] = 0.55
    alts[k] = [("7", 0.55), ("2", 0.40), ("1", 0.03)]
    lines = [line("S/N: QX77812345", 0), line(text, 1, confs=confs, alts=alts)]
    raw = text.split()[1]
    out = verify(
        [extracted("serial_number", "QX77812345", 0), extracted("imei", raw, 1)],
        lines,
        IMEI_SCHEMA,
        auto_accept=0.9,
    )
    imei = out.fields[1]
    assert imei.valid and imei.corrected
    assert imei.raw_value == raw and imei.value == "490154203237518"
    assert imei.correction["changes"] == [{"position": 9, "from": "7", "to": "2"}]
    # recognition confidence of the changed character = its alternative's probability
    assert imei.confidence_parts["recognition"] == pytest.approx(0.40)
    assert imei.confidence_parts["validation"] == 0.9
    assert out.review.needs_review  # 0.40 x 0.98 x 0.9 < 0.9
    assert [r.code for r in out.review.reasons] == ["low_confidence"]


def test_no_correction_without_evidence_leaves_the_value_invalid(verify):
    # Luhn fails and the recogniser offered nothing else: a check digit alone must not pick
    # a digit (1 in 10 random repairs would pass with a wrong value).
    raw = "490154203237519"
    lines = [line("S/N: QX77812345", 0), line("IMEI " + raw, 1)]
    out = verify(
        [extracted("serial_number", "QX77812345", 0), extracted("imei", raw, 1)],
        lines,
        IMEI_SCHEMA,
    )
    imei = out.fields[1]
    assert not imei.valid and not imei.corrected and imei.value == raw
    assert [c for c, _ in imei.reasons] == ["check_digit"]
    assert imei.confidence_parts["validation"] == 0.3
    assert any(r.code == "invalid" and r.field == "imei" for r in out.review.reasons)


def test_format_wants_digit_so_letter_o_becomes_zero(verify):
    schema = {"fields": [{"name": "serial_number", "required": True, "format": "AA9{8}"}]}
    lines = [line("SN QXO7812345", 0)]
    out = verify([extracted("serial_number", "QXO7812345", 0)], lines, schema)
    sn = out.fields[0]
    assert sn.valid and sn.corrected and sn.value == "QX07812345"
    assert sn.raw_value == "QXO7812345"  # the read is kept


def test_missing_required_field_needs_review(verify):
    missing = FieldResult(
        "serial_number", "", "", 0.0, None, None, False, "required field not found"
    )
    out = verify([missing], [line("nothing useful", 0)], IMEI_SCHEMA)
    assert not out.fields[0].valid and out.fields[0].confidence == 0.0
    assert [(r.code, r.field) for r in out.review.reasons] == [("missing", "serial_number")]


def test_code_confirms_printed_serial_and_fills_missing_fields(verify):
    schema = {"fields": [{"name": "serial_number", "required": True}, {"name": "lot"},
                         {"name": "gtin"}]}  # fmt: skip
    lines = [line("S/N: SN12345", 0, confs=[0.8] * 12)]
    code = gs1("(01)09506000134352(10)LOT42(21)SN12345")
    out = verify([extracted("serial_number", "SN12345", 0)], lines, schema, [code])
    by = {f.name: f for f in out.fields}
    assert by["serial_number"].source == "text+code" and by["serial_number"].code_match
    assert by["serial_number"].confidence >= 0.99  # confirmed by the code
    assert by["lot"].source == "code" and by["lot"].value == "LOT42" and by["lot"].valid
    assert by["gtin"].value == "09506000134352" and by["gtin"].valid
    assert not out.review.needs_review and out.mismatches == ()


def test_code_disagreeing_with_the_print_is_a_mislabel(verify):
    lines = [line("S/N: SN12345", 0)]
    code = gs1("(01)09506000134352(21)SN99999")
    out = verify([extracted("serial_number", "SN12345", 0)], lines, IMEI_SCHEMA, [code])
    sn = out.fields[0]
    assert sn.value == "SN12345" and sn.code_value == "SN99999" and sn.code_match is False
    assert out.mismatches[0]["field"] == "serial_number"
    assert any(r.code == "mislabel" for r in out.review.reasons) and out.review.needs_review


def test_unreadable_print_takes_the_code_value(verify):
    schema = {"fields": [{"name": "serial_number", "required": True, "format": "AA9{5}"}]}
    lines = [line("S/N: S#1Z?45", 0)]
    code = gs1("(21)SN12345")
    out = verify([extracted("serial_number", "S#1Z?45", 0)], lines, schema, [code])
    sn = out.fields[0]
    assert sn.valid and sn.source == "code" and sn.value == "SN12345"
    assert sn.raw_value == "S#1Z?45" and out.mismatches == ()


def test_plain_code_text_confirms_the_serial(verify):
    lines = [line("S/N: QX77812345", 0, confs=[0.7] * 15)]
    code = CodeResult("Code128", "QX77812345", None, ((0, 0), (1, 0), (1, 1), (0, 1)))
    out = verify([extracted("serial_number", "QX77812345", 0)], lines, IMEI_SCHEMA, [code])
    assert out.fields[0].code_match and out.fields[0].confidence >= 0.99


def test_date_rules_and_iso_date(verify):
    schema = {"fields": [{"name": "serial_number"}, {"name": "mfg_date"}]}
    lines = [line("MFG 2026.03", 0), line("MFG 2027.05", 1)]
    ok = verify([extracted("mfg_date", "2026.03", 0)], lines, schema)
    assert ok.fields[0].valid and ok.fields[0].iso_date == "2026-03-01"
    future = verify([extracted("mfg_date", "2027.05", 1)], lines, schema)
    assert not future.fields[0].valid and future.fields[0].reasons[0][0] == "date_future"


def test_yearless_expiry_date_is_checked_as_month_and_day(verify):
    """``16 NOV``: valid for the catalogue's expiry date (ISO ``--11-16``, no year guessed), a
    ``date_no_year`` review reason where the product's schema asks for the full date."""
    lines = [line("Use by", 0), line("16 NOV", 1)]
    schema = {"fields": [{"name": "expiry_date", "required": True}]}
    ok = verify([extracted("expiry_date", "16 NOV", 1)], lines, schema)
    assert ok.fields[0].valid and ok.fields[0].iso_date == "--11-16"
    assert not any(r.code == "invalid" for r in ok.review.reasons)
    strict = {"fields": [{"name": "expiry_date", "date": {"require_year": True}}]}
    out = verify([extracted("expiry_date", "16 NOV", 1)], lines, strict)
    assert not out.fields[0].valid and out.fields[0].reason_codes == ("date_no_year",)
    assert out.review.needs_review and out.review.reasons[0].code == "invalid"


@pytest.mark.parametrize(
    ("coded", "agrees"), [("261116", True), ("271116", True), ("261117", False)]
)
def test_yearless_print_confirmed_by_a_coded_expiry_by_day_and_month(verify, coded, agrees):
    """``16 NOV`` printed, GS1 (17) in the code: the code confirms the print when its day and
    month agree (the print has no year to compare), and a code that disagrees is a mislabel;
    it never replaces the printed value."""
    lines = [line("Use by", 0), line("16 NOV", 1, confs=[0.8] * 6)]
    schema = {"fields": [{"name": "expiry_date", "required": True}]}
    code = gs1(f"(01)09506000134352(17){coded}")
    out = verify([extracted("expiry_date", "16 NOV", 1, 0.8)], lines, schema, [code])
    exp = out.fields[0]
    assert exp.iso_date == "--11-16" and exp.raw_value == "16 NOV"
    if agrees:
        assert exp.code_match is True and exp.source == "text+code" and exp.confidence >= 0.99
    else:  # the code says another day: a mislabel, the read goes to review
        assert exp.code_match is False and exp.code_value == coded and exp.source == "text"
        assert out.mismatches and out.mismatches[0]["field"] == "expiry_date"
        assert out.review.needs_review


def test_threshold_comes_from_the_product_then_the_schema(verify):
    lines = [line("S/N: QX77812345", 0, confs=[0.9] * 15)]
    f = [extracted("serial_number", "QX77812345", 0, score=0.9)]  # 0.9 x 0.9 = 0.81
    schema = {"auto_accept": 0.8, "fields": [{"name": "serial_number"}]}
    assert not verify(f, lines, schema).review.needs_review
    assert verify(f, lines, schema, auto_accept=0.85).review.needs_review


def test_locate_handles_spaces_and_missing_values():
    ln = line("S/N:  AB 12 34", 0)
    span = locate("AB 12 34", [ln], 0)
    assert (span.start, span.end) == (6, 14)
    assert locate("AB  12 34", [ln], 0).start == 6
    assert locate("ZZ", [ln], 0) is None and locate("AB", [ln], None) is None


def test_check_digit_repair_needs_every_kept_character_to_be_sure(verify):
    # Two digits misread ('00' -> '88'); the recogniser offers '6' for one of them, which
    # happens to satisfy the GS1 check digit. The other '8' stays unsure: no correction.
    truth = "4002115512399"
    raw = "4882115512399"
    confs = [0.99] * len(raw)
    alts = [[(c, 0.99)] for c in raw]
    confs[1], confs[2] = 0.45, 0.45
    alts[1] = [("8", 0.45), ("6", 0.36)]
    alts[2] = [("8", 0.45), ("3", 0.30)]
    schema = {"fields": [{"name": "serial_number"}, {"name": "gtin"}]}
    lines = [
        line("GTIN " + raw, 0, confs=[0.99] * 5 + confs, alts=[[(c, 0.99)] for c in "GTIN "] + alts)
    ]
    out = verify([extracted("gtin", raw, 0)], lines, schema)
    g = out.fields[0]
    assert not g.corrected and not g.valid and g.value == raw and g.value != truth


def test_loose_pattern_alone_does_not_trigger_corrections(verify):
    # "BRRIY" fails the default serial pattern only because it has no digit: I -> 1 would make
    # it "valid" without any evidence that it is a serial.
    out = verify([extracted("serial_number", "BRRIY", 0)], [line("S/N BRRIY", 0)], None)
    sn = out.fields[0]
    assert not sn.corrected and not sn.valid and sn.value == "BRRIY"


def test_without_a_schema_the_builtin_rules_apply(verify):
    # fields.DEFAULT_SCHEMA gives imei only a 15-digit regex (an extraction hint); validation
    # still checks the Luhn digit.
    raw = "490154203237519"
    out = verify(
        [extracted("serial_number", "QX77812345", 0), extracted("imei", raw, 1)],
        [line("S/N: QX77812345", 0), line("IMEI " + raw, 1)],
        None,
    )
    assert [c for c, _ in out.fields[1].reasons] == ["check_digit"]


def test_check_digit_pass_with_several_unsure_characters_is_not_trusted(verify):
    # Three digits misread at 0.66-0.77 and the result still passes GS1 mod 10 (1 in 10).
    raw = "6801366720700"
    confs = [0.99] * len(raw)
    confs[0], confs[7], confs[10] = 0.71, 0.66, 0.77
    schema = {"fields": [{"name": "serial_number"}, {"name": "gtin"}]}
    out = verify([extracted("gtin", raw, 0)], [line(raw, 0, confs=confs)], schema)
    g = out.fields[0]
    assert not g.valid and [c for c, _ in g.reasons] == ["uncertain"]
    # one unsure character is fine: a check digit catches any single misread digit
    confs[7] = confs[10] = 0.99
    out = verify([extracted("gtin", raw, 0)], [line(raw, 0, confs=confs)], schema)
    assert out.fields[0].valid


def _with_alt(text: str, pos: int, top: float, alt: str, p: float) -> TextLine:
    """A line read at 0.98 everywhere except ``text[pos]`` (``top``), whose runner-up is ``alt``
    at ``p``."""
    confs = [0.98] * len(text)
    confs[pos] = top
    alts = [[(c, q)] for c, q in zip(text, confs, strict=True)]
    alts[pos] = [(text[pos], top), (alt, p)]
    return line(text, confs=confs, alts=alts)


def test_a_lookalike_that_makes_another_valid_value_lowers_the_confidence(verify):
    """ "BI-0976W" with "O" at 4.4 % for its zero: "BI-O976W" is as valid a model, so the sure-
    looking read (min char 0.93) loses confidence by the look-alike doubt; without that
    runner-up it keeps its recognition x extraction."""
    schema = {"fields": [{"name": "model"}]}
    doubtful = _with_alt("BI-0976W", 3, 0.928, "O", 0.044)
    out = verify([extracted("model", "BI-0976W", 0)], [doubtful], schema)
    f = out.fields[0]
    assert f.valid and f.value == "BI-0976W"
    assert f.confidence_parts["lookalike"] == pytest.approx(0.044)
    # x (1 - 8 x (0.044 - 0.01)) = x 0.728
    assert f.confidence_parts["raw"] == pytest.approx(0.928 * 0.98 * 0.728, abs=1e-3)
    plain = _with_alt("BI-0976W", 3, 0.928, "6", 0.044)  # no look-alike of "0" as runner-up
    g = verify([extracted("model", "BI-0976W", 0)], [plain], schema).fields[0]
    assert g.confidence_parts["lookalike"] == 0.0
    assert g.confidence_parts["raw"] == pytest.approx(0.928 * 0.98, abs=1e-4)
    assert f.confidence < g.confidence


def test_a_lookalike_that_breaks_the_rules_is_no_doubt(verify):
    """A GTIN's "0" with "O" as runner-up: "O" cannot stand in a GTIN (digits, GS1 check
    digit), so there is no second valid reading and the confidence stays."""
    schema = {"fields": [{"name": "gtin"}]}
    ln = _with_alt("4006381333931", 1, 0.93, "O", 0.06)
    f = verify([extracted("gtin", "4006381333931", 0)], [ln], schema).fields[0]
    assert f.valid
    assert f.confidence_parts["lookalike"] == 0.0
    assert f.confidence_parts["raw"] == pytest.approx(0.93 * 0.98, abs=1e-4)


def test_an_alternative_the_normalisation_makes_the_same_counts_for_the_value(verify):
    """Serials are upper-cased: "X" at 0.70 with "x" at 0.25 is 0.95 sure as a value; with "K"
    at 0.25 (another value) it stays 0.70."""
    case = _with_alt("QX77812345", 1, 0.70, "x", 0.25)
    f = verify([extracted("serial_number", "QX77812345", 0)], [case], None).fields[0]
    assert f.confidence_parts["recognition"] == pytest.approx(0.95, abs=1e-3)
    other = _with_alt("QX77812345", 1, 0.70, "K", 0.25)
    g = verify([extracted("serial_number", "QX77812345", 0)], [other], None).fields[0]
    assert g.confidence_parts["recognition"] == pytest.approx(0.70, abs=1e-3)


def test_a_lookalike_inside_a_run_of_its_own_kind_is_no_doubt(verify):
    """The "0" of "BI-4076W" sits between two digits: "O" there is not a reading the context
    allows, so its runner-up "O" at 4.4 % does not lower the confidence; at the edge of the
    digit group ("BI-0976W", after the dash) it does."""
    schema = {"fields": [{"name": "model"}]}
    inner = _with_alt("BI-4076W", 4, 0.928, "O", 0.044)
    f = verify([extracted("model", "BI-4076W", 0)], [inner], schema).fields[0]
    assert f.confidence_parts["lookalike"] == 0.0
    edge = _with_alt("BI-4070W", 6, 0.928, "O", 0.044)  # the last digit, before "W"
    g = verify([extracted("model", "BI-4070W", 0)], [edge], schema).fields[0]
    assert g.confidence_parts["lookalike"] == pytest.approx(0.044)


def test_a_separator_the_field_drops_costs_no_confidence(verify):
    """ "7470 0170 7178": the recogniser is 0.72 sure of the space between digit groups (the
    rest is CTC's blank: no character). The serial drops spaces, so space or nothing is the
    same value and the value stays as sure as its digits; a digit as the space's runner-up
    would put a character into the value and does count. A model keeps its spaces
    ("XCP 155 S"), so there the space's doubt stays."""
    text = "7470 0170 7178"
    spaced = _with_alt(text, 4, 0.72, "-", 0.01)
    f = verify([extracted("serial_number", text, 0)], [spaced], None).fields[0]
    assert f.value == "747001707178"
    assert f.confidence_parts["recognition"] == pytest.approx(0.98, abs=1e-3)
    digit = _with_alt(text, 4, 0.72, "1", 0.2)
    g = verify([extracted("serial_number", text, 0)], [digit], None).fields[0]
    assert g.confidence_parts["recognition"] == pytest.approx(0.8, abs=1e-3)
    model = _with_alt("XCP 155 S", 3, 0.72, "-", 0.01)
    schema = {"fields": [{"name": "model"}]}
    h = verify([extracted("model", "XCP 155 S", 0)], [model], schema).fields[0]
    assert h.confidence_parts["recognition"] == pytest.approx(0.72, abs=1e-3)


def test_a_letter_lookalike_in_an_all_digit_value_is_no_doubt(verify):
    """ "7470 0170 7178" with "O" at 2.3 % for the "0" that ends its first group: every other
    character of the value is a digit, so "7470 O170" is no reading the context allows (no
    doubt); in a mixed value the same runner-up next to a letter still counts."""
    text = "7470 0170 7178"
    f = verify(
        [extracted("serial_number", text, 0)], [_with_alt(text, 3, 0.93, "O", 0.05)], None
    ).fields[0]
    assert f.confidence_parts["lookalike"] == 0.0
    mixed = "UPU 0452 7170"
    g = verify(
        [extracted("serial_number", mixed, 0)], [_with_alt(mixed, 4, 0.93, "O", 0.05)], None
    ).fields[0]
    assert g.confidence_parts["lookalike"] == pytest.approx(0.05)
