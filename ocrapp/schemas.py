"""Product field schemas as stored on ``ProductType.field_schema`` (checked on save)."""

from __future__ import annotations

import re
from typing import Any

# Fields whose values are traced in serial search (SerialRecord rows).
TRACED_FIELDS = ("serial_number", "part_number", "lot", "imei", "mac", "gtin", "model")


def schema_problems(schema: Any) -> list[str]:
    """Human-readable problems with a field schema; empty when it is usable.

    The grammar is the pipeline's (``workers.pipeline.validation``, pure Python and cheap to
    import); a product type also needs at least one field.
    """
    from workers.pipeline.validation import schema_errors

    problems = list(schema_errors(schema))
    if not problems and not schema.get("fields"):
        problems.append("fields: at least one field is needed")
    return problems


def normalise_serial(value: str) -> str:
    """Canonical form used for serial search: upper case, no whitespace, dashes or dots."""
    return re.sub(r"[\s\-_.]", "", value or "").upper()


_LOOKALIKE = str.maketrans(
    {"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "S": "5", "B": "8", "Z": "2", "G": "6"}
)


def serial_skeleton(value: str) -> str:
    """Fold look-alike characters so that O/0, I/1, S/5, B/8, Z/2 misreads find each other."""
    return normalise_serial(value).translate(_LOOKALIKE)
