"""Calibrated per-field confidence: a monotone map from the raw per-field confidence
(recognition x extraction x validation x look-alike doubt, ``verification``) to the probability
that the value is right, fitted on held-out data by ``bench/calibration.py`` and stored as a
small JSON file (``workers/models/calibration/calibration.json``, with its ``MODEL_CARD.md``).

The map is isotonic regression (pool-adjacent-violators, numpy only) per field group (a field's
own name when it had enough held-out samples, else ``date`` for date fields, else ``_all``),
evaluated by linear interpolation between the fitted knots: non-decreasing by construction.

A map is only right for the models it was fitted on: the file records the sha256 of the
detection, recognition and field models and the raw-confidence formula (``key``).
:func:`load_calibration` returns the identity map (raw confidence, with a log warning) when the
running models differ, so that a retrained extractor never gets a calibration fitted on another
one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CALIBRATION_DIR = Path(__file__).resolve().parents[1] / "models" / "calibration"
CALIBRATION_PATH = CALIBRATION_DIR / "calibration.json"
FORMAT = 1
KEY_STAGES = ("detection", "recognition", "fields")
# How ``verification`` composes the raw per-field confidence (the map's input). Bump it when
# that formula changes: a map fitted on the old raw scores does not fit the new ones.
# 2: x (1 - LOOKALIKE_WEIGHT x the look-alike doubt above its floor); a character's
# confidence includes its alternatives that normalise to the same character.
# 3: a separator the field drops costs nothing; no look-alike doubt in a value of one kind.
RAW_VERSION = "3"
DATE_FIELDS = frozenset({"mfg_date", "expiry_date", "date", "best_before"})


def model_key(models: Iterable[Any]) -> dict[str, str]:
    """What a calibration is valid for: stage -> ``name:version:sha256`` of the models that
    produced the raw confidences (``ModelInfo`` objects or their dicts); ``fields`` is
    ``rules`` when the extractor has no model; ``raw`` is the raw-confidence formula
    (:data:`RAW_VERSION`)."""
    key: dict[str, str] = {}
    for m in models:
        d = m if isinstance(m, Mapping) else m.to_dict()
        if d.get("stage") in KEY_STAGES:
            key[str(d["stage"])] = f"{d.get('name')}:{d.get('version')}:{d.get('sha256')}"
    key.setdefault("fields", "rules")
    key["raw"] = f"verification:{RAW_VERSION}"
    return key


def isotonic_fit(
    x: Sequence[float], y: Sequence[float], *, max_knots: int = 64
) -> tuple[list[float], list[float]]:
    """Isotonic (non-decreasing) least-squares fit of ``y`` (0/1 outcomes) on ``x`` by
    pool-adjacent-violators. Returns knots ``(xs, ys)``: block mean x and block accuracy, both
    non-decreasing, thinned to at most ``max_knots`` (merging adjacent blocks keeps it
    monotone). Each block's accuracy is Laplace-smoothed ((k + 0.5) / (n + 1), then a running
    maximum): a block of 40 right reads says P about 0.99, not 1.0."""
    xa = np.asarray(x, np.float64)
    ya = np.asarray(y, np.float64)
    if len(xa) == 0:
        return [0.0, 1.0], [0.0, 1.0]
    order = np.argsort(xa, kind="mergesort")
    xa, ya = xa[order], ya[order]
    # blocks: [sum_y, sum_x, weight]
    sy: list[float] = []
    sx: list[float] = []
    wt: list[float] = []
    for xi, yi in zip(xa, ya, strict=True):
        sy.append(float(yi))
        sx.append(float(xi))
        wt.append(1.0)
        while len(sy) > 1 and sy[-2] / wt[-2] >= sy[-1] / wt[-1]:
            y2, x2, w2 = sy.pop(), sx.pop(), wt.pop()
            sy[-1] += y2
            sx[-1] += x2
            wt[-1] += w2
    bx = np.array(sx) / np.array(wt)
    by = np.array(sy) / np.array(wt)
    bw = np.array(wt)
    while len(bx) > max_knots:  # merge the lightest adjacent pair (stays non-decreasing)
        i = int(np.argmin(bw[:-1] + bw[1:]))
        w = bw[i] + bw[i + 1]
        bx[i] = (bx[i] * bw[i] + bx[i + 1] * bw[i + 1]) / w
        by[i] = (by[i] * bw[i] + by[i + 1] * bw[i + 1]) / w
        bw[i] = w
        bx, by, bw = np.delete(bx, i + 1), np.delete(by, i + 1), np.delete(bw, i + 1)
    by = np.maximum.accumulate((by * bw + 0.5) / (bw + 1.0))
    return [round(float(v), 6) for v in bx], [round(float(v), 6) for v in by]


@dataclass(frozen=True)
class CalibrationMap:
    """Raw per-field confidence -> P(correct). ``maps``: group -> (xs, ys) knots;
    ``groups``: field name -> group; empty ``maps`` = identity. ``meta``: the JSON's other
    entries (risk-coverage table, recommended threshold, data card)."""

    key: Mapping[str, str] = field(default_factory=dict)
    maps: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> bool:
        return not self.maps

    def group_of(self, name: str) -> str | None:
        if name in self.maps:
            return name
        g = self.groups.get(name) or ("date" if name in DATE_FIELDS else None)
        if g is not None and g in self.maps:
            return g
        return "_all" if "_all" in self.maps else None

    def __call__(self, name: str, raw: float) -> float:
        """P(correct) for field ``name`` at raw confidence ``raw`` (identity without a map)."""
        g = self.group_of(name)
        if g is None:
            return float(raw)
        xs, ys = self.maps[g]
        return float(np.clip(np.interp(float(raw), xs, ys), 0.0, 1.0))

    @property
    def recommended_threshold(self) -> float | None:
        rec = self.meta.get("recommended") or {}
        t = rec.get("threshold")
        return None if t is None else float(t)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "key": dict(self.key),
            "groups": dict(self.groups),
            "maps": {g: {"x": list(xs), "y": list(ys)} for g, (xs, ys) in self.maps.items()},
            **{k: v for k, v in self.meta.items() if k not in ("format", "key", "groups", "maps")},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CalibrationMap:
        if int(d.get("format", 0)) != FORMAT:
            raise ValueError(f"calibration format {d.get('format')!r}, expected {FORMAT}")
        maps = {}
        for g, m in (d.get("maps") or {}).items():
            xs, ys = tuple(float(v) for v in m["x"]), tuple(float(v) for v in m["y"])
            if len(xs) != len(ys) or not xs:
                raise ValueError(f"calibration map {g!r}: knots do not match")
            if any(b < a for a, b in zip(xs, xs[1:], strict=False)) or any(
                b < a for a, b in zip(ys, ys[1:], strict=False)
            ):
                raise ValueError(f"calibration map {g!r} is not monotone")
            maps[str(g)] = (xs, ys)
        meta = {k: v for k, v in d.items() if k not in ("format", "key", "groups", "maps")}
        return cls(
            key=dict(d.get("key") or {}),
            maps=maps,
            groups=dict(d.get("groups") or {}),
            meta=meta,
        )


IDENTITY = CalibrationMap()


def read_calibration(path: Path | str = CALIBRATION_PATH) -> CalibrationMap | None:
    """The stored map (no model check), or None when the file is absent or unreadable."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        return CalibrationMap.from_dict(json.loads(p.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("calibration %s unreadable (%s): using raw confidences", p, exc)
        return None


def load_calibration(models: Iterable[Any], path: Path | str = CALIBRATION_PATH) -> CalibrationMap:
    """The calibration for the running models: the stored map when its ``key`` matches
    :func:`model_key` of ``models``, else :data:`IDENTITY` with a warning (a map fitted on
    other models would be a wrong calibration, not a rough one)."""
    cal = read_calibration(path)
    if cal is None:
        log.warning("no calibration at %s: field confidences are uncalibrated", path)
        return IDENTITY
    want = model_key(models)
    if dict(cal.key) != want:
        diff = sorted(k for k in set(want) | set(cal.key) if want.get(k) != cal.key.get(k))
        log.warning(
            "calibration %s was fitted for other models (%s differ): field confidences are "
            "uncalibrated until `bench/calibration.py --fit` is re-run",
            path,
            ", ".join(diff),
        )
        return IDENTITY
    return cal
