"""Field schema model, format grammar, normalisation, dates and field validation."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest

from workers.fieldspec.catalogue import DEFAULT_FIELD_SPECS, default_schema
from workers.fieldspec.grammar import (
    DateRule,
    FieldSpec,
    FormatError,
    ProductSchema,
    SchemaError,
    compile_format,
    format_to_regex,
    normalise,
    parse_date,
    schema_errors,
    validate_field,
)

TODAY = date(2025, 6, 15)

GOOD_SCHEMA = {
    "auto_accept": 0.85,
    "fields": [
        {
            "name": "serial_number",
            "label": "Serial number",
            "required": True,
            "pattern": "^[A-Z0-9-]{6,20}$",
            "format": "AA999-99999",
            "normalise": ["upper", "strip_spaces"],
            "keywords": ["S/N", "Serial No"],
        },
        {
            "name": "imei",
            "format": "9{15}",
            "check_digit": "luhn",
            "normalise": ["strip_separators"],
        },
        {
            "name": "mfg_date",
            "date": {"not_future": True, "max_age_days": 3650, "formats": ["YYYY-MM-DD", "YYWww"]},
        },
    ],
}


# ---------------------------------------------------------------- format grammar


@pytest.mark.parametrize(
    ("fmt", "regex"),
    [
        ("AA999-99999", r"^[A-Z]{2}[0-9]{3}\-[0-9]{5}$"),
        ("SN9{6,10}", r"^SN[0-9]{6,10}$"),
        ("X{8}", r"^[A-Z0-9]{8}$"),
        ("HH:HH", r"^[0-9A-F]{2}:[0-9A-F]{2}$"),
        (r"\A\9A", r"^A9[A-Z]$"),
        ("A{0,2}9", r"^[A-Z]{0,2}[0-9]$"),
        ("9.9", r"^[0-9]\.[0-9]$"),
    ],
)
def test_format_to_regex(fmt, regex):
    assert format_to_regex(fmt) == regex


@pytest.mark.parametrize(
    ("fmt", "ok", "bad"),
    [
        (
            "AA999-99999",
            ["AB123-45678"],
            ["AB12-345678", "ab123-45678", "A1123-45678", "AB123-4567"],
        ),
        ("SN9{6,10}", ["SN123456", "SN1234567890"], ["SN12345", "SN12345678901", "sn123456"]),
        ("X{3}-A", ["A1B-Z"], ["A1B-1", "A1-Z"]),
    ],
)
def test_format_matching(fmt, ok, bad):
    rx = re.compile(format_to_regex(fmt))
    assert all(rx.fullmatch(v) for v in ok)
    assert not any(rx.fullmatch(v) for v in bad)


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("", "non-empty"),
        ("{3}", "nothing to repeat"),
        ("A{3", "malformed repetition"),
        ("A{3}{2}", "follows another repetition"),
        ("A{5,2}", "bad repetition"),
        ("A{0}", "bad repetition"),
        ("A{65}", "bad repetition"),
        ("A}", "unmatched"),
        ("AB\\", "lone backslash"),
        ("A{0,0}", "bad repetition"),
    ],
)
def test_bad_formats(fmt, message):
    with pytest.raises(FormatError, match=message):
        compile_format(fmt)


def test_compiled_tokens():
    toks = compile_format("A9{2,4}-")
    assert [(t.symbol, t.literal, t.min, t.max) for t in toks] == [
        ("A", False, 1, 1),
        ("9", False, 2, 4),
        ("-", True, 1, 1),
    ]
    assert "Z" in toks[0].chars and "5" in toks[1].chars


# ---------------------------------------------------------------- schema


def test_good_schema_roundtrip():
    assert schema_errors(GOOD_SCHEMA) == []
    schema = ProductSchema.from_dict(GOOD_SCHEMA)
    assert schema.auto_accept == 0.85
    assert schema.names == ("serial_number", "imei", "mfg_date")
    sn = schema.field("serial_number")
    assert sn.required and sn.format == "AA999-99999" and sn.keywords == ("S/N", "Serial No")
    assert schema.field("mfg_date").date == DateRule(True, 3650, ("YYYY-MM-DD", "YYWww"))
    assert schema.field("nope") is None
    d = schema.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert ProductSchema.from_dict(d) == schema


def test_schema_defaults():
    schema = ProductSchema.from_dict({"fields": [{"name": "lot"}]})
    assert schema.auto_accept == 0.9
    lot = schema.fields[0]
    assert lot == FieldSpec("lot", label="Lot") and lot.display_label == "Lot"


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ([], "schema: must be an object"),
        ({"fields": [], "extra": 1}, "unknown keys ['extra']"),
        ({"auto_accept": 1.5, "fields": []}, "auto_accept"),
        ({"auto_accept": True, "fields": []}, "auto_accept"),
        ({"fields": {}}, "fields: must be a list"),
        ({"fields": ["x"]}, "fields[0]: must be an object"),
        ({"fields": [{"label": "x"}]}, "fields[0].name"),
        ({"fields": [{"name": "Serial"}]}, "fields[0].name"),
        ({"fields": [{"name": "a"}, {"name": "a"}]}, "duplicate field name 'a'"),
        ({"fields": [{"name": "a", "colour": "red"}]}, "unknown keys ['colour']"),
        ({"fields": [{"name": "a", "pattern": "([A-Z"}]}, "fields[0].pattern: invalid regular"),
        ({"fields": [{"name": "a", "format": "A{9,1}"}]}, "fields[0].format: bad repetition"),
        ({"fields": [{"name": "a", "format": 5}]}, "fields[0].format"),
        ({"fields": [{"name": "a", "check_digit": "crc32"}]}, "check_digit: unknown 'crc32'"),
        ({"fields": [{"name": "a", "required": "yes"}]}, "required: must be true or false"),
        ({"fields": [{"name": "a", "normalise": ["upper", "rot13"]}]}, "normalise: unknown"),
        ({"fields": [{"name": "a", "normalise": "upper"}]}, "normalise: must be a list"),
        ({"fields": [{"name": "a", "keywords": [1]}]}, "keywords: must be a list"),
        ({"fields": [{"name": "a", "date": {"max_age_days": -1}}]}, "max_age_days"),
        ({"fields": [{"name": "a", "date": {"when": 1}}]}, "date: unknown keys"),
        ({"fields": [{"name": "a", "date": {"formats": ["MON"]}}]}, "has no year"),
        ({"fields": [{"name": "a", "date": {"formats": ["YYYY"]}}]}, "has no month"),
        ({"fields": [{"name": "a", "date": {"require_year": "no"}}]}, "require_year: must be"),
        ({"fields": [{"name": "a", "date": "yes"}]}, "date: must be an object"),
    ],
)
def test_schema_errors(schema, fragment):
    errors = schema_errors(schema)
    assert any(fragment in e for e in errors), errors


def test_from_dict_raises_with_all_errors():
    with pytest.raises(SchemaError) as info:
        ProductSchema.from_dict({"fields": [{"name": "a", "pattern": "(", "check_digit": "x"}]})
    assert len(info.value.errors) == 2


def test_default_specs_are_valid_schema():
    schema = default_schema()
    assert schema_errors(schema.to_dict()) == []
    assert set(DEFAULT_FIELD_SPECS) == {
        "serial_number",
        "part_number",
        "lot",
        "mfg_date",
        "model",
        "mac",
        "imei",
        "gtin",
        "manufacturer",
    }
    assert default_schema(["imei"]).names == ("imei",)


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("value", "ops", "expected"),
    [
        ("  ab 12-3 ", ["upper"], "AB 12-3"),
        ("ab 12-3", ["upper", "strip_spaces"], "AB12-3"),
        ("ab 12–3", ["strip_dashes"], "ab 123"),  # en dash
        ("49-015420/323751.8", ["strip_separators"], "490154203237518"),
        ("ＳＮ１２３", [], "SN123"),  # full-width to ASCII (NFKC)
        ("ACME   Corp\tLtd", ["collapse_spaces"], "ACME Corp Ltd"),
        ("00-1a-2b-3c-4d-5e", ["mac"], "00:1A:2B:3C:4D:5E"),
        ("001a.2b3c.4d5e", ["mac"], "00:1A:2B:3C:4D:5E"),
        ("001A2B3C4D", ["mac"], "001A2B3C4D"),  # not 12 hex digits: left for validation
        ("AbC", ["lower"], "abc"),
    ],
)
def test_normalise(value, ops, expected):
    assert normalise(value, FieldSpec("f", normalise=tuple(ops))) == expected


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-15", date(2024, 3, 15)),
        ("2024.03.15", date(2024, 3, 15)),
        ("2024/3/5", date(2024, 3, 5)),
        ("15/03/2024", date(2024, 3, 15)),
        ("15.03.2024", date(2024, 3, 15)),
        ("03/2024", date(2024, 3, 1)),
        ("2024-03", date(2024, 3, 1)),
        ("24W11", date(2024, 3, 11)),  # ISO week 11 of 2024 starts Monday 11 March
        ("2024-W01", date(2024, 1, 1)),
        ("2024년 03월 15일", date(2024, 3, 15)),
        ("2024년3월15일", date(2024, 3, 15)),
        ("2024년 03월", date(2024, 3, 1)),
        ("20240315", date(2024, 3, 15)),
        ("15 MAR 2024", date(2024, 3, 15)),
        ("Mar 2024", date(2024, 3, 1)),
        ("15-Sept-2024", date(2024, 9, 15)),
    ],
)
def test_parse_date_defaults(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    "text", ["", "hello", "2024-13-01", "31/02/2024", "2024-02-30", "24W54", "13/2024", "240315"]
)
def test_parse_date_rejects(text):
    assert parse_date(text) is None


def test_parse_date_explicit_formats():
    assert parse_date("240315", ["YYMMDD"]) == date(2024, 3, 15)
    assert parse_date("240200", ["YYMMDD"]) == date(2024, 2, 29)  # GS1: 00 = end of month
    assert parse_date("03/15/2024", ["MM/DD/YYYY"]) == date(2024, 3, 15)
    assert parse_date("03/15/2024") is None  # day-first by default
    assert parse_date("2024-03-15", ["DD/MM/YYYY"]) is None
    assert parse_date("991231", ["YYMMDD"], today=date(2025, 1, 1)) == date(1999, 12, 31)


# ---------------------------------------------------------------- validate_field


def test_validate_ok_and_normalised():
    spec = ProductSchema.from_dict(GOOD_SCHEMA).field("serial_number")
    check = validate_field(" ab123 -45678", spec, today=TODAY)
    assert check.valid and check.value == "AB123-45678" and check.reasons == ()


def test_validate_reports_every_failing_rule():
    spec = FieldSpec("sn", pattern="[0-9]+", format="AA9", check_digit="luhn")
    check = validate_field("zz", spec, today=TODAY)
    assert not check.valid
    assert check.codes == ("pattern", "format", "check_digit")
    assert all(r.message for r in check.reasons)
    d = check.to_dict()
    assert json.loads(json.dumps(d)) == d and d["reasons"][0]["code"] == "pattern"


def test_required_and_optional_empty():
    assert validate_field("  ", FieldSpec("a", required=True), today=TODAY).codes == ("required",)
    assert validate_field(None, FieldSpec("a", format="999"), today=TODAY).valid


def test_pattern_is_full_match_even_without_anchors():
    spec = FieldSpec("a", pattern="[A-Z]{3}")
    assert validate_field("ABC", spec, today=TODAY).valid
    assert not validate_field("ABCD", spec, today=TODAY).valid


def test_imei_default():
    spec = DEFAULT_FIELD_SPECS["imei"]
    assert validate_field("49-015420-323751-8", spec, today=TODAY).value == "490154203237518"
    assert validate_field("490154203237518", spec, today=TODAY).valid
    assert validate_field("490154203237517", spec, today=TODAY).codes == ("check_digit",)
    assert "format" in validate_field("49015420323751", spec, today=TODAY).codes


def test_check_digit_ignores_separators_kept_by_format():
    spec = FieldSpec("imei", format="99-999999-999999-9", check_digit="luhn")
    assert validate_field("49-015420-323751-8", spec, today=TODAY).valid
    assert not validate_field("49-015420-323751-7", spec, today=TODAY).valid


def test_gtin_mac_defaults():
    gtin = DEFAULT_FIELD_SPECS["gtin"]
    assert validate_field("4006381333931", gtin, today=TODAY).valid
    assert validate_field("4006381333932", gtin, today=TODAY).codes == ("check_digit",)
    assert validate_field("400638133393", gtin, today=TODAY).codes == ("check_digit",)
    mac = DEFAULT_FIELD_SPECS["mac"]
    assert validate_field("00 1a 2b 3c 4d 5e", mac, today=TODAY).value == "00:1A:2B:3C:4D:5E"
    assert validate_field("00:1A:2B:3C:4D:5G", mac, today=TODAY).codes == ("format",)


@pytest.mark.parametrize(
    ("value", "codes", "iso"),
    [
        ("2024-03-15", (), "2024-03-15"),
        ("25W24", (), "2025-06-09"),
        ("2025-06-16", ("date_future",), "2025-06-16"),
        ("2010-01-01", ("date_too_old",), "2010-01-01"),
        ("15/03/2024", ("date_unparsed",), None),  # not in this field's formats
        ("someday", ("date_unparsed",), None),
    ],
)
def test_date_rules(value, codes, iso):
    spec = ProductSchema.from_dict(GOOD_SCHEMA).field("mfg_date")
    check = validate_field(value, spec, today=TODAY)
    assert check.codes == codes and check.iso_date == iso and check.valid == (codes == ())


def test_default_mfg_date_accepts_common_forms():
    spec = DEFAULT_FIELD_SPECS["mfg_date"]
    for value in ["2024.03.15", "2024년 03월 15일", "03/2024", "24W11", "15 mar 2024"]:
        check = validate_field(value, spec, today=TODAY)
        assert check.valid, (value, check)
