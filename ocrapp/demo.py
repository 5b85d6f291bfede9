"""Demo data for a fresh install: product types, a station with an API token, a demo login."""

from __future__ import annotations

DEMO_PRODUCT_TYPES: dict[str, dict] = {
    "nameplate": {
        "description": "Metal or plastic nameplate: serial, part number, model, date.",
        "field_schema": {
            "fields": [
                {
                    "name": "serial_number",
                    "label": "Serial number",
                    "required": True,
                    "pattern": r"^[A-Z0-9][A-Z0-9-]{4,31}$",
                },
                {
                    "name": "part_number",
                    "label": "Part number",
                    "required": False,
                    "pattern": r"^[A-Z0-9][A-Z0-9-./]{2,31}$",
                },
                {"name": "model", "label": "Model", "required": False},
                {"name": "lot", "label": "Lot", "required": False},
                {"name": "mfg_date", "label": "Manufacturing date", "required": False},
            ]
        },
    },
    "sticker": {
        "description": "Paper label: serial, MAC, IMEI.",
        "field_schema": {
            "fields": [
                {
                    "name": "serial_number",
                    "label": "Serial number",
                    "required": True,
                    "pattern": r"^[A-Z0-9][A-Z0-9-]{4,31}$",
                },
                {
                    "name": "mac",
                    "label": "MAC",
                    "required": False,
                    "pattern": r"^([0-9A-F]{2}[:-]?){5}[0-9A-F]{2}$",
                },
                {"name": "imei", "label": "IMEI", "required": False, "pattern": r"^\d{15}$"},
            ]
        },
    },
}
