"""GS1 element strings: raw with GS separators, symbology prefixes, human-readable form."""

from __future__ import annotations

from datetime import date

import pytest

from workers.fieldspec.gs1 import GS, looks_like_gs1, parse_gs1, parse_gs1_date

HRI = "(01)09506000134352(17)261231(10)ABC123(21)XYZ"
RAW = "01095060001343521726123110ABC123" + GS + "21XYZ"


def _pairs(result):
    return [(e.ai, e.value) for e in result.elements]


EXPECTED = [("01", "09506000134352"), ("17", "261231"), ("10", "ABC123"), ("21", "XYZ")]


@pytest.mark.parametrize(
    "text",
    [
        HRI,
        RAW,
        GS + RAW,  # leading FNC1 as transmitted by some scanners
        "]d2" + RAW,
        "]C1" + RAW,
        "]Q3" + RAW,
        RAW.replace(GS, "<GS>"),
        RAW.encode("ascii"),
        "]d2" + HRI,
    ],
)
def test_same_elements_from_every_form(text):
    r = parse_gs1(text)
    assert r.ok, r.errors
    assert _pairs(r) == EXPECTED
    assert r.fields() == {
        "gtin": "09506000134352",
        "expiry_date": "2026-12-31",
        "lot": "ABC123",
        "serial_number": "XYZ",
    }


def test_symbology_identifier_is_reported():
    assert parse_gs1("]d2" + RAW).symbology_identifier == "]d2"
    assert parse_gs1(RAW).symbology_identifier is None


def test_field_mapping_and_names():
    r = parse_gs1("(01)09506000134352(11)240315(10)L-77(21)SN0042(240)PN-1234")
    assert r.ok
    assert r.fields() == {
        "gtin": "09506000134352",
        "mfg_date": "2024-03-15",
        "lot": "L-77",
        "serial_number": "SN0042",
        "part_number": "PN-1234",
    }
    assert [e.name for e in r.elements][:3] == ["GTIN", "PROD DATE", "BATCH/LOT"]
    assert r.elements[1].to_dict()["field"] == "mfg_date"


def test_spaces_are_not_in_gs1_charset():
    # Space is not in GS1 character set 82: AI 21 with a space is flagged, not accepted.
    r = parse_gs1("(21)SN 0042")
    assert not r.ok
    assert "outside the GS1 set" in r.elements[0].reason


def test_day_00_means_last_day_of_month():
    r = parse_gs1("(11)240200(17)250600")
    assert [e.normalised for e in r.elements] == ["2024-02-29", "2025-06-30"]
    assert parse_gs1_date("230200") == date(2023, 2, 28)
    assert parse_gs1_date("241300") is None
    assert parse_gs1_date("240231") is None


def test_century_window_with_today():
    assert parse_gs1_date("991231", today=date(2025, 1, 1)) == date(1999, 12, 31)
    assert parse_gs1_date("700101", today=date(2025, 1, 1)) == date(2070, 1, 1)
    assert parse_gs1_date("760101", today=date(2025, 1, 1)) == date(1976, 1, 1)


def test_gtin_and_sscc_check_digits():
    bad = parse_gs1("(01)09506000134353")
    assert not bad.ok and bad.elements[0].reason == "AI (01) check digit is wrong"
    assert parse_gs1("00106141411234567897").ok
    assert not parse_gs1("00106141411234567890").ok


def test_fixed_length_fields_need_no_separator_and_variable_ones_end_at_gs():
    raw = "01095060001343521124031521ABC" + GS + "10LOT1" + GS + "3103001250" + "37" + "12"
    r = parse_gs1(raw)
    assert r.ok, r.errors
    assert _pairs(r) == [
        ("01", "09506000134352"),
        ("11", "240315"),
        ("21", "ABC"),
        ("10", "LOT1"),
        ("3103", "001250"),
        ("37", "12"),
    ]
    assert r.get("3103").normalised == "1.250"


@pytest.mark.parametrize(
    ("text", "ai", "normalised"),
    [
        ("(00)106141411234567897", "00", "106141411234567897"),
        ("(02)09506000134352", "02", "09506000134352"),
        ("(13)240101", "13", "2024-01-01"),
        ("(15)240101", "15", "2024-01-01"),
        ("(30)123", "30", "123"),
        ("(37)48", "37", "48"),
        ("(241)CUST-9", "241", "CUST-9"),
        ("(7003)2612312359", "7003", "2026-12-31T23:59"),
        ("(8004)0950600013APX-99", "8004", "0950600013APX-99"),
    ],
)
def test_supported_ais(text, ai, normalised):
    r = parse_gs1(text)
    assert r.ok, (r.errors, r.elements)
    assert r.elements[0].ai == ai and r.elements[0].normalised == normalised


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("hello world", "no valid Application Identifier"),
        ("]E0" + RAW, "does not announce GS1"),
        ("0109506000", "truncated"),
        ("10" + "A" * 25, "missing separator"),
        ("ABC(01)09506000134352", "must start with an AI"),
        ("01095060001343" + GS + "21X", "shorter than its fixed length"),
    ],
)
def test_malformed_input_returns_errors_not_exceptions(text, message):
    r = parse_gs1(text)
    assert not r.ok
    assert any(message in e for e in r.errors), r.errors


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("(11)241332", "not a valid YYMMDD date"),
        ("(01)123", "needs 14 characters"),
        ("(21)" + "X" * 21, "at most 20"),
        ("(37)12a", "must be numeric"),
        ("(7003)2612312460", "date and time"),
        ("(5555)x", "not supported"),
    ],
)
def test_invalid_elements_carry_a_reason(text, reason):
    r = parse_gs1(text)
    assert not r.ok
    assert reason in (r.elements[0].reason or "")
    assert r.fields() == {}


def test_garbage_types_do_not_raise():
    assert not parse_gs1(None).ok  # type: ignore[arg-type]
    assert not parse_gs1(b"\xff\xfe").ok


def test_looks_like_gs1():
    assert looks_like_gs1("]d2" + RAW)
    assert looks_like_gs1(HRI)
    assert looks_like_gs1(GS + RAW)
    assert not looks_like_gs1("SN-12345")
    assert not looks_like_gs1("(ab)12")
    assert not looks_like_gs1("")


def test_to_dict_is_json_safe():
    import json

    d = parse_gs1(HRI).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["ok"] is True and d["elements"][3]["field"] == "serial_number"
