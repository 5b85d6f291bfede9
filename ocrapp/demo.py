"""Demo data for a fresh install: product types, a station with an API token, one login per
role (``manage.py seed_demo`` makes them with random passwords)."""

from __future__ import annotations

from dataclasses import dataclass

from ocrapp import roles


def _fields(*names: str, required: tuple[str, ...] = ("serial_number",)) -> dict:
    """A schema naming well-known fields only: their rules (pattern, format, check digit, date,
    normalisation) are the pipeline's built-in ones (``validation.DEFAULT_FIELD_SPECS``, applied
    by ``verification.product_schema``), so they are written down in one place. The demo labels
    carry the catalogue's Korean keys, so the recogniser may write Hangul on them."""
    return {
        "fields": [{"name": n, "required": n in required} for n in names],
        "scripts": ["latin", "hangul"],
    }


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


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    full_name: str
    is_staff: bool = False


# The station's line-client user is its token owner, made with its token (station_token_issue).
DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("demo-operator", roles.OPERATOR, "Demo Operator"),
    DemoUser("demo-quality", roles.QUALITY_MANAGER, "Demo Quality Manager"),
    DemoUser("demo-auditor", roles.AUDITOR, "Demo Auditor"),
    DemoUser("demo-admin", roles.ADMIN, "Demo Administrator", is_staff=True),
)

# The superuser that seed_demo made before roles existed; seed_demo locks it if it still has
# this (published) password.
LEGACY_DEMO_LOGIN = ("demo", "demo-serial-2026")
