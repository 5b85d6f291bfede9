"""The field catalogue is the one definition of every known field, and web and pipeline agree.

Pure Python except the two tests marked ``django_db`` (the web tier's own entry points).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from workers.fieldspec import (
    DEFAULT_FIELD_SPECS,
    KNOWN_FIELDS,
    TRACED_FIELDS,
    identifier_key,
    lookalike_key,
    resolve_schema,
    spec_for,
    validate_field,
)
from workers.fieldspec.catalogue import LANGUAGES
from workers.pipeline.barcodes import CodeResult, cross_check
from workers.pipeline.fields import RuleFieldExtractor
from workers.pipeline.pipeline import check_schema
from workers.pipeline.types import FieldResult, TextLine
from workers.pipeline.verification import FieldVerifier

ROOT = Path(__file__).resolve().parents[3]
TODAY = date(2026, 6, 1)
# Source trees of the product (the synthetic-label engine under workers/training renders its own
# label vocabulary on purpose: it is the data generator, not a reader of fields).
SOURCES = [ROOT / "ocrapp", ROOT / "workers" / "pipeline", ROOT / "workers" / "contract.py"]


def _source_files() -> list[Path]:
    out: list[Path] = []
    for s in SOURCES:
        out.extend([s] if s.is_file() else sorted(s.rglob("*.py")))
    return out


def test_one_entry_per_field_and_derived_tables():
    names = [k.name for k in KNOWN_FIELDS.values()]
    assert len(names) == len(set(names))
    for name, spec in DEFAULT_FIELD_SPECS.items():
        assert spec is KNOWN_FIELDS[name].spec
    assert set(TRACED_FIELDS) <= set(DEFAULT_FIELD_SPECS)
    assert {"serial_number", "imei", "mac", "gtin", "lot", "part_number"} <= set(TRACED_FIELDS)
    for k in KNOWN_FIELDS.values():
        assert set(k.keywords) <= set(LANGUAGES)
        assert set(k.spec.keywords) == {kw for kws in k.keywords.values() for kw in kws}
    assert KNOWN_FIELDS["serial_number"].keywords["ko"]  # Korean keys are part of the table


@pytest.mark.parametrize(
    "keyword", ["IMEI1", "제조번호", "Serial No", "MAC ADDR", "로트번호", "Mfg. Date", "P/N"]
)
def test_keywords_are_written_in_the_catalogue_only(keyword):
    """No reader restates the keyword vocabulary (the v0 extractor, verifier, web tier...)."""
    hits = [p for p in _source_files() if f'"{keyword}"' in p.read_text(encoding="utf-8")]
    assert hits == [], f"{keyword!r} restated in {hits}"


def test_web_tier_imports_the_kernel_not_copies():
    from ocrapp import selectors, services

    assert services.identifier_key is identifier_key
    assert selectors.identifier_key is identifier_key
    assert selectors.lookalike_key is lookalike_key
    assert services.TRACED_FIELDS is TRACED_FIELDS
    assert not (ROOT / "ocrapp" / "schemas.py").exists()


def _line(text: str, conf: float = 0.99) -> TextLine:
    return TextLine(0, text, conf, (conf,) * len(text), (), ((0, 0), (200, 0), (200, 30), (0, 30)))


# (field, raw as read, value after normalisation, valid, search key)
TRICKY = [
    ("serial_number", "sn12 3456", "SN123456", True, "SN123456"),
    ("serial_number", "ＱＸ７７８１２３４５", "QX77812345", True, "QX77812345"),  # full-width
    ("serial_number", "44-1020/A", "44-1020/A", True, "441020A"),
    ("serial_number", "ABCDEF", "ABCDEF", False, "ABCDEF"),  # no digit
    ("imei", "49-015420-323751-8", "490154203237518", True, "490154203237518"),
    ("imei", "490154203237519", "490154203237519", False, "490154203237519"),  # Luhn
    ("mac", "aa-bb-cc-dd-ee-ff", "AA:BB:CC:DD:EE:FF", True, "AABBCCDDEEFF"),
    ("mac", "AABBCCDDEEF", "AABBCCDDEEF", False, "AABBCCDDEEF"),
    ("gtin", "4006381333931", "4006381333931", True, "4006381333931"),
    ("gtin", "4006381333932", "4006381333932", False, "4006381333932"),
    ("lot", "l0t 22", "L0T22", True, "L0T22"),
    ("mfg_date", "2024-03-15", "2024-03-15", True, "20240315"),
    ("mfg_date", "2031-01-01", "2031-01-01", False, "20310101"),  # in the future
]


@pytest.mark.parametrize(("name", "raw", "value", "valid", "key"), TRICKY)
def test_pipeline_and_kernel_agree_on_tricky_values(name, raw, value, valid, key):
    schema = {"fields": [{"name": n} for n in dict.fromkeys(("serial_number", name))]}
    ps = resolve_schema(schema)
    # what the web tier (schema check, correction service) calls
    check = validate_field(raw, spec_for(name, ps), today=TODAY)
    # what the pipeline's verifier concludes for the same read
    f = FieldResult(name, raw, "", 0.99, 0, None, True, extraction_confidence=1.0)
    verified = FieldVerifier(today=lambda: TODAY)([f], [_line(raw)], schema).fields
    got = next(v for v in verified if v.name == name)
    assert (check.value, check.valid) == (value, valid)
    assert (got.value, got.valid) == (value, valid)
    assert identifier_key(got.value) == key
    # a code carrying the value as printed with other separators is not a mislabel
    code = CodeResult(format="Code128", text=key, raw_bytes_b64=None, polygon=((0, 0),) * 4)
    if valid and name == "serial_number":
        assert cross_check({name: got.value}, [code]) == []


def test_rule_extractor_takes_keywords_from_the_schema_without_retraining():
    lines = [_line("Art.-Nr. 5512-0098"), _line("Fabr. Nr. 7781-2345")]
    before = RuleFieldExtractor()(lines, None)[0]
    assert before.value != "7781-2345" and before.extraction_confidence < 1.0  # a guess
    schema = {"fields": [{"name": "serial_number", "keywords": ["Fabr. Nr."]}]}
    sn = RuleFieldExtractor()(lines, schema)[0]
    assert sn.value == "7781-2345" and sn.valid and sn.line_index == 1
    assert sn.extraction_confidence == 1.0  # keyed on the same line


SCHEMAS = [
    ({"fields": [{"name": "imei"}]}, True),
    ({"fields": [{"name": "serial_number", "format": "AA999-99999"}]}, True),
    ({"fields": [{"name": "serial_number", "pattern": "("}]}, False),
    ({"fields": [{"name": "x", "normalize": "text"}]}, False),  # unknown key
    ({"fields": [{"name": "Serial"}]}, False),  # not a lowercase identifier
    ({"fields": [{"name": "lot", "check_digit": "nope"}]}, False),
    ({"fields": []}, False),  # a product type needs one field
    ({"auto_accept": 1.5, "fields": [{"name": "lot"}]}, False),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("schema", "ok"), SCHEMAS)
def test_admin_and_pipeline_accept_the_same_schemas(schema, ok):
    from ocrapp import services
    from ocrapp.errors import ApplicationError

    try:
        services.product_type_create(name="t", field_schema=schema)
        web_ok = True
    except ApplicationError:
        web_ok = False
    try:
        check_schema(schema)
        pipe_ok = bool(schema.get("fields"))  # the pipeline reads a schema without fields
    except Exception:  # noqa: BLE001 - TerminalError("bad_schema")
        pipe_ok = False
    assert web_ok is ok and pipe_ok is ok


@pytest.mark.parametrize("name", ["lot", "model"])
def test_a_one_character_lot_or_model_is_not_valid(name):
    """A lot or a model of one character is a fragment of a read (the reader kept only the
    "0" of "20L314"), never a value to pass as valid; two characters are."""
    spec = spec_for(name, resolve_schema(None))
    assert not validate_field("0", spec, today=TODAY).valid
    assert validate_field("A1", spec, today=TODAY).valid
