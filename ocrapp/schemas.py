"""Product field schemas as stored on ``ProductType.field_schema`` (checked on save)."""

from __future__ import annotations

import re
from typing import Any

FIELD_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
FIELD_KEYS = {"name", "label", "required", "pattern", "keywords", "format", "check_digit",
              "date", "normalise"}
# Fields whose values are traced in serial search (SerialRecord rows).
TRACED_FIELDS = ("serial_number", "part_number", "lot", "imei", "mac", "gtin", "model")


def schema_problems(schema: Any) -> list[str]:
    """Return human-readable problems with a field schema; empty when it is usable."""
    if not isinstance(schema, dict):
        return ["The schema must be a JSON object with a 'fields' list."]
    fields = schema.get("fields")
    if not isinstance(fields, list) or not fields:
        return ["The schema needs a non-empty 'fields' list."]
    problems: list[str] = []
    seen: set[str] = set()
    for i, field in enumerate(fields):
        where = f"fields[{i}]"
        if not isinstance(field, dict):
            problems.append(f"{where} must be an object.")
            continue
        unknown = set(field) - FIELD_KEYS
        if unknown:
            problems.append(f"{where} has unknown keys: {', '.join(sorted(unknown))}.")
        name = field.get("name")
        if not isinstance(name, str) or not FIELD_NAME_RE.match(name):
            problems.append(f"{where}.name must be lower_snake_case (got {name!r}).")
        elif name in seen:
            problems.append(f"{where}.name {name!r} is repeated.")
        else:
            seen.add(name)
        if "required" in field and not isinstance(field["required"], bool):
            problems.append(f"{where}.required must be true or false.")
        pattern = field.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                problems.append(f"{where}.pattern must be a string.")
            else:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    problems.append(f"{where}.pattern is not a valid regular expression: {exc}.")
        keywords = field.get("keywords")
        if keywords is not None and (
            not isinstance(keywords, list) or not all(isinstance(k, str) and k for k in keywords)
        ):
            problems.append(f"{where}.keywords must be a list of non-empty strings.")
    return problems


def normalise_serial(value: str) -> str:
    """Canonical form used for serial search: upper case, no whitespace, dashes or dots."""
    return re.sub(r"[\s\-_.]", "", value or "").upper()


_LOOKALIKE = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "S": "5",
                            "B": "8", "Z": "2", "G": "6"})


def serial_skeleton(value: str) -> str:
    """Fold look-alike characters so that O/0, I/1, S/5, B/8, Z/2 misreads find each other."""
    return normalise_serial(value).translate(_LOOKALIKE)
