"""Line crops of the synthetic engine for recogniser training and evaluation.

Used by ``rec_train`` (training pool, validation crops) and ``rec_eval`` / the model card
(held-out evaluation crops). Seeds: see ``common`` (training crops only from ``TRAIN_SEEDS``,
evaluation crops never from them).

- ``photo_crops``: one rectified crop per line, cut from the photo with its GT polygon,
  randomly enlarged (``jitter_polygon``: a detector box is never tight) or by the fixed
  ``EVAL_PAD`` margin, rectified with ``workers.pipeline.rectification.rectify_line`` (what the
  pipeline feeds the recogniser).
- ``sample_crops``: training crops of one sample: photo crops + the flat-label crops of
  ``synth.line_crops``.
- ``heldout_crops``: deterministic evaluation crops per condition (``VAL_CONDITIONS``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.training.common import TRAIN_SEEDS, pad_polygon


@dataclass
class LineCrop:
    image: np.ndarray  # (h, w, 3) uint8 RGB, upright
    text: str
    condition: str  # the sample's conditions, "+"-joined (for per-condition metrics)
    field: str | None


# evaluation crops: a fixed margin like the pipeline's unclipped detector boxes
EVAL_PAD = (0.12, 0.12, 0.2, 0.2)


def jitter_polygon(poly: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Enlarge a line polygon like a detector box would, at random: top/bottom edges out by
    0..30 % of the line height, ends by -5..50 %."""
    return pad_polygon(
        poly,
        rng.uniform(0.0, 0.3),
        rng.uniform(0.0, 0.3),
        rng.uniform(-0.05, 0.5),
        rng.uniform(-0.05, 0.5),
    )


def photo_crops(
    sample: Any, rng: np.random.Generator | None, *, jitter: bool = True
) -> list[LineCrop]:
    """One rectified crop per line, cut from the photo with its (jittered) GT polygon."""
    from workers.pipeline.rectification import rectify_line

    cond = "+".join(sorted(sample.conditions))
    h, w = sample.image.shape[:2]
    out = []
    for ln in sample.lines:
        poly = ln.polygon.astype(np.float64)
        if jitter and rng is not None:
            poly = jitter_polygon(poly, rng)
        else:
            poly = pad_polygon(poly, *EVAL_PAD)
        poly[:, 0] = np.clip(poly[:, 0], 0, w - 1)
        poly[:, 1] = np.clip(poly[:, 1], 0, h - 1)
        try:
            crop = rectify_line(sample.image, poly).crop
        except Exception:
            continue
        if crop.shape[0] < 4 or crop.shape[1] < 4:
            continue
        out.append(LineCrop(crop, ln.text, cond, ln.field))
    return out


def sample_crops(
    seed: int, rng: np.random.Generator, *, p_clean: float = 0.15, p_engraved: float = 0.2
) -> list[LineCrop]:
    """Training crops of one synthetic sample: photo crops + flat-label crops."""
    from workers.training.synth import SynthConfig, generate_sample, line_crops

    if not TRAIN_SEEDS[0] <= seed < TRAIN_SEEDS[1]:
        raise ValueError(f"training seed {seed} outside {TRAIN_SEEDS}")
    cfg = SynthConfig(
        p_glare=0.5, p_dot_matrix=0.25, p_segment=0.15, p_engraved=p_engraved, p_curved=0.2
    )
    conds = {"clean"} if random.Random(seed ^ 0x5EED).random() < p_clean else None
    s = generate_sample(seed, conditions=conds, size=None, config=cfg)
    out = photo_crops(s, rng)
    cond = "+".join(sorted(s.conditions))
    out += [LineCrop(c.image, c.text, cond, c.field) for c in line_crops(s)]
    return out


def heldout_crops(seeds: Iterable[int], conditions: Sequence[str | None]) -> list[LineCrop]:
    """Deterministic evaluation crops: sample ``seed`` with ``conditions[i % len]`` (None =
    random), one rectified photo crop per line from its GT polygon with the fixed margin
    ``EVAL_PAD`` (what a good detector's unclipped box + the pipeline's rectifier give), no
    augmentation."""
    from workers.training.synth import generate_sample

    out: list[LineCrop] = []
    for i, seed in enumerate(seeds):
        if TRAIN_SEEDS[0] <= seed < TRAIN_SEEDS[1]:
            raise ValueError(f"seed {seed} is a training seed")
        c = conditions[i % len(conditions)]
        s = generate_sample(seed, conditions=None if c is None else {c}, size=None)
        for lc in photo_crops(s, None, jitter=False):
            lc.condition = c or "random"
            out.append(lc)
    return out


VAL_CONDITIONS = (
    "clean",
    "glare",
    "dot_matrix",
    "segment",
    "engraved",
    "curved",
    "perspective",
    "upside_down",
    "blur",
    "low_res",
)
