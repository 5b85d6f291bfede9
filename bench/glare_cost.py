"""Glare measure on receipts: does white paper cost time and raise false warnings?

    nice -n 10 .venv/bin/python bench/glare_cost.py [--reads 10]

On the SROIE images we have (``../shared/datasets/sroie_train``, flat scans and photos of white
receipts): per image the glare mask time (``glare.image_glare_mask``), the share of the image
it marks, and the quality warnings with the ground-truth line boxes (``QualityAssessor``, no
OCR); then ``--reads`` of them read by the whole default pipeline: the ``quality`` stage's
share of the read time (glare mask + per-line glare + truncation guard + quality measures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "datasets" / "sroie_train"


def main() -> None:
    import cv2
    import numpy as np

    from workers.pipeline.glare import image_glare_mask
    from workers.pipeline.quality import QualityAssessor

    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=10)
    a = ap.parse_args()
    recs = [r for r in json.loads((DATA / "labels.json").read_text()) if r.get("image")]
    qa = QualityAssessor()
    ms, frac, warn = [], [], {}
    for r in recs:
        rgb = cv2.imread(str(DATA / r["image"]))[:, :, ::-1].copy()
        t = time.perf_counter()
        mask = image_glare_mask(rgb)
        ms.append((time.perf_counter() - t) * 1000)
        frac.append(float((mask > 0).mean()))
        polys = [np.array(ln["box"], np.float32) for ln in r["lines"]]
        for w in qa(rgb, polys, len(polys), glare=mask).warnings:
            warn[w.code] = warn.get(w.code, 0) + 1
    n = len(recs)
    print(f"\n## Glare measure on {n} SROIE receipts (shared CPU)\n")
    print("| measure | value |\n|---|---|")
    print(f"| glare mask, median ms per image | {statistics.median(ms):.0f} |")
    print(f"| images with any glare marked | {sum(f > 0 for f in frac)} / {n} |")
    print(f"| images with > 3 % of the image marked | {sum(f > 0.03 for f in frac)} / {n} |")
    for code in ("overexposed", "glare", "glare_photo", "glare_text", "blur", "underexposed"):
        print(f"| warning `{code}` (ground-truth boxes) | {warn.get(code, 0)} / {n} |")
    if a.reads:
        from workers.pipeline.config import PipelineConfig
        from workers.pipeline.pipeline import build_pipeline

        pipe = build_pipeline(PipelineConfig.from_env())
        shares, totals, over = [], [], 0
        for r in recs[: a.reads]:
            res = pipe.run((DATA / r["image"]).read_bytes())
            t = res.timings_ms
            shares.append(t["quality"] / t["total"])
            totals.append(t["total"])
            over += "overexposed" in {w.code for w in res.quality.warnings}
        print(f"| whole read: median quality-stage share of the read ({a.reads} reads) | "
              f"{statistics.median(shares):.1%} |")  # fmt: skip
        print(f"| whole read: median read ms | {statistics.median(totals):.0f} |")
        print(f"| whole read: `overexposed` | {over} / {a.reads} |")


if __name__ == "__main__":
    main()
