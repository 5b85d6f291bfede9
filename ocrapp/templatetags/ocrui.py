"""Template helpers of the web UI: translated labels for codes, SVG points, confidence display.

The label maps are also sent to the upload page's JavaScript (see ``views.ui_strings``) so that
server-rendered and script-rendered result cards say the same thing in the same language.
"""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

register = template.Library()

# Quality warnings by code. The pipeline sends two different "glare" messages (glare over the
# text vs. glare somewhere on the photo); the English text tells them apart.
TEXT_GLARE_MESSAGE = "Strong glare over the text: retake the photo at a different angle."
QUALITY_MESSAGES = {
    "glare": _("Strong glare over the text: retake the photo at a different angle."),
    "glare_photo": _("Glare on the photo: avoid direct light or flash reflections on the label."),
    "blur": _("The photo is blurred: hold the camera still and focus on the label."),
    "underexposed": _("The photo is too dark: add light or move closer to a light source."),
    "overexposed": _("The photo is too bright: reduce the light or avoid direct flash."),
    "no_text": _("No text was found: frame the label so the text is clearly visible."),
    # %(n)s is the 1-based line number taken from the pipeline's message.
    "glare_text": _(
        "Glare covers characters on line %(n)s: retake the photo at a different angle."
    ),
}
_LINE_NUMBER = re.compile(r"line (\d+)")

FAILURE_MESSAGES = {
    "bad_image": _("The file is not a readable image. Take the photo again."),
    "image_too_large": _("The image is too large to process. Use a smaller photo."),
    "unsupported_format": _("This image format is not supported (use JPEG, PNG, TIFF or WebP)."),
    "bad_schema": _("The product type's field schema is invalid. Ask an administrator."),
    "image_missing": _("The stored image file is missing."),
    "timeout": _("Reading took longer than the time limit. Try again."),
    "transient_error": _("A temporary error stopped the reading. Try again."),
    "pipeline_error": _("The reader failed on this photo. Try again or report it."),
}

MATCH_LABELS = {
    "exact": _("Exact"),
    "prefix": _("Starts with"),
    "lookalike": _("Look-alike characters"),
    "similar": _("Similar"),
}

STAGE_LABELS = {
    "decode": _("Decode"),
    "detection": _("Text detection"),
    "classification": _("Orientation"),
    "recognition": _("Recognition"),
    "quality": _("Photo quality"),
    "fields": _("Field extraction"),
    "total": _("Total"),
}


FIELD_LABELS = {
    "serial_number": _("Serial number"),
    "part_number": _("Part number"),
    "model": _("Model"),
    "lot": _("Lot"),
    "mfg_date": _("Manufacturing date"),
    "mac": _("MAC address"),
    "imei": _("IMEI"),
    "gtin": _("GTIN"),
}


def quality_key(warning: dict[str, Any]) -> str:
    code = str(warning.get("code", ""))
    if code == "glare" and warning.get("message") and warning["message"] != TEXT_GLARE_MESSAGE:
        return "glare_photo"
    return code


@register.filter
def quality_message(warning: Any) -> str:
    """Translated text of one ``read.quality.warnings[]`` item (falls back to its message)."""
    if not isinstance(warning, dict):
        return str(warning)
    key = quality_key(warning)
    msg = QUALITY_MESSAGES.get(key)
    if msg is None:
        return str(warning.get("message") or warning.get("code", ""))
    if key == "glare_text":
        found = _LINE_NUMBER.search(str(warning.get("message", "")))
        return str(msg) % {"n": found.group(1) if found else "?"}
    return str(msg)


@register.filter
def failure_message(code: str) -> str:
    msg = FAILURE_MESSAGES.get(code or "")
    return str(msg) if msg is not None else gettext("The photo could not be read.")


@register.filter
def field_label(name: str) -> str:
    """Translated label of a well-known field name; other names are shown as they are."""
    return str(FIELD_LABELS.get(name, name))


@register.filter
def match_label(match: str) -> str:
    return str(MATCH_LABELS.get(match, match))


@register.filter
def stage_label(stage: str) -> str:
    return str(STAGE_LABELS.get(stage, stage))


@register.filter
def svg_points(polygon: Any) -> str:
    """``[[x, y], ...]`` -> ``"x,y x,y ..."`` for an SVG ``<polygon points>``; '' if malformed."""
    try:
        return " ".join(f"{float(x):g},{float(y):g}" for x, y in polygon)
    except (TypeError, ValueError):
        return ""


@register.filter
def percent(value: Any) -> str:
    try:
        return f"{float(value) * 100:.1f}%"
    except (TypeError, ValueError):
        return ""


@register.filter
def conf_class(value: Any, threshold: Any = 0.85) -> str:
    """CSS class for a confidence: high (>= auto-accept threshold), mid, low."""
    try:
        v, t = float(value), float(threshold)
    except (TypeError, ValueError):
        return "conf-low"
    if v >= t:
        return "conf-high"
    return "conf-mid" if v >= 0.5 else "conf-low"
