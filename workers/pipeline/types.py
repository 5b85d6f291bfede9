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
    """A detected text region: quad of 4 (x, y) points in original image pixels + DB score."""

    polygon: Polygon
    score: float


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
    name: str
    raw_value: str
    value: str
    confidence: float
    line_index: int | None
    box: Polygon | None
    valid: bool
    reason: str = ""

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
        }
