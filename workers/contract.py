"""The result contract: what one read produces, as frozen dataclasses and their JSON form.

The pipeline builds a :class:`ReadResult`; ``to_dict()`` is the JSON that crosses to the web
tier (the Celery task hands it to ``ocrapp.services.read_save``, the API returns it). The JSON
form is spelled out once, as the ``*Dict`` ``TypedDict``s below; ``from_dict`` turns it (or a
stored part of it) back into the dataclasses, so the web tier reads typed objects instead of
probing dict shapes. :func:`parse_read_result` checks a payload's shape and raises
:class:`ContractError` naming the first bad key.

Reasons are stable codes with parameters: quality warnings (:data:`QUALITY_CODES`), field
validation reasons (``FieldResult.reasons``: codes of ``workers.fieldspec.grammar.Reason``) and
review reasons (``workers.fieldspec.review``). Their English ``message`` is for logs and the
command line; people see them rendered from code + params in one place per language
(``ocrapp/templatetags/ocrui.py``).

Coordinate frame everywhere: pixels of the decoded, EXIF-corrected image, x to the right,
y down, origin at the top-left corner; polygons are lists of (x, y) floats, clockwise,
starting at the top-left corner of the text as read.

Stdlib only (the web tier imports it without any ML library).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from workers.fieldspec.review import ReviewDecision, ReviewReason

__all__ = [
    "QUALITY_CODES",
    "ContractError",
    "FieldDict",
    "FieldResult",
    "ImageInfo",
    "LineQuality",
    "ModelInfo",
    "Point",
    "Polygon",
    "QualityReport",
    "QualityWarning",
    "ReadResult",
    "ReadResultDict",
    "ReviewDecision",
    "ReviewReason",
    "TextLine",
    "parse_read_result",
]

Point = tuple[float, float]
Polygon = tuple[Point, ...]

QUALITY_CODES = (
    "blur",  # the photo is blurred
    "underexposed",  # too dark
    "overexposed",  # too bright
    "glare",  # strong glare over the text area
    "glare_photo",  # glare somewhere on the photo (not over the text)
    "glare_text",  # glare hides characters of one line: params line (1-based), order
    "no_text",  # no text found
)


class ContractError(ValueError):
    """A payload does not have the shape of :class:`ReadResultDict`."""


# ---- the JSON form ------------------------------------------------------------------------


class ImageInfoDict(TypedDict):
    width: int
    height: int
    format: str
    exif_orientation: int


class QualityWarningDict(TypedDict):
    code: str
    message: str
    params: dict[str, Any]


class LineQualityDict(TypedDict):
    order: int
    glare_fraction: float
    retake: bool
    # truncation causes at the line's ends (``workers.pipeline.truncation``); absent when none
    cut: NotRequired[dict[str, list[str]]]


class QualityReportDict(TypedDict):
    blur: float
    exposure: float
    glare_fraction: float
    text_glare_fraction: float
    ok: bool
    warnings: list[QualityWarningDict]
    lines: list[LineQualityDict]
    # image statistics for drift (``quality.py``); absent or None on reads made before them
    contrast: NotRequired[float | None]
    text_boxes: NotRequired[int | None]
    text_height: NotRequired[float | None]
    text_area: NotRequired[float | None]
    text_cx: NotRequired[float | None]
    text_cy: NotRequired[float | None]


class TextLineDict(TypedDict):
    order: int
    text: str
    confidence: float
    char_confidences: list[float]
    alternatives: list[list[list[Any]]]  # per character: [[char, prob], ...]
    polygon: list[list[float]] | None


class FieldReasonDict(TypedDict):
    code: str
    message: str


class FieldDict(TypedDict):
    name: str
    raw_value: str
    value: str
    confidence: float
    line_index: int | None
    box: list[list[float]] | None
    valid: bool
    reason: str
    reasons: list[FieldReasonDict]
    corrected: bool
    correction: dict[str, Any] | None
    source: str
    code_value: str | None
    code_match: bool | None
    iso_date: str | None
    confidence_parts: dict[str, float]


class ModelInfoDict(TypedDict):
    stage: str
    name: str
    version: str
    sha256: str | None


class ReviewReasonDict(TypedDict):
    code: str
    field: str
    message: str
    params: dict[str, Any]


class ReviewDecisionDict(TypedDict):
    needs_review: bool
    auto_accept: float
    reasons: list[ReviewReasonDict]


class ReadResultDict(TypedDict):
    image: ImageInfoDict
    quality: QualityReportDict
    lines: list[TextLineDict]
    fields: list[FieldDict]
    timings_ms: dict[str, float]
    models: list[ModelInfoDict]
    device: str
    providers: list[str]
    config: dict[str, Any]
    codes: list[dict[str, Any]]  # barcodes.CodeResult.to_dict() of each symbol
    mismatches: list[dict[str, Any]]  # barcodes.Mismatch.to_dict(): mislabel alarms
    needs_review: bool
    review: ReviewDecisionDict | None


# ---- the dataclasses ----------------------------------------------------------------------


def _poly(p: Polygon | None) -> list[list[float]] | None:
    if p is None:
        return None
    return [[round(float(x), 1), round(float(y), 1)] for x, y in p]


def _unpoly(p: Any) -> Polygon | None:
    if not p:
        return None
    return tuple((float(x), float(y)) for x, y in p)


@dataclass(frozen=True)
class ImageInfo:
    """Decoded image metadata. ``width``/``height`` are after EXIF orientation."""

    width: int
    height: int
    format: str
    exif_orientation: int = 1

    def to_dict(self) -> ImageInfoDict:
        return {
            "width": int(self.width),
            "height": int(self.height),
            "format": self.format,
            "exif_orientation": int(self.exif_orientation),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageInfo:
        return cls(
            int(d.get("width") or 0),
            int(d.get("height") or 0),
            str(d.get("format") or ""),
            int(d.get("exif_orientation") or 1),
        )


@dataclass(frozen=True)
class QualityWarning:
    """One photo-quality warning: a stable ``code`` (:data:`QUALITY_CODES`) with ``params``
    (``glare_text``: ``line``, the 1-based line number, and ``order``, the line's index);
    ``message`` is the English text for logs and the command line."""

    code: str
    message: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> QualityWarningDict:
        return {"code": self.code, "message": self.message, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QualityWarning:
        return cls(str(d.get("code", "")), str(d.get("message", "")), dict(d.get("params") or {}))


@dataclass(frozen=True)
class LineQuality:
    """Glare over one recognised line (``TextLine.order``): ``glare_fraction`` = share of the
    line polygon's pixels in the glare mask; ``column_fraction`` = share of the line's length
    at least half washed out; ``retake`` = glare hides characters (see ``glare.line_glare``);
    ``cut_start`` / ``cut_end``: why the line may be truncated at that end (``edge``,
    ``glare``, ``neighbour``, ``ink``; see ``workers.pipeline.truncation``)."""

    order: int
    glare_fraction: float
    column_fraction: float
    retake: bool
    cut_start: tuple[str, ...] = ()
    cut_end: tuple[str, ...] = ()

    def to_dict(self) -> LineQualityDict:
        d: LineQualityDict = {
            "order": int(self.order),
            "glare_fraction": round(float(self.glare_fraction), 5),
            "retake": bool(self.retake),
        }
        if self.cut_start or self.cut_end:
            d["cut"] = {"start": list(self.cut_start), "end": list(self.cut_end)}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LineQuality:
        cut = d.get("cut") or {}
        return cls(
            int(d.get("order") or 0),
            float(d.get("glare_fraction") or 0.0),
            float(d.get("column_fraction") or 0.0),
            bool(d.get("retake")),
            tuple(str(c) for c in cut.get("start") or ()),
            tuple(str(c) for c in cut.get("end") or ()),
        )


@dataclass(frozen=True)
class QualityReport:
    """Photo quality measures (see ``quality.py`` for definitions and thresholds).
    ``lines``: per-line glare (empty when glare-aware inference is off). The image statistics
    the dashboard's drift check compares (``contrast``, ``text_*``) are None when unmeasured
    (reads stored before they existed)."""

    blur: float
    exposure: float
    glare_fraction: float
    text_glare_fraction: float
    warnings: tuple[QualityWarning, ...] = ()
    lines: tuple[LineQuality, ...] = ()
    contrast: float | None = None
    text_boxes: int | None = None
    text_height: float | None = None
    text_area: float | None = None
    text_cx: float | None = None
    text_cy: float | None = None

    @property
    def ok(self) -> bool:
        return not self.warnings

    def to_dict(self) -> QualityReportDict:
        return {
            "blur": round(float(self.blur), 3),
            "exposure": round(float(self.exposure), 4),
            "glare_fraction": round(float(self.glare_fraction), 5),
            "text_glare_fraction": round(float(self.text_glare_fraction), 5),
            "ok": self.ok,
            "warnings": [w.to_dict() for w in self.warnings],
            "lines": [ln.to_dict() for ln in self.lines],
            "contrast": _round_or_none(self.contrast, 4),
            "text_boxes": None if self.text_boxes is None else int(self.text_boxes),
            "text_height": _round_or_none(self.text_height, 5),
            "text_area": _round_or_none(self.text_area, 5),
            "text_cx": _round_or_none(self.text_cx, 4),
            "text_cy": _round_or_none(self.text_cy, 4),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> QualityReport:
        d = d or {}
        return cls(
            blur=float(d.get("blur") or 0.0),
            exposure=float(d.get("exposure") or 0.0),
            glare_fraction=float(d.get("glare_fraction") or 0.0),
            text_glare_fraction=float(d.get("text_glare_fraction") or 0.0),
            warnings=tuple(QualityWarning.from_dict(w) for w in d.get("warnings") or ()),
            lines=tuple(LineQuality.from_dict(ln) for ln in d.get("lines") or ()),
            contrast=_float_or_none(d.get("contrast")),
            text_boxes=None if d.get("text_boxes") is None else int(d["text_boxes"]),
            text_height=_float_or_none(d.get("text_height")),
            text_area=_float_or_none(d.get("text_area")),
            text_cx=_float_or_none(d.get("text_cx")),
            text_cy=_float_or_none(d.get("text_cy")),
        )


def _round_or_none(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class TextLine:
    """One recognised line: ``char_confidences[i]`` is the confidence of ``text[i]``,
    ``alternatives[i]`` the recogniser's top-k ``(char, prob)`` there, best first."""

    order: int
    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    alternatives: tuple[tuple[tuple[str, float], ...], ...]
    polygon: Polygon
    rotated_180: bool = False

    def to_dict(self) -> TextLineDict:
        return {
            "order": int(self.order),
            "text": self.text,
            "confidence": round(float(self.confidence), 5),
            "char_confidences": [round(float(c), 5) for c in self.char_confidences],
            "alternatives": [
                [[ch, round(float(p), 5)] for ch, p in alts] for alts in self.alternatives
            ],
            "polygon": _poly(self.polygon),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TextLine:
        return cls(
            order=int(d.get("order") or 0),
            text=str(d.get("text") or ""),
            confidence=float(d.get("confidence") or 0.0),
            char_confidences=tuple(float(c) for c in d.get("char_confidences") or ()),
            alternatives=tuple(
                tuple((str(c), float(p)) for c, p in alts) for alts in d.get("alternatives") or ()
            ),
            polygon=_unpoly(d.get("polygon")) or (),
        )


@dataclass(frozen=True)
class FieldResult:
    """One key field of a read.

    ``raw_value``: the text as read (OCR words, or the code's data for ``source="code"``);
    ``value``: the normalised, possibly corrected value; ``valid`` + ``reasons`` ((code,
    message) pairs, ``reason`` joins the messages): the schema check of ``value``.
    ``corrected``: ``value`` comes from format-constrained correction (``correction`` holds
    ``from``, ``to``, ``probability`` and the ``changes``). ``confidence``: recognition x
    extraction x validation x look-alike doubt (``confidence_parts``), calibrated; ``extraction_confidence``: the extractor's
    own score, set by the extractor. ``source``: ``text``, ``code`` or ``text+code``;
    ``code_value`` / ``code_match``: what a code on the label says and whether it agrees
    (None: no code carries this field). ``iso_date``: parsed date of a date field.
    """

    name: str
    raw_value: str
    value: str
    confidence: float
    line_index: int | None
    box: Polygon | None
    valid: bool
    reason: str = ""
    extraction_confidence: float | None = None
    reasons: tuple[tuple[str, str], ...] = ()
    corrected: bool = False
    correction: dict[str, Any] | None = None
    source: str = "text"
    code_value: str | None = None
    code_match: bool | None = None
    iso_date: str | None = None
    confidence_parts: dict[str, float] = field(default_factory=dict)

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(c for c, _m in self.reasons)

    def to_dict(self) -> FieldDict:
        return {
            "name": self.name,
            "raw_value": self.raw_value,
            "value": self.value,
            "confidence": round(float(self.confidence), 5),
            "line_index": None if self.line_index is None else int(self.line_index),
            "box": _poly(self.box),
            "valid": bool(self.valid),
            "reason": self.reason,
            "reasons": [{"code": c, "message": m} for c, m in self.reasons],
            "corrected": bool(self.corrected),
            "correction": self.correction,
            "source": self.source,
            "code_value": self.code_value,
            "code_match": self.code_match,
            "iso_date": self.iso_date,
            "confidence_parts": dict(self.confidence_parts),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FieldResult:
        li = d.get("line_index")
        return cls(
            name=str(d.get("name") or ""),
            raw_value=str(d.get("raw_value") or ""),
            value=str(d.get("value") or ""),
            confidence=float(d.get("confidence") or 0.0),
            line_index=None if li is None else int(li),
            box=_unpoly(d.get("box")),
            valid=bool(d.get("valid")),
            reason=str(d.get("reason") or ""),
            reasons=tuple(
                (str(r.get("code", "")), str(r.get("message", "")))
                for r in d.get("reasons") or ()
                if isinstance(r, Mapping)
            ),
            corrected=bool(d.get("corrected")),
            correction=d.get("correction") if isinstance(d.get("correction"), dict) else None,
            source=str(d.get("source") or "text"),
            code_value=None if d.get("code_value") is None else str(d.get("code_value")),
            code_match=None if d.get("code_match") is None else bool(d.get("code_match")),
            iso_date=None if d.get("iso_date") is None else str(d.get("iso_date")),
            confidence_parts={
                str(k): float(v) for k, v in (d.get("confidence_parts") or {}).items()
            },
        )


@dataclass(frozen=True)
class ModelInfo:
    stage: str  # "detection" | "recognition" | "classification" | "fields"
    name: str
    version: str
    sha256: str | None

    def to_dict(self) -> ModelInfoDict:
        return {
            "stage": self.stage,
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelInfo:
        sha = d.get("sha256")
        return cls(
            str(d.get("stage") or ""),
            str(d.get("name") or ""),
            str(d.get("version") or ""),
            None if sha is None else str(sha),
        )


@dataclass(frozen=True)
class ReadResult:
    """Everything one read produced, enough to audit and reconstruct it."""

    image: ImageInfo
    quality: QualityReport
    lines: tuple[TextLine, ...]
    fields: tuple[FieldResult, ...]
    timings_ms: dict[str, float]
    models: tuple[ModelInfo, ...]
    device: str
    providers: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    codes: tuple[dict[str, Any], ...] = ()  # barcodes.CodeResult.to_dict() of each symbol
    mismatches: tuple[dict[str, Any], ...] = ()  # barcodes.Mismatch.to_dict(): mislabel alarms
    review: ReviewDecision | None = None

    @property
    def needs_review(self) -> bool:
        return self.review is None or self.review.needs_review

    def get_field(self, name: str) -> FieldResult | None:
        return next((f for f in self.fields if f.name == name), None)

    def to_dict(self) -> ReadResultDict:
        return {
            "image": self.image.to_dict(),
            "quality": self.quality.to_dict(),
            "lines": [ln.to_dict() for ln in self.lines],
            "fields": [f.to_dict() for f in self.fields],
            "timings_ms": {k: round(float(v), 2) for k, v in self.timings_ms.items()},
            "models": [m.to_dict() for m in self.models],
            "device": self.device,
            "providers": list(self.providers),
            "config": dict(self.config),
            "codes": [dict(c) for c in self.codes],
            "mismatches": [dict(m) for m in self.mismatches],
            "needs_review": self.needs_review,
            "review": self.review.to_dict() if self.review is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReadResult:
        """The dataclasses of a payload (:func:`parse_read_result` checks its shape first)."""
        review = d.get("review")
        return cls(
            image=ImageInfo.from_dict(d.get("image") or {}),
            quality=QualityReport.from_dict(d.get("quality")),
            lines=tuple(TextLine.from_dict(ln) for ln in d.get("lines") or ()),
            fields=tuple(FieldResult.from_dict(f) for f in d.get("fields") or ()),
            timings_ms={str(k): float(v) for k, v in (d.get("timings_ms") or {}).items()},
            models=tuple(ModelInfo.from_dict(m) for m in d.get("models") or ()),
            device=str(d.get("device") or ""),
            providers=tuple(str(p) for p in d.get("providers") or ()),
            config=dict(d.get("config") or {}),
            codes=tuple(dict(c) for c in d.get("codes") or ()),
            mismatches=tuple(dict(m) for m in d.get("mismatches") or ()),
            review=ReviewDecision.from_dict(review) if isinstance(review, Mapping) else None,
        )


# ---- shape check --------------------------------------------------------------------------

_SHAPES: dict[str, tuple[type, ...]] = {
    "image": (dict,),
    "quality": (dict,),
    "lines": (list,),
    "fields": (list,),
    "timings_ms": (dict,),
    "models": (list,),
    "device": (str,),
    "providers": (list,),
    "config": (dict,),
    "codes": (list,),
    "mismatches": (list,),
    "needs_review": (bool,),
    "review": (dict, type(None)),
}
_FIELD_SHAPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "raw_value": (str,),
    "value": (str,),
    "confidence": (int, float),
    "line_index": (int, type(None)),
    "box": (list, type(None)),
    "valid": (bool,),
    "reason": (str,),
    "reasons": (list,),
    "corrected": (bool,),
    "correction": (dict, type(None)),
    "source": (str,),
    "code_value": (str, type(None)),
    "code_match": (bool, type(None)),
    "iso_date": (str, type(None)),
    "confidence_parts": (dict,),
}
_LINE_SHAPES: dict[str, tuple[type, ...]] = {
    "order": (int,),
    "text": (str,),
    "confidence": (int, float),
    "char_confidences": (list,),
    "alternatives": (list,),
    "polygon": (list, type(None)),
}


def _check(d: Any, shapes: Mapping[str, tuple[type, ...]], where: str) -> None:
    if not isinstance(d, Mapping):
        raise ContractError(f"{where}: must be an object")
    for key, types in shapes.items():
        if key not in d:
            raise ContractError(f"{where}.{key}: missing")
        v = d[key]
        if isinstance(v, bool) and bool not in types:
            raise ContractError(f"{where}.{key}: must be {'/'.join(t.__name__ for t in types)}")
        if not isinstance(v, types):
            raise ContractError(f"{where}.{key}: must be {'/'.join(t.__name__ for t in types)}")


def parse_read_result(payload: Any) -> ReadResult:
    """A :class:`ReadResult` from its JSON form; :class:`ContractError` when a key of
    :class:`ReadResultDict` (or of a field or line) is missing or of the wrong type."""
    _check(payload, _SHAPES, "result")
    for i, f in enumerate(payload["fields"]):
        _check(f, _FIELD_SHAPES, f"result.fields[{i}]")
    for i, ln in enumerate(payload["lines"]):
        _check(ln, _LINE_SHAPES, f"result.lines[{i}]")
    for i, w in enumerate(payload["quality"].get("warnings") or ()):
        _check(w, {"code": (str,), "message": (str,)}, f"result.quality.warnings[{i}]")
    try:
        return ReadResult.from_dict(payload)
    except (TypeError, ValueError, AttributeError) as exc:  # a bad value below the keys
        raise ContractError(f"result: {type(exc).__name__}: {exc}") from exc
