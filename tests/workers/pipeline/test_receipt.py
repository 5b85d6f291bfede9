"""Receipt fields (company, date, address, total) from text lines: ``workers.pipeline.receipt``
through the default ranker, with the catalogue's receipt keywords or a schema's own."""

from __future__ import annotations

import pytest

from workers.fieldspec.catalogue import resolve_schema
from workers.pipeline.ranker import RankerFieldExtractor, schema_vocabulary
from workers.pipeline.types import TextLine

RECEIPT = {"fields": [{"name": n} for n in ("company", "date", "address", "total")]}


def rows(*cells: tuple[str, float, float]) -> list[TextLine]:
    """``(text, x, y)`` -> TextLines 30 px high, 16 px per character."""
    return [
        TextLine(
            order=i,
            text=t,
            confidence=0.97,
            char_confidences=(),
            alternatives=(),
            polygon=((x, y), (x + 16.0 * len(t), y), (x + 16.0 * len(t), y + 30), (x, y + 30)),
        )
        for i, (t, x, y) in enumerate(cells)
    ]


@pytest.fixture(scope="module")
def ranker() -> RankerFieldExtractor:
    def no_transformer():
        raise AssertionError("the receipt rules must not need the transformer")

    return RankerFieldExtractor(transformer=no_transformer)


def found(ex, ls, schema=RECEIPT) -> dict[str, str]:
    return {r.name: r.value for r in ex(ls, schema) if r.value}


def shop_receipt() -> list[TextLine]:
    # the key column first, the amounts after it (the order a scan's GT lists them in)
    return rows(
        ("TAX INVOICE", 200, 10),
        ("KEDAI MAJU JAYA SDN BHD (123456-X)", 60, 50),
        ("GST ID : 000123456789", 120, 90),
        ("NO 12, JALAN MAJU 3,", 100, 130),
        ("TAMAN MAJU,", 150, 170),
        ("43000 KAJANG,", 140, 210),
        ("SELANGOR", 170, 250),
        ("TEL : 03-8736 1234", 130, 290),
        ("PRINTED 02/01/2019", 20, 330),
        ("DATE: 14/03/2018 10:22", 20, 370),
        ("ITEM A", 20, 450),
        ("SUB-TOTAL", 20, 490),
        ("TOTAL ITEMS", 20, 530),
        ("TOTAL INCL. GST", 20, 570),
        ("ROUNDING ADJ", 20, 610),
        ("TOTAL ROUNDED", 20, 650),
        ("CASH", 20, 690),
        ("CHANGE", 20, 730),
        ("25.53", 500, 450),
        ("25.53", 500, 490),
        (":", 420, 530),
        ("25.53", 500, 570),
        ("-0.03", 500, 610),
        ("25.50", 500, 650),
        ("50.00", 500, 690),
        ("24.50", 500, 730),
    )


def test_a_receipt_as_lines_gives_the_four_fields(ranker):
    got = found(ranker, shop_receipt())
    assert got == {
        "company": "KEDAI MAJU JAYA SDN BHD",
        "address": "NO 12, JALAN MAJU 3, TAMAN MAJU, 43000 KAJANG, SELANGOR",
        "date": "14/03/2018",
        "total": "25.50",
    }


def test_rounded_total_wins_and_paid_or_change_amounts_are_never_the_total(ranker):
    ls = rows(
        ("ABC TRADING", 100, 10),
        ("TOTAL", 20, 100),
        ("16.31", 400, 100),
        ("ROUNDING ADJ", 20, 140),
        ("-0.01", 400, 140),
        ("16.30", 400, 180),
        ("CASH", 20, 220),
        ("20.00", 400, 220),
    )
    assert found(ranker, ls)["total"] == "16.30"
    ls = rows(("ABC TRADING", 100, 10), ("CASH", 20, 100), ("20.00", 400, 100))
    assert "total" not in found(ranker, ls)


def test_total_keeps_a_glued_currency_and_drops_a_spaced_one(ranker):
    assert found(ranker, rows(("NETT TOTAL: RM7.70", 20, 10)))["total"] == "RM7.70"
    assert found(ranker, rows(("GRAND TOTAL", 20, 10), ("RM 7.70", 400, 10)))["total"] == "7.70"


def test_company_on_two_lines_and_a_parenthesis_opened_above(ranker):
    ls = rows(
        ("POPULAR BOOK", 100, 10), ("CO. (M) SDN BHD", 80, 50), ("(CO. NO. 113825-W)", 90, 90)
    )
    assert found(ranker, ls)["company"] == "POPULAR BOOK CO. (M) SDN BHD"
    ls = rows(
        ("AIK HUAT HARDWARE", 60, 10),
        ("ENTERPRISE (SETIA", 60, 40),
        ("ALAM) SDN BHD", 80, 70),
        ("822737-X", 150, 100),
    )
    assert found(ranker, ls)["company"] == "AIK HUAT HARDWARE ENTERPRISE (SETIA ALAM) SDN BHD"


@pytest.mark.parametrize(
    "text,want",
    [
        ("DATE : 19 MAR 2018 18:26", "19 MAR 2018"),
        ("2018-02-22 13:01", "2018-02-22"),
        ("24-03-2018 22:02:55", "24-03-2018"),
        ("TARIKH: 05.08.17", "05.08.17"),
    ],
)
def test_dates_come_back_as_printed(ranker, text, want):
    assert found(ranker, rows(("ABC TRADING", 100, 10), (text, 20, 60)))["date"] == want


def test_implausible_dates_are_not_dates(ranker):
    got = found(ranker, rows(("ABC TRADING", 100, 10), ("REF 45/19/2018", 20, 60)))
    assert "date" not in got


def test_a_schema_total_keyword_is_used_without_retraining(ranker):
    ls = rows(("KEDAI ABC", 100, 10), ("BAYARAN", 20, 100), ("12.40", 400, 100))
    assert "total" not in found(ranker, ls)  # not a catalogue key
    own = {"fields": [{"name": "total", "keywords": ["BAYARAN"]}]}
    assert found(ranker, ls, own) == {"total": "12.40"}
    # and a schema's keywords replace the catalogue's: "TOTAL" is no key of this product
    ls2 = rows(("TOTAL", 20, 100), ("12.40", 400, 100))
    assert found(ranker, ls2, own) == {}


def test_receipt_keywords_stay_out_of_the_label_vocabulary():
    label = resolve_schema({"fields": [{"name": "serial_number"}, {"name": "lot"}]})
    mixed = resolve_schema(
        {"fields": [{"name": "serial_number"}, {"name": "lot"}, *RECEIPT["fields"]]}
    )
    assert schema_vocabulary(mixed) == schema_vocabulary(label)


def test_receipt_fields_have_boxes_lines_and_review_confidence_without_keys(ranker):
    res = {r.name: r for r in ranker(shop_receipt(), RECEIPT)}
    assert res["total"].line_index == 23 and res["total"].valid
    assert res["total"].extraction_confidence >= 0.9
    ls = rows(("SOME SHOP", 100, 10), ("12.00", 400, 60), ("12.00", 400, 100))
    unkeyed = {r.name: r for r in ranker(ls, RECEIPT)}
    assert unkeyed["total"].value == "12.00" and unkeyed["total"].extraction_confidence < 0.5
