"""Built-in named field schemas (for the CLI and as starting points for ProductType schemas)."""

from __future__ import annotations

import copy
from typing import Any

from .fields import DEFAULT_SCHEMA

_FIELDS = {f["name"]: f for f in DEFAULT_SCHEMA["fields"]}


def _schema(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A schema of the default field specs named, in that order (``required`` overrides)."""
    return {
        "fields": [{**_FIELDS[n], "required": True} if n in required else _FIELDS[n] for n in names]
    }


BUILTIN_SCHEMAS: dict[str, dict[str, Any]] = {
    "default": DEFAULT_SCHEMA,
    "nameplate": _schema(
        "serial_number", "model", "part_number", "mfg_date", "manufacturer", required=("model",)
    ),
    "sticker": _schema("serial_number", "part_number", "lot", "mac", "imei"),
}


def get_builtin_schema(name: str) -> dict[str, Any]:
    """A deep copy of the named built-in schema; ``KeyError`` for unknown names."""
    if name not in BUILTIN_SCHEMAS:
        raise KeyError(name)
    return copy.deepcopy(BUILTIN_SCHEMAS[name])
