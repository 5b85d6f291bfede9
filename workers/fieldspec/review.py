"""The needs-review rule: when a read may be accepted without a person.

A read is auto-accepted only when every required field is present, every reported field is
valid and at or above the product's auto-accept confidence, no field value may have been
truncated (glare, the frame edge or a detection cut at its end: ``workers.pipeline.truncation``)
and no code on the label contradicts the print. Anything else ``needs_review``, with one
:class:`ReviewReason` per cause: a stable ``code`` (``missing``, ``invalid``,
``low_confidence``, ``truncated``, ``mislabel``), the
``field`` it concerns and ``params`` for the message (rendered to words by the web tier, in the
user's language; ``message`` is the English text for logs and the command line).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from .grammar import ProductSchema

__all__ = [
    "REVIEW_CODES",
    "ReviewDecision",
    "ReviewReason",
    "calibrated_operating_point",
    "decide_review",
    "default_auto_accept_threshold",
]

# The calibration the pipeline applies (``workers.pipeline.calibration``, fitted by
# ``bench/calibration.py --fit``): its risk-coverage table and recommended threshold are read
# here with the standard library, so the web tier can show them without the pipeline.
CALIBRATION_JSON = (
    Path(__file__).resolve().parents[1] / "models" / "calibration" / "calibration.json"
)
FALLBACK_AUTO_ACCEPT = 0.85  # without a calibration file

REVIEW_CODES = ("missing", "invalid", "low_confidence", "truncated", "mislabel")
# ``truncated`` params: ``side`` (start, end or inside the value) and ``causes`` (a list of
# ``edge``, ``glare``, ``neighbour``, ``ink``: see ``workers.pipeline.truncation``)


@dataclass(frozen=True)
class ReviewReason:
    """Why a read needs a person (module docstring)."""

    code: str
    field: str
    message: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "field": self.field,
            "message": self.message,
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReviewReason:
        return cls(
            code=str(d.get("code", "")),
            field=str(d.get("field", "")),
            message=str(d.get("message", "")),
            params=dict(d.get("params") or {}),
        )


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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReviewDecision:
        return cls(
            needs_review=bool(d.get("needs_review", True)),
            auto_accept=float(d.get("auto_accept") or 0.0),
            reasons=tuple(ReviewReason.from_dict(r) for r in d.get("reasons") or ()),
        )


@lru_cache(maxsize=4)
def _calibration(path: str) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def calibrated_operating_point(
    threshold: float | None = None, path: Path | str = CALIBRATION_JSON
) -> dict[str, float] | None:
    """What the held-out risk-coverage table says about an auto-accept threshold:
    ``{"threshold", "expected_wrong", "coverage", "images_accepted"}`` (shares in 0..1 of the
    calibration's report half, all its sets together). ``threshold`` None: the recommended
    one (the lowest whose wrong share among auto-accepted fields met the target risk); else the
    tabulated row at the largest threshold <= ``threshold`` (a conservative reading). None
    without a calibration file or a row."""
    cal = _calibration(str(path))
    if not cal:
        return None
    if threshold is None:
        rec = cal.get("recommended") or {}
        if rec.get("threshold") is None:
            return None
        return {
            "threshold": float(rec["threshold"]),
            "expected_wrong": float(rec.get("expected_wrong", 0.0)),
            "coverage": float(rec.get("coverage", 0.0)),
            "images_accepted": float(rec.get("images_accepted", 0.0)),
        }
    rows = [r for r in cal.get("risk_coverage") or () if float(r["threshold"]) <= threshold + 1e-9]
    if not rows:
        return None
    row = max(rows, key=lambda r: float(r["threshold"]))
    allr = row.get("all") or {}
    return {
        "threshold": float(row["threshold"]),
        "expected_wrong": float(allr.get("wrong", 0.0)),
        "coverage": float(allr.get("coverage", 0.0)),
        "images_accepted": float(allr.get("images_accepted", 0.0)),
    }


def default_auto_accept_threshold() -> float:
    """A new product type's auto-accept threshold: the calibration's recommended threshold
    for the target risk (0.5 % wrong among auto-accepted fields), else
    ``FALLBACK_AUTO_ACCEPT``."""
    op = calibrated_operating_point()
    return round(op["threshold"], 3) if op else FALLBACK_AUTO_ACCEPT


class FieldState(Protocol):
    """What the rule looks at in a field (``workers.contract.FieldResult`` has it)."""

    name: str
    value: str
    valid: bool
    confidence: float
    reason: str


class MismatchState(Protocol):
    """A code that contradicts the print (``barcodes.Mismatch`` has it)."""

    field: str
    printed: str
    coded: str
    code_format: str


def decide_review(
    fields: Sequence[FieldState],
    schema: ProductSchema,
    threshold: float,
    mismatches: Iterable[MismatchState] = (),
    truncated: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReviewDecision:
    """Apply the rule (module docstring) to a read's checked fields. ``truncated``: field name
    -> ``{"side", "causes"}`` for values that may have lost characters (never auto-accepted,
    whatever their confidence; a value a code confirms is not truncated)."""
    truncated = truncated or {}
    reasons: list[ReviewReason] = []
    by_name = {f.name: f for f in fields}
    for spec in schema.fields:
        if spec.required and not (by_name.get(spec.name) and by_name[spec.name].value):
            reasons.append(
                ReviewReason("missing", spec.name, f"{spec.display_label} was not found")
            )
    for f in fields:
        if not f.value:
            continue
        if not f.valid:
            reasons.append(ReviewReason("invalid", f.name, f.reason or "invalid value"))
        elif f.confidence < threshold:
            reasons.append(
                ReviewReason(
                    "low_confidence",
                    f.name,
                    f"confidence {f.confidence:.2f} is below the auto-accept "
                    f"threshold {threshold:.2f}",
                    {"confidence": round(float(f.confidence), 5), "threshold": float(threshold)},
                )
            )
    for f in fields:
        cut = truncated.get(f.name)
        if f.value and cut is not None:
            causes = [str(c) for c in cut.get("causes") or ()]
            side = str(cut.get("side") or "end")
            reasons.append(
                ReviewReason(
                    "truncated",
                    f.name,
                    f"the value may be cut off at its {side} ({', '.join(causes) or 'unknown'})",
                    {"side": side, "causes": causes},
                )
            )
    for m in mismatches:
        reasons.append(
            ReviewReason(
                "mislabel",
                m.field,
                f"printed {m.printed!r} but the {m.code_format} code says {m.coded!r}",
                {"printed": m.printed, "coded": m.coded, "code_format": m.code_format},
            )
        )
    return ReviewDecision(needs_review=bool(reasons), auto_accept=threshold, reasons=tuple(reasons))
