"""Frozen result dataclasses of the pipeline; every one has a JSON-safe ``to_dict()``.

Coordinate frame everywhere: pixels of the decoded, EXIF-corrected image, x to the right,
y down, origin at the top-left corner; polygons are lists of (x, y) floats, clockwise,
starting at the top-left corner of the text as read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Point = tuple[float, float]
Polygon = tuple[Point, ...]


def _poly(p: Polygon | None) -> list[list[float]] | None:
    if p is None:
        return None
    return [[round(float(x), 1), round(float(y), 1)] for x, y in p]


@dataclass(frozen=True)
class ImageInfo:
    """Decoded image metadata. ``width``/``height`` are after EXIF orientation."""

    width: int
    height: int
    format: str
    exif_orientation: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": int(self.width),
            "height": int(self.height),
            "format": self.format,
            "exif_orientation": int(self.exif_orientation),
        }


@dataclass(frozen=True)
class QualityWarning:
    code: str  # "blur" | "underexposed" | "overexposed" | "glare" | "glare_text" | "no_text"
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class LineQuality:
    """Glare over one recognised line (``TextLine.order``): ``glare_fraction`` = share of the
    line polygon's pixels in the glare mask; ``column_fraction`` = share of the line's length
    at least half washed out; ``retake`` = glare hides characters (see ``glare.line_glare``)."""

    order: int
    glare_fraction: float
    column_fraction: float
    retake: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": int(self.order),
            "glare_fraction": round(float(self.glare_fraction), 5),
            "retake": bool(self.retake),
        }


@dataclass(frozen=True)
class QualityReport:
    """Photo quality measures (see ``quality.py`` for definitions and thresholds).
    ``lines``: per-line glare (empty when glare-aware inference is off)."""

    blur: float
    exposure: float
    glare_fraction: float
    text_glare_fraction: float
    warnings: tuple[QualityWarning, ...] = ()
    lines: tuple[LineQuality, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.warnings

    def to_dict(self) -> dict[str, Any]:
        return {
            "blur": round(float(self.blur), 3),
            "exposure": round(float(self.exposure), 4),
            "glare_fraction": round(float(self.glare_fraction), 5),
            "text_glare_fraction": round(float(self.text_glare_fraction), 5),
            "ok": self.ok,
            "warnings": [w.to_dict() for w in self.warnings],
            "lines": [ln.to_dict() for ln in self.lines],
        }


@dataclass(frozen=True)
class DetectedBox:
    """A detected text region: quad of 4 (x, y) points in original image pixels + DB score.
    ``outline``: for a bent line (``rectification.classify_line`` says "curved"), its line
    polygon of 2N points (top edge start -> end, bottom edge end -> start), else None."""

    polygon: Polygon
    score: float
    outline: Polygon | None = None


@dataclass(frozen=True)
class RecognizedText:
    """CTC greedy decode of one crop.

    ``char_confidences[i]`` is the peak softmax probability of ``text[i]``; ``alternatives[i]``
    are the top-k (char, prob) at that peak time step (blank excluded), best first.
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    alternatives: tuple[tuple[tuple[str, float], ...], ...]


@dataclass(frozen=True)
class TextLine:
    order: int
    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    alternatives: tuple[tuple[tuple[str, float], ...], ...]
    polygon: Polygon
    rotated_180: bool = False

    def to_dict(self) -> dict[str, Any]:
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


@dataclass(frozen=True)
class FieldResult:
    """One key field of a read.

    ``raw_value``: the text as read (OCR words, or the code's data for ``source="code"``);
    ``value``: the normalised, possibly corrected value; ``valid`` + ``reasons`` ((code,
    message) pairs, ``reason`` joins the messages): the schema check of ``value``.
    ``corrected``: ``value`` comes from format-constrained correction (``correction`` holds
    ``from``, ``to``, ``probability`` and the ``changes``). ``confidence``: recognition x
    extraction x validation (``confidence_parts``); ``extraction_confidence``: the extractor's
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

    def to_dict(self) -> dict[str, Any]:
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


@dataclass(frozen=True)
class ReviewReason:
    """Why a read needs a person: ``code`` in ``missing``, ``invalid``, ``low_confidence``,
    ``mislabel`` (a code on the label disagrees with the print); ``field`` it concerns."""

    code: str
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class ReviewDecision:
    """``needs_review`` is False only when every field is valid, present when required,
    at or above ``auto_accept`` confidence, and no code contradicts the print."""

    needs_review: bool
    auto_accept: float
    reasons: tuple[ReviewReason, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "needs_review": bool(self.needs_review),
            "auto_accept": round(float(self.auto_accept), 4),
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass(frozen=True)
class ModelInfo:
    stage: str  # "detection" | "recognition" | "classification" | "fields"
    name: str
    version: str
    sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
        }


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

    def to_dict(self) -> dict[str, Any]:
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
