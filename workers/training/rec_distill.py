"""Fine-tune the recogniser without forgetting: CTC on synthetic crops + knowledge distillation
from the base model on REAL unlabelled line crops (issue 10, points 3 and 5). CPU and GPU.

Student: an exported recogniser (``--init``, e.g. the WiSE mix of ``rec_mix`` over the wide
charset). Teacher: the shipped PP-OCRv6-small rec (18 710 classes), frozen. Each step::

    synthetic batch (rec_train.CropPool, TRAIN_SEEDS from --seed-start, augmented)
        -> (1 - eps) CTC + eps KL(uniform || p)                     (rec_train's loss)
    real batch (workers.training.real_crops, the TRAIN half of every real set: images only,
        their labels are never read; lightly augmented, the same pixels for both networks)
        -> KL(teacher || student) per frame, the teacher's distribution restricted to the
           student's classes and renormalised (classes the teacher lacks, our Hangul, get 0:
           on real Latin lines the student unlearns writing them)
    loss = CTC part + --kd-weight * KD part

BatchNorm statistics stay fixed (as in rec_train); AdamW, warmup + cosine, clipping.
``--max-minutes`` stops the loop in time (the GPU budget: ~9 minutes on one H200) and the
final weights are exported anyway. Everything goes to ``--out`` (``$OUT`` on the GPU
machine): ``log.csv``, ``val_*.json`` (synthetic validation crops, VAL_SEEDS), ``rec.onnx``
(fp16 storage, the pipeline's contract), ``run.json`` (args, timings, result).

    # CPU (2 cores, bounded):
    PYTHONPATH=. nice -n 10 .venv/bin/python -m workers.training.rec_distill \
        --init var/mix/rec_a0.5.onnx --max-steps 300 --max-minutes 30 --out var/train/distill
    # GPU (workers/training/gpu/train_rec.sh wraps this):
    python -m workers.training.rec_distill --device cuda --init <mix.onnx> --batch-size 64 \
        --real-batch-size 64 --max-steps 3000 --max-minutes 8 --threads 8 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from workers.training.common import VAL_SEEDS, open_log, warmup_cosine
from workers.training.rec_data import VAL_CONDITIONS, heldout_crops
from workers.training.rec_train import (
    CropPool,
    augment,
    ctc_smoothed_loss,
    encode,
    evaluate,
    freeze_bn_stats,
    make_batch,
    make_optimizer,
    preprocess,
)


def real_pool(n_expdate: int, n_sroie: int) -> dict[str, list[np.ndarray]]:
    """Unlabelled real line crops per set: the ``train`` half of every real set (images only)."""
    from workers.training.real_crops import line_crops

    sets = line_crops("train", n_expdate, n_sroie)
    return {name: [img for img, _text in items] for name, items in sets.items() if items}


def parse_real_mix(spec: str, sets: list[str]) -> dict[str, float]:
    """``"plates_br=0.3,expdate=0.2"`` -> the share of each step's real crops drawn from each
    set; sets left out share the rest in proportion to their size (``""``: all by size)."""
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        if name not in sets:
            raise ValueError(f"--real-mix: unknown set {name!r} (have {', '.join(sets)})")
        shares[name] = float(value)
        if not 0.0 <= shares[name] <= 1.0:
            raise ValueError(f"--real-mix: {name} share must be in [0, 1]")
    if sum(shares.values()) > 1.0 + 1e-9:
        raise ValueError("--real-mix: shares add up to more than 1")
    return shares


def real_sampler(
    pool: dict[str, list[np.ndarray]], shares: dict[str, float]
) -> tuple[list[np.ndarray], np.ndarray]:
    """(all crops, per-crop draw probability) for the shares of ``parse_real_mix``."""
    crops = [img for items in pool.values() for img in items]
    rest = [name for name in pool if name not in shares]
    rest_n = sum(len(pool[name]) for name in rest)
    left = max(0.0, 1.0 - sum(shares.values()))
    prob = []
    for name, items in pool.items():
        total = shares[name] if name in shares else left * len(items) / max(rest_n, 1)
        prob += [total / len(items)] * len(items)
    p = np.asarray(prob, dtype=np.float64)
    return crops, p / p.sum()


def teacher_index(student_charset: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(index into the teacher's classes per student class, mask of student classes the
    teacher has); class 0 = blank on both sides."""
    from workers.training.convert import shipped_charset

    where = {c: i + 1 for i, c in enumerate(shipped_charset("ppocrv6_small"))}
    idx = np.array([0] + [where.get(c, 0) for c in student_charset], dtype=np.int64)
    has = np.array([True] + [c in where for c in student_charset])
    return idx, has


def kd_loss(student_logits: Any, teacher_logits: Any, idx: Any, has: Any, tau: float) -> Any:
    """Mean over frames of KL(t || s): t = the teacher's softmax (temperature ``tau``) over the
    student's classes it has, renormalised; s = the student's softmax (same ``tau``).
    (N, T, C_s), (N, T, C_t) -> scalar, scaled by tau^2 (Hinton et al.)."""
    import torch.nn.functional as F

    t = teacher_logits.float().index_select(-1, idx) / tau
    t = t.masked_fill(~has, float("-inf"))
    log_t = F.log_softmax(t, dim=-1)
    log_s = F.log_softmax(student_logits.float() / tau, dim=-1)
    p_t = log_t.exp()
    kl = (p_t * (log_t.clamp_min(-1e4) - log_s)).sum(-1)
    return kl.mean() * (tau * tau)


def train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from workers.training import convert
    from workers.training.synth.fonts import require_fonts

    if not args.allow_missing_fonts:
        require_fonts()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    student = convert.load_exported(args.init).to(dev)
    charset = list(student.spec.charset)
    teacher = convert.build("ppocrv6_small", "rec").to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    idx_np, has_np = teacher_index(charset)
    idx, has = torch.from_numpy(idx_np).to(dev), torch.from_numpy(has_np).to(dev)
    index = {c: i + 1 for i, c in enumerate(charset)}

    rng = np.random.default_rng(args.seed)
    real_sets = real_pool(args.real_expdate, args.real_sroie)
    real, real_p = real_sampler(real_sets, parse_real_mix(args.real_mix, list(real_sets)))
    pool = CropPool(args.pool_size, args.seed_start, index, args.p_engraved)
    while len(pool.items) < args.pool_min:
        pool.add_sample(rng)
    val = heldout_crops(range(VAL_SEEDS[0], VAL_SEEDS[0] + args.val_samples), VAL_CONDITIONS)
    val = [c for c in val if encode(c.text, index) is not None and c.text.strip()]
    opt = make_optimizer(student, args.lr, args.weight_decay)
    sched = warmup_cosine(opt, args.warmup, args.max_steps)
    logf, log = open_log(
        out / "log.csv",
        ["step", "loss", "ctc", "kd", "lr", "step_s", "val_cer", "wall"],
        resume_step=None,
    )

    def validate(step: int) -> float:
        student.eval()
        res = evaluate(student.cpu(), val, charset)
        student.to(dev)
        freeze_bn_stats(student)
        (out / f"val_{step:07d}.json").write_text(json.dumps(res, indent=1))
        return float(res["cer"])

    cer0 = validate(0) if args.val_every > 0 else float("nan")
    print(f"step 0 val cer {cer0:.4f} ({len(val)} crops, {len(real)} real crops)", flush=True)
    freeze_bn_stats(student)
    step, last = 0, {}
    setup_s = time.time() - t_start
    while step < args.max_steps:
        if (time.time() - t_start) / 60.0 > args.max_minutes:
            print(f"time budget reached at step {step}", flush=True)
            break
        t0 = time.perf_counter()
        for _ in range(args.samples_per_step):
            pool.add_sample(rng)
        x, targets, lengths = make_batch(pool.batch(args.batch_size, rng), index, rng, args.aug)
        pick = rng.choice(len(real), size=args.real_batch_size, p=real_p)
        xr = torch.from_numpy(
            preprocess([augment(real[int(i)], rng, args.real_aug) for i in pick], max_width=800)
        )
        x, xr = x.to(dev), xr.to(dev)
        with torch.no_grad():
            t_logits = teacher.logits(xr)
        loss_ctc, ctc = ctc_smoothed_loss(student.logits(x).cpu(), targets, lengths, args.smoothing)
        loss_kd = kd_loss(student.logits(xr), t_logits, idx, has, args.tau)
        loss = loss_ctc.to(dev) + args.kd_weight * loss_kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), args.clip)
        opt.step()
        sched.step()
        step += 1
        dt = time.perf_counter() - t0
        last = {"loss": float(loss.detach()), "ctc": float(ctc), "kd": float(loss_kd.detach())}
        if not math.isfinite(last["loss"]):
            raise FloatingPointError(f"non-finite loss at step {step}")
        row = [step, *(f"{last[k]:.4f}" for k in ("loss", "ctc", "kd"))]
        row += [f"{sched.get_last_lr()[0]:.2e}", f"{dt:.3f}", "", time.time()]
        if args.val_every > 0 and step % args.val_every == 0:
            row[6] = f"{validate(step):.4f}"
            print(f"step {step} val cer {row[6]}", flush=True)
        log.writerow(row)
        logf.flush()
        if step % args.log_every == 0:
            print(
                f"step {step} loss {last['loss']:.3f} ctc {last['ctc']:.3f} "
                f"kd {last['kd']:.3f} {dt:.2f}s",
                flush=True,
            )
    logf.close()
    final_cer = validate(step) if args.val_every > 0 else float("nan")
    student = student.cpu().eval()
    path = convert.export_onnx(student, out / "rec.onnx", storage="fp16")
    result = {
        "steps": step,
        **last,
        "val_cer_start": cer0,
        "val_cer_end": final_cer,
        "setup_s": round(setup_s, 1),
        "wall_s": round(time.time() - t_start, 1),
        "onnx": str(path),
        "sha256": convert._sha256(path),
        "args": vars(args),
    }
    (out / "run.json").write_text(json.dumps(result, indent=1))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", required=True, help="student: an exported rec ONNX")
    p.add_argument("--out", default="var/train/distill")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--max-minutes", type=float, default=30.0)
    p.add_argument("--batch-size", type=int, default=8, help="synthetic crops per step")
    p.add_argument("--real-batch-size", type=int, default=8, help="real crops per step")
    p.add_argument("--kd-weight", type=float, default=1.0)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--smoothing", type=float, default=0.1)
    p.add_argument("--aug", type=float, default=1.0)
    p.add_argument("--real-aug", type=float, default=0.5)
    p.add_argument("--p-engraved", type=float, default=0.3)
    p.add_argument("--samples-per-step", type=int, default=1)
    p.add_argument("--pool-size", type=int, default=3000)
    p.add_argument("--pool-min", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-start", type=int, default=80_000, help="first training seed offset")
    p.add_argument("--real-expdate", type=int, default=250)
    p.add_argument("--real-sroie", type=int, default=100_000, help="all lines of the half")
    p.add_argument(
        "--real-mix",
        default="",
        help="share of real crops per set, e.g. plates_br=0.3,expdate=0.2 (rest by size)",
    )
    p.add_argument("--val-samples", type=int, default=40)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--allow-missing-fonts", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(train(parse_args(argv)), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
