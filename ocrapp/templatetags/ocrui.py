"""Template helpers of the web UI: translated labels for codes, SVG points, confidence display.

The label maps are also sent to the upload page's JavaScript (see ``views.ui_strings``) so that
server-rendered and script-rendered result cards say the same thing in the same language.
"""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe
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
    "bad_result": _("The reader returned an unusable result. Try again or report it."),
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
    "expiry_date": _("Expiry date"),
    "manufacturer": _("Manufacturer"),
    "company": _("Company"),
    "date": _("Date"),
    "address": _("Address"),
    "total": _("Total"),
}

# Why a field failed its check, by ``Field.reasons[].code`` (unknown codes show their message).
FIELD_REASON_MESSAGES = {
    "required": _("required but not found"),
    "pattern": _("does not match the expected pattern"),
    "format": _("does not match the expected format"),
    "check_digit": _("wrong check digit"),
    "uncertain": _("check digit passes, but several characters are unsure"),
    "date_unparsed": _("not a recognised date"),
    "date_future": _("date is in the future"),
    "date_too_old": _("date is too old"),
}

# Why a read needs review, by ``Read.review.reasons[].code``. ``%(field)s`` is the field's label;
# the ``*_plain`` variants are used when the numbers or values are not known.
REVIEW_MESSAGES = {
    "missing": _("%(field)s: not found on the label"),
    "invalid": _("%(field)s: the value is not valid (%(detail)s)"),
    "invalid_plain": _("%(field)s: the value is not valid"),
    "low_confidence": _(
        "%(field)s: confidence %(confidence)s is below the auto-accept threshold %(threshold)s"
    ),
    "low_confidence_plain": _("%(field)s: confidence is below the auto-accept threshold"),
    "mislabel": _(
        "%(field)s: printed value and code disagree (printed %(printed)s, %(code)s says %(coded)s)"
    ),
    "mislabel_plain": _("%(field)s: printed value and code disagree"),
}

# What a code on the label says about a field (``Field.source`` / ``code_match``). ``%(code)s`` is
# the code's format (``CODE_FORMATS``); the ``*_plain`` variants when no code format is known.
CODE_CHECK_MESSAGES = {
    "match": _("matches the %(code)s code"),
    "match_plain": _("matches a code on the label"),
    "mismatch": _("the %(code)s code says %(coded)s"),
    "mismatch_plain": _("a code on the label says %(coded)s"),
    "from_code": _("from the %(code)s code"),
    "from_code_plain": _("from a code on the label"),
}

# zxing-cpp format names as people write them (technical names: not translated).
CODE_FORMATS = {
    "DataMatrix": "DataMatrix",
    "QRCode": "QR",
    "MicroQRCode": "Micro QR",
    "Aztec": "Aztec",
    "PDF417": "PDF417",
    "Code128": "Code 128",
    "Code39": "Code 39",
    "Code93": "Code 93",
    "ITF": "ITF",
    "EAN13": "EAN-13",
    "EAN8": "EAN-8",
    "UPCA": "UPC-A",
    "UPCE": "UPC-E",
    "DataBar": "GS1 DataBar",
    "DataBarExpanded": "GS1 DataBar Expanded",
}


_ID_SEPARATORS = re.compile(r"[\s\-:./]")


def code_format_label(fmt: Any) -> str:
    """``DataMatrix`` -> ``DataMatrix``, ``QRCode`` -> ``QR``, ``EAN13`` -> ``EAN-13``..."""
    fmt = str(fmt or "")
    return CODE_FORMATS.get(fmt, fmt)


def field_reason_texts(reasons: Any, fallback: str = "") -> list[str]:
    """Translated texts of a field's failed rules (``Field.reasons``); ``fallback`` (the
    pipeline's own text) when there are none, e.g. for reads stored before reason codes."""
    out = []
    for r in reasons if isinstance(reasons, list) else []:
        if not isinstance(r, dict):
            continue
        msg = FIELD_REASON_MESSAGES.get(str(r.get("code", "")))
        out.append(str(msg) if msg is not None else str(r.get("message") or r.get("code") or ""))
    out = [t for t in out if t]
    return out or ([fallback] if fallback else [])


def field_code_format(name: str, value: str, codes: Any, mismatches: Any) -> str:
    """The format of the code that carries field ``name`` (raw zxing name, '' if unknown):
    the mismatch's code, else the code with a GS1 element for the field, else a plain code
    whose text contains the value. ``upload.js`` (``fieldCodeFormat``) does the same."""
    for m in mismatches if isinstance(mismatches, list) else []:
        if isinstance(m, dict) and m.get("field") == name and m.get("code_format"):
            return str(m["code_format"])
    codes = [c for c in codes if isinstance(c, dict)] if isinstance(codes, list) else []
    for c in codes:
        for e in c.get("gs1") or []:
            if isinstance(e, dict) and e.get("field") == name:
                return str(c.get("format") or "")
    bare = _ID_SEPARATORS.sub("", value or "").upper()
    if bare:
        for c in codes:
            if not c.get("gs1") and bare in _ID_SEPARATORS.sub("", str(c.get("text", ""))).upper():
                return str(c.get("format") or "")
    return ""


def code_check(field: Any, codes: Any, mismatches: Any) -> tuple[str, str]:
    """``(kind, text)`` of what a code says about a field: ``match`` (the print agrees with a
    code), ``mismatch`` (a code disagrees: mislabel), ``code`` (the value comes from a code);
    ``("", "")`` when no code carries the field."""
    fmt = code_format_label(field_code_format(field.name, field.value, codes, mismatches))
    if field.code_match is False:
        coded = field.code_value or ""
        for m in mismatches if isinstance(mismatches, list) else []:
            if isinstance(m, dict) and m.get("field") == field.name and not coded:
                coded = str(m.get("coded") or "")
        key = "mismatch" if fmt else "mismatch_plain"
        return "mismatch", str(CODE_CHECK_MESSAGES[key]) % {"code": fmt, "coded": coded}
    if field.source == "code":
        key = "from_code" if fmt else "from_code_plain"
        return "code", str(CODE_CHECK_MESSAGES[key]) % {"code": fmt}
    if field.code_match is True:
        key = "match" if fmt else "match_plain"
        return "match", str(CODE_CHECK_MESSAGES[key]) % {"code": fmt}
    return "", ""


def correction_html(field: Any) -> str:
    """``corrected from <raw>`` with the changed characters of the raw read in ``<mark>``;
    '' when the value was not corrected."""
    if not field.corrected:
        return ""
    corr = field.correction if isinstance(field.correction, dict) else {}
    raw = str(corr.get("from") or field.raw_value or "")
    changed = set()
    for c in corr.get("changes") or []:
        if isinstance(c, dict) and isinstance(c.get("position"), int):
            changed.add(c["position"])
    parts = []
    for i, ch in enumerate(raw):
        parts.append(format_html('<mark class="chg">{}</mark>', ch) if i in changed else escape(ch))
    marked = format_html('<span class="mono raw">{}</span>', mark_safe("".join(parts)))
    before, _sep, after = gettext("corrected from %(raw)s").partition("%(raw)s")
    return format_html("{}{}{}", before, marked, after)


def review_threshold(review: Any, default: float) -> float:
    """The auto-accept confidence a review decision used (``review.auto_accept``), else
    ``default`` (the product type's)."""
    auto = review.get("auto_accept") if isinstance(review, dict) else None
    if isinstance(auto, (int, float)) and not isinstance(auto, bool):
        return float(auto)
    return float(default)


def review_reasons(
    review: Any, fields: list, codes: Any, mismatches: Any, threshold: float
) -> list[dict[str, str]]:
    """Translated ``{code, field, text}`` of each ``Read.review.reasons[]`` item; numbers and
    values come from the fields and mismatches (``upload.js`` ``reviewReasonText`` mirrors it)."""
    review = review if isinstance(review, dict) else {}
    by_name = {}
    for f in fields:
        by_name.setdefault(f.name, f)
    mm = {}
    for m in mismatches if isinstance(mismatches, list) else []:
        if isinstance(m, dict):
            mm.setdefault(m.get("field"), m)
    auto = review_threshold(review, threshold)
    out = []
    for r in review.get("reasons") or []:
        if not isinstance(r, dict):
            continue
        code, name = str(r.get("code", "")), str(r.get("field", ""))
        label = field_label(name)
        f = by_name.get(name)
        m = mm.get(name)
        params = {"field": label}
        if code == "missing":
            key = "missing"
        elif code == "invalid":
            detail = "; ".join(field_reason_texts(f.reasons)) if f is not None else ""
            key = "invalid" if detail else "invalid_plain"
            params["detail"] = detail
        elif code == "low_confidence":
            key = "low_confidence" if f is not None else "low_confidence_plain"
            params["confidence"] = percent(f.confidence) if f is not None else ""
            params["threshold"] = percent(auto)
        elif code == "mislabel":
            value = f.value if f is not None else ""
            fmt = code_format_label(field_code_format(name, value, codes, mismatches))
            if m is not None and fmt:
                params.update(printed=m.get("printed") or "", coded=m.get("coded") or "", code=fmt)
                key = "mislabel"
            elif f is not None and f.code_value and fmt:
                params.update(printed=f.value, coded=f.code_value, code=fmt)
                key = "mislabel"
            else:
                key = "mislabel_plain"
        else:
            out.append({"code": code, "field": name, "text": f"{label}: {r.get('message', '')}"})
            continue
        out.append({"code": code, "field": name, "text": str(REVIEW_MESSAGES[key]) % params})
    return out


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
