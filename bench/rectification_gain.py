"""Does per-line rectification help the recogniser? Ground-truth line polygons of synthetic
photos (curved / perspective / upside-down / clean), cut two ways and read by raw PP-OCRv4:

- quad:  ``geometry.crop_quad`` of the polygon's 4 corners re-ordered by image position (what
  the v0 pipeline does with a detector quad),
- rect:  ``rectification.rectify_line`` of the full polygon in reading order (axis slice,
  perspective warp or curved column sampling), then ``rectification.upright`` (recogniser
  confidence on the crop vs its 180-degree rotation) as it must be for detector quads.

    nice -n 10 .venv/bin/python bench/rectification_gain.py --per-condition 6

Prints line exact-match (spaces stripped) per condition and the methods chosen.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.pipeline import rectification as R  # noqa: E402
from workers.pipeline.config import PipelineConfig  # noqa: E402
from workers.pipeline.geometry import crop_quad, order_quad  # noqa: E402
from workers.pipeline.models import MODEL_SETS, create_session, load_char_list  # noqa: E402
from workers.pipeline.recognition import TextRecognizer  # noqa: E402

CONDS = ["clean", "perspective", "curved", "upside_down", "rotated"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-condition", type=int, default=6)
    ap.add_argument("--seed", type=int, default=7300)
    args = ap.parse_args()
    from workers.training.synth import generate_sample

    ms = MODEL_SETS["ppocrv4"]
    sess, _ = create_session(ms.rec.path(), "cpu", 2)
    rec = TextRecognizer(PipelineConfig(threads=2), sess, load_char_list(ms, sess))
    chars = set(load_char_list(ms, sess)) | {" "}

    def score(cs):
        return [r.confidence for r in rec(cs)]

    table = {}
    methods: collections.Counter = collections.Counter()
    for ci, cond in enumerate(CONDS):
        ok_q = ok_r = n = 0
        for k in range(args.per_condition):
            s = generate_sample(args.seed + 1000 * ci + k, conditions={cond})
            lines = [ln for ln in s.lines if set(ln.text) <= chars]
            if not lines:
                continue
            quads = [crop_quad(s.image, order_quad(ln.box.astype(np.float32))) for ln in lines]
            rects = []
            for ln in lines:
                r = R.rectify_line(s.image, ln.polygon)
                methods[(cond, r.method)] += 1
                rects.append(R.upright(r.crop, score)[0])
            for ln, a, b in zip(lines, rec(quads), rec(rects), strict=True):
                t = ln.text.replace(" ", "")
                ok_q += a.text.replace(" ", "") == t
                ok_r += b.text.replace(" ", "") == t
                n += 1
        table[cond] = (ok_q / max(n, 1), ok_r / max(n, 1), n)
    print("| condition | lines | quad crop exact | rectified exact |")
    print("|---|---|---|---|")
    for cond, (q, r, n) in table.items():
        print(f"| {cond} | {n} | {q:.2f} | {r:.2f} |")
    print("methods:", dict(methods))


if __name__ == "__main__":
    main()
