"""Line crops of the real labelled sets in ``/work/shared/datasets`` (read only; never shipped):
the recogniser-level evaluation of ``bench/rec_real.py`` and the unlabelled real input of the
distillation fine-tune (``workers.training.rec_distill``).

Crops are cut with the GT box enlarged by the synthetic evaluation's fixed margin
(``rec_data.EVAL_PAD``) and perspective-cropped like the pipeline (``geometry.crop_quad``).

Splits are by image, so a photo is never on both sides: ``eval`` = the images at even
positions of each set's ``labels.json`` (records with an image), ``train`` = odd positions,
``all`` = both. Sets:

- ``plates_br``: the plate box (labels without separators);
- ``expdate``: the date line of the first ``n_expdate`` records of the split;
- ``sroie``: ``n_sroie`` GT lines drawn (seed 0) from the split's SROIE receipts, lines with
  ``$ % "`` excluded; ``sroie_sym``: every line of the split holding one of ``$ % "``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DATASETS = Path("/work/shared/datasets")
SYMBOLS = frozenset('$%"')
SPLITS = ("all", "eval", "train")


def crop_box(img: np.ndarray, box: Any) -> np.ndarray:
    """(H, W, 3) uint8 + a 4-point GT box (TL, TR, BR, BL) -> the padded upright crop."""
    from workers.pipeline.geometry import crop_quad
    from workers.training.common import pad_polygon
    from workers.training.rec_data import EVAL_PAD

    poly = pad_polygon(np.asarray(box, dtype=np.float32), *EVAL_PAD)
    h, w = img.shape[:2]
    poly[:, 0] = poly[:, 0].clip(0, w - 1)
    poly[:, 1] = poly[:, 1].clip(0, h - 1)
    return crop_quad(img, poly)


def records(name: str, split: str = "all") -> list[dict[str, Any]]:
    """The records with an image of one set, restricted to ``split``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    recs = [r for r in json.loads((DATASETS / name / "labels.json").read_text()) if r["image"]]
    if split == "all":
        return recs
    return recs[0 if split == "eval" else 1 :: 2]


def image(name: str, rel: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    img = cv2.imread(str(DATASETS / name / rel), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(DATASETS / name / rel)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def line_crops(
    split: str = "all", n_expdate: int = 200, n_sroie: int = 400
) -> dict[str, list[tuple[np.ndarray, str]]]:
    """{set: [(crop (h, w, 3) uint8 RGB, GT text)]} (module docstring)."""
    out: dict[str, list[tuple[np.ndarray, str]]] = {}
    out["plates_br"] = [
        (crop_box(image("plates_br", r["image"]), ln["box"]), ln["text"])
        for r in records("plates_br", split)
        for ln in r["lines"][:1]
    ]
    out["expdate"] = [
        (crop_box(image("expdate_turner", r["image"]), r["lines"][0]["box"]), r["lines"][0]["text"])
        for r in records("expdate_turner", split)[:n_expdate]
    ]
    plain, sym = [], []
    for ri, r in enumerate(records("sroie_train", split)):
        for li, ln in enumerate(r["lines"]):
            if ln["text"].strip():
                (sym if SYMBOLS & set(ln["text"]) else plain).append((ri, li, r["image"], ln))
    random.Random(0).shuffle(plain)
    chosen = sorted(plain[:n_sroie], key=lambda t: (t[0], t[1]))
    imgs: dict[str, np.ndarray] = {}

    def cut(items: list[tuple[int, int, str, dict[str, Any]]]) -> list[tuple[np.ndarray, str]]:
        res = []
        for _, _, rel, ln in items:
            if rel not in imgs:
                imgs[rel] = image("sroie_train", rel)
            res.append((crop_box(imgs[rel], ln["box"]), ln["text"]))
        return res

    out["sroie"] = cut(chosen)
    out["sroie_sym"] = cut(sym)
    return out
