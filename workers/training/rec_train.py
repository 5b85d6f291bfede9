"""Fine-tune the converted PP-OCR recogniser on synthetic line crops (CTC, CPU-friendly).

Training-side only (never imported by the app). The whole network is trained (no frozen base);
BatchNorm running statistics stay at their pretrained values (small CPU batches would make them
noisy), their affine weights are trained like every other parameter.

Data (generated on the fly, nothing read from disk)::

    seed (TRAIN_SEEDS, never VAL_SEEDS / EVAL_SEED_BASE+) -> synth.generate_sample
      -> per line: (a) the photo crop cut with the line's GT polygon, randomly enlarged (a
         detector box is never tight), rectified with workers.pipeline.rectification.rectify_line
         (what the pipeline feeds the recogniser), and (b) the flat-label crop of
         synth.line_crops (degraded following the sample's conditions)
      -> a ring pool of crops (each step adds ``--samples-per-step`` fresh samples; a crop is
         re-augmented every time it is drawn)
      -> augment(): glare blobs/streaks over characters, blur, noise, JPEG, low-res, slight
         perspective and curvature, contrast, inversion (laser marks)
      -> preprocess(): the pipeline's recogniser input (height 48, BGR, [-1, 1], right zero pad)

Seeds (``workers.training.common``): training uses ``TRAIN_SEEDS`` = [0, 8_900_000); the
validation crops of the training log use [8_900_000, 9_000_000); ``bench/`` and the model card
evaluate on 9_000_000 and up. The crops themselves: ``workers.training.rec_data``.

Loss: (1 - eps) * CTC + eps * mean over frames of KL(uniform || p) (label smoothing for CTC),
AdamW, linear warmup + cosine decay, gradient clipping.

Device (``workers.training.device``): ``--device auto|cpu|cuda[:N]`` (model, batches and loss on
it), bf16 autocast on CUDA (``--amp``; the CTC / smoothing loss in float32), ``--max-minutes``
(stop in time with the best checkpoint by validation CER; the schedule decays over the time
budget), ``--data-workers N`` forked processes that each run their own crop pool on
interleaved training seeds (``base + w + N k``) and send ready uint8 batches (default: 0 on
the CPU = the single-process path below, ``min(12, cpus - 2)`` on CUDA; batch 16 on the CPU,
128 on CUDA unless ``--batch-size``). ``workers/training/gpu/train_rec.sh`` is the prepared
run for one GPU.

Checkpoints (``--out``, default var/train/rec): ``ckpt_{step:07d}.pt`` every ``--ckpt-every``
steps (the last three kept) and ``best.pt`` (best validation CER). Each is a
``workers.training.convert`` checkpoint (``spec`` + ``state_dict``, loadable with
``convert.load``) plus optimiser, scheduler, step, RNG states and the data seed cursor, so
``--resume`` continues the run exactly where the model/optimiser/schedule left off (the crop
pool is refilled from the saved seed cursor: no seed is ever used twice).

CLI::

    nice -n 10 python -m workers.training.rec_train --arch v6_small --batch-size 16 \
        --max-steps 900 --out var/train/rec_v6s [--resume]
    python -m workers.training.rec_train --time-steps 5 --arch v6_tiny --batch-size 16
    python -m workers.training.rec_train --export var/train/rec_v6s/best.pt \
        --onnx workers/models/rec_ours/rec.onnx
    python -m workers.training.rec_train --device cuda --max-minutes 6 --max-steps 100000 \
        --data-workers 12 --samples-per-step 4 --out var/train/rec_gpu
"""

from __future__ import annotations

import argparse
import json
import math
import string
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from workers.training.common import (
    TRAIN_SEEDS,
    VAL_SEEDS,
    latest_checkpoint,
    load_checkpoint,
    open_log,
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
    warmup_cosine_budget,
)
from workers.training.metrics import score
from workers.training.rec_data import VAL_CONDITIONS, LineCrop, heldout_crops, sample_crops

REC_H = 48
REC_MIN_W = 320
REC_MAX_W = 800  # training batches only: wider crops are squeezed to this width
ARCHS = {"v6_small": "ppocrv6_small", "v6_tiny": "ppocrv6_tiny"}

# ---- character set ---------------------------------------------------------------------------
SERIAL_PUNCT = "-/.:#_()+,~&*'°"
KOREAN_WORDS = (
    "제조번호 일련번호 시리얼 시리얼번호 제조일자 제조년월 제조년월일 모델명 로트 로트번호 "
    "제조사 제조자 품번 부품번호 정격 전압 전류 주파수 출력 중량 원산지 한국 대한민국 "
    "유도전동기 서보 드라이브 원심 펌프 전원 공급 장치 압력 전송기 주식회사"
)


def _synth_hangul() -> str:
    """Hangul syllables the synthetic engine writes (company names, titles, keys)."""
    import re

    here = Path(__file__).resolve().parent / "synth"
    text = "".join(
        (here / f).read_text(encoding="utf-8")
        for f in ("content.py", "label.py")
        if (here / f).exists()
    )
    return "".join(sorted(set(re.findall("[\uac00-\ud7a3]", text))))


def build_charset() -> list[str]:
    """Recogniser classes 1..n in order: 0-9, A-Z, a-z, serial punctuation, Hangul syllables
    (sorted), the space last (PaddleOCR's ``use_space_char`` layout, which the pipeline's
    ``TextRecognizer`` reproduces by appending " " to the ``character`` list)."""
    hangul = set(_synth_hangul()) | {c for c in KOREAN_WORDS if "\uac00" <= c <= "\ud7a3"}
    chars = list(string.digits + string.ascii_uppercase + string.ascii_lowercase + SERIAL_PUNCT)
    chars += sorted(hangul)
    return [*chars, " "]


def encode(text: str, index: dict[str, int]) -> list[int] | None:
    """Text -> class ids (1-based); None if a character is outside the charset."""
    out = []
    for ch in text:
        k = index.get(ch)
        if k is None:
            return None
        out.append(k)
    return out


# ---- pre-processing (identical to workers.pipeline.recognition.TextRecognizer.preprocess) ----
def resize_to_height(img: np.ndarray, height: int = REC_H) -> np.ndarray:
    h, w = img.shape[:2]
    rw = max(1, int(math.ceil(height * w / max(h, 1))))
    return cv2.resize(img, (rw, height), interpolation=cv2.INTER_LINEAR)


def preprocess(crops: Sequence[np.ndarray], max_width: int | None = None) -> np.ndarray:
    """list of (h, w, 3) uint8 RGB -> (n, 3, 48, W) float32 BGR in [-1, 1], right-padded with
    zeros, W = max(320, 48 * max aspect) rounded up to 8 (the pipeline's rule). ``max_width``
    (training only) caps W; wider crops are squeezed horizontally."""
    ratios = [c.shape[1] / max(c.shape[0], 1) for c in crops]
    width = max(REC_MIN_W, int(math.ceil(REC_H * max(ratios))))
    width = int(math.ceil(width / 8) * 8)
    if max_width is not None:
        width = min(width, max_width)
    batch = np.zeros((len(crops), 3, REC_H, width), dtype=np.float32)
    for i, (c, r) in enumerate(zip(crops, ratios, strict=True)):
        rw = min(width, max(1, int(math.ceil(REC_H * r))))
        x = cv2.resize(c, (rw, REC_H), interpolation=cv2.INTER_LINEAR)
        batch[i, :, :, :rw] = (x[:, :, ::-1].astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(
            2, 0, 1
        )
    return batch


def preprocess_u8(
    crops: Sequence[np.ndarray], max_width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`preprocess` before the float conversion, for the data workers (a quarter of the
    bytes through the pipe): (n, 48, W, 3) uint8 RGB right-padded with zeros, and the (n,)
    int64 valid widths. :func:`u8_to_input` finishes it on the training device."""
    ratios = [c.shape[1] / max(c.shape[0], 1) for c in crops]
    width = max(REC_MIN_W, int(math.ceil(REC_H * max(ratios))))
    width = int(math.ceil(width / 8) * 8)
    if max_width is not None:
        width = min(width, max_width)
    batch = np.zeros((len(crops), REC_H, width, 3), dtype=np.uint8)
    widths = np.zeros(len(crops), dtype=np.int64)
    for i, (c, r) in enumerate(zip(crops, ratios, strict=True)):
        rw = min(width, max(1, int(math.ceil(REC_H * r))))
        batch[i, :, :rw] = cv2.resize(c, (rw, REC_H), interpolation=cv2.INTER_LINEAR)
        widths[i] = rw
    return batch, widths


def u8_to_input(u8: Any, widths: Any) -> Any:
    """(n, 48, W, 3) uint8 RGB tensor + (n,) widths -> (n, 3, 48, W) float32 BGR in [-1, 1]
    with zeros right of each width: what :func:`preprocess` gives, on ``u8``'s device."""
    import torch

    x = u8.permute(0, 3, 1, 2).flip(1).float() * (2.0 / 255.0) - 1.0
    cols = torch.arange(x.shape[-1], device=x.device)
    valid = cols[None, :] < widths.to(x.device)[:, None]
    return x * valid[:, None, None, :].to(x.dtype)


# ---- augmentation ----------------------------------------------------------------------------
def _glare(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Specular blob or streak with a clipped white core over part of the text, plus bloom."""
    h, w = img.shape[:2]
    f = img.astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(1, 3))):
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.2, 0.8) * h
        s_short = h * rng.uniform(0.25, 0.7)
        s_long = s_short * (rng.uniform(2.0, 6.0) if rng.random() < 0.5 else rng.uniform(1, 1.6))
        ang = rng.uniform(0, math.pi)
        ca, sa = math.cos(ang), math.sin(ang)
        a = ((xs - cx) * ca + (ys - cy) * sa) / s_long
        b = (-(xs - cx) * sa + (ys - cy) * ca) / s_short
        g = np.exp(-0.5 * (a * a + b * b))
        amp = rng.uniform(0.8, 3.0)
        f += (g * amp * 255.0)[..., None] * np.array([1.0, 0.99, rng.uniform(0.9, 1.0)], np.float32)
    return np.clip(f, 0, 255).astype(np.uint8)


def _perspective(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    jit = np.stack(
        [
            rng.uniform(-0.04, 0.04, 4) * w * min(1.0, 3 * h / max(w, 1)),
            rng.uniform(-0.12, 0.12, 4) * h,
        ],
        axis=1,
    ).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, src + jit)
    return cv2.warpPerspective(
        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _curve(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Residual bend: rows displaced by amp * sin(pi * x / w + phase)."""
    h, w = img.shape[:2]
    amp = rng.uniform(0.04, 0.15) * h * rng.choice([-1, 1])
    phase = rng.uniform(-0.5, 0.5)
    xs = np.arange(w, dtype=np.float32)
    dy = amp * np.sin(np.pi * xs / max(w - 1, 1) + phase)
    map_x = np.tile(xs, (h, 1))
    map_y = (np.arange(h, dtype=np.float32)[:, None] + dy[None, :]).astype(np.float32)
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def augment(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Random photometric/geometric degradation of one (h, w, 3) uint8 RGB crop. ``strength``
    scales every probability (0 = identity)."""
    p = strength
    out = img
    if rng.random() < 0.25 * p:
        out = _perspective(out, rng)
    if rng.random() < 0.15 * p:
        out = _curve(out, rng)
    if rng.random() < 0.3 * p:
        a, b = rng.uniform(0.55, 1.25), rng.uniform(-35, 35)
        out = np.clip(out.astype(np.float32) * a + b, 0, 255).astype(np.uint8)
    if rng.random() < 0.3 * p:
        out = _glare(out, rng)
    if rng.random() < 0.1 * p:
        out = 255 - out
    if rng.random() < 0.12 * p and min(out.shape[:2]) > 16:
        h, w = out.shape[:2]
        s = rng.uniform(0.35, 0.7)
        small = cv2.resize(
            out, (max(int(w * s), 1), max(int(h * s), 1)), interpolation=cv2.INTER_AREA
        )
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.2 * p:
        if rng.random() < 0.6:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.6))
        else:
            k = int(rng.integers(3, 7))
            ker = np.zeros((k, k), np.float32)
            ker[k // 2, :] = 1.0 / k
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
            ker = cv2.warpAffine(ker, rot, (k, k))
            out = cv2.filter2D(out, -1, ker / max(ker.sum(), 1e-6))
    if rng.random() < 0.3 * p:
        noise = rng.normal(0, rng.uniform(2, 10), out.shape).astype(np.float32)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.3 * p:
        ok, buf = cv2.imencode(
            ".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))]
        )
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(out)


# ---- loss ------------------------------------------------------------------------------------
def ctc_smoothed_loss(
    logits: Any, targets: Any, target_lengths: Any, eps: float = 0.1
) -> tuple[Any, Any]:
    """Label-smoothed CTC. ``logits``: (N, T, C) pre-softmax, class 0 = blank; ``targets``:
    (sum L,) int64 concatenated labels; ``target_lengths``: (N,).

    Returns (loss, ctc): loss = (1 - eps) * ctc + eps * KL(u || p) where ctc is the mean over
    the batch of the per-sample CTC negative log-likelihood divided by its target length
    (``reduction="mean"``, infinite losses of impossible alignments zeroed) and KL(u || p) =
    mean over frames and batch of -log C - mean_c log p_c (0 when p is uniform)."""
    import torch
    import torch.nn.functional as F

    n, t, c = logits.shape
    logp = F.log_softmax(logits.float(), dim=-1)
    input_lengths = torch.full((n,), t, dtype=torch.long, device=logits.device)
    ctc = F.ctc_loss(
        logp.transpose(0, 1),
        targets.to(logits.device),
        input_lengths,
        target_lengths.to(logits.device),
        blank=0,
        reduction="mean",
        zero_infinity=True,
    )
    kl = (-math.log(c) - logp.mean(dim=-1)).mean()
    return (1.0 - eps) * ctc + eps * kl, ctc


def greedy_decode(probs: np.ndarray, labels: Sequence[str]) -> str:
    """(T, C) -> text: argmax, collapse repeats, drop blank (class 0); ``labels[k-1]`` = class k."""
    idx = probs.argmax(axis=1)
    out, prev = [], 0
    for k in idx:
        k = int(k)
        if k != prev and k != 0:
            out.append(labels[k - 1])
        prev = k
    return "".join(out)


def predict_torch(
    model: Any, crops: Sequence[np.ndarray], labels: Sequence[str], batch: int = 16
) -> list[str]:
    """Greedy texts of ``crops`` with a torch recogniser (sorted by aspect like the pipeline)."""
    import torch

    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / max(crops[i].shape[0], 1))
    out: list[str] = [""] * len(crops)
    dev = next(iter(model.parameters())).device
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            ids = order[s : s + batch]
            x = torch.from_numpy(preprocess([crops[i] for i in ids])).to(dev)
            probs = torch.softmax(model.logits(x).float(), dim=-1).cpu().numpy()
            for j, i in enumerate(ids):
                out[i] = greedy_decode(probs[j], labels)
    return out


def evaluate(model: Any, crops: Sequence[LineCrop], labels: Sequence[str]) -> dict[str, Any]:
    preds = predict_torch(model, [c.image for c in crops], labels)
    res: dict[str, Any] = score(preds, [c.text for c in crops])
    by: dict[str, list[int]] = {}
    for i, c in enumerate(crops):
        by.setdefault(c.condition, []).append(i)
    res["by_condition"] = {
        k: score([preds[i] for i in v], [crops[i].text for i in v]) for k, v in sorted(by.items())
    }
    return res


# ---- model / optimiser -----------------------------------------------------------------------
def build_model(arch: str, charset: list[str] | None = None) -> Any:
    from workers.training import convert

    return convert.build(ARCHS[arch], "rec", charset=charset or build_charset())


def freeze_bn_stats(model: Any) -> None:
    """Training mode for the module tree but BatchNorm layers in eval (running stats fixed)."""
    import torch

    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def make_optimizer(
    model: Any, lr: float, weight_decay: float, *, n_classes: int = 0, head_lr_mult: float = 1.0
) -> Any:
    """AdamW: weight decay on matrices/kernels only. ``head_lr_mult`` != 1 gives the classifier
    (the tensors with a ``n_classes`` axis, whose new-character columns start from noise) that
    multiple of ``lr``; the pretrained body keeps ``lr``."""
    import torch

    groups: dict[tuple[bool, bool], list[Any]] = {}
    for _name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = head_lr_mult != 1.0 and n_classes > 0 and n_classes in tuple(p.shape)
        groups.setdefault((p.ndim >= 2, head), []).append(p)
    return torch.optim.AdamW(
        [
            {
                "params": ps,
                "weight_decay": weight_decay if decay else 0.0,
                "lr": lr * (head_lr_mult if head else 1.0),
            }
            for (decay, head), ps in sorted(groups.items())
        ],
        lr=lr,
    )


class CropPool:
    """Ring buffer of training crops refilled from consecutive training seeds."""

    def __init__(
        self,
        size: int,
        cursor: int,
        index: dict[str, int],
        p_engraved: float = 0.2,
        stride: int = 1,
    ) -> None:
        self.size = size
        self.cursor = cursor
        self.stride = stride  # a data worker w of N: cursor = base + w, stride N
        self.index = index
        self.p_engraved = p_engraved
        self.items: list[LineCrop] = []
        self.pos = 0

    def add_sample(self, rng: np.random.Generator) -> int:
        seed = TRAIN_SEEDS[0] + self.cursor
        self.cursor += self.stride
        try:
            crops = sample_crops(seed, rng, p_engraved=self.p_engraved)
        except Exception as exc:  # a broken sample must not stop a long run
            print(f"seed {seed}: {exc!r}", file=sys.stderr)
            return 0
        n = 0
        for c in crops:
            if not c.text.strip() or encode(c.text, self.index) is None:
                continue
            if len(self.items) < self.size:
                self.items.append(c)
            else:
                self.items[self.pos] = c
                self.pos = (self.pos + 1) % self.size
            n += 1
        return n

    def batch(self, n: int, rng: np.random.Generator, bucket: int = 4) -> list[LineCrop]:
        """``n`` random crops of similar aspect ratio: ``bucket * n`` candidates are drawn,
        sorted by width/height, and a random window of ``n`` consecutive ones is returned
        (less zero padding: the step cost grows with the batch's widest crop)."""
        ids = rng.integers(0, len(self.items), size=n * max(bucket, 1))
        ids = sorted(
            ids, key=lambda i: self.items[int(i)].image.shape[1] / self.items[int(i)].image.shape[0]
        )
        s = int(rng.integers(0, len(ids) - n + 1))
        return [self.items[int(i)] for i in ids[s : s + n]]


def make_batch(
    crops: Sequence[LineCrop], index: dict[str, int], rng: np.random.Generator, aug: float
) -> tuple[Any, Any, Any]:
    import torch

    imgs = [augment(c.image, rng, aug) for c in crops]
    x = torch.from_numpy(preprocess(imgs, max_width=REC_MAX_W))
    labels = [encode(c.text, index) or [] for c in crops]
    targets = torch.tensor([k for lab in labels for k in lab], dtype=torch.long)
    lengths = torch.tensor([len(lab) for lab in labels], dtype=torch.long)
    return x, targets, lengths


def worker_batches(
    wid: int,
    n: int,
    *,
    base: int,
    seed: int,
    index: dict[str, int],
    args: argparse.Namespace,
) -> Any:
    """Data worker ``wid`` of ``n``: its own crop pool (``pool_size / n`` crops) on the seeds
    ``base + wid + n k``, its own generator (``seed``, ``wid``, ``base``); yields ``(uint8
    batch, widths, targets, lengths, cursor)`` forever, ``cursor`` = its next seed offset
    (every seed below it that this worker drew is in this or an earlier batch)."""
    rng = np.random.default_rng([seed, wid, base])
    size = max(args.pool_size // n, 4 * args.batch_size)
    pool = CropPool(size, base + wid, index, args.p_engraved, stride=n)
    while len(pool.items) < min(max(args.pool_min // n, args.batch_size), size):
        pool.add_sample(rng)
    while True:
        for _ in range(args.samples_per_step):
            pool.add_sample(rng)
        crops = pool.batch(args.batch_size, rng)
        imgs = [augment(c.image, rng, args.aug) for c in crops]
        u8, widths = preprocess_u8(imgs, max_width=REC_MAX_W)
        labels = [encode(c.text, index) or [] for c in crops]
        targets = np.array([k for lab in labels for k in lab], dtype=np.int64)
        lengths = np.array([len(lab) for lab in labels], dtype=np.int64)
        yield u8, widths, targets, lengths, pool.cursor


# ---- training loop ---------------------------------------------------------------------------
def train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from workers.training.synth.fonts import require_fonts

    if not args.allow_missing_fonts:
        require_fonts()

    device = resolve_device(args.device)
    args.batch_size = pick(args.batch_size, device, cpu=16, cuda=128)
    n_workers = args.data_workers if args.data_workers is not None else default_data_workers(device)
    dtype = amp_dtype(device, args.amp)
    budget = TimeBudget(args.max_minutes)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resume = latest_checkpoint(out) if args.resume else None
    ck = load_checkpoint(resume) if resume is not None else None
    if ck is not None:
        spec = ck["spec"]
        state = json.loads(ck["train_state"])
        charset = spec["charset"]
        arch = state["arch"]
        model = build_model(arch, charset)
        model.load_state_dict(ck["state_dict"], strict=True)
        total = state["max_steps"] if args.max_steps is None else args.max_steps
    else:
        if args.init:
            # continue from a committed export (its own charset and arch); fresh optimiser
            from workers.training import convert

            model = convert.load_exported(args.init)
            charset = list(model.spec.charset)
            arch = {v: k for k, v in ARCHS.items()}[model.spec.model_set]
        else:
            charset, arch = build_charset(), args.arch
            model = build_model(arch, charset)
        total = args.max_steps or 1000
        state = {
            "step": 0,
            "cursor": args.seed_start,
            "arch": arch,
            "max_steps": total,
            "best_cer": None,
            "best_step": None,
            "rng_np": None,
            "rng_py": None,
        }
    state["max_steps"] = total
    index = {c: i + 1 for i, c in enumerate(charset)}

    # data first (forked workers start before the model touches CUDA)
    val_seeds = list(range(VAL_SEEDS[0], VAL_SEEDS[0] + args.val_samples))
    if n_workers > 1:
        val = _val_crops(val_seeds, n_workers)
    else:
        val = heldout_crops(val_seeds, VAL_CONDITIONS)
    val = [c for c in val if encode(c.text, index) is not None and c.text.strip()]
    stream: WorkerStream | None = None
    pool: CropPool | None = None
    cursors: dict[int, int] = {}
    if n_workers:
        base = int(state["cursor"])
        stream = WorkerStream(
            lambda w, n: worker_batches(w, n, base=base, seed=args.seed, index=index, args=args),
            n_workers,
            prefetch=args.prefetch,
        )

    model.to(device)
    opt = make_optimizer(
        model,
        args.lr,
        args.weight_decay,
        n_classes=len(charset) + 1,
        head_lr_mult=args.head_lr_mult,
    )
    sched = warmup_cosine_budget(opt, args.warmup, total, budget if args.max_minutes else None)
    rng = start_or_resume(args.seed, opt, sched, state, resume, ck)
    if stream is None:
        pool = CropPool(args.pool_size, state["cursor"], index, args.p_engraved)
        while len(pool.items) < min(args.pool_min, args.pool_size):
            pool.add_sample(rng)

    logf, log = open_log(
        out / "log.csv",
        [
            "step",
            "loss",
            "ctc",
            "lr",
            "grad_norm",
            "step_s",
            "data_s",
            "val_cer",
            "val_exact",
            "wall",
        ],
        resume_step=state["step"] if resume is not None else None,
    )

    def cursor_now() -> int:
        if pool is not None:
            return pool.cursor
        return max(cursors.values()) if cursors else int(state["cursor"])

    val_s = 0.0

    def validate(step: int) -> tuple[float, float]:
        nonlocal val_s
        t = time.perf_counter()
        model.eval()
        res = evaluate(model, val, charset)
        freeze_bn_stats(model)
        (out / f"val_{step:07d}.json").write_text(json.dumps(res, indent=1))
        val_s = time.perf_counter() - t
        return res["cer"], res["exact"]

    def checkpoint(step: int, best: bool = False) -> None:
        state["step"], state["cursor"] = step, cursor_now()
        state["rng_np"] = rng.bit_generator.state
        if best:
            save_checkpoint(out / "best.pt", model, opt, sched, state)
            return
        save_checkpoint(out / f"ckpt_{step:07d}.pt", model, opt, sched, state)
        prune_checkpoints(out, keep=3)

    step = state["step"]
    start_step = step
    if step == 0 and args.val_every > 0:
        cer, ex = validate(0)
        state["best_cer"], state["best_step"] = cer, 0
        log.writerow([0, "", "", "", "", "", "", f"{cer:.4f}", f"{ex:.4f}", time.time()])
        logf.flush()
        print(f"step 0 val cer {cer:.4f} exact {ex:.3f} ({len(val)} crops)", flush=True)
    budget.reserve = val_s + 15.0 if args.val_every > 0 else 15.0
    budget.begin_training()
    freeze_bn_stats(model)
    last: dict[str, float] = {}
    stopped = "max_steps"
    validated_at = -1
    crops_seen = 0
    try:
        while step < total:
            due = args.val_every > 0 and ((step + 1) % args.val_every == 0 or step + 1 == total)
            if budget.exhausted(val_s if due else 0.0):
                stopped = "max_minutes"
                break
            t0 = time.perf_counter()
            if stream is None:
                assert pool is not None
                for _ in range(args.samples_per_step):
                    pool.add_sample(rng)
                crops = pool.batch(args.batch_size, rng)
                x, targets, lengths = make_batch(crops, index, rng, args.aug)
                x = x.to(device)
            else:
                wid, (u8, widths, tg, ln, cur) = next(stream)
                cursors[wid] = cur
                x = u8_to_input(torch.from_numpy(u8).to(device), torch.from_numpy(widths))
                targets, lengths = torch.from_numpy(tg), torch.from_numpy(ln)
            crops_seen += int(x.shape[0])
            t1 = time.perf_counter()
            with autocast(device, dtype):
                logits = model.logits(x)
            loss, ctc = ctc_smoothed_loss(logits, targets, lengths, args.smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            sched.step()
            step += 1
            last = {"loss": float(loss.detach()), "ctc": float(ctc.detach())}
            t2 = time.perf_counter()
            budget.record_step(t2 - t0)
            if not math.isfinite(last["loss"]):
                raise FloatingPointError(f"non-finite loss at step {step}")
            row = [
                step,
                f"{last['loss']:.4f}",
                f"{last['ctc']:.4f}",
                f"{sched.get_last_lr()[0]:.2e}",
                f"{float(gn):.3f}",
                f"{t2 - t1:.3f}",
                f"{t1 - t0:.3f}",
                "",
                "",
                time.time(),
            ]
            if due:
                cer, ex = validate(step)
                validated_at = step
                row[7], row[8] = f"{cer:.4f}", f"{ex:.4f}"
                print(f"step {step} val cer {cer:.4f} exact {ex:.3f}", flush=True)
                if state["best_cer"] is None or cer < state["best_cer"]:
                    state["best_cer"], state["best_step"] = cer, step
                    checkpoint(step, best=True)
            log.writerow(row)
            logf.flush()
            if step % args.log_every == 0:
                print(
                    f"step {step} loss {last['loss']:.3f} ctc {last['ctc']:.3f} "
                    f"step {t2 - t1:.2f}s data {t1 - t0:.2f}s",
                    flush=True,
                )
            if step % args.ckpt_every == 0 or step == total:
                checkpoint(step)
        if stopped == "max_minutes" and step > start_step:
            # the time is up: validate the last weights once more, keep the best, checkpoint
            if args.val_every > 0 and validated_at != step:
                cer, ex = validate(step)
                print(f"step {step} val cer {cer:.4f} exact {ex:.3f} (time budget)", flush=True)
                log.writerow([step, "", "", "", "", "", "", f"{cer:.4f}", f"{ex:.4f}", time.time()])
                if state["best_cer"] is None or cer < state["best_cer"]:
                    state["best_cer"], state["best_step"] = cer, step
                    checkpoint(step, best=True)
            checkpoint(step)
    finally:
        if stream is not None:
            stream.close()
        logf.close()
    return {
        "step": step,
        **last,
        "best_cer": state["best_cer"],
        "best_step": state["best_step"],
        "stopped": stopped,
        "seconds": round(budget.elapsed(), 1),
        "train_steps": step - start_step,
        "crops_per_s": round(crops_seen / max(budget.elapsed(), 1e-9), 1),
        "batch_size": args.batch_size,
        "data_workers": n_workers,
        "amp": str(dtype).replace("torch.", "") if dtype is not None else "fp32",
        **device_info(device),
    }


def _val_crops(seeds: list[int], workers: int) -> list[LineCrop]:
    """``heldout_crops(seeds, VAL_CONDITIONS)`` over ``workers`` processes (same crops)."""
    jobs = [(s, VAL_CONDITIONS[i % len(VAL_CONDITIONS)]) for i, s in enumerate(seeds)]
    parts = parallel_map(lambda j: heldout_crops([j[0]], [j[1]]), jobs, workers)
    return [c for p in parts for c in p]


def time_steps(args: argparse.Namespace) -> None:
    """Print the mean fwd + bwd + AdamW step time of each arch at ``--batch-size``."""
    import torch

    args.batch_size = args.batch_size or 16
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    charset = build_charset()
    index = {c: i + 1 for i, c in enumerate(charset)}
    pool = CropPool(1000, 0, index)
    while len(pool.items) < args.batch_size:
        pool.add_sample(rng)
    for arch in args.time_archs.split(","):
        model = build_model(arch, charset)
        freeze_bn_stats(model)
        opt = make_optimizer(model, 1e-4, 0.01)
        times = []
        for i in range(args.time_steps + 1):
            x, t, ln = make_batch(pool.batch(args.batch_size, rng), index, rng, 1.0)
            t0 = time.perf_counter()
            loss, _ = ctc_smoothed_loss(model.logits(x), t, ln)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - t0)
        print(
            f"{arch}: batch {args.batch_size} x 3 x 48 x {x.shape[-1]} T={model.logits(x[:1]).shape[1]} "
            f"step {np.mean(times):.3f}s (median {np.median(times):.3f}, n={len(times)})",
            flush=True,
        )


def export(
    ckpt: str,
    onnx_path: str,
    *,
    name: str = "rec_ours",
    version: str | None = None,
    storage: str = "fp32",
) -> Path:
    """Checkpoint -> ONNX (weights written back into the shipped graph, charset in the
    ``character`` metadata; ``storage="fp16"`` halves the file, see ``convert.fp16_storage``)
    + manifest.json with its sha256. Returns the ONNX path."""

    from workers.training import convert

    model = convert.load(ckpt)
    path = convert.export_onnx(model, onnx_path, storage=storage)
    ck = load_checkpoint(Path(ckpt))
    st = json.loads(ck["train_state"]) if "train_state" in ck else {}
    write_manifest(
        path,
        name=name,
        version=version or f"{model.spec.model_set}-ft-step{st.get('step', 'na')}",
        base_model=model.spec.model_set,
        base_sha256=model.spec.source_sha256,
        classes=len(model.spec.charset or []) + 1,
        trained_steps=st.get("step"),
    )
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=sorted(ARCHS), default="v6_small")
    p.add_argument("--out", default="var/train/rec")
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--allow-missing-fonts",
        action="store_true",
        help="train even when a font kind of the synthetic engine is missing (smoke runs)",
    )
    p.add_argument(
        "--init", default=None, help="start from this exported ONNX (e.g. the committed rec_ours)"
    )
    p.add_argument("--p-engraved", type=float, default=0.2, help="engraved-label probability")
    p.add_argument("--max-steps", type=int, default=None)
    add_device_args(p, workers_what="sample-generating processes")
    p.add_argument("--prefetch", type=int, default=4, help="ready batches queued per worker")
    p.add_argument("--batch-size", type=int, default=None, help="default 16 (CPU), 128 (CUDA)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--head-lr-mult", type=float, default=1.0, help="classifier lr = lr x this")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--smoothing", type=float, default=0.1)
    p.add_argument("--aug", type=float, default=1.0, help="augmentation strength (0 = off)")
    p.add_argument("--samples-per-step", type=int, default=1)
    p.add_argument("--pool-size", type=int, default=3000)
    p.add_argument("--pool-min", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-start", type=int, default=0, help="first training seed offset")
    p.add_argument("--val-samples", type=int, default=40)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--time-steps", type=int, default=0, help="only time this many steps per arch")
    p.add_argument("--time-archs", default="v6_small,v6_tiny")
    p.add_argument("--export", default=None, help="checkpoint to export (no training)")
    p.add_argument("--onnx", default="workers/models/rec_ours/rec.onnx")
    p.add_argument("--version", default=None, help="export: manifest version (default from steps)")
    p.add_argument("--storage", choices=("fp32", "fp16"), default="fp32", help="export weights")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.export:
        print(export(args.export, args.onnx, version=args.version, storage=args.storage))
        return 0
    if args.time_steps:
        time_steps(args)
        return 0
    print(json.dumps(train(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
