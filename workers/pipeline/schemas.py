"""Built-in named field schemas (for the CLI and as starting points for ProductType schemas)."""

from __future__ import annotations

import copy
from typing import Any

from .fields import DEFAULT_SCHEMA

_SERIAL = {
    "name": "serial_number",
    "label": "Serial number",
    "required": True,
    "pattern": r"^(?=.*[0-9])[A-Z0-9][A-Z0-9-]{4,24}$",
}

BUILTIN_SCHEMAS: dict[str, dict[str, Any]] = {
    "default": DEFAULT_SCHEMA,
    "nameplate": {
        "fields": [
            _SERIAL,
            {"name": "model", "label": "Model", "required": True},
            {"name": "part_number", "label": "Part number", "required": False},
            {
                "name": "mfg_date",
                "label": "Manufacturing date",
                "required": False,
                "pattern": r"^\d{2,4}[-./ ]?\d{1,2}([-./ ]?\d{1,4})?$",
            },
            {"name": "manufacturer", "label": "Manufacturer", "required": False},
        ]
    },
    "sticker": {
        "fields": [
            _SERIAL,
            {"name": "part_number", "label": "Part number", "required": False},
            {"name": "lot", "label": "Lot / batch", "required": False},
            {
                "name": "mac",
                "label": "MAC address",
                "required": False,
                "pattern": r"^([0-9A-F]{2}[:-]?){5}[0-9A-F]{2}$",
            },
            {"name": "imei", "label": "IMEI", "required": False, "pattern": r"^[0-9]{15}$"},
        ]
    },
}


def get_builtin_schema(name: str) -> dict[str, Any]:
    """A deep copy of the named built-in schema; ``KeyError`` for unknown names."""
    if name not in BUILTIN_SCHEMAS:
        raise KeyError(name)
    return copy.deepcopy(BUILTIN_SCHEMAS[name])
