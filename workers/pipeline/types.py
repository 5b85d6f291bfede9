"""Internal dataclasses of the pipeline stages; the result types are :mod:`workers.contract`.

Coordinate frame everywhere: pixels of the decoded, EXIF-corrected image, x to the right,
y down, origin at the top-left corner; polygons are lists of (x, y) floats, clockwise,
starting at the top-left corner of the text as read.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.contract import (  # noqa: F401  (the stages' result types, defined there)
    FieldResult,
    ImageInfo,
    LineQuality,
    ModelInfo,
    Point,
    Polygon,
    QualityReport,
    QualityWarning,
    ReadResult,
    ReviewDecision,
    ReviewReason,
    TextLine,
)


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
