"""Template helpers of the web UI: codes rendered to words, SVG points, confidence display.

The one place where reason codes and their params (``workers.contract``) become sentences, in
English (the msgids) and Korean (``locale/ko``). Everything here takes the contract's typed
objects (``QualityWarning``, ``ReviewDecision``, ``FieldResult``); the result card of the upload
page is the server-rendered template too (``views.capture_card``), so there is no second copy.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from workers.contract import FieldResult, QualityWarning, ReviewDecision, ReviewReason
from workers.fieldspec import catalogue

register = template.Library()

# Photo-quality warnings by code (workers.contract.QUALITY_CODES).
QUALITY_MESSAGES = {
    "glare": _("Strong glare over the text: retake the photo at a different angle."),
    "glare_photo": _("Glare on the photo: avoid direct light or flash reflections on the label."),
    "blur": _("The photo is blurred: hold the camera still and focus on the label."),
    "underexposed": _("The photo is too dark: add light or move closer to a light source."),
    "overexposed": _("The photo is too bright: reduce the light or avoid direct flash."),
    "no_text": _("No text was found: frame the label so the text is clearly visible."),
    # %(n)s is the warning's params["line"] (1-based); the _plain variant when it has none.
    "glare_text": _(
        "Glare covers characters on line %(n)s: retake the photo at a different angle."
    ),
    "glare_text_plain": _(
        "Glare covers characters of a text line: retake the photo at a different angle."
    ),
}

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
    "quarantined": _(
        "The reader crashed on this photo every time it tried, so it was set aside. "
        "Take the photo again or ask a quality manager to look at it."
    ),
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


# Why a field failed its check, by ``Field.reasons[].code`` (unknown codes show their message).
FIELD_REASON_MESSAGES = {
    "required": _("required but not found"),
    "pattern": _("does not match the expected pattern"),
    "format": _("does not match the expected format"),
    "check_digit": _("wrong check digit"),
    "uncertain": _("check digit passes, but several characters are unsure"),
    "date_unparsed": _("not a recognised date"),
    "date_no_year": _("the date has no year"),
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
    "truncated": _("%(field)s: the value may be cut off (%(causes)s): compare it with the photo"),
    "truncated_plain": _("%(field)s: the value may be cut off: compare it with the photo"),
    "mislabel": _(
        "%(field)s: printed value and code disagree (printed %(printed)s, %(code)s says %(coded)s)"
    ),
    "mislabel_plain": _("%(field)s: printed value and code disagree"),
}

# Why a value may be cut off (``truncated`` reason ``params.causes``, workers.pipeline.truncation).
TRUNCATION_CAUSES = {
    "edge": _("it touches the edge of the photo"),
    "glare": _("glare next to it"),
    "neighbour": _("more text right after it"),
    "ink": _("the characters continue"),
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

Codes = Sequence[Mapping[str, Any]]  # ReadResult.codes: barcodes.CodeResult.to_dict() of each
Mismatches = Sequence[Mapping[str, Any]]  # ReadResult.mismatches: barcodes.Mismatch.to_dict()


def code_format_label(fmt: Any) -> str:
    """``DataMatrix`` -> ``DataMatrix``, ``QRCode`` -> ``QR``, ``EAN13`` -> ``EAN-13``..."""
    fmt = str(fmt or "")
    return CODE_FORMATS.get(fmt, fmt)


def field_reason_texts(reasons: Iterable[tuple[str, str]], fallback: str = "") -> list[str]:
    """Translated texts of a field's failed rules (``FieldResult.reasons``, (code, message)
    pairs); ``fallback`` (the pipeline's own text) when there are none, e.g. for reads stored
    before reason codes."""
    out = []
    for code, message in reasons:
        msg = FIELD_REASON_MESSAGES.get(code)
        out.append(str(msg) if msg is not None else message or code)
    out = [t for t in out if t]
    return out or ([fallback] if fallback else [])


def field_code_format(name: str, value: str, codes: Codes, mismatches: Mismatches) -> str:
    """The format of the code that carries field ``name`` (raw zxing name, '' if unknown):
    the mismatch's code, else the code with a GS1 element for the field, else a plain code
    whose text contains the value."""
    for m in mismatches:
        if m.get("field") == name and m.get("code_format"):
            return str(m["code_format"])
    for c in codes:
        for e in c.get("gs1") or ():
            if e.get("field") == name:
                return str(c.get("format") or "")
    bare = _ID_SEPARATORS.sub("", value or "").upper()
    if bare:
        for c in codes:
            if not c.get("gs1") and bare in _ID_SEPARATORS.sub("", str(c.get("text", ""))).upper():
                return str(c.get("format") or "")
    return ""


def code_check(field: FieldResult, codes: Codes, mismatches: Mismatches) -> tuple[str, str]:
    """``(kind, text)`` of what a code says about a field: ``match`` (the print agrees with a
    code), ``mismatch`` (a code disagrees: mislabel), ``code`` (the value comes from a code);
    ``("", "")`` when no code carries the field."""
    fmt = code_format_label(field_code_format(field.name, field.value, codes, mismatches))
    if field.code_match is False:
        coded = field.code_value or next(
            (str(m.get("coded") or "") for m in mismatches if m.get("field") == field.name), ""
        )
        key = "mismatch" if fmt else "mismatch_plain"
        return "mismatch", str(CODE_CHECK_MESSAGES[key]) % {"code": fmt, "coded": coded}
    if field.source == "code":
        key = "from_code" if fmt else "from_code_plain"
        return "code", str(CODE_CHECK_MESSAGES[key]) % {"code": fmt}
    if field.code_match is True:
        key = "match" if fmt else "match_plain"
        return "match", str(CODE_CHECK_MESSAGES[key]) % {"code": fmt}
    return "", ""


def correction_html(field: FieldResult) -> str:
    """``corrected from <raw>`` with the changed characters of the raw read in ``<mark>``;
    '' when the value was not corrected."""
    if not field.corrected:
        return ""
    corr = field.correction or {}
    raw = str(corr.get("from") or field.raw_value or "")
    changed = {c.get("position") for c in corr.get("changes") or ()}
    parts = []
    for i, ch in enumerate(raw):
        parts.append(format_html('<mark class="chg">{}</mark>', ch) if i in changed else escape(ch))
    marked = format_html('<span class="mono raw">{}</span>', mark_safe("".join(parts)))
    before, _sep, after = gettext("corrected from %(raw)s").partition("%(raw)s")
    return format_html("{}{}{}", before, marked, after)


def review_threshold(decision: ReviewDecision | None, default: float) -> float:
    """The auto-accept confidence a review decision used, else ``default`` (the product
    type's; reads stored before review decisions have none)."""
    return float(decision.auto_accept) if decision is not None else float(default)


def review_reasons(
    decision: ReviewDecision | None,
    fields: Sequence[FieldResult],
    codes: Codes,
    mismatches: Mismatches,
    threshold: float,
) -> list[dict[str, str]]:
    """Translated ``{code, field, text}`` of each reason of a review decision, rendered from
    the reason's params; reasons stored without params (older reads) take the numbers and
    values from the read's fields and mismatches."""
    if decision is None:
        return []
    by_name: dict[str, FieldResult] = {}
    for f in fields:
        by_name.setdefault(f.name, f)
    auto = review_threshold(decision, threshold)
    out = []
    for r in decision.reasons:
        text = _review_text(r, by_name.get(r.field), codes, mismatches, auto)
        out.append({"code": r.code, "field": r.field, "text": text})
    return out


def _review_text(
    r: ReviewReason, f: FieldResult | None, codes: Codes, mismatches: Mismatches, auto: float
) -> str:
    label = field_label(r.field)
    params: dict[str, Any] = {"field": label}
    if r.code == "missing":
        key = "missing"
    elif r.code == "invalid":
        params["detail"] = "; ".join(field_reason_texts(f.reasons)) if f is not None else ""
        key = "invalid" if params["detail"] else "invalid_plain"
    elif r.code == "low_confidence":
        confidence = r.params.get("confidence", f.confidence if f is not None else None)
        key = "low_confidence" if confidence is not None else "low_confidence_plain"
        params.update(
            confidence=percent(confidence), threshold=percent(r.params.get("threshold", auto))
        )
    elif r.code == "truncated":
        causes = [
            str(TRUNCATION_CAUSES[c])
            for c in r.params.get("causes") or ()
            if c in TRUNCATION_CAUSES
        ]
        key = "truncated" if causes else "truncated_plain"
        params["causes"] = ", ".join(causes)
    elif r.code == "mislabel":
        printed, coded, fmt = _mislabel_values(r, f, codes, mismatches)
        key = "mislabel" if printed and coded and fmt else "mislabel_plain"
        params.update(printed=printed, coded=coded, code=code_format_label(fmt))
    else:
        return f"{label}: {r.message}"
    return str(REVIEW_MESSAGES[key]) % params


def _mislabel_values(
    r: ReviewReason, f: FieldResult | None, codes: Codes, mismatches: Mismatches
) -> tuple[str, str, str]:
    """``(printed, coded, code format)`` of a ``mislabel`` reason: its params; for a reason
    stored without params, the read's mismatch of the field, else the field's code value."""
    if r.params.get("code_format"):
        p = r.params
        return str(p.get("printed") or ""), str(p.get("coded") or ""), str(p["code_format"])
    value = f.value if f is not None else ""
    fmt = field_code_format(r.field, value, codes, mismatches)
    m = next((m for m in mismatches if m.get("field") == r.field), None)
    if m is not None:
        return str(m.get("printed") or ""), str(m.get("coded") or ""), fmt
    return value, (f.code_value or "") if f is not None else "", fmt


@register.filter
def quality_message(warning: QualityWarning) -> str:
    """Translated text of one photo-quality warning, rendered from its code and params;
    an unknown code shows the pipeline's own message."""
    if warning.code == "glare_text":
        line = warning.params.get("line")
        if line is None:
            return str(QUALITY_MESSAGES["glare_text_plain"])
        return str(QUALITY_MESSAGES["glare_text"]) % {"n": line}
    msg = QUALITY_MESSAGES.get(warning.code)
    return str(msg) if msg is not None else warning.message or warning.code


@register.filter
def failure_message(code: str) -> str:
    msg = FAILURE_MESSAGES.get(code or "")
    return str(msg) if msg is not None else gettext("The photo could not be read.")


@register.filter
def field_label(name: str) -> str:
    """Translated label of a field: the catalogue's English label is the msgid."""
    return gettext(catalogue.field_label(name))


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


# --- review: revision reasons, signature meanings, queue filters ---------------------------

# Why a reviewer corrected a value (``FieldRevision.reason_code``, ``models.REVISION_REASONS``);
# ``other`` shows the reviewer's own words (``reason_text``).
REVISION_REASON_MESSAGES = {
    "misread": _("misread"),
    "glare": _("glare"),
    "damaged_label": _("damaged label"),
    "wrong_field": _("wrong field"),
    "other": _("other"),
}

# What a signature means (``FieldRevision.meaning``, ``models.REVISION_MEANINGS``).
MEANING_LABELS = {
    "reviewed": _("reviewed"),
    "corrected": _("corrected"),
    "approved": _("approved"),
}

# The review queue's reason filter (``Read.review.reasons[].code``).
REVIEW_REASON_LABELS = {
    "mislabel": _("Mislabel (code disagrees)"),
    "invalid": _("Invalid value"),
    "missing": _("Missing field"),
    "low_confidence": _("Low confidence"),
    "truncated": _("Possibly cut off"),
}


@register.filter
def revision_reason(revision: Any) -> str:
    """The reason of a revision in words: its code translated, or the reviewer's own words."""
    text = (getattr(revision, "reason_text", "") or "").strip()
    code = getattr(revision, "reason_code", "") or ""
    if text:
        return text
    msg = REVISION_REASON_MESSAGES.get(code)
    return str(msg) if msg is not None else code


@register.filter
def revision_reason_label(code: str) -> str:
    msg = REVISION_REASON_MESSAGES.get(code)
    return str(msg) if msg is not None else code


@register.filter
def meaning_label(meaning: str) -> str:
    msg = MEANING_LABELS.get(meaning)
    return str(msg) if msg is not None else meaning


@register.filter
def review_reason_label(code: str) -> str:
    msg = REVIEW_REASON_LABELS.get(code)
    return str(msg) if msg is not None else code


@register.filter
def signature_text(revision: Any) -> str:
    """``Signed by Ada Kim (ada) at 2026-12-01 12:03 UTC, meaning: reviewed`` (the printed name
    and time of the signature as stored, the time in UTC)."""
    at = revision.signed_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
    return gettext("Signed by %(name)s at %(time)s UTC, meaning: %(meaning)s") % {
        "name": revision.signer_name,
        "time": at,
        "meaning": meaning_label(revision.meaning),
    }
