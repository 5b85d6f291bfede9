"""What the trainers (``det_train``, ``rec_train``, ``extractor/train``), their evaluations and
``bench/`` share: seeds, checkpoints, CSV logs, learning-rate schedules, the manifest of an
exported model, and the box conventions of the synthetic data. Training side only (never
imported by the app); torch is imported inside the functions that need it.

Seeds of the synthetic engine (``workers.training.synth.generate_sample``): the detector and
recogniser train on ``TRAIN_SEEDS`` = [0, 8_900_000); their training logs validate on
``VAL_SEEDS`` = [8_900_000, 9_000_000); ``bench/`` and the model cards evaluate on
``EVAL_SEED_BASE`` = 9_000_000 and up.

Checkpoints (``save_checkpoint``): a ``workers.training.convert`` checkpoint (``spec`` +
``state_dict``, loadable with ``convert.load``) plus optimiser, scheduler, the train state (JSON:
step, data cursor, numpy RNG state, ...) and torch's RNG state, written atomically;
``start_or_resume`` puts a run back where the checkpoint left it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TRAIN_SEEDS = (0, 8_900_000)
VAL_SEEDS = (8_900_000, 9_000_000)
EVAL_SEED_BASE = 9_000_000


# ---- seeds -----------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---- learning-rate schedules -----------------------------------------------------------------
def warmup_cosine(opt: Any, warmup: int, total: int, min_ratio: float = 0.05) -> Any:
    """Linear warmup over ``warmup`` steps, then cosine decay to ``min_ratio`` * lr at ``total``
    (a ``LambdaLR``, stepped once per optimiser step)."""
    import torch

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        prog = min(1.0, (step - warmup) / max(total - warmup, 1))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * prog))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def warmup_linear(opt: Any, warmup: int, total: int) -> Any:
    """Linear warmup over ``warmup`` (at least 1) steps, then linear decay to 0 at ``total``
    (a ``LambdaLR``, stepped once per optimiser step)."""
    import torch

    warm = max(1, warmup)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


# ---- checkpoints -----------------------------------------------------------------------------
def _step_of(path: Path) -> int:
    """The step number in a checkpoint name (its last run of digits: ckpt_0000050, ckpt-50)."""
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1


def checkpoints(out: Path, pattern: str = "ckpt_*.pt") -> list[Path]:
    """The checkpoints ``pattern`` matches in ``out``, oldest (lowest step) first."""
    return sorted(out.glob(pattern), key=_step_of)


def latest_checkpoint(out: Path, pattern: str = "ckpt_*.pt") -> Path | None:
    """The checkpoint with the highest step in ``out``, or None."""
    found = checkpoints(out, pattern)
    return found[-1] if found else None


def prune_checkpoints(out: Path, keep: int, pattern: str = "ckpt_*.pt") -> None:
    """Delete all but the ``keep`` latest checkpoints (``keep`` <= 0: delete none)."""
    if keep <= 0:
        return
    for old in checkpoints(out, pattern)[:-keep]:
        old.unlink()


def torch_save_atomic(payload: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path`` (a run
    killed while saving leaves the previous checkpoint intact); creates the folder."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def save_checkpoint(
    path: Path, net: Any, opt: Any, sched: Any, state: dict[str, Any], **extra: Any
) -> None:
    """Save a ``convert`` network ``net`` (``spec`` + ``state_dict``) with the optimiser, the
    scheduler, the JSON train ``state``, torch's RNG state and ``extra`` entries."""
    import torch

    payload = {
        "spec": net.spec.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        **extra,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "train_state": json.dumps(state),
        "rng_torch": torch.get_rng_state(),
    }
    torch_save_atomic(payload, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint of ``save_checkpoint`` (tensors only, on the CPU)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def start_or_resume(
    seed: int,
    opt: Any,
    sched: Any,
    state: dict[str, Any],
    path: Path | None,
    ck: dict[str, Any] | None,
) -> np.random.Generator:
    """The numpy generator of a run. A fresh run (``ck`` None): ``default_rng(seed)`` and
    ``seed_everything(seed)``. A resumed one (``ck`` = ``load_checkpoint(path)``, ``state`` its
    train state): optimiser, scheduler, torch's RNG and the generator as they were when the
    checkpoint was saved (the generator from ``state["rng_np"]``)."""
    rng = np.random.default_rng(seed)
    if ck is None:
        seed_everything(seed)
        return rng
    import torch

    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["rng_torch"])
    rng.bit_generator.state = state["rng_np"]
    print(f"resumed {path} at step {state['step']}", flush=True)
    return rng


# ---- CSV training logs -----------------------------------------------------------------------
def trim_log(path: Path, step: int) -> None:
    """Drop log rows after ``step`` (written by a run killed after its last checkpoint)."""
    if not path.exists():
        return
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    keep = [r for r in rows[1:] if r and int(r[0]) <= step]
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *keep])


def open_log(path: Path, columns: Sequence[str], *, resume_step: int | None) -> tuple[Any, Any]:
    """CSV training log kept across resumes: rows after ``resume_step`` (None: a fresh run) are
    dropped, the header is written once. Returns (file, csv writer); the caller closes it."""
    if resume_step is not None:
        trim_log(path, resume_step)
    new = not path.exists()
    f = path.open("a", newline="")
    writer = csv.writer(f)
    if new:
        writer.writerow(list(columns))
    return f, writer


# ---- exported models -------------------------------------------------------------------------
def write_manifest(onnx_path: Path, **extra: Any) -> Path:
    """``manifest.json`` beside an exported model: {"name", "version", "files": {name:
    {"sha256", "bytes"}}, ...extra}; ``workers.pipeline.models.LocalModelFile`` checks the
    sha256 on every load. Existing entries for other files are kept."""
    mpath = onnx_path.parent / "manifest.json"
    man = json.loads(mpath.read_text(encoding="utf-8")) if mpath.exists() else {}
    man.setdefault("files", {})
    man["files"][onnx_path.name] = {
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "bytes": onnx_path.stat().st_size,
    }
    man.update(extra)
    mpath.write_text(json.dumps(man, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return mpath


# ---- box conventions of the synthetic data ---------------------------------------------------
# Margin of the shipped PP-OCRv6-small det's boxes around the engine's glyph-tight polygons,
# measured on 105 clean synthetic lines (box height = 1.65x GT height, +0.42 heights in
# length): per side 0.32 heights across, 0.21 along (``pad_polygon`` arguments). det_train
# trains with it, bench/det_accuracy scores IoU against ground truth padded by it.
BOX_PAD = (0.32, 0.32, 0.21, 0.21)


def pad_polygon(
    poly: np.ndarray, top: float, bottom: float, start: float, end: float
) -> np.ndarray:
    """Enlarge a reading-order line polygon (2N, 2): top/bottom edges moved out by ``top`` /
    ``bottom`` line heights, the first/last points moved along the line by ``start`` / ``end``
    line heights (negative values shrink)."""
    from workers.pipeline.rectification import split_edges

    t, b = split_edges(poly)
    v = b - t
    t = t - v * top
    b = b + v * bottom
    h = float(np.linalg.norm(v, axis=1).mean())
    for edge in (t, b):
        d0 = edge[0] - edge[1]
        d1 = edge[-1] - edge[-2]
        edge[0] = edge[0] + d0 / max(np.linalg.norm(d0), 1e-6) * start * h
        edge[-1] = edge[-1] + d1 / max(np.linalg.norm(d1), 1e-6) * end * h
    return np.concatenate([t, b[::-1]])
