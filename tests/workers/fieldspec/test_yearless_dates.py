"""Dates printed without a year (``16 NOV`` on food packs): parsed to month + day, written as
``--MM-DD``, never given a guessed year; valid only where the field's schema allows it."""

from __future__ import annotations

from datetime import date

import pytest

from workers.fieldspec import resolve_schema, spec_for, validate_field
from workers.fieldspec.grammar import (
    DEFAULT_DATE_FORMATS,
    YEARLESS_DATE_FORMATS,
    DateRule,
    FieldSpec,
    ProductSchema,
    month_day_iso,
    parse_date,
    parse_month_day,
    schema_errors,
)

TODAY = date(2026, 11, 10)


@pytest.mark.parametrize(
    ("text", "month_day"),
    [
        ("16 NOV", (11, 16)),
        ("16NOV", (11, 16)),
        ("16-Nov", (11, 16)),
        ("16/NOV", (11, 16)),
        ("16 November", (11, 16)),
        ("16. Nov.", (11, 16)),  # German
        ("16.11.", (11, 16)),  # German numeric: the final dot says there is no year
        ("1 NOV", (11, 1)),
        ("29 FEB", (2, 29)),  # a real day (leap years): 33 of the expdate_turner packs
        ("16 DEZ", (12, 16)),  # German
        ("03 MRZ", (3, 3)),
        ("16 déc.", (12, 16)),  # French, accent kept
        ("16 dec.", (12, 16)),
        ("1 JUIL", (7, 1)),
        ("16 févr", (2, 16)),
        ("16 ENE", (1, 16)),  # Spanish
        ("16 DIC", (12, 16)),  # Spanish / Italian
        ("16 GIU", (6, 16)),  # Italian
        ("16 OTT", (10, 16)),
        ("11월 16일", (11, 16)),  # Korean
        ("11월16일", (11, 16)),
        ("11月16日", (11, 16)),  # Japanese / Chinese
    ],
)
def test_yearless_dates_parse_to_month_and_day(text, month_day):
    assert parse_month_day(text) == month_day
    assert parse_date(text) is None  # never a calendar date: no year is invented


@pytest.mark.parametrize(
    "text",
    [
        "NOV 16",  # the number may be a year (NOV 26 = November 2026): needs an explicit format
        "16/11",  # DD/MM or MM/YY
        "16.11",  # DD.MM or MM.YY
        "11-16",
        "31 NOV",  # no such day
        "30 FEB",
        "0 NOV",
        "16 XYZ",
        "16",
        "NOV",
        "",
        "16 NOV 2026",  # has a year: parse_date's
    ],
)
def test_ambiguous_impossible_or_dated_texts_are_not_yearless(text):
    assert parse_month_day(text) is None


def test_full_dates_keep_parsing_and_new_month_names_work_with_a_year():
    assert parse_date("16 NOV 2026") == date(2026, 11, 16)
    assert parse_date("16 DEZ 2026") == date(2026, 12, 16)
    assert parse_date("16 févr. 2026") == date(2026, 2, 16)
    assert parse_date("29 FEB 2025") is None  # not a leap year
    assert parse_month_day("16 NOV 2026") is None


def test_explicit_yearless_formats():
    assert parse_month_day("NOV 16", ["MON DD"]) == (11, 16)
    assert parse_month_day("11/16", ["MM/DD"]) == (11, 16)
    assert parse_month_day("16 NOV", ["MON DD"]) is None  # only the listed formats
    assert parse_date("NOV 16", ["MON DD"]) is None
    assert set(YEARLESS_DATE_FORMATS) <= set(DEFAULT_DATE_FORMATS)
    assert "MON DD" not in DEFAULT_DATE_FORMATS


def test_month_day_iso():
    assert month_day_iso(11, 16) == "--11-16"
    assert month_day_iso(2, 9) == "--02-09"


def test_catalogue_expiry_date_takes_a_yearless_date():
    spec = spec_for("expiry_date")
    assert spec.date is not None and spec.date.require_year is False
    check = validate_field("16 nov", spec, today=TODAY)
    assert check.valid and check.codes == ()
    assert check.value == "16 NOV"  # the print, normalised
    assert check.iso_date == "--11-16"  # no year
    full = validate_field("16 NOV 2026", spec, today=TODAY)
    assert full.valid and full.iso_date == "2026-11-16"
    assert validate_field("31 NOV", spec, today=TODAY).codes == ("date_unparsed",)


def test_a_field_that_needs_the_year_says_so():
    mfg = spec_for("mfg_date")  # a manufacturing date on a nameplate needs its year
    check = validate_field("16 NOV", mfg, today=TODAY)
    assert not check.valid and check.codes == ("date_no_year",)
    assert check.iso_date == "--11-16"
    assert "no year" in check.reasons[0].message
    ps = resolve_schema({"fields": [{"name": "expiry_date", "date": {"require_year": True}}]})
    strict = validate_field("16 NOV", ps.field("expiry_date"), today=TODAY)
    assert strict.codes == ("date_no_year",)
    assert "requires a full date" in strict.reasons[0].message


def test_rules_that_need_a_year_fail_a_yearless_date():
    spec = FieldSpec(name="d", date=DateRule(require_year=False, not_future=True))
    check = validate_field("16 NOV", spec, today=TODAY)
    assert check.codes == ("date_no_year",) and "not in the future" in check.reasons[0].message
    aged = FieldSpec(name="d", date=DateRule(require_year=False, max_age_days=30))
    assert validate_field("16 NOV", aged, today=TODAY).codes == ("date_no_year",)
    plain = FieldSpec(name="d", date=DateRule(require_year=False))
    assert validate_field("16 NOV", plain, today=TODAY).valid


def test_require_year_in_the_schema_json():
    d = {"fields": [{"name": "best_before", "date": {"require_year": False}}]}
    assert schema_errors(d) == []
    ps = ProductSchema.from_dict(d)
    assert ps.field("best_before").date == DateRule(require_year=False)
    assert ProductSchema.from_dict(ps.to_dict()) == ps  # round trip
    assert "require_year" not in DateRule().to_dict()  # the default stays implicit
    assert validate_field("16.11.", ps.field("best_before"), today=TODAY).iso_date == "--11-16"
    assert schema_errors({"fields": [{"name": "a", "date": {"formats": ["DD MON"]}}]}) == []
    assert schema_errors({"fields": [{"name": "a", "date": {"formats": ["MON"]}}]})
