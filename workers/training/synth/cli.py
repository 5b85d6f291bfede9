"""CLI: write synthetic nameplate photos (or recognizer line crops) with labels.json.

    python -m workers.training.synth OUT_DIR --n 100 --seed 0 [--conditions glare,curved]
        [--size 1280x960] [--crops] [--workers 2] [--quality 95]

Full images: OUT_DIR/images/NNNNNN.jpg + OUT_DIR/labels.json, a list of records in the shared
dataset format (``image``, ``lines`` [{text, box}], ``fields``) with extra keys ``polygon``,
``words``, ``field``, ``role``, ``conditions``, ``field_lines``, ``seed``, ``meta``.
``--crops``: OUT_DIR/crops/NNNNNN_LL.png + OUT_DIR/crops.json (list of {image, text, field,
role, style, conditions, seed}) + OUT_DIR/rec_gt.txt ("path<TAB>text" lines); no full images.
Sample i uses seed ``sample_seed(S, i)`` (recorded per record), so any record can be rebuilt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from .crops import line_crops
from .sample import CONDITIONS, generate_sample


def sample_seed(seed: int, index: int) -> int:
    """Per-sample seed derived from the run seed and the sample index (no overlaps between
    runs with different seeds, unlike ``seed + index``)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0])


def _parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def _job(args: tuple) -> tuple[int, list[dict], float]:
    index, seed, conditions, size, out_dir, crops, quality = args
    t0 = time.perf_counter()
    s = generate_sample(seed, conditions=conditions, size=size)
    out = Path(out_dir)
    records: list[dict] = []
    if crops:
        for j, crop in enumerate(line_crops(s)):
            rel = f"crops/{index:06d}_{j:02d}.png"
            cv2.imwrite(str(out / rel), crop.image[..., ::-1])
            records.append(
                {
                    "image": rel,
                    "text": crop.text,
                    "field": crop.field,
                    "role": crop.role,
                    "style": crop.style,
                    "conditions": sorted(s.conditions),
                    "seed": seed,
                }
            )
    else:
        rel = f"images/{index:06d}.jpg"
        cv2.imwrite(str(out / rel), s.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        records.append(s.to_dict(rel))
    return index, records, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m workers.training.synth", description=__doc__.split("\n")[0]
    )
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--n", type=int, default=100, help="number of samples")
    ap.add_argument("--seed", type=int, default=0, help="run seed")
    ap.add_argument(
        "--conditions",
        default=None,
        help=f"comma-separated set applied to every sample (exactly these); one of {','.join(CONDITIONS)}",
    )
    ap.add_argument("--size", type=_parse_size, default=(1280, 960), help="WIDTHxHEIGHT")
    ap.add_argument(
        "--crops", action="store_true", help="write rectified line crops instead of images"
    )
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality of written images")
    a = ap.parse_args(argv)

    conditions = None
    if a.conditions:
        conditions = frozenset(c.strip() for c in a.conditions.split(",") if c.strip())
        unknown = conditions - set(CONDITIONS)
        if unknown:
            ap.error(f"unknown conditions: {sorted(unknown)}")
    out: Path = a.out_dir
    (out / ("crops" if a.crops else "images")).mkdir(parents=True, exist_ok=True)
    jobs = [
        (i, sample_seed(a.seed, i), conditions, a.size, str(out), a.crops, a.quality)
        for i in range(a.n)
    ]
    results: dict[int, list[dict]] = {}
    t0 = time.perf_counter()
    if a.workers > 1:
        with get_context("spawn").Pool(a.workers) as pool:
            for i, recs, _ in pool.imap_unordered(_job, jobs, chunksize=4):
                results[i] = recs
    else:
        for job in jobs:
            i, recs, _ = _job(job)
            results[i] = recs
    elapsed = time.perf_counter() - t0
    records = [r for i in sorted(results) for r in results[i]]
    if a.crops:
        (out / "crops.json").write_text(json.dumps(records, ensure_ascii=False, indent=1))
        with open(out / "rec_gt.txt", "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(f"{r['image']}\t{r['text']}\n")
    else:
        (out / "labels.json").write_text(json.dumps(records, ensure_ascii=False, indent=1))
    print(
        f"wrote {a.n} samples ({len(records)} records) to {out} in {elapsed:.1f} s "
        f"({a.n / max(elapsed, 1e-9):.2f} samples/s with {a.workers} worker(s))",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
