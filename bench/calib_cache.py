"""OCR line cache for the calibration bench (``bench/calibration.py``): raw recognised lines
(before the glare step, ``glare_aware=False``) of held-out images, so that the glare measure,
the truncation guard, the extractor and the calibration can be re-run on them without OCR.

    nice -n 10 .venv/bin/python bench/calib_cache.py [--synth 300] [--clean 100] [--expdate 150] \
        [--indep 300]

Sets (each cached in ``var/bench/calib_lines_<set>.json``, keyed by image id):

- ``synth``: training-engine nameplates, seeds 9_500_000 + k (the evaluation range that
  ``bench/field_accuracy.py`` (e) uses, never trained on), conditions drawn by the engine;
- ``clean``: the same engine with ``conditions={"clean"}``, seeds 9_600_000 + k;
- ``expdate``: ``../shared/datasets/expdate_turner`` (real phone photos, ``expiry_date``);
- ``indep``: the independently written nameplate generator (``bench/indep_nameplates.py``),
  seeds 9_700_000 + k with its round-robin layouts and conditions: a seed range of its own,
  never used by an evaluation (``bench/generalisation.py`` reads 7_000_000+, 8_100_000+,
  8_500_000+, 8_600_000+). Off by default (``--indep 0``): the shipped map is fitted on our
  engine and the food packs; ``--indep 300`` fits it on two independent sources of layouts and
  keys instead (an experiment of 2026-12-03: bench/NOTES-calibration.md).

Synthetic images are not stored: they are re-rendered from their seed (deterministic).
The read is the default pipeline's (JPEG q95 bytes for synthetic images), rule extractor
(only the lines are kept), codes decoded on the rendered RGB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE_DIR = ROOT / "var" / "bench"
SYNTH_BASE = 9_500_000
CLEAN_BASE = 9_600_000
INDEP_BASE = 9_700_000
DATASETS = Path(os.environ.get("OCR_DATASETS", ROOT.parent / "shared" / "datasets"))


def cache_path(name: str) -> Path:
    return CACHE_DIR / f"calib_lines_{name}.json"


def line_to_json(ln) -> dict:
    return {
        "text": ln.text,
        "confidence": float(ln.confidence),
        "char_confidences": [float(c) for c in ln.char_confidences],
        "alternatives": [[[str(c), float(p)] for c, p in alts] for alts in ln.alternatives],
        "polygon": [[float(x), float(y)] for x, y in ln.polygon],
        "rotated_180": bool(ln.rotated_180),
    }


def line_from_json(i: int, d: dict):
    from workers.pipeline.types import TextLine

    return TextLine(
        order=i,
        text=d["text"],
        confidence=float(d["confidence"]),
        char_confidences=tuple(float(c) for c in d["char_confidences"]),
        alternatives=tuple(
            tuple((str(c), float(p)) for c, p in alts) for alts in d["alternatives"]
        ),
        polygon=tuple((float(x), float(y)) for x, y in d["polygon"]),
        rotated_180=bool(d.get("rotated_180", False)),
    )


def synth_image(seed: int, clean: bool):
    """(H, W, 3) uint8 RGB of a cached synthetic image, its truth fields and conditions."""
    from workers.training.extractor.data import SYNTH_FIELD_MAP
    from workers.training.synth import generate_sample

    s = generate_sample(seed, conditions={"clean"} if clean else None)
    fields = {SYNTH_FIELD_MAP.get(k, k): v for k, v in s.fields.items()}
    return s.image, fields, sorted(s.conditions)


def indep_sample(seed: int):
    """The independent generator's nameplate of ``seed`` (layout and condition by its
    position in ``INDEP_BASE``'s round robin: ``indep_nameplates.sample_at``)."""
    from bench.indep_nameplates import sample_at

    return sample_at(INDEP_BASE, seed - INDEP_BASE)


def expdate_records() -> list[dict]:
    p = DATASETS / "expdate_turner" / "labels.json"
    if not p.is_file():
        return []
    return [r for r in json.loads(p.read_text()) if r.get("image")]


def build(name: str, n: int) -> dict:
    import cv2

    path = cache_path(name)
    cache = json.loads(path.read_text()) if path.is_file() else {}
    if name in ("synth", "clean"):
        base = SYNTH_BASE if name == "synth" else CLEAN_BASE
        ids = [str(base + k) for k in range(n)]
    elif name == "indep":
        ids = [str(INDEP_BASE + k) for k in range(n)]
    else:
        ids = [r["image"] for r in expdate_records()[:n]]
        recs = {r["image"]: r for r in expdate_records()}
    todo = [i for i in ids if i not in cache]
    if not todo:
        return cache
    from workers.pipeline.barcodes import decode_codes
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.fields import RuleFieldExtractor
    from workers.pipeline.pipeline import build_pipeline

    cfg = PipelineConfig.from_env().replace(codes=False, glare_aware=False)
    pipe = build_pipeline(cfg, field_extractor=RuleFieldExtractor())
    cache.setdefault("_meta", {})["config"] = cfg.to_dict()
    cache["_meta"]["models"] = [m.to_dict() for m in pipe.models]
    t = time.time()
    for k, key in enumerate(todo):
        if name in ("synth", "clean"):
            rgb, fields, conds = synth_image(int(key), name == "clean")
            ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            data = jpeg.tobytes()
            codes = [c.to_dict() for c in decode_codes(rgb)]
        elif name == "indep":
            smp = indep_sample(int(key))
            data = smp.jpeg
            fields = dict(smp.fields)
            conds = [smp.condition, f"layout:{smp.layout}"]
            codes = [c.to_dict() for c in decode_codes(smp.image)]
        else:
            rec = recs[key]
            data = (DATASETS / "expdate_turner" / key).read_bytes()
            fields = {"expiry_date": rec["fields"]["expiry_date"]}
            conds = ["real"]
            codes = []
        res = pipe.run(data, schema=None)
        cache[key] = {
            "fields": fields,
            "ignore": sorted(smp.ignore) if name == "indep" else [],
            "conditions": conds,
            "size": [res.image.width, res.image.height],
            "lines": [line_to_json(ln) for ln in res.lines],
            "codes": codes,
        }
        if (k + 1) % 10 == 0 or k + 1 == len(todo):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache))
            print(f"  {name} OCR {k + 1}/{len(todo)} ({time.time() - t:.0f} s)", flush=True)
    return cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synth", type=int, default=600)
    ap.add_argument("--clean", type=int, default=200)
    ap.add_argument("--expdate", type=int, default=150)
    ap.add_argument("--indep", type=int, default=0)
    a = ap.parse_args()
    for name, n in (
        ("clean", a.clean),
        ("synth", a.synth),
        ("expdate", a.expdate),
        ("indep", a.indep),
    ):
        if n:
            build(name, n)


if __name__ == "__main__":
    main()
