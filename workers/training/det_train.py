"""Fine-tune a converted PP-OCR DB text detector on synthetic photos (CPU-friendly).

Training-side only (never imported by the app).

Network: the shipped PP-OCR det (``--base``, default PP-OCRv6-small, the pipeline's default
detector) converted by ``workers.training.convert`` (whole network
trained; BatchNorm running statistics frozen, affine weights trained) gives the probability
map logits P (N, 1, H, W). The inference graph has no threshold branch, so a DB threshold head
of PaddleOCR's shape (conv3x3 96->24, BN, ReLU, deconv x2, BN, ReLU, deconv x2 -> 1) is added
on the 96-channel fused FPN feature (the input of the probability head's first conv, captured
with a forward pre-hook). It exists only for training (as in PaddleOCR): ``export`` writes the
probability network's weights back into the shipped graph.

Data: ``synth.generate_sample`` photos from ``TRAIN_SEEDS`` (validation ``VAL_SEEDS``; never
the evaluation seeds 9_000_000+), resized to ``--size`` on the long side (multiples of 32),
line polygons (4 points, or 2N for curved lines) scaled alike. Glare: the engine's own glare
(p_glare raised to 0.5) plus :func:`extra_highlights` (random specular blobs/streaks anywhere
on the image, p = ``--p-highlight``).

Targets (:func:`db_targets`, DBNet / PaddleOCR MakeShrinkMap + MakeBorderMap), all (H, W)
float32 in input pixels:

- ``shrink``: 1 inside each polygon shrunk by D = A (1 - r^2) / L (pyclipper offset, r = 0.4);
- ``shrink_mask``: 0 inside polygons too small to learn from (short side < ``min_text``) or
  whose shrink vanishes, else 1;
- ``thresh``: in the band between the polygon dilated by D and ... its distance-to-edge
  profile: 0.3 + 0.4 * (1 - min(dist_to_polygon_edge / D, 1)), 0.3 elsewhere;
- ``thresh_mask``: 1 inside the dilated polygon.

Loss: 5 * BCE(P, shrink) with 3:1 hard-negative mining + 1 * dice(B, shrink) where
B = sigmoid(50 (sigmoid(P) - T)) is DB's approximate binary map + 10 * L1(T, thresh) inside
``thresh_mask``. AdamW, warmup + cosine, gradient clipping, checkpoints + ``--resume`` like
``rec_train``.

Device (``workers.training.device``, as ``rec_train``): ``--device auto|cpu|cuda[:N]``, bf16
autocast on CUDA (``--amp``; the DB loss in float32), ``--max-minutes`` (stop in time, best
checkpoint by validation loss kept, schedule decays over the time budget), ``--data-workers N``
forked processes that render samples on the interleaved seeds ``cursor + w + N k`` and send
compact batches (uint8 image and masks, float16 threshold map; normalised on the device).
Defaults: 0 workers and batch 4 on the CPU (the single-process path, unchanged), ``min(12,
cpus - 2)`` workers and batch 16 on CUDA. ``workers/training/gpu/train_det.sh`` is the prepared
run for one GPU.

CLI::

    nice -n 10 python -m workers.training.det_train --max-steps 300 --batch-size 4 \
        --size 640 --out var/train/det [--resume]
    python -m workers.training.det_train --export var/train/det/best.pt \
        --onnx workers/models/det_ours/det.onnx
    python -m workers.training.det_train --device cuda --max-minutes 6 --max-steps 100000 \
        --out var/train/det_gpu
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyclipper

from workers.training.common import (
    BOX_PAD,
    TRAIN_SEEDS,
    VAL_SEEDS,
    latest_checkpoint,
    load_checkpoint,
    open_log,
    pad_polygon,
    prune_checkpoints,
    save_checkpoint,
    start_or_resume,
    write_manifest,
)
from workers.training.device import (
    TimeBudget,
    WorkerStream,
    add_device_args,
    amp_dtype,
    autocast,
    default_data_workers,
    device_info,
    parallel_map,
    pick,
    resolve_device,
    to_device,
    warmup_cosine_budget,
)

MODEL_SET = "ppocrv6_small"  # default base: the pipeline's default detector (--base to change)
SHRINK_RATIO = 0.4
THRESH_MIN, THRESH_MAX = 0.3, 0.7


# ---- targets ---------------------------------------------------------------------------------
def _offset(poly: np.ndarray, dist: float) -> list[np.ndarray]:
    pco = pyclipper.PyclipperOffset()
    pco.AddPath(
        [tuple(p) for p in np.round(poly).astype(int)],
        pyclipper.JT_ROUND,
        pyclipper.ET_CLOSEDPOLYGON,
    )
    return [np.asarray(p, dtype=np.float64) for p in pco.Execute(dist)]


def _poly_area_perimeter(poly: np.ndarray) -> tuple[float, float]:
    p = poly.astype(np.float32)
    return abs(float(cv2.contourArea(p))), float(cv2.arcLength(p, True))


def _segment_distance(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every grid point (xs, ys) to the segment a-b."""
    d = b - a
    L2 = float(d @ d)
    if L2 <= 1e-12:
        return np.hypot(xs - a[0], ys - a[1])
    t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / L2, 0.0, 1.0)
    return np.hypot(xs - (a[0] + t * d[0]), ys - (a[1] + t * d[1]))


def db_targets(
    polygons: Sequence[np.ndarray],
    hw: tuple[int, int],
    *,
    shrink_ratio: float = SHRINK_RATIO,
    min_text: float = 6.0,
    ignore: Sequence[bool] | None = None,
) -> dict[str, np.ndarray]:
    """DB training targets for ``polygons`` (each (K, 2) float, K >= 4, in pixels of an image of
    size ``hw`` = (H, W)). Returns float32 (H, W) maps ``shrink``, ``shrink_mask``, ``thresh``,
    ``thresh_mask`` (see the module docstring)."""
    h, w = hw
    shrink = np.zeros((h, w), np.float32)
    smask = np.ones((h, w), np.float32)
    canvas = np.zeros((h, w), np.float32)
    tmask = np.zeros((h, w), np.float32)
    for i, poly in enumerate(polygons):
        poly = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        area, peri = _poly_area_perimeter(poly)
        rect = cv2.minAreaRect(poly.astype(np.float32))
        bad = (ignore is not None and ignore[i]) or min(rect[1]) < min_text or area < 1 or peri <= 0
        if bad:
            cv2.fillPoly(smask, [np.round(poly).astype(np.int32)], 0.0)
            continue
        dist = area * (1 - shrink_ratio**2) / peri
        shr = _offset(poly, -dist)
        if len(shr) != 1 or len(shr[0]) < 3:
            cv2.fillPoly(smask, [np.round(poly).astype(np.int32)], 0.0)
            continue
        cv2.fillPoly(shrink, [np.round(shr[0]).astype(np.int32)], 1.0)
        # threshold map: distance to the polygon's edges inside the polygon dilated by dist
        pad = _offset(poly, dist)
        if not pad:
            continue
        padded = pad[0]
        cv2.fillPoly(tmask, [np.round(padded).astype(np.int32)], 1.0)
        x0, y0 = np.floor(padded.min(0)).astype(int)
        x1, y1 = np.ceil(padded.max(0)).astype(int)
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x1, w - 1), min(y1, h - 1)
        if xb < xa or yb < ya:
            continue
        ys, xs = np.mgrid[ya : yb + 1, xa : xb + 1].astype(np.float64)
        dmin = np.full(xs.shape, np.inf)
        for k in range(len(poly)):
            dmin = np.minimum(dmin, _segment_distance(xs, ys, poly[k], poly[(k + 1) % len(poly)]))
        val = (1.0 - np.clip(dmin / dist, 0.0, 1.0)).astype(np.float32)
        region = canvas[ya : yb + 1, xa : xb + 1]
        np.maximum(region, val, out=region)
    thresh = canvas * (THRESH_MAX - THRESH_MIN) + THRESH_MIN
    return {"shrink": shrink, "shrink_mask": smask, "thresh": thresh, "thresh_mask": tmask}


# ---- data ------------------------------------------------------------------------------------
def extra_highlights(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-3 random specular highlights (blob or streak, clipped white core, soft bloom) anywhere
    on the (H, W, 3) uint8 RGB image."""
    h, w = img.shape[:2]
    f = 4
    sh, sw = max(h // f, 1), max(w // f, 1)
    ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float32)
    field = np.zeros((sh, sw), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
        s = rng.uniform(0.01, 0.06) * max(sw, sh)
        s_long = s * (rng.uniform(2, 6) if rng.random() < 0.4 else rng.uniform(1, 1.8))
        ang = rng.uniform(0, math.pi)
        ca, sa = math.cos(ang), math.sin(ang)
        a = ((xs - cx) * ca + (ys - cy) * sa) / s_long
        b = (-(xs - cx) * sa + (ys - cy) * ca) / s
        field += rng.uniform(0.6, 3.0) * np.exp(-0.5 * (a * a + b * b))
    core = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    bloom = cv2.resize(cv2.GaussianBlur(field, (0, 0), rng.uniform(3, 8)), (w, h))
    out = img.astype(np.float32) + (core * 255.0 + bloom * rng.uniform(30, 90))[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def distractors(
    img: np.ndarray, polys: Sequence[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Text-like clutter that is not text, drawn only outside the (padded) GT line polygons:
    rows of small rounded blocks (parked cars, grille slats, connector pins), parallel hatching
    (vents, grilles), screw heads and holes, stray edges and short strokes. The shipped detector
    ignores such clutter in real photos; training on clean renders alone taught the fine-tuned
    one to box it (plates_br: 7.1 boxes per photo vs 3.8), so these are its negatives.
    ``img``: (H, W, 3) uint8 RGB; returns a new image."""
    h, w = img.shape[:2]
    layer = img.copy()
    unit = max(4.0, min(h, w) / 40.0)
    for _ in range(int(rng.integers(2, 7))):
        dark = rng.random() < 0.6
        base = rng.uniform(0, 70) if dark else rng.uniform(170, 255)
        colour = tuple(float(np.clip(base + rng.normal(0, 15), 0, 255)) for _ in range(3))
        x0, y0 = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        kind = rng.integers(0, 4)
        thick = int(max(1, round(unit * rng.uniform(0.1, 0.4))))
        if kind == 0:  # a row of small rounded blocks
            bw, bh = unit * rng.uniform(0.5, 2.5), unit * rng.uniform(0.4, 1.2)
            gap = bw * rng.uniform(0.2, 1.0)
            for k in range(int(rng.integers(3, 10))):
                x = x0 + k * (bw + gap)
                cv2.rectangle(
                    layer,
                    (int(x), int(y0)),
                    (int(x + bw), int(y0 + bh)),
                    colour,
                    -1 if rng.random() < 0.6 else thick,
                    cv2.LINE_AA,
                )
        elif kind == 1:  # hatching
            length = unit * rng.uniform(2, 10)
            ang = rng.uniform(0, math.pi)
            dx, dy = math.cos(ang) * length, math.sin(ang) * length
            step = unit * rng.uniform(0.3, 0.9)
            for k in range(int(rng.integers(4, 14))):
                ox, oy = -math.sin(ang) * step * k, math.cos(ang) * step * k
                p0 = (int(x0 + ox), int(y0 + oy))
                cv2.line(layer, p0, (int(p0[0] + dx), int(p0[1] + dy)), colour, thick, cv2.LINE_AA)
        elif kind == 2:  # screw heads / holes
            for _k in range(int(rng.integers(1, 5))):
                c = (int(x0 + rng.normal(0, unit * 3)), int(y0 + rng.normal(0, unit * 3)))
                r = int(max(2, unit * rng.uniform(0.2, 0.8)))
                cv2.circle(layer, c, r, colour, -1, cv2.LINE_AA)
                if rng.random() < 0.5:
                    cv2.line(layer, (c[0] - r, c[1]), (c[0] + r, c[1]), (128, 128, 128), 1)
        else:  # stray edges and short strokes
            pts = [(x0, y0)]
            for _k in range(int(rng.integers(2, 6))):
                pts.append((pts[-1][0] + rng.normal(0, unit * 3), pts[-1][1] + rng.normal(0, unit)))
            arr = np.round(np.array(pts)).astype(np.int32)
            cv2.polylines(layer, [arr], False, colour, thick, cv2.LINE_AA)
    keep = np.zeros((h, w), np.uint8)
    for poly in polys:
        cv2.fillPoly(keep, [np.round(poly).astype(np.int32)], 1)
    keep = cv2.dilate(keep, np.ones((3, 3), np.uint8), iterations=int(max(1, unit / 2)))
    return np.where(keep[..., None] > 0, img, layer)


def normalise(rgb: np.ndarray, model_set: str = MODEL_SET) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 BGR normalised with the base det's mean/std (as
    ``workers.pipeline.detection.TextDetector.preprocess``)."""
    from workers.pipeline.models import MODEL_SETS

    ms = MODEL_SETS[model_set]
    mean = np.array(ms.det_mean, np.float32).reshape(1, 1, 3)
    std = np.array(ms.det_std, np.float32).reshape(1, 1, 3)
    bgr = rgb[:, :, ::-1].astype(np.float32) * (1.0 / 255.0)
    return np.ascontiguousarray(((bgr - mean) / std).transpose(2, 0, 1))


def resized_sample(
    seed: int,
    size: int,
    rng: np.random.Generator | None,
    p_highlight: float,
    conditions: set[str] | None = None,
    pad: tuple[float, float, float, float] = BOX_PAD,
    p_distract: float = 0.0,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(rgb (h, w, 3) uint8 with the long side ``size`` (multiples of 32), [polygons (K, 2)]).

    The engine's line polygons hug the glyphs; ``pad`` (top, bottom, start, end in line
    heights, see ``common.pad_polygon``) enlarges them to the box style the shipped detector
    was trained on, so fine-tuning keeps its box geometry (what the recogniser expects)."""
    from workers.training.synth import SynthConfig, generate_sample

    cfg = SynthConfig(p_glare=0.5, p_curved=0.25, p_perspective=0.45)
    s = generate_sample(seed, conditions=conditions, size=None, config=cfg)
    h, w = s.image.shape[:2]
    r = size / max(h, w)
    nh, nw = max(32, int(round(h * r / 32)) * 32), max(32, int(round(w * r / 32)) * 32)
    img = cv2.resize(s.image, (nw, nh), interpolation=cv2.INTER_AREA)
    polys = []
    for ln in s.lines:
        poly = np.asarray(ln.polygon, np.float64)
        if any(pad):
            poly = pad_polygon(poly, *pad)
        polys.append(poly * np.array([nw / w, nh / h]))
    if rng is not None and rng.random() < p_distract:
        img = distractors(img, polys, rng)
    if rng is not None and rng.random() < p_highlight:
        img = extra_highlights(img, rng)
    return img, polys


def make_batch(
    items: Sequence[tuple[np.ndarray, list[np.ndarray]]], model_set: str = MODEL_SET
) -> dict[str, Any]:
    import torch

    hmax = max(i[0].shape[0] for i in items)
    wmax = max(i[0].shape[1] for i in items)
    n = len(items)
    x = np.zeros((n, 3, hmax, wmax), np.float32)
    maps = {
        k: np.zeros((n, hmax, wmax), np.float32)
        for k in ("shrink", "shrink_mask", "thresh", "thresh_mask")
    }
    for i, (img, polys) in enumerate(items):
        h, w = img.shape[:2]
        x[i, :, :h, :w] = normalise(img, model_set)
        t = db_targets(polys, (h, w))
        for k in maps:
            maps[k][i, :h, :w] = t[k]
    out = {k: torch.from_numpy(v) for k, v in maps.items()}
    out["x"] = torch.from_numpy(x)
    return out


def make_batch_compact(items: Sequence[tuple[np.ndarray, list[np.ndarray]]]) -> dict[str, Any]:
    """:func:`make_batch` for the data workers, in a quarter of the bytes: ``u8`` (N, H, W, 3)
    uint8 RGB (zero padded), ``hw`` (N, 2) int64 valid sizes, ``shrink`` / ``shrink_mask`` /
    ``thresh_mask`` (N, H, W) uint8 (they are 0/1 maps), ``thresh`` (N, H, W) float16.
    :func:`expand_batch` turns it into make_batch's tensors on the training device."""
    hmax = max(i[0].shape[0] for i in items)
    wmax = max(i[0].shape[1] for i in items)
    n = len(items)
    out: dict[str, np.ndarray] = {
        "u8": np.zeros((n, hmax, wmax, 3), np.uint8),
        "hw": np.zeros((n, 2), np.int64),
        "shrink": np.zeros((n, hmax, wmax), np.uint8),
        "shrink_mask": np.zeros((n, hmax, wmax), np.uint8),
        "thresh_mask": np.zeros((n, hmax, wmax), np.uint8),
        "thresh": np.zeros((n, hmax, wmax), np.float16),
    }
    for i, (img, polys) in enumerate(items):
        h, w = img.shape[:2]
        out["u8"][i, :h, :w] = img
        out["hw"][i] = (h, w)
        t = db_targets(polys, (h, w))
        for k in ("shrink", "shrink_mask", "thresh_mask"):
            out[k][i, :h, :w] = t[k] > 0.5
        out["thresh"][i, :h, :w] = t["thresh"]
    return out


def expand_batch(compact: dict[str, np.ndarray], device: Any, model_set: str = MODEL_SET) -> dict:
    """A :func:`make_batch_compact` batch -> :func:`make_batch`'s float32 tensors on
    ``device`` (image normalised like :func:`normalise`, zeros in the padding)."""
    import torch

    from workers.pipeline.models import MODEL_SETS

    ms = MODEL_SETS[model_set]
    nb = device.type == "cuda"
    u8 = torch.from_numpy(compact["u8"]).to(device, non_blocking=nb)
    x = u8.permute(0, 3, 1, 2).flip(1).float() * (1.0 / 255.0)
    mean = torch.tensor(ms.det_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(ms.det_std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    hw = torch.from_numpy(compact["hw"]).to(device)
    ys = torch.arange(x.shape[2], device=device)
    xs = torch.arange(x.shape[3], device=device)
    valid = (ys[None, :, None] < hw[:, 0, None, None]) & (xs[None, None, :] < hw[:, 1, None, None])
    out = {"x": x * valid[:, None].to(x.dtype)}
    for k in ("shrink", "shrink_mask", "thresh_mask", "thresh"):
        out[k] = torch.from_numpy(compact[k]).to(device, non_blocking=nb).float()
    return out


def worker_batches(wid: int, n: int, *, base: int, args: argparse.Namespace) -> Any:
    """Data worker ``wid`` of ``n``: batches of ``args.batch_size`` samples on the training
    seeds ``base + wid + n k`` with its own generator (``args.seed``, ``wid``, ``base``);
    yields ``(compact batch, cursor)`` forever, ``cursor`` = its next seed offset."""
    rng = np.random.default_rng([args.seed, wid, base])
    cursor = base + wid
    while True:
        size = args.size
        if args.size_jitter > 0:
            f = rng.uniform(1.0 - args.size_jitter, 1.0 + args.size_jitter)
            size = max(64, int(round(args.size * f / 32)) * 32)
        items = []
        for _ in range(args.batch_size):
            seed = TRAIN_SEEDS[0] + cursor
            cursor += n
            if seed >= TRAIN_SEEDS[1]:
                raise ValueError("training seeds exhausted")
            items.append(
                resized_sample(seed, size, rng, args.p_highlight, p_distract=args.p_distract)
            )
        yield make_batch_compact(items), cursor


# ---- model -----------------------------------------------------------------------------------
def head_feature(model_set: str) -> tuple[str, int]:
    """(name, channels) of the fused FPN feature (N, C, H/4, W/4) the DB probability head reads:
    walk back from the graph output (Sigmoid <- ConvTranspose ... <- Conv) to the head's first
    Conv and take its data input. Works for every shipped PP-OCR det graph (v4/v5/v6)."""
    import onnx
    from onnx import numpy_helper

    from workers.training.convert import source_path

    g = onnx.load(str(source_path(model_set, "det"))).graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    name = g.output[0].name
    seen_deconv = False
    for _ in range(64):
        node = producer[name]
        if node.op_type == "ConvTranspose":
            seen_deconv = True
        elif node.op_type == "Conv" and seen_deconv:
            w = inits.get(node.input[1])
            if w is None:
                raise RuntimeError(f"{model_set} det: head conv weight is not an initializer")
            return node.input[0], int(numpy_helper.to_array(w).shape[1])
        name = next(i for i in node.input if i not in inits)
    raise RuntimeError(f"{model_set} det: no DB head found behind the output")


def _build_thresh_head(channels: int = 96, mid: int = 24) -> Any:
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(channels, mid, 3, padding=1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(mid, mid, 2, 2),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(mid, 1, 2, 2),
    )


class DBTrainer:
    """Converted detector + training-only threshold head. ``forward(x)`` -> (prob logits
    (N, 1, H, W), threshold map (N, 1, H, W) in [0, 1])."""

    def __init__(self, net: Any | None = None, model_set: str = MODEL_SET) -> None:
        import torch

        from workers.training import convert

        self.net = net if net is not None else convert.build(model_set, "det")
        self.model_set = self.net.spec.model_set
        feature, channels = head_feature(self.model_set)
        self.thresh_head = _build_thresh_head(channels, max(8, channels // 4))
        self._feat: list[Any] = []
        target = None
        for _name, mod in self.net.net.named_children():
            mapping = getattr(mod, "onnx_mapping", None)
            if mapping is not None and mapping.inputs and mapping.inputs[0] == feature:
                if isinstance(mod, torch.nn.Conv2d):
                    target = mod
                    break
        if target is None:
            raise RuntimeError(f"no conv consumes {feature} in the {self.model_set} det graph")
        target.register_forward_pre_hook(lambda _m, inp: self._feat.append(inp[0]))

    def parameters(self) -> list[Any]:
        return [*self.net.parameters(), *self.thresh_head.parameters()]

    def to(self, device: Any) -> DBTrainer:
        self.net.to(device)
        self.thresh_head.to(device)
        return self

    def train_mode(self) -> None:
        """Train mode, BatchNorm statistics frozen in the pretrained network (new head: live)."""
        import torch

        self.net.train()
        for m in self.net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        self.thresh_head.train()

    def eval_mode(self) -> None:
        self.net.eval()
        self.thresh_head.eval()

    def __call__(self, x: Any) -> tuple[Any, Any]:
        import torch

        self._feat.clear()
        logits = self.net.logits(x)
        t = torch.sigmoid(self.thresh_head(self._feat[-1]))
        self._feat.clear()
        if t.shape[-2:] != logits.shape[-2:]:
            t = torch.nn.functional.interpolate(t, size=logits.shape[-2:], mode="bilinear")
        return logits, t


def db_loss(
    logits: Any, thresh: Any, batch: dict[str, Any], *, k: float = 50.0, ohem: float = 3.0
) -> dict[str, Any]:
    """DB loss. ``logits`` (N, 1, H, W) probability logits, ``thresh`` (N, 1, H, W) in [0, 1].
    Returns {"loss", "bce", "dice", "l1"} (0-dim tensors)."""
    import torch
    import torch.nn.functional as F

    lg, t = logits[:, 0], thresh[:, 0]
    gt, mask = batch["shrink"], batch["shrink_mask"]
    bce_map = F.binary_cross_entropy_with_logits(lg, gt, reduction="none")
    pos = (gt * mask) > 0.5
    neg = ((1 - gt) * mask) > 0.5
    n_pos = int(pos.sum())
    n_neg = min(int(neg.sum()), int(max(n_pos, 1) * ohem))
    neg_loss = bce_map[neg]
    if n_neg < neg_loss.numel():
        neg_loss = torch.topk(neg_loss, n_neg).values
    bce = (bce_map[pos].sum() + neg_loss.sum()) / max(n_pos + n_neg, 1)
    p = torch.sigmoid(lg)
    b = torch.sigmoid(k * (p - t))
    inter = (b * gt * mask).sum()
    union = (b * mask).sum() + (gt * mask).sum() + 1e-6
    dice = 1 - 2 * inter / union
    tm = batch["thresh_mask"]
    l1 = (torch.abs(t - batch["thresh"]) * tm).sum() / (tm.sum() + 1e-6)
    loss = 5.0 * bce + dice + 10.0 * l1
    return {"loss": loss, "bce": bce, "dice": dice, "l1": l1}


# ---- evaluation ------------------------------------------------------------------------------
class _Stub:
    def get_inputs(self) -> list[Any]:
        class _I:
            name = "x"

        return [_I()]


def recall(prob: np.ndarray, polys: Sequence[np.ndarray], cover: float = 0.6) -> tuple[int, int]:
    """(GT lines >= ``cover`` covered by the pipeline's detected quads, GT lines) on one
    (H, W) probability map, post-processed by ``workers.pipeline.detection.TextDetector``."""
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.detection import TextDetector

    det = TextDetector(PipelineConfig(), _Stub(), mean=(0, 0, 0), std=(1, 1, 1))
    h, w = prob.shape
    boxes = det.postprocess(prob, (1.0, 1.0), (h, w))
    m = np.zeros((h, w), np.uint8)
    for bx in boxes:
        cv2.fillPoly(m, [np.round(np.array(bx.polygon)).astype(np.int32)], 1)
    hit = 0
    for p in polys:
        g = np.zeros((h, w), np.uint8)
        cv2.fillPoly(g, [np.round(p).astype(np.int32)], 1)
        tot = int(g.sum())
        if tot and (g & m).sum() / tot >= cover:
            hit += 1
    return hit, len(polys)


def validate(
    model: DBTrainer, val: Sequence[tuple[np.ndarray, list[np.ndarray]]]
) -> dict[str, float]:
    import torch

    model.eval_mode()
    hits = total = 0
    losses = []
    dev = next(iter(model.net.parameters())).device
    with torch.inference_mode():
        for item in val:
            b = to_device(make_batch([item], model.model_set), dev)
            lg, t = model(b["x"])
            losses.append(float(db_loss(lg, t, b)["loss"]))
            h_, n_ = recall(torch.sigmoid(lg)[0, 0].float().cpu().numpy(), item[1])
            hits, total = hits + h_, total + n_
    model.train_mode()
    return {"val_loss": float(np.mean(losses)), "recall": hits / max(total, 1), "lines": total}


# ---- training loop ---------------------------------------------------------------------------
def train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from workers.training.synth.fonts import require_fonts

    if not args.allow_missing_fonts:
        require_fonts()

    device = resolve_device(args.device)
    args.batch_size = pick(args.batch_size, device, cpu=4, cuda=16)
    n_workers = args.data_workers if args.data_workers is not None else default_data_workers(device)
    dtype = amp_dtype(device, args.amp)
    budget = TimeBudget(args.max_minutes)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resume = latest_checkpoint(out) if args.resume else None
    ck = load_checkpoint(resume) if resume is not None else None
    model = DBTrainer(model_set=ck["spec"]["model_set"] if ck is not None else args.base)
    if ck is not None:
        model.net.load_state_dict(ck["state_dict"], strict=True)
        model.thresh_head.load_state_dict(ck["thresh_head"])
        state = json.loads(ck["train_state"])
        total = args.max_steps or state["max_steps"]
    else:
        total = args.max_steps or 300
        state = {
            "step": 0,
            "cursor": args.seed_start,
            "max_steps": total,
            "best": None,
            "rng_np": None,
        }
    state["max_steps"] = total

    # data first (forked workers start before the model touches CUDA)
    val_seeds = [VAL_SEEDS[0] + i for i in range(args.val_samples)]
    val = parallel_map(lambda s: resized_sample(s, args.size, None, 0.0), val_seeds, n_workers)
    stream: WorkerStream | None = None
    cursors: dict[int, int] = {}
    if n_workers:
        base = int(state["cursor"])
        stream = WorkerStream(
            lambda w, n: worker_batches(w, n, base=base, args=args),
            n_workers,
            prefetch=args.prefetch,
        )

    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = warmup_cosine_budget(opt, args.warmup, total, budget if args.max_minutes else None)
    rng = start_or_resume(args.seed, opt, sched, state, resume, ck)
    logf, log = open_log(
        out / "log.csv",
        [
            "step",
            "loss",
            "bce",
            "dice",
            "l1",
            "lr",
            "step_s",
            "data_s",
            "val_loss",
            "recall",
            "wall",
        ],
        resume_step=state["step"] if resume is not None else None,
    )

    def ckpt(step: int, name: str | None = None) -> None:
        if stream is not None and cursors:
            state["cursor"] = max(cursors.values())
        state["step"], state["rng_np"] = step, rng.bit_generator.state
        save_checkpoint(
            out / (name or f"ckpt_{step:07d}.pt"),
            model.net,
            opt,
            sched,
            state,
            thresh_head=model.thresh_head.state_dict(),
        )
        if name is None:
            prune_checkpoints(out, keep=3)

    val_s = 0.0
    last_val: dict[str, float] = {}

    def run_validation(step: int) -> dict[str, float]:
        nonlocal val_s
        t = time.perf_counter()
        v = validate(model, val)
        val_s = time.perf_counter() - t
        print(f"step {step} val {v}", flush=True)
        if state["best"] is None or v["val_loss"] < state["best"]:
            state["best"] = v["val_loss"]
            state["best_step"] = step
            ckpt(step, "best.pt")
        return v

    step = state["step"]
    start_step = step
    if args.val_every and n_workers and step == 0:
        # time one validation (the budget keeps room for the last one); not a checkpoint
        t = time.perf_counter()
        last_val = validate(model, val)
        val_s = time.perf_counter() - t
        print(f"step 0 val {last_val}", flush=True)
    budget.reserve = (val_s if args.val_every else 0.0) + 15.0
    budget.begin_training()
    model.train_mode()
    vals: dict[str, float] = {}
    stopped = "max_steps"
    validated_at = -1
    images = 0
    try:
        while step < total:
            due = bool(args.val_every) and ((step + 1) % args.val_every == 0 or step + 1 == total)
            if budget.exhausted(val_s if due else 0.0):
                stopped = "max_minutes"
                break
            t0 = time.perf_counter()
            if stream is None:
                items = []
                # one size per batch (no padding waste), jittered so the head sees text at the
                # scales the pipeline's det_limit_side gives it
                size = args.size
                if args.size_jitter > 0:
                    f = rng.uniform(1.0 - args.size_jitter, 1.0 + args.size_jitter)
                    size = max(64, int(round(args.size * f / 32)) * 32)
                for _ in range(args.batch_size):
                    seed = TRAIN_SEEDS[0] + state["cursor"]
                    state["cursor"] += 1
                    if seed >= TRAIN_SEEDS[1]:
                        raise ValueError("training seeds exhausted")
                    items.append(
                        resized_sample(
                            seed, size, rng, args.p_highlight, p_distract=args.p_distract
                        )
                    )
                b = to_device(make_batch(items, model.model_set), device)
            else:
                wid, (compact, cur) = next(stream)
                cursors[wid] = cur
                b = expand_batch(compact, device, model.model_set)
            images += int(b["x"].shape[0])
            t1 = time.perf_counter()
            with autocast(device, dtype):
                lg, t = model(b["x"])
            parts = db_loss(lg.float(), t.float(), b)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            sched.step()
            step += 1
            vals = {k: float(v.detach()) for k, v in parts.items()}
            t2 = time.perf_counter()
            budget.record_step(t2 - t0)
            if not math.isfinite(vals["loss"]):
                raise FloatingPointError(f"non-finite loss at step {step}")
            row: list[Any] = [step, *(f"{vals[k]:.4f}" for k in ("loss", "bce", "dice", "l1"))]
            row += [
                f"{sched.get_last_lr()[0]:.2e}",
                f"{t2 - t1:.2f}",
                f"{t1 - t0:.2f}",
                "",
                "",
                time.time(),
            ]
            if due:
                last_val = run_validation(step)
                validated_at = step
                row[8], row[9] = f"{last_val['val_loss']:.4f}", f"{last_val['recall']:.4f}"
            log.writerow(row)
            logf.flush()
            if step % args.log_every == 0:
                print(
                    f"step {step} " + " ".join(f"{k} {v:.3f}" for k, v in vals.items()), flush=True
                )
            if step % args.ckpt_every == 0 or step == total:
                ckpt(step)
        if stopped == "max_minutes" and step > start_step:
            if args.val_every and validated_at != step:
                last_val = run_validation(step)
                log.writerow(
                    [
                        step,
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        f"{last_val['val_loss']:.4f}",
                        f"{last_val['recall']:.4f}",
                        time.time(),
                    ]
                )
            ckpt(step)
    finally:
        if stream is not None:
            stream.close()
        logf.close()
    if not step:
        return {"step": step}
    info = {
        "stopped": stopped,
        "seconds": round(budget.elapsed(), 1),
        "train_steps": step - start_step,
        "images_per_s": round(images / max(budget.elapsed(), 1e-9), 2),
        "batch_size": args.batch_size,
        "data_workers": n_workers,
        "amp": str(dtype).replace("torch.", "") if dtype is not None else "fp32",
        "best_step": state.get("best_step"),
        "last_val": last_val,
        **device_info(device),
    }
    return {"step": step, **vals, "best_val_loss": state["best"], **info}


def interpolate_weights(model: Any, alpha: float) -> Any:
    """Weight-space ensemble of the fine-tuned and the shipped network (WiSE-FT, Wortsman et al.
    2022): every floating-point tensor becomes ``alpha * fine_tuned + (1 - alpha) * shipped``
    (BatchNorm running statistics are the shipped ones in both, ``train_mode`` freezes them).
    ``alpha`` = 1 is the fine-tuned model; lower values keep more of the pretrained behaviour on
    images unlike the synthetic ones."""
    import torch

    from workers.training import convert

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = convert.build(model.spec.model_set, "det").state_dict()
    state = model.state_dict()
    with torch.no_grad():
        for k, v in state.items():
            if v.is_floating_point():
                v.copy_(alpha * v + (1.0 - alpha) * base[k])
    return model


def export(ckpt: str, onnx_path: str, alpha: float = 1.0, storage: str = "fp32") -> Path:
    """Checkpoint -> ONNX: the shipped base det graph with the trained weights (interpolated
    with the shipped ones when ``alpha`` < 1, see :func:`interpolate_weights`)."""
    from workers.training import convert

    model = convert.load(ckpt)
    if alpha < 1.0:
        interpolate_weights(model, alpha)
    path = convert.export_onnx(model, onnx_path, storage=storage)
    st = json.loads(load_checkpoint(Path(ckpt))["train_state"])
    suffix = "" if alpha >= 1.0 else f"-wise{alpha:g}"
    write_manifest(
        path,
        name="det_ours",
        version=f"{model.spec.model_set}-det-ft-step{st.get('step')}{suffix}",
        base_model=model.spec.model_set,
        base_sha256=model.spec.source_sha256,
        trained_steps=st.get("step"),
        interpolation_alpha=alpha,
    )
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="var/train/det")
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--allow-missing-fonts",
        action="store_true",
        help="train even when a font kind of the synthetic engine is missing (smoke runs)",
    )
    p.add_argument("--base", default=MODEL_SET, help="shipped det to start from (model set)")
    p.add_argument("--max-steps", type=int, default=None)
    add_device_args(p, workers_what="sample-rendering processes")
    p.add_argument("--prefetch", type=int, default=2, help="ready batches queued per worker")
    p.add_argument("--batch-size", type=int, default=None, help="default 4 (CPU), 16 (CUDA)")
    p.add_argument("--size", type=int, default=640, help="long side of the training images")
    p.add_argument("--size-jitter", type=float, default=0.0, help="per-batch size factor +-")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--p-highlight", type=float, default=0.5)
    p.add_argument("--p-distract", type=float, default=0.6, help="non-text clutter (negatives)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-start", type=int, default=4_000_000, help="first training seed offset")
    p.add_argument("--val-samples", type=int, default=12)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=25)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--export", default=None)
    p.add_argument("--onnx", default="workers/models/det_ours/det.onnx")
    p.add_argument(
        "--alpha",
        type=float,
        default=1.0,
        help="export: weight of the fine-tuned weights (WiSE-FT)",
    )
    p.add_argument("--storage", choices=("fp32", "fp16"), default="fp32", help="export weights")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.export:
        print(export(args.export, args.onnx, args.alpha, args.storage))
        return 0
    print(json.dumps(train(args)), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
