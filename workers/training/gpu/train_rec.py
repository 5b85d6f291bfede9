"""One prepared GPU run of the recogniser recipe (issue 10, point 5): WiSE mix + distillation
fine-tune, within about nine minutes on one large GPU, everything written to one folder.

    OUT=/path/to/out python workers/training/gpu/train_rec.py [--alpha 0.25] [--minutes 7.5]

1. ``rec_mix.export(alpha)``: the fine-tuned ``rec_ours`` and the shipped PP-OCRv6-small mixed
   in weight space over the wide charset -> ``$OUT/mix.onnx`` (seconds, CPU).
2. ``rec_distill`` on ``cuda``: CTC on synthetic crops (generated on the CPU cores, two new
   photos a step) + KL to the shipped model's frames on the real train-half crops, batch
   64 + 64, lr 3e-5, KD weight 3, real crops drawn plates 30 % / dates 15 % / SROIE the rest
   (the CPU run that made the shipped model, bench/NOTES-reading.md section 5), stopped by ``--minutes`` (default 7.5: with the ~1 minute of start-up and
   the export it ends inside nine) -> ``$OUT/rec.onnx``, ``log.csv``, ``val_*.json``,
   ``run.json``; this wrapper adds ``$OUT/gpu_run.json`` (device, torch/CUDA versions, wall).

It needs the datasets folder (``/work/shared/datasets``, for the real crops) and the synthetic
engine's fonts on the machine; it downloads nothing. Evaluate the result on a CPU machine with
``bench/rec_real.py --split eval --model dist=$OUT/rec.onnx ...`` before shipping it
(``workers/models/rec_ours/MODEL_CARD.md``). The CPU path is ``rec_distill`` without
``--device`` (see its docstring).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--alpha", type=float, default=0.25)
    p.add_argument(
        "--ours",
        type=Path,
        default=None,
        help="the fine-tuned model to mix (default: the shipped rec_ours; its own recipe "
        "started from ppocrv6_small-ft-step1725, `git show 041afd8:workers/models/rec_ours/"
        "rec.onnx`)",
    )
    p.add_argument("--kd-weight", type=float, default=3.0)
    p.add_argument("--real-mix", default="plates_br=0.3,expdate=0.15")
    p.add_argument("--minutes", type=float, default=7.5, help="training loop budget")
    p.add_argument("--steps", type=int, default=4000, help="upper bound (cosine length)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true", help="3 steps, no validation (CPU check)")
    a = p.parse_args(argv)
    out = Path(os.environ.get("OUT") or "var/train/gpu_rec")
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    t0 = time.time()
    import torch

    from workers.training import rec_distill, rec_mix

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run rec_distill on the CPU instead (see its docstring)")
    mix = rec_mix.export(a.alpha, out / "mix.onnx", ours=a.ours or rec_mix.OURS)
    args = [
        "--init", str(mix), "--out", str(out), "--device", a.device,
        "--batch-size", "64", "--real-batch-size", "64", "--samples-per-step", "2",
        "--lr", "3e-5", "--warmup", "50", "--max-steps", str(a.steps),
        "--kd-weight", str(a.kd_weight), "--real-mix", a.real_mix,
        "--max-minutes", str(a.minutes), "--val-every", "500", "--log-every", "50",
        "--threads", str(min(8, os.cpu_count() or 2)),
    ]  # fmt: skip
    if a.smoke:
        args += ["--max-steps", "3", "--val-every", "0", "--batch-size", "4"]
        args += ["--real-batch-size", "4", "--allow-missing-fonts", "--pool-min", "8"]
        args += ["--val-samples", "2", "--real-expdate", "20", "--real-sroie", "50"]
    res = rec_distill.train(rec_distill.parse_args(args))
    info = {
        "device": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "alpha": a.alpha,
        "wall_s": round(time.time() - t0, 1),
        "result": res,
    }
    (out / "gpu_run.json").write_text(json.dumps(info, indent=1, default=str))
    print(json.dumps(info, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
