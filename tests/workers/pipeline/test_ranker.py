"""The candidate-ranking field extractor (``OCR_FIELD_EXTRACTOR=ranker``, the default).

Fast tests run it on hand-placed lines (text + pixel quads, as the OCR stage gives them); the
slow ones run the transformer it delegates receipt fields to, and the whole pipeline on a
rendered label.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from workers.fieldspec.catalogue import resolve_schema
from workers.fieldspec.keys import OTHER, key_norm
from workers.pipeline.ranker import RankerFieldExtractor, find_keys, schema_vocabulary
from workers.pipeline.types import TextLine

SERIAL = "QX77812345"


def lines(*rows: tuple[str, float, float], h: float = 30.0) -> list[TextLine]:
    """``(text, x, y)`` -> TextLines with a quad of 18 px per character."""
    out = []
    for i, (text, x, y) in enumerate(rows):
        w = 18.0 * max(len(text), 1)
        out.append(
            TextLine(
                order=i,
                text=text,
                confidence=0.98,
                char_confidences=(),
                alternatives=(),
                polygon=((x, y), (x + w, y), (x + w, y + h), (x, y + h)),
            )
        )
    return out


def stacked(*texts: str) -> list[TextLine]:
    return lines(*[(t, 40.0, 40.0 + 50.0 * i) for i, t in enumerate(texts)])


@pytest.fixture(scope="module")
def ranker() -> RankerFieldExtractor:
    def no_transformer():  # the label tests must not need it
        raise AssertionError("the transformer was asked for on a label schema")

    return RankerFieldExtractor(transformer=no_transformer)


def fields(ex, ls, schema=None) -> dict:
    return {r.name: r for r in ex(ls, schema)}


@pytest.mark.parametrize(
    "key",
    [
        "S/N:",
        "Serial No.",
        "Ser. No.",
        "Serial#",
        "S1N",  # "/" read as "1"
        "5/N:",  # "S" read as "5"
        "SERlAL NO",  # "I" read as "l"
        "Seriel Number:",  # one letter wrong in a long key
        "Serien-Nr.:",
        "Fabr.-Nr.",
        "N° de série :",
        "No de serie",
        "Núm. serie",
        "Matricola",
        "製造番号",
        "シリアル:",
        "序列号：",
        "机身号",
        "机号:",
        "일련번호",
        "제조번호:",
    ],
)
def test_serial_keys_in_many_languages_and_damaged_forms(ranker, key):
    ls = stacked("Model: KX-200", f"{key} {SERIAL}", "Teile-Nr. 55512345")
    got = fields(ranker, ls)
    sn = got["serial_number"]
    assert sn.value == SERIAL, [(k.field, k.key) for k in find_keys(ls[1].text, _vocab())]
    assert sn.valid and sn.extraction_confidence >= 0.9
    assert got["model"].value == "KX-200"
    assert got["part_number"].value == "55512345"


def _vocab():
    return schema_vocabulary(resolve_schema(None))


@pytest.mark.parametrize(
    "text,field",
    [
        ("Art.-Nr.", OTHER),
        ("Materialnr.", "part_number"),
        ("N. parte", "part_number"),
        ("Référence pièce", "part_number"),
        ("1OT", "lot"),  # OCR-damaged LOT
        ("Tvpe", "model"),  # OCR-damaged Type (y read as v)
        ("モデル", "model"),
        ("Bauart", "model"),
        ("N° cat.", OTHER),
        ("Auftrag", OTHER),  # an order number
        ("Commande", OTHER),
        ("Réf.", "part_number"),
        ("品番", "part_number"),
        ("P/N", "part_number"),
        ("Typ", "model"),
        ("Modèle", "model"),
        ("型号", "model"),
        ("形式", "model"),
        ("Charge", "lot"),
        ("Lote", "lot"),
        ("ロット", "lot"),
        ("Mfg. Date", "mfg_date"),
        ("Herstelldatum", "mfg_date"),
        ("Fabriqué le", "mfg_date"),
        ("製造年月", "mfg_date"),
        ("生产日期", "mfg_date"),
        ("Cat. No.", OTHER),
        ("Order No.", OTHER),
        ("PO", OTHER),
        ("Tel.", OTHER),
        ("Fax", OTHER),
    ],
)
def test_key_vocabulary_maps_keys_to_their_field(text, field):
    hits = find_keys(f"{text}: 12345678", _vocab())
    assert [h.field for h in hits] == [field]
    assert hits[0].start == 0


def test_keys_need_word_boundaries():
    v = _vocab()
    assert find_keys("SNOW LOTUS MODELING", v) == []  # no key inside a longer word
    assert find_keys("AB12SN345", v) == []
    assert key_norm("Serien-Nr.:") == "SERIENNR"
    assert key_norm("N° de série") == key_norm("No de serie")


def test_a_slashed_key_glued_to_its_value(ranker):
    """``S/N0075 3688 8896``: a slashed abbreviation with no space before its value is still
    the key (the value does not start with ``S/N``); an unslashed prefix is part of a code."""
    got = fields(ranker, stacked("S/N0075 3688 8896", "P/N12345-678"))
    assert got["serial_number"].value.replace(" ", "") == "007536888896"
    assert got["serial_number"].confidence > 0.9
    assert got["part_number"].value == "12345-678"
    assert fields(ranker, stacked("S/NQX77812345"))["serial_number"].value == SERIAL
    v = _vocab()
    assert [h.field for h in find_keys("S/N0075", v)] == ["serial_number"]
    assert find_keys("SN4471-22", v) == []  # a code that starts with SN, no key


def test_a_latin_maker_name_after_a_damaged_korean_key(ranker):
    """``제조 Broven Elektro S.p.A.`` (the reader lost the 사 of 제조사): the Hangul word is no
    part of the keyless maker name; a name all in Hangul keeps its words."""
    got = fields(ranker, stacked("제조 Broven Elektro S.p.A.", "S/N QX77812345"))
    assert got["manufacturer"].value == "Broven Elektro S.p.A."
    got = fields(ranker, stacked("삼성전자 주식회사", "S/N QX77812345"))
    assert got["manufacturer"].value == "삼성전자 주식회사"


def test_spaced_digit_groups_and_long_hyphenated_serials(ranker):
    got = fields(ranker, stacked("S/N: 1234 5678 9012", "MFG 2024-01-17"))
    assert got["serial_number"].value == "123456789012"
    assert got["serial_number"].raw_value == "1234 5678 9012"
    assert got["mfg_date"].value == "2024-01-17"
    got = fields(ranker, stacked("SN:ABC-2024-000123-XY-77", "230V~ 50Hz 1.5A"))
    assert got["serial_number"].value == "ABC-2024-000123-XY-77"
    # a rating after the serial on the same line is not part of it
    got = fields(ranker, stacked("S/N 88776655 230V"))
    assert got["serial_number"].value == "88776655"


def test_distractor_keys_claim_their_values(ranker):
    ls = stacked(
        "ACME Co., Ltd.",
        "Cat. No. 1234567890",
        "Order No.: 5566778899",
        "Art.-Nr. 4711081512",
        "Tel +49 711 123456",
        "230V~ 50Hz 16A IP65",
    )
    schema = {"fields": [{"name": "serial_number", "required": True}]}
    sn = fields(ranker, ls, schema)["serial_number"]
    assert sn.value == "" and not sn.valid  # none of them is a serial: missing, to review
    ls = stacked("Cat. No. 1234567890", "S/N 77665544", "Order No.: 5566778899")
    assert fields(ranker, ls, schema)["serial_number"].value == "77665544"


def test_key_above_value_columns(ranker):
    ls = lines(
        ("S/N", 40, 40),
        ("Model", 400, 40),
        ("MFG", 700, 40),
        (SERIAL, 40, 85),
        ("AB-1200", 400, 85),
        ("2024-03", 700, 85),
    )
    got = fields(ranker, ls)
    assert got["serial_number"].value == SERIAL
    assert got["model"].value == "AB-1200"
    assert got["mfg_date"].value == "2024-03"
    assert got["serial_number"].extraction_confidence >= 0.9


def _sized(text: str, x: float, y: float, h: float) -> TextLine:
    w = 0.6 * h * max(len(text), 1)
    return TextLine(0, text, 0.98, (), (), ((x, y), (x + w, y), (x + w, y + h), (x, y + h)))


def _numbered(lines: list[TextLine]) -> list[TextLine]:
    """The lines in reading order 0, 1, ... (as the pipeline hands them over)."""
    return [replace(ln, order=n) for n, ln in enumerate(lines)]


def _box_lines(boxes: list[tuple[str, float, float, float, float]]) -> list[TextLine]:
    """Lines from explicit (text, x0, y0, x1, y1) boxes, numbered in the given order."""
    return [
        TextLine(n, t, 0.98, (), (), ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))
        for n, (t, x0, y0, x1, y1) in enumerate(boxes)
    ]


def _boxes(rows: list[tuple[str, str]], caption_gap: float, box_h: float) -> list[TextLine]:
    """Two columns of boxes: a 36 px value, its 20 px key ``caption_gap`` px under it."""
    out = []
    for i, (value, key) in enumerate(rows):
        x, y = 40 + 420 * (i % 2), 100 + box_h * (i // 2)
        out += [_sized(value, x, y, 36), _sized(key, x, y + 36 + caption_gap, 20)]
    return _numbered(out)


def test_caption_key_under_its_value(ranker):
    """A big value with its small key printed right under it (boxed labels, barcode stickers):
    the key names the value above it, not the value of the next box below it."""
    rows = [
        ("E24 64R-84 0559", "Homologation"),
        (SERIAL, "Número de serie"),
        ("ES32E", "Tipo"),
        ("X0407-1470", "P/N"),
    ]
    got = fields(ranker, _boxes(rows, caption_gap=9, box_h=140))
    assert got["serial_number"].value == SERIAL
    assert got["serial_number"].extraction_confidence >= 0.9
    assert got["model"].value == "ES32E" and got["part_number"].value == "X0407-1470"
    # evenly spaced key / value / key / value: the key is the header of the value under it
    even = stacked("Serial No.", SERIAL, "Model", "ES32E")
    got = fields(ranker, even)
    assert got["serial_number"].value == SERIAL and got["model"].value == "ES32E"


def test_a_key_in_several_languages_on_one_line_is_one_key(ranker):
    """ "Serial / Seriennummer / Numero di serie" over its value: the value stands under the
    line's start, not under its last key; an unknown word of the stack ("ricambio") or an
    OCR-damaged one ("Tvpe") is key text, not a value; "N° cat." is a catalogue number."""
    rows = [
        ("Serial / Seriennummer / Numero di serie", SERIAL),
        ("N° cat.", "4CU9451-2T37"),
        ("Codice ricambio / N. parte / P/N.", "X4T023466"),
        ("형식 / Tvpe", "YPJ-53S13"),
    ]
    ls = []
    for i, (key, value) in enumerate(rows):
        y = 80 + 90 * i
        ls += [_sized(key, 40, y, 18), _sized(value, 52, y + 26, 30)]
    got = fields(ranker, _numbered(ls))
    assert got["serial_number"].value == SERIAL
    assert got["serial_number"].extraction_confidence >= 0.9
    assert got["part_number"].value == "X4T023466"
    assert got["model"].value == "YPJ-53S13"
    vocab = _vocab()
    (one,) = find_keys("S/N / Ser.-Nr. / N° de série", vocab)
    assert one.field == "serial_number" and one.end == len("S/N / Ser.-Nr. / N° de série")
    # a key and a value in one " / " line stay what they are
    assert [h.end for h in find_keys("Hersteller / ACME", vocab)] == [len("Hersteller")]
    assert len(find_keys("Model / Type: ABC-1", vocab)) == 2


def test_value_in_the_next_table_cell(ranker):
    ls = lines(("Serial No.", 40, 40), (SERIAL, 400, 42), ("Model", 40, 90), ("ZX-9", 400, 92))
    got = fields(ranker, ls)
    assert got["serial_number"].value == SERIAL and got["model"].value == "ZX-9"


def test_no_key_gives_low_confidence(ranker):
    one = fields(ranker, stacked("ACME", SERIAL, "230V 50Hz"))["serial_number"]
    assert one.value == SERIAL and one.extraction_confidence < 0.6
    two = fields(ranker, stacked("QX77812345", "ZK55512399"))["serial_number"]
    assert two.extraction_confidence <= 0.35  # two serial-like codes, no key: ambiguous
    keyed = fields(ranker, stacked("S/N QX77812345", "ZK55512399"))["serial_number"]
    assert keyed.value == SERIAL and keyed.extraction_confidence >= 0.9


def test_two_keyed_serials_with_different_values_are_not_trusted(ranker):
    sn = fields(ranker, stacked("S/N: QX77812345", "Serial No. ZK55512399"))["serial_number"]
    assert sn.extraction_confidence < 0.9


def test_schema_keyword_is_used_without_retraining(ranker):
    """``Geräte-ID`` is in no built-in vocabulary: the schema's keyword makes it a key."""
    ls = stacked("Geräte-ID: GX4711", "Kontrolle 99887766554433")
    assert not find_keys("Geräte-ID:", _vocab())
    plain = fields(ranker, ls)["serial_number"]
    assert plain.value != "GX4711" and plain.extraction_confidence < 0.6
    schema = {"fields": [{"name": "serial_number", "required": True, "keywords": ["Geräte-ID"]}]}
    own = fields(ranker, ls, schema)["serial_number"]
    assert own.value == "GX4711" and own.valid and own.extraction_confidence >= 0.9
    # a field the catalogue does not know, found through its keyword alone
    custom = {"fields": [{"name": "device_id", "keywords": ["Geräte-ID"]}]}
    assert fields(ranker, ls, custom)["device_id"].value == "GX4711"


def test_schema_pattern_changes_the_keyless_choice(ranker):
    ls = stacked("ZK55512399777", "SN20240117")
    schema = {"fields": [{"name": "serial_number", "pattern": r"SN\d{8}"}]}
    assert fields(ranker, ls, schema)["serial_number"].value == "SN20240117"
    assert fields(ranker, ls)["serial_number"].value == "ZK55512399777"


def test_upside_down_lines_keep_their_keys(ranker):
    # the same label turned by 180 degrees: polygons start at the text's own top-left
    ls = []
    for i, text in enumerate(["S/N:", SERIAL]):
        x0, y = 1000.0 - (40 + 300 * i), 1000.0 - 40.0
        w = 18.0 * len(text)
        poly = ((x0, y), (x0 - w, y), (x0 - w, y - 30), (x0, y - 30))
        ls.append(TextLine(i, text, 0.98, (), (), poly))
    assert fields(ranker, ls)["serial_number"].value == SERIAL


def test_ranker_is_the_default_and_the_others_stay_selectable():
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.errors import ConfigError
    from workers.pipeline.extractor import TransformerFieldExtractor
    from workers.pipeline.fields import RuleFieldExtractor
    from workers.pipeline.pipeline import build_field_extractor

    assert PipelineConfig.from_env({}).field_extractor == "ranker"
    assert isinstance(build_field_extractor(PipelineConfig()), RankerFieldExtractor)
    cfg = PipelineConfig.from_env({"OCR_FIELD_EXTRACTOR": "transformer"})
    assert isinstance(build_field_extractor(cfg), TransformerFieldExtractor)
    cfg = PipelineConfig.from_env({"OCR_FIELD_EXTRACTOR": "rules"})
    assert isinstance(build_field_extractor(cfg), RuleFieldExtractor)
    with pytest.raises(ConfigError):
        PipelineConfig(field_extractor="magic")


@pytest.mark.slow
def test_receipt_fields_come_from_the_transformer_when_asked():
    from workers.pipeline.extractor import TransformerFieldExtractor

    tfx = TransformerFieldExtractor()
    ex = RankerFieldExtractor(transformer=lambda: tfx, receipt="transformer")
    ls = stacked(
        "SYARIKAT ABC SDN BHD",
        "NO 12, JALAN MAJU, 43000 KAJANG",
        "DATE: 12/03/2018",
        "TOTAL 25.50",
    )
    schema = {"fields": [{"name": n} for n in ("company", "date", "address", "total")]}
    want = {r.name: r.value for r in tfx(ls, schema)}
    assert want and {r.name: r.value for r in ex(ls, schema)} == want


@pytest.mark.slow
def test_pipeline_reads_the_keyed_serial_among_distractors(pipeline):
    """End to end on a rendered label: PP-OCR lines -> ranker -> verifier."""
    from PIL import Image, ImageDraw

    from workers.training.synth.simple_labels import load_font, to_bytes

    img = Image.new("RGB", (1000, 560), (75, 80, 90))
    d = ImageDraw.Draw(img)
    d.rectangle([40, 40, 960, 520], fill=(230, 228, 220))
    font = load_font(42)
    rows = ["CAT. NO. 99887766", "MODEL: XR-500", f"S/N: {SERIAL}", "P/N: 555-0001"]
    for i, t in enumerate(rows):
        d.text((90, 80 + i * 105), t, fill=(20, 20, 25), font=font)
    r = pipeline.run(to_bytes(img, "JPEG"))
    assert isinstance(pipeline.field_extractor, RankerFieldExtractor)
    got = {f.name: f for f in r.fields}
    texts = [ln.text for ln in r.lines]
    assert got["serial_number"].value == SERIAL, texts
    assert got["serial_number"].valid and got["serial_number"].confidence >= 0.85, texts
    assert got["model"].value == "XR-500", texts
    assert got["part_number"].value == "555-0001", texts
    assert r.models and any(m.name == "ranker-field-extractor" for m in r.models)


def test_letter_group_then_digit_groups_is_one_serial(ranker):
    got = fields(ranker, stacked("Sr. No. AB 1234 5678", "MAC ADDR 6B:4F:F6:9B:FC:70"))
    assert got["serial_number"].value == "AB12345678"
    assert got["mac"].value == "6B:4F:F6:9B:FC:70"


@pytest.mark.slow
def test_unkeyed_model_from_the_transformer_goes_to_review():
    """OCR_RANKER_TRANSFORMER: a field no key names may come from the transformer's word
    probabilities, never with a confidence that could be auto-accepted; keys still win."""
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.extractor import TransformerFieldExtractor

    assert PipelineConfig().ranker_transformer
    assert not PipelineConfig.from_env({"OCR_RANKER_TRANSFORMER": "0"}).ranker_transformer
    tfx = TransformerFieldExtractor()
    ex = RankerFieldExtractor(transformer=lambda: tfx, use_transformer=True)
    ls = stacked("HANSOL ELECTRIC", "S/N: QX77812345", "AC SERVO DRIVE", "XR-5000A")
    # optional in the default schema: no guess (UNKEYED_MIN)
    got = fields(ex, ls)
    assert got["serial_number"].value == SERIAL
    assert got["serial_number"].extraction_confidence >= 0.9
    assert not {"model", "part_number", "lot"} & set(got)
    # required: the transformer's pick, to review
    schema = {"fields": [{"name": "serial_number"}, {"name": "model", "required": True}]}
    got = fields(ex, ls, schema)
    assert got["serial_number"].value == SERIAL
    assert got["model"].value == "XR-5000A" and got["model"].extraction_confidence <= 0.5
    plain = fields(RankerFieldExtractor(transformer=lambda: tfx), ls, schema)
    assert not plain["model"].value and plain["serial_number"].value == SERIAL


def test_value_cut_in_two_ocr_lines(ranker):
    """The detector cut "OCT 2025" into two lines of one row."""
    ls = lines(("MFG DATE:", 40, 40), ("OCT", 230, 40), ("2025", 300, 40), ("S/N Q7781234", 40, 90))
    got = fields(ranker, ls)
    assert got["mfg_date"].value == "OCT 2025"
    assert got["serial_number"].value == "Q7781234"


def test_an_unkeyed_mac_of_bare_digits_is_not_sure():
    """Without a key, "6B:4F:F6:9B:FC:70" or "6b4ff69bfc70" is a MAC by its look (0.9), but
    twelve bare digits pass the MAC rule as any 12-digit number would: keyless confidence."""
    ex = RankerFieldExtractor(transformer=lambda: None)
    schema = {"fields": [{"name": "mac"}]}
    hexed = fields(ex, stacked("ACME", "6b4ff69bfc70"), schema)["mac"]
    sep = fields(ex, stacked("ACME", "51:71:92:11:60:11"), schema)["mac"]
    assert hexed.extraction_confidence == pytest.approx(0.9)
    assert sep.extraction_confidence == pytest.approx(0.9)
    # a guess for an optional field is not returned; a required one keeps it, to review
    assert "mac" not in fields(ex, stacked("ACME", "517192116011"), schema)
    required = {"fields": [{"name": "mac", "required": True}]}
    bare = fields(ex, stacked("ACME", "517192116011"), required)["mac"]
    assert bare.value and bare.extraction_confidence <= 0.55


# ---------------------------------------------------------------- dates without a year
FOOD = {"fields": [{"name": "mfg_date"}, {"name": "expiry_date", "required": True}]}


def _food_pack(key: str, value: str) -> list[TextLine]:
    """An expdate_turner-like pack: the key above the date, the lot/time line under it."""
    return lines(
        (key, 300, 300), (value, 290, 345), ("11:18", 330, 390), ("Keep refrigerated", 250, 435)
    )


def test_yearless_expiry_date_under_its_key_is_expiry_not_mfg(ranker):
    got = fields(ranker, _food_pack("Use by", "16 NOV"), FOOD)
    exp = got["expiry_date"]
    assert exp.value == "16 NOV" and exp.valid and exp.extraction_confidence >= 0.9
    assert "mfg_date" not in got  # the date is not also (or instead) the manufacturing date


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("EXP", "16 NOV", "16 NOV"),
        ("BBE", "16 nov", "16 NOV"),
        ("Best before end", "16. Nov.", "16. NOV"),  # a final dot after a name is dropped
        ("MHD", "16.11.", "16.11."),  # ... but kept where it makes the date (16.11 is not one)
        ("DLC", "16 NOV", "16 NOV"),
        ("Scadenza", "16 DIC", "16 DIC"),
        ("賞味期限", "11月16日", "11月16日"),
        ("유통기한", "11월 16일", "11월 16일"),
    ],
)
def test_expiry_keys_and_yearless_forms(ranker, key, value, expected):
    ls = stacked("Deli salad 200 g", f"{key} {value}", "L 2318")
    exp = fields(ranker, ls, FOOD)["expiry_date"]
    assert exp.value == expected and exp.valid and exp.extraction_confidence >= 0.9


def test_mac_groups_are_not_expiry_keys(ranker):
    got = fields(ranker, stacked("MAC Address", "1B:94:4F:BB:8B:BE", "EXP 2027.09.20"), None)
    assert got["mac"].value == "1B:94:4F:BB:8B:BE" and got["mac"].valid


def test_a_bare_yearless_date_is_not_a_manufacturing_date(ranker):
    """Both dates may be taken without a key, but only a date with its year is valid for
    mfg_date; the pack's lone date is the expiry date, at a keyless confidence (review)."""
    got = fields(ranker, stacked("Deli salad", "16 NOV"), FOOD)
    assert "mfg_date" not in got
    exp = got["expiry_date"]
    assert exp.value == "16 NOV" and exp.valid and exp.extraction_confidence <= 0.55
    dated = fields(ranker, stacked("Deli salad", "16 NOV 2026"), {"fields": [{"name": "mfg_date"}]})
    assert dated["mfg_date"].value == "16 NOV 2026"


def _box_line(text: str, x0: float, y0: float, x1: float, y1: float, order: int) -> TextLine:
    return TextLine(
        order=order,
        text=text,
        confidence=0.98,
        char_confidences=(),
        alternatives=(),
        polygon=((x0, y0), (x1, y0), (x1, y1), (x0, y1)),
    )


@pytest.mark.parametrize(("value_x0", "keyed"), [(349.0, True), (420.0, False)])
def test_caption_key_in_the_corner_of_a_box(ranker, value_x0, keyed):
    """expdate_turner's boxed layout: ``Use by`` at the top left, the bigger date under it
    starting where the key ends (no horizontal overlap). A value further right is not the
    caption's: then it is only a keyless date."""
    ls = [
        _box_line("Use by", 252, 295, 346, 341, 0),
        _box_line("17 NOV", value_x0, 333, value_x0 + 180, 383, 1),
        _box_line("Keep refrigerated", 249, 426, 484, 467, 2),
    ]
    exp = fields(ranker, ls, FOOD)["expiry_date"]
    assert exp.value == "17 NOV" and exp.valid
    assert (exp.extraction_confidence >= 0.9) == keyed


def test_yearless_date_fails_where_the_schema_needs_the_year(ranker):
    schema = {"fields": [{"name": "expiry_date", "date": {"require_year": True}}]}
    exp = fields(ranker, _food_pack("Use by", "16 NOV"), schema)["expiry_date"]
    assert exp.value == "16 NOV" and not exp.valid and "no year" in exp.reason


def test_schema_keyword_finds_a_yearless_expiry_date(ranker):
    """``Gut bis`` is in no built-in vocabulary: only the schema's keyword makes it a key."""
    ls = _food_pack("Gut bis", "16 NOV")
    assert not find_keys("Gut bis", _vocab())
    plain = fields(ranker, ls, {"fields": [{"name": "expiry_date"}]})["expiry_date"]
    assert plain.extraction_confidence <= 0.55  # a lone date: keyless, to review
    schema = {"fields": [{"name": "expiry_date", "keywords": ["Gut bis"]}]}
    exp = fields(ranker, ls, schema)["expiry_date"]
    assert exp.value == "16 NOV" and exp.valid and exp.extraction_confidence >= 0.9


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Manufacturer: Felsol Systems S.A.", "Felsol Systems S.A."),  # an abbreviation's dot
        ("Made by Venfel Industrial Co., Ltd.", "Venfel Industrial Co., Ltd."),
        ("Mfr: Foo Inc.", "Foo Inc."),
        ("Manufacturer: ACME Motors.", "ACME Motors"),  # a sentence's final dot goes
    ],
)
def test_free_text_keeps_the_dot_of_a_final_abbreviation(ranker, line, expected):
    got = fields(ranker, stacked(line, "S/N 12345678."))
    assert got["manufacturer"].value == expected
    assert got["serial_number"].value == "12345678"  # a code's final dot still goes


def test_a_key_line_below_keeps_a_header_key_from_being_a_caption(ranker):
    """A brand over a column of keys whose values stand far right: the first key is the
    header of its row, not the caption of the brand, also when the next line is a key line
    without tokens of its own ("모델명 / MODEL NO.", one key over the line)."""
    ls = [
        _sized("NOVATEK CONTROLS", 485, 236, 76),
        _sized("일련번호 SER. NO.:", 335, 384, 59),
        _sized("Z13X00PNENV", 1061, 390, 44),
        _sized("모델명 / MODEL NO.", 335, 496, 58),
        _sized("BO 810 PLUS", 1061, 499, 44),
    ]
    schema = {
        "fields": [
            {"name": "serial_number"},
            {"name": "model"},
            {"name": "manufacturer", "required": True},  # a keyless brand: kept (to review)
        ]
    }
    got = fields(ranker, _numbered(ls), schema)
    assert got["manufacturer"].value == "NOVATEK CONTROLS"
    assert got["serial_number"].value == "Z13X00PNENV" and got["model"].value == "BO 810 PLUS"


def test_a_standard_number_is_no_unkeyed_serial(ranker):
    """A barcode sticker: the serial printed bare under its bars, a standard beside it."""
    ls = stacked("DRABROTAL", "Part No - G7P856705", "591439433", "IEC 60947-2", "Tipo - RD39Y")
    assert fields(ranker, ls)["serial_number"].value == "591439433"
    ls = stacked("FELVIKQUA", "EN 60204-1", "LH247876")
    assert fields(ranker, ls)["serial_number"].value == "LH247876"


def test_an_optional_field_no_key_names_is_not_guessed(ranker):
    """A brand in the header and a code under a key the vocabulary lacks: the default schema's
    optional fields get no guess (it would be wrong more often than right and send a sure
    read to review); the serial keeps its keyless guess, for review."""
    rows = ["S/N: CBK68536982", "Doc. 870-19905-X", "Zeichnung 669-07817-M"]
    ls = [_sized("SOLDRALUM", 40, 20, 48)] + [
        _sized(t, 40, 90 + 45 * i, 30) for i, t in enumerate(rows)
    ]
    ls = _numbered(ls)
    got = fields(ranker, ls)
    assert got["serial_number"].value == "CBK68536982"
    assert got["serial_number"].extraction_confidence >= 0.9
    assert not {"manufacturer", "part_number", "model", "lot"} & set(got)
    # the same brand is kept where the schema requires a manufacturer (to review)
    required = {"fields": [{"name": "serial_number"}, {"name": "manufacturer", "required": True}]}
    brand = fields(ranker, ls, required)["manufacturer"]
    assert brand.value == "SOLDRALUM" and brand.extraction_confidence < 0.6
    bare = fields(ranker, ls[:1] + [_sized("CBK68536982", 40, 90, 30)])["serial_number"]
    assert bare.value == "CBK68536982" and bare.extraction_confidence <= 0.55


def test_a_header_key_under_a_named_value_is_not_its_caption(ranker):
    """Keys over values in two columns with tight rows (the gap from a value down to the next
    key is smaller than from a key down to its value): "Part Number" sits right under the
    serial, but the serial has its own header; Part Number heads the value under it."""
    ls = [
        _sized("SER. NO.", 85, 265, 28),
        _sized("Model No.:", 401, 265, 28),
        _sized("19W15-8532", 85, 319, 41),
        _sized("UB 188 S", 403, 318, 42),
        _sized("Part Number", 84, 378, 31),
        _sized("MFG", 400, 376, 36),
        _sized("07P-6688-46", 88, 438, 37),
        _sized("2019-08-18", 401, 435, 44),
    ]
    got = fields(ranker, _numbered(ls))
    assert got["serial_number"].value == "19W15-8532"
    assert got["part_number"].value == "07P-6688-46"
    assert got["model"].value == "UB 188 S" and got["mfg_date"].value == "2019-08-18"


def test_row_of_keys_is_all_headers_and_a_cell_key_shares_the_line_height(ranker):
    """A product name above a row of header keys is no value of the one key right under it
    (the other key of the row is a header: so is this one); a small key in the corner of a
    tall serial box is not the key of a date that shares the row only through that box."""
    ls = [
        _sized("ORION SYSTEMS Ltd.", 156, 368, 52),
        _sized("GEAR REDUCER", 293, 431, 31),
        _sized("시리얼번호:", 153, 470, 38),
        _sized("LOT", 407, 470, 30),
        _sized("VDT-2415-2750", 156, 515, 35),
        _sized("1805-20", 409, 513, 32),
    ]
    got = fields(ranker, _numbered(ls))
    assert got["lot"].value == "1805-20" and got["serial_number"].value == "VDT-2415-2750"
    boxes = [
        ("Mfg. Date:", 445, 161, 611, 200),
        ("SN", 68, 184, 98, 213),
        ("612898-05E2", 63, 197, 413, 275),
        ("06/2020", 443, 222, 604, 263),
    ]
    ls = _box_lines(boxes)
    assert fields(ranker, ls)["serial_number"].value != "06/2020"


def test_a_key_is_no_caption_of_a_line_that_cannot_be_its_value(ranker):
    """A food pack: "Use by" right under a nutrition line and further above its date: the
    nutrition line is no date, so the key is the header of the date under it."""
    ls = [
        _sized("Typical values per 100g: Energy 754kJ", 250, 262, 24),
        _sized("Use by", 300, 290, 26),
        _sized("04 NOV", 290, 345, 40),
        _sized("Keep refrigerated", 250, 400, 24),
    ]
    exp = fields(ranker, _numbered(ls), FOOD)["expiry_date"]
    assert exp.value == "04 NOV" and exp.valid and exp.extraction_confidence >= 0.9


def test_a_code_field_takes_no_cjk_or_hangul_value(ranker):
    """The reader turned the tail of "MACアドレス" into Hangul: that is no MAC, and the key is
    still the header of the MAC under it."""
    ls = lines(("MAC 주조", 40, 40), ("CC-8C-29-3D-EE-4A", 40, 80), ("S/N QX77812345", 40, 140))
    got = fields(ranker, ls)
    assert got["mac"].value == "CC:8C:29:3D:EE:4A" and got["mac"].valid
    assert got["serial_number"].value == SERIAL


def _keys(text: str) -> list[tuple[str, str]]:
    vocab = schema_vocabulary(resolve_schema(None), frozenset())
    return [(h.field, text[h.start : h.end]) for h in find_keys(text, vocab)]


def test_a_generic_key_glued_into_a_compound_names_another_number():
    """ "Kat.-Nr.", "E-Nr.", "Zul.-Nr.": the number of a thing no key of ours names, not a
    serial's "Nr."; a compound whose head is a key keeps the suffix ("Lot-Nr."), and a slashed
    key before a hyphen is still a key ("S/N-UPU845209")."""
    assert _keys("Kat.-Nr. - 8BT1707-0W17") == []
    assert _keys("E-Nr.:E4 65R-25 4997") == []
    assert _keys("Zul.-Nr. E17 32R-72 6277") == []
    assert _keys("Lot-Nr. 1234") == [("lot", "Lot-Nr")]
    assert _keys("S/N-UPU845209") == [("serial_number", "S/N")]
    assert _keys("FW-2121-4576") == []  # the start of a code stays a code
    assert _keys("Nr. 1234") == [("serial_number", "Nr")]  # a bare generic key stays one


def test_a_compound_number_is_no_rival_of_the_serial(ranker):
    """The serial under its own key is sure; a catalogue number under "Kat.-Nr." once
    counted as a second keyed serial and halved its confidence (a sure read sent to review)."""
    ls = stacked("S/N: 6892 8569 2358", "Kat.-Nr. - 8BT1707-0W17", "E-Nr.:E4 65R-25 4997")
    sn = fields(ranker, ls)["serial_number"]
    assert sn.value == "689285692358" and sn.extraction_confidence >= 0.9
    sn = fields(ranker, stacked("S/N-UPU845209"))["serial_number"]
    assert sn.value == "UPU845209" and sn.extraction_confidence >= 0.9


def test_no_key_spans_a_stack_separator(ranker):
    """ "1OT / N.º de lote" is not the key "LOT NO" followed by "de lote": the line is a stack
    of lot keys, and the lot is the value under it."""
    assert _keys("로트 / 1OT / N.º de lote") == [("lot", "로트 / 1OT / N.º de lote")]
    ls = stacked("S/N / Ser.-Nr.", "NPW9065675", "로트 / 1OT / N.º de lote", "638386")
    assert fields(ranker, ls)["lot"].value == "638386"


def test_a_word_left_of_a_header_key_is_in_the_column_before_it(ranker):
    """Header keys over three columns: the company name under "Mfr." ends just left of
    "Batch"; its last word is near that key's left edge but not under it."""
    ls = _box_lines(
        [
            ("Serial No.", 109, 381, 229, 411),
            ("Mfr.", 402, 381, 450, 411),
            ("Batch", 696, 381, 760, 411),
            ("988120710", 109, 431, 270, 469),
            ("Lumfel Systems KG", 402, 429, 681, 469),
            ("24W082", 696, 431, 800, 469),
        ]
    )
    got = fields(ranker, ls)
    assert got["manufacturer"].value == "Lumfel Systems KG"
    assert got["lot"].value == "24W082" and got["serial_number"].value == "988120710"


def test_a_generic_key_with_a_qualifier_of_its_own_names_another_thing(ranker):
    """ "N° enreg.:" is a registration number, not the serial that a bare "N°" would key; the
    date under "Data fabbricazione:" is the manufacturing date, without the key's word."""
    assert _keys("N° enreg.: 134475") == [(OTHER, "N° enreg.")]
    assert _keys("Serial No.: 1234") == [("serial_number", "Serial No")]
    ls = stacked("MEXQUA", "N° enreg.: 134475", "Data fabbricazione:12/2016", "S/N 7788701813")
    got = fields(ranker, ls)
    assert got["serial_number"].value == "7788701813"
    assert got["mfg_date"].value == "12/2016" and got["mfg_date"].valid


def test_a_misread_korean_maker_key_still_names_the_maker(ranker):
    """The reader writes 제조사 (maker) as 제조시 (one stroke less): still the maker's key, so
    the optional manufacturer is returned as a keyed value, not dropped as a guess."""
    ls = lines(("VENVIKFEL", 40, 40), ("제조시", 40, 120), ("Norlum AG", 400, 120))
    got = fields(ranker, ls)
    assert got["manufacturer"].value == "Norlum AG"
    assert got["manufacturer"].extraction_confidence >= 0.9


def test_a_distractor_key_claims_its_whole_value_line(ranker):
    """ "Tel" with its number as a line of its own right of it: no tail of the number is an
    unkeyed serial (it outscored the real one, a code under a key the reader mangled)."""
    ls = lines(
        ("TALKORMEX", 40, 20),
        ("ON/S", 40, 100),
        ("3V2ZX34VPE26", 400, 90),
        ("Tel", 40, 260),
        ("+33 8 58 19 80 51", 400, 260),
    )
    assert fields(ranker, ls)["serial_number"].value == "3V2ZX34VPE26"


def test_a_header_key_does_not_claim_a_value_after_an_unknown_key(ranker):
    """A title word that is a distractor key ("GEPRÜFT") over a line "<unknown key>: <code>":
    the code follows a key of its own line (misread, unknown), not the title above it."""
    ls = _box_lines(
        [
            ("GEPRÜFT", 161, 258, 419, 320),
            ("리일 년번: ZKU4-W3TV-4024-9U69-G8VU", 121, 326, 755, 366),
            (" 제조일자: 2014.10", 120, 383, 405, 426),
        ]
    )
    code = [c for c in ranker.explain(ls, None)["candidates"] if c.raw.startswith("ZKU4")]
    assert code and all(c.anchor is None and c.unknown_key for c in code)
    sn = fields(ranker, ls).get("serial_number")
    assert sn is not None and sn.value == "ZKU4-W3TV-4024-9U69-G8VU"


def test_a_key_right_above_its_value_is_not_in_the_value_row(ranker):
    """Two columns of key-over-value with padded boxes: the key's box overlaps the value of the
    next column enough to chain the key and its own value into one row, and the serial lost
    its first digit group (`444988223` for `059 444 988 223`)."""
    ls = _box_lines(
        [
            ("VENBROBRO", 301, 192, 543, 229),
            ("製造番号", 312, 250, 427, 282),
            ("ロット番号", 765, 247, 913, 291),
            ("059 444 988 223", 311, 277, 648, 322),
            ("LT-9134", 762, 273, 944, 326),
        ]
    )
    got = fields(ranker, ls)
    assert got["serial_number"].value == "059444988223"
    assert got["lot"].value == "LT-9134"


def test_a_mixed_case_word_is_no_rival_to_a_type_code(ranker):
    """A key-value grid: "Bauart" with "XCP 155 S" in its cell, and the next row's caption
    "Manual" right under the key. "Manual" is no type code (letters only, in mixed case), so it
    does not lower the confidence of the model as a close rival would."""
    ls = _box_lines(
        [
            ("Seriennummer", 149, 190, 330, 222),
            ("2215-85989", 457, 190, 640, 224),
            ("Bauart", 149, 250, 238, 282),
            ("XCP 155 S", 457, 248, 642, 284),
            ("Manual", 148, 310, 244, 342),
            ("952-85648-P", 457, 308, 660, 344),
        ]
    )
    got = fields(ranker, ls)
    assert got["model"].value == "XCP 155 S"
    assert got["model"].extraction_confidence >= 0.95


def test_a_cjk_key_with_one_unsure_character_inside_still_names_the_serial(ranker):
    """The reader wrote the serial key 机身号 as "机力号" with "力" at 0.4: one character of a
    three-character CJK key that it was unsure of is damage, not another word, so the serial
    after it is keyed. The same character read at 0.99 is another word (no key)."""

    def read(conf: float) -> dict:
        text = "机力号:4338 9153 2355"
        confs = [0.99] * len(text)
        confs[1] = conf
        ls = _box_lines(
            [
                ("型号:TG-65J26", 40, 40, 300, 70),
                ("Art. No.-174.512.92", 40, 90, 340, 120),
                (text, 40, 140, 400, 170),
            ]
        )
        ls[2] = replace(ls[2], char_confidences=tuple(confs))
        return fields(ranker, ls)

    unsure = read(0.4)["serial_number"]
    assert unsure.value == "433891532355"
    assert unsure.extraction_confidence >= 0.9
    sure = read(0.99).get("serial_number")
    assert sure is None or sure.extraction_confidence <= 0.55
