"""The one catalogue of well-known fields, and how a product type's schema is resolved with it.

Every tier reads a field's facts from here: the pipeline's extractors (keywords, whether a value
may be taken without a key), the verifier (rules, normalisation), the web tier (search tracing,
UI label) and the correction service. Nothing else lists field names with their rules.

A product type's schema (JSON, grammar in :mod:`workers.fieldspec.grammar`) is *resolved*
against the catalogue once per read (:func:`resolve_schema`): a field of a well-known name that
names no ``normalise`` or ``keywords`` inherits the catalogue's, and one that names none of the
rules (``pattern``, ``format``, ``check_digit``, ``date``) inherits the catalogue's rules;
``{"name": "imei"}`` is an IMEI (15 digits, Luhn), ``{"name": "imei", "pattern": "..."}`` is held
to that pattern only. A field the catalogue does not know and that names no normalisation is
upper-cased with single spaces (:data:`UNKNOWN_FIELD_NORMALISE`).

Stdlib only: the web tier imports this without loading any ML library.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import receipt as _receipt
from .grammar import DEFAULT_AUTO_ACCEPT, DateRule, FieldSpec, ProductSchema, schema_errors

__all__ = [
    "BUILTIN_SCHEMAS",
    "DEFAULT_FIELD_SPECS",
    "DEFAULT_SCHEMA",
    "KNOWN_FIELDS",
    "LANGUAGES",
    "TRACED_FIELDS",
    "UNKNOWN_FIELD_NORMALISE",
    "KnownField",
    "builtin_schema",
    "default_schema",
    "field_label",
    "known_field",
    "product_schema_errors",
    "resolve_schema",
    "spec_for",
]

LANGUAGES = ("en", "ko")
"""Languages whose label keywords the catalogue lists (the UI's languages)."""

UNKNOWN_FIELD_NORMALISE: tuple[str, ...] = ("upper", "collapse_spaces")

_RULE_KEYS = ("pattern", "format", "check_digit", "date")


def gettext_noop(s: str) -> str:
    """Marks a UI label for ``makemessages`` (the web tier translates it with gettext)."""
    return s


@dataclass(frozen=True)
class KnownField:
    """One well-known field.

    ``spec`` holds the rules, normalisation and default label (its ``keywords`` are the union of
    ``keywords`` over the languages, longest first); ``keywords`` lists the printed keys per
    language; ``traced``: its values go into the serial search index; ``keyless``: an extractor
    may take a value that matches the rules without any key next to it (identifiers with a
    precise shape); ``document``: ``label`` (nameplates, stickers) or ``receipt``.
    The UI label is ``spec.label``, translated by the web tier (it is the gettext msgid).
    """

    spec: FieldSpec
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    traced: bool = False
    keyless: bool = False
    document: str = "label"

    @property
    def name(self) -> str:
        return self.spec.name


def _known(
    name: str,
    label: str,
    *,
    keywords: Mapping[str, tuple[str, ...]],
    traced: bool = False,
    keyless: bool = False,
    document: str = "label",
    **rules: Any,
) -> KnownField:
    all_kw = {k for kws in keywords.values() for k in kws}
    spec = FieldSpec(
        name=name, label=label, keywords=tuple(sorted(all_kw, key=lambda k: (-len(k), k))), **rules
    )
    return KnownField(
        spec=spec, keywords=dict(keywords), traced=traced, keyless=keyless, document=document
    )


_CATALOGUE: tuple[KnownField, ...] = (
    _known(
        "serial_number",
        gettext_noop("Serial number"),
        required=True,
        pattern=r"(?=.*[0-9])[A-Z0-9][A-Z0-9./-]{3,39}",  # one digit at least
        normalise=("upper", "strip_spaces"),
        keywords={
            "en": (
                "S/N",
                "SN",
                "SER",
                "SER NO",
                "SER.NO",
                "Serial",
                "Serial No",
                "Serial No.",
                "Serial Number",
            ),
            "ko": ("시리얼", "시리얼번호", "제조번호", "일련번호"),
        },
        traced=True,
        keyless=True,
    ),
    _known(
        "part_number",
        gettext_noop("Part number"),
        pattern=r"[A-Z0-9][A-Z0-9./-]{2,39}",
        normalise=("upper", "strip_spaces"),
        keywords={
            "en": ("P/N", "PN", "Part No", "Part No.", "Part Number", "REF"),
            "ko": ("품번", "부품번호"),
        },
        traced=True,
    ),
    _known(
        "lot",
        gettext_noop("Lot"),
        pattern=r"[A-Z0-9][A-Z0-9./-]{1,19}",
        normalise=("upper", "strip_spaces"),
        keywords={
            "en": ("LOT", "LOT NO", "Lot No", "Lot No.", "Batch", "Batch No", "Batch No."),
            "ko": ("로트", "로트번호"),
        },
        traced=True,
    ),
    _known(
        "mfg_date",
        gettext_noop("Manufacturing date"),
        date=DateRule(not_future=True, max_age_days=36500),
        normalise=("upper", "collapse_spaces"),
        keywords={
            "en": (
                "MFG",
                "MFD",
                "MFG Date",
                "MFD Date",
                "Mfg. Date",
                "Date",
                "Date of manufacture",
                "DOM",
                "Manufactured",
                "Production Date",
            ),
            "ko": ("제조일", "제조일자", "제조년월", "제조년월일"),
        },
        keyless=True,
    ),
    _known(
        "model",
        gettext_noop("Model"),
        pattern=r"[A-Z0-9][A-Z0-9 ./_+-]{1,39}",
        normalise=("upper", "collapse_spaces"),
        keywords={
            "en": ("Model", "Model No", "Model No.", "Model Name", "Type"),
            "ko": ("모델", "모델명"),
        },
        traced=True,
    ),
    _known(
        "mac",
        gettext_noop("MAC address"),
        format="HH:HH:HH:HH:HH:HH",
        normalise=("mac",),
        keywords={"en": ("MAC", "MAC Address", "MAC ADDR", "MAC ID", "LAN MAC", "WLAN MAC")},
        traced=True,
        keyless=True,
    ),
    _known(
        "imei",
        gettext_noop("IMEI"),
        format="9{15}",
        check_digit="luhn",
        normalise=("strip_separators",),
        keywords={"en": ("IMEI", "IMEI No.", "IMEI1", "IMEI 1", "IMEI2")},
        traced=True,
        keyless=True,
    ),
    _known(
        "gtin",
        gettext_noop("GTIN"),
        pattern=r"\d{8}|\d{12,14}",
        check_digit="gs1",
        normalise=("strip_separators",),
        keywords={"en": ("GTIN", "EAN", "UPC", "(01)")},
        traced=True,
        keyless=True,
    ),
    _known(
        "manufacturer",
        gettext_noop("Manufacturer"),
        normalise=("collapse_spaces",),
        keywords={
            "en": ("Manufacturer", "Mfr", "Made by", "Manufactured by"),
            "ko": ("제조사", "제조원"),
        },
    ),
    # Food packs print day + month only ("Use by 16 NOV"): a yearless date is valid here and
    # keeps ``iso_date = "--11-16"`` (grammar module docstring); a product that needs the year
    # names ``"date": {"require_year": true}`` in its schema.
    _known(
        "expiry_date",
        gettext_noop("Expiry date"),
        date=DateRule(require_year=False),
        normalise=("upper", "collapse_spaces"),
        keywords={
            "en": (
                "EXP",
                "Expiry",
                "Expiry Date",
                "Use by",
                "Best before",
                "Best before end",
                "BBE",
            ),
            "ko": ("유통기한", "소비기한"),
        },
        keyless=True,  # a pack's lone date, its key unread: found, at a keyless confidence
        document="other",
    ),
    # Receipt fields (the SROIE benchmark's entities): found by the receipt extractor
    # (``workers.pipeline.receipt``) with these keywords (``workers.fieldspec.receipt``; a
    # product schema's own keywords replace them).
    _known(
        "company",
        gettext_noop("Company"),
        normalise=("collapse_spaces",),
        keywords={"en": _receipt.COMPANY_KEYS},
        document="receipt",
    ),
    _known(
        "date",
        gettext_noop("Date"),
        normalise=("collapse_spaces",),
        keywords={"en": _receipt.DATE_KEYS},
        document="receipt",
    ),
    _known(
        "address",
        gettext_noop("Address"),
        normalise=("collapse_spaces",),
        keywords={"en": _receipt.ADDRESS_KEYS},
        document="receipt",
    ),
    _known(
        "total",
        gettext_noop("Total"),
        normalise=("collapse_spaces",),
        keywords={"en": _receipt.TOTAL_KEYS},
        document="receipt",
    ),
)

KNOWN_FIELDS: dict[str, KnownField] = {k.name: k for k in _CATALOGUE}
"""Every well-known field, by name."""

DEFAULT_FIELD_SPECS: dict[str, FieldSpec] = {
    k.name: k.spec for k in _CATALOGUE if k.document == "label"
}
"""The specs of the well-known label fields, by name (the built-in rules)."""

TRACED_FIELDS: tuple[str, ...] = tuple(k.name for k in _CATALOGUE if k.traced)
"""Fields whose values go into the serial search index."""

_DEFAULT_NAMES = (
    "serial_number",
    "part_number",
    "lot",
    "mfg_date",
    "model",
    "mac",
    "imei",
    "manufacturer",
)


def _schema_dict(
    *names: str,
    required: tuple[str, ...] = ("serial_number",),
    scripts: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """A schema of the catalogue's fields ``names`` by name only (the rules come from the
    catalogue when it is resolved); ``required`` lists the required ones, ``scripts`` the
    label's scripts (None: the recogniser's default rule)."""
    out: dict[str, Any] = {
        "fields": [
            {"name": n, "label": KNOWN_FIELDS[n].spec.label, "required": n in required}
            for n in names
        ]
    }
    if scripts is not None:
        out["scripts"] = list(scripts)
    return out


DEFAULT_SCHEMA: dict[str, Any] = _schema_dict(*_DEFAULT_NAMES)
"""The schema of a read without a product type: the common label fields, serial required."""

BUILTIN_SCHEMAS: dict[str, dict[str, Any]] = {
    "default": DEFAULT_SCHEMA,
    "nameplate": _schema_dict(
        "serial_number",
        "model",
        "part_number",
        "mfg_date",
        "manufacturer",
        required=("serial_number", "model"),
        scripts=("latin", "hangul"),  # the catalogue's Korean keys
    ),
    "sticker": _schema_dict(
        "serial_number", "part_number", "lot", "mac", "imei", scripts=("latin", "hangul")
    ),
}
"""Named starting points for product-type schemas (the CLI's ``--product-type``)."""


def builtin_schema(name: str) -> dict[str, Any]:
    """A deep copy of the named built-in schema; ``KeyError`` for unknown names."""
    if name not in BUILTIN_SCHEMAS:
        raise KeyError(name)
    return copy.deepcopy(BUILTIN_SCHEMAS[name])


def known_field(name: str) -> KnownField | None:
    """The catalogue entry of ``name`` or None."""
    return KNOWN_FIELDS.get(name)


def field_label(name: str) -> str:
    """The English label of a field (the gettext msgid the web tier translates)."""
    k = KNOWN_FIELDS.get(name)
    return k.spec.label if k is not None else name.replace("_", " ").capitalize()


def default_schema(
    names: Iterable[str] | None = None, *, auto_accept: float = DEFAULT_AUTO_ACCEPT
) -> ProductSchema:
    """A :class:`ProductSchema` of the built-in label specs (all when ``names`` is None)."""
    chosen = list(names) if names is not None else list(DEFAULT_FIELD_SPECS)
    return ProductSchema(
        fields=tuple(DEFAULT_FIELD_SPECS[n] for n in chosen), auto_accept=auto_accept
    )


def _resolved_field(d: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(d)
    known = KNOWN_FIELDS.get(str(out.get("name")))
    if known is None:
        if not out.get("normalise"):
            out["normalise"] = list(UNKNOWN_FIELD_NORMALISE)
        return out
    dd = known.spec.to_dict()
    for key in ("normalise", "keywords"):
        if not out.get(key) and key in dd:
            out[key] = dd[key]
    if not any(out.get(k) for k in _RULE_KEYS):
        for k in _RULE_KEYS:
            if k in dd:
                out[k] = dd[k]
    return out


def resolve_schema(schema: Mapping[str, Any] | ProductSchema | None) -> ProductSchema:
    """The product schema a read is extracted and validated with (module docstring).

    ``None`` is :data:`DEFAULT_SCHEMA`; a :class:`ProductSchema` is returned as it is (already
    resolved). Raises :class:`~workers.fieldspec.grammar.SchemaError` for a malformed schema.
    """
    if isinstance(schema, ProductSchema):
        return schema
    src = dict(DEFAULT_SCHEMA if schema is None else schema)
    fields = src.get("fields")
    own_rules: set[str] = set()
    if isinstance(fields, list):
        for f in fields:
            if isinstance(f, Mapping) and any(f.get(k) for k in _RULE_KEYS):
                own_rules.add(str(f.get("name")))
        src["fields"] = [_resolved_field(f) if isinstance(f, Mapping) else f for f in fields]
    ps = ProductSchema.from_dict(src)
    if ps.scripts is not None:  # a field that names no scripts holds the label's
        ps = replace(
            ps,
            fields=tuple(f if f.scripts else replace(f, scripts=ps.scripts) for f in ps.fields),
        )
    keyless = {
        f.name
        for f in ps.fields
        if f.name in own_rules or (f.name in KNOWN_FIELDS and KNOWN_FIELDS[f.name].keyless)
    }
    return replace(ps, keyless=frozenset(keyless))


def spec_for(name: str, schema: ProductSchema | None = None) -> FieldSpec:
    """The spec of field ``name``: the schema's, else the catalogue's, else a bare one."""
    got = schema.field(name) if schema is not None else None
    if got is not None:
        return got
    known = KNOWN_FIELDS.get(name)
    if known is not None:
        return known.spec
    return replace(FieldSpec(name=name), normalise=UNKNOWN_FIELD_NORMALISE)


def product_schema_errors(schema: Any) -> list[str]:
    """Every problem with a product type's schema (empty when usable): the grammar's
    :func:`~workers.fieldspec.grammar.schema_errors`, and a product type needs one field."""
    problems = list(schema_errors(schema))
    if not problems and not schema.get("fields"):
        problems.append("fields: at least one field is needed")
    return problems
