"""Demo data for a fresh install: product types, a station with an API token, a demo login."""

from __future__ import annotations


def _fields(*names: str, required: tuple[str, ...] = ("serial_number",)) -> dict:
    """A schema naming well-known fields only: their rules (pattern, format, check digit, date,
    normalisation) are the pipeline's built-in ones (``validation.DEFAULT_FIELD_SPECS``, applied
    by ``verification.product_schema``), so they are written down in one place."""
    return {"fields": [{"name": n, "required": n in required} for n in names]}


DEMO_PRODUCT_TYPES: dict[str, dict] = {
    "nameplate": {
        "description": "Metal or plastic nameplate: serial, part number, model, lot, date.",
        "field_schema": _fields("serial_number", "part_number", "model", "lot", "mfg_date"),
    },
    "sticker": {
        "description": "Paper label: serial, MAC, IMEI, GTIN.",
        "field_schema": _fields("serial_number", "mac", "imei", "gtin"),
    },
}
