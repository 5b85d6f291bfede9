"""Field kernel shared by the web tier and the pipeline (stdlib only, cheap to import).

- :mod:`.catalogue`: the one table of well-known fields (keywords per language, normalisation,
  rules, traced in search, UI label), built-in schemas and :func:`resolve_schema`;
- :mod:`.grammar`: the schema grammar (field specs, format grammar, dates, normalisation,
  :func:`validate_field`, :func:`schema_errors`);
- :mod:`.identifiers`: the one identifier normaliser and look-alike key;
- :mod:`.review`: the needs-review rule;
- :mod:`.checkdigits`, :mod:`.gs1`: check-digit algorithms and GS1 element strings.
"""

from __future__ import annotations

from .catalogue import (
    BUILTIN_SCHEMAS,
    DEFAULT_FIELD_SPECS,
    DEFAULT_SCHEMA,
    KNOWN_FIELDS,
    TRACED_FIELDS,
    KnownField,
    builtin_schema,
    default_schema,
    field_label,
    known_field,
    product_schema_errors,
    resolve_schema,
    spec_for,
)
from .grammar import (
    DEFAULT_AUTO_ACCEPT,
    FieldCheck,
    FieldSpec,
    ProductSchema,
    Reason,
    SchemaError,
    normalise,
    schema_errors,
    validate_field,
)
from .identifiers import identifier_key, lookalike_key
from .review import ReviewDecision, ReviewReason, decide_review

__all__ = [
    "BUILTIN_SCHEMAS",
    "DEFAULT_AUTO_ACCEPT",
    "DEFAULT_FIELD_SPECS",
    "DEFAULT_SCHEMA",
    "KNOWN_FIELDS",
    "TRACED_FIELDS",
    "FieldCheck",
    "FieldSpec",
    "KnownField",
    "ProductSchema",
    "Reason",
    "ReviewDecision",
    "ReviewReason",
    "SchemaError",
    "builtin_schema",
    "decide_review",
    "default_schema",
    "field_label",
    "identifier_key",
    "known_field",
    "lookalike_key",
    "normalise",
    "product_schema_errors",
    "resolve_schema",
    "schema_errors",
    "spec_for",
    "validate_field",
]
