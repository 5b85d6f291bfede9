"""Detection accuracy: text DETECTORS (ONNX) compared through the pipeline's own detector stage.

    nice -n 10 .venv/bin/python bench/det_accuracy.py --n-per-condition 20 --sroie 60 \
        --plates 40 --out var/bench/det_accuracy.json

Detectors (``--det NAME=SPEC``, repeatable, in column order; the first is the latency
reference). ``SPEC`` is a ``workers.pipeline.models.MODEL_SETS`` key (that set's det file, with
its ``det_mean`` / ``det_std``; ``LocalModelFile`` checks the sha256) or a path to a det
``.onnx`` file (ImageNet mean/std, as PP-OCRv5/v6 use; when a ``manifest.json`` with an entry
for the file lies beside it, its sha256 is checked too). Default:
``--det ppocrv6_small=ppocrv6_small --det ppocrv5=ppocrv5``, plus
``ours=workers/models/det_ours/det.onnx`` when that file exists. Each detector is built as
``build_pipeline`` builds it: ``models.create_session`` (same session options, device and thread
count: ``--device`` / ``--threads``, default from ``PipelineConfig.from_env()``) and
``TextDetector`` with the config's DB post-processing (defaults: long side 960, thresh 0.3, box
thresh 0.5, unclip 1.6). Only the detector stage runs (``TextDetector.__call__`` on the decoded
RGB image, pre + forward + post), not the pipeline's second, label-warped detection pass. A
detection's shape is its ``outline`` (2N points) when the detector gives one (bent lines), else
its quad (``--quads-only``: always the quad).

Data, in one run, every detector on the same decoded image, interleaved image by image and
round-robin over the buckets (SIGTERM / Ctrl-C summarises the images done):

- the held-out synthetic set of ``bench/read_accuracy.py`` (``synth_set``: evaluation seeds
  ``9_000_000 + 10_000 * bucket + k``, cached JPEGs + ``meta.json`` with the GT line polygons
  under ``var/bench/read_accuracy/synth/``), ``--n-per-condition`` images per bucket (glare,
  perspective, curved, rotated, dot_matrix, engraved, blur, clean);
- ``/work/shared/datasets/sroie_train``: the first ``--sroie`` records of ``labels.json`` that
  have an image (scanned receipts, GT = line boxes);
- ``/work/shared/datasets/plates_br``: the first ``--plates`` records (real car photos, GT = the
  axis-aligned plate box);
- ``/work/shared/datasets/expdate_turner``: the first ``--expdate`` records (real photos of food
  packs, GT = the date line's box; the lot line beside it is not labelled, so like plates only
  covered recall, at the plates' threshold).

A folder that is absent is skipped with a note.

Metrics, per bucket / dataset and detector (polygons rasterised with ``cv2.fillPoly`` at 1/4
pixel in the image frame, so curved 2N-point polygons count exactly like quads):

- recall / precision / hmean: one-to-one greedy matching of GT lines and detections at polygon
  IoU >= 0.5 (``--iou``; pairs taken in decreasing IoU); recall = matched / GT lines,
  precision = matched / detections, summed over the images of the subset (micro average).
  Not for plates. Also "mean best IoU": each GT line's highest IoU with any detection, averaged.
- covered recall: share of GT lines whose area is >= 60 % covered by the union of all detected
  polygons -- what matters for reading (a line split into two boxes is still read). For plates
  (GT box = the plate, detections = its text) only this is reported, at >= 50 %.
- latency: median milliseconds of ``detector(rgb)`` per image, and its ratio to the first
  detector's median on the same images.

Box convention. The synthetic GT polygons hug the glyphs (cap height), while the shipped
PP-OCR detectors, after their unclip, return boxes with a margin around the text (measured on
clean synthetic lines: 1.65x the GT height). Against the tight polygons a perfect PP-OCR box of
a thin line scores IoU ~0.35-0.55, so the IoU metrics on the synthetic set match detections
against the GT padded by ``workers.training.common.BOX_PAD`` (the margin ``det_train`` also trains with, so
the fine-tuned detector keeps the shipped box style); covered recall uses the unpadded GT.
SROIE has its own boxes. Detections of anything the GT does not list (codes, text outside the
GT lines) count against precision.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATASETS = Path("/work/shared/datasets")
SROIE = DATASETS / "sroie_train"
PLATES = DATASETS / "plates_br"
EXPDATE = DATASETS / "expdate_turner"
# one labelled box per image among unlabelled text: only covered recall is meaningful
COVER_ONLY = ("plates_br", "expdate")
OURS_DEFAULT = ROOT / "workers" / "models" / "det_ours" / "det.onnx"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IOU_THRESH = 0.5
COVER_THRESH = 0.6
PLATE_COVER_THRESH = 0.5
_SS = 4  # supersampling: each image pixel is rasterised as _SS x _SS samples
_SHIFT = 2  # fillPoly fractional bits of the sample coordinates

Poly = np.ndarray  # (K, 2) float, image pixels


# ---------------------------------------------------------------- geometry / matching
def _bbox(poly: Poly, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Integer window (x0, y0, x1, y1), end exclusive, of ``poly`` clipped to the image."""
    h, w = shape
    x0 = max(int(np.floor(poly[:, 0].min())), 0)
    y0 = max(int(np.floor(poly[:, 1].min())), 0)
    x1 = min(int(np.ceil(poly[:, 0].max())) + 1, w)
    y1 = min(int(np.ceil(poly[:, 1].max())) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _raster(
    poly: Poly, win: tuple[int, int, int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """Supersampled mask ((y1 - y0) * _SS, (x1 - x0) * _SS) uint8 0/1 of ``poly`` in the window
    ``win``; drawn into ``out`` when given. Sample (i, j) sits at the centre of its sub-cell,
    image point (x0 + (j + 0.5) / _SS, y0 + (i + 0.5) / _SS), so sample count / _SS^2 is the
    polygon's area to within ~1/_SS pixel along its outline (fillPoly keeps the samples on the
    edge: at one sample per pixel that would add about one pixel row and column)."""
    x0, y0, x1, y1 = win
    if out is None:
        out = np.zeros(((y1 - y0) * _SS, (x1 - x0) * _SS), np.uint8)
    q = (np.asarray(poly, np.float64) - [x0, y0]) * _SS - 0.5
    pts = np.round(q * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return out


def iou_matrix(gts: list[Poly], dets: list[Poly], shape: tuple[int, int]) -> np.ndarray:
    """(len(gts), len(dets)) polygon IoU, rasterised in the (H, W) image frame (parts outside
    the image do not count)."""
    out = np.zeros((len(gts), len(dets)), np.float64)
    gb = [_bbox(np.asarray(g, np.float64).reshape(-1, 2), shape) for g in gts]
    db = [_bbox(np.asarray(d, np.float64).reshape(-1, 2), shape) for d in dets]
    for i, g in enumerate(gts):
        if gb[i] is None:
            continue
        for j, d in enumerate(dets):
            a, b = gb[i], db[j]
            if b is None or a[0] >= b[2] or b[0] >= a[2] or a[1] >= b[3] or b[1] >= a[3]:
                continue
            win = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
            mg = _raster(np.asarray(g, np.float64).reshape(-1, 2), win)
            md = _raster(np.asarray(d, np.float64).reshape(-1, 2), win)
            union = int(np.count_nonzero(mg | md))
            if union:
                out[i, j] = np.count_nonzero(mg & md) / union
    return out


def greedy_match(iou: np.ndarray, thresh: float = IOU_THRESH) -> list[tuple[int, int]]:
    """One-to-one greedy matching: pairs (gt, det) in decreasing IoU, each side used at most
    once, IoU >= ``thresh``. Ties break on the lower (gt, det) index. Returns the pairs sorted
    by gt index."""
    iou = np.asarray(iou, np.float64)
    if iou.size == 0:
        return []
    gi, di = np.nonzero(iou >= thresh)
    order = sorted(zip(gi.tolist(), di.tolist(), strict=True), key=lambda p: (-iou[p], p))
    used_g: set[int] = set()
    used_d: set[int] = set()
    pairs = []
    for g, d in order:
        if g in used_g or d in used_d:
            continue
        used_g.add(g)
        used_d.add(d)
        pairs.append((g, d))
    return sorted(pairs)


def covered_fractions(gts: list[Poly], dets: list[Poly], shape: tuple[int, int]) -> np.ndarray:
    """Per GT polygon: share of its (in-image) area covered by the union of ``dets``; a GT
    wholly outside the image gets 0."""
    dp = [np.asarray(d, np.float64).reshape(-1, 2) for d in dets]
    db = [_bbox(d, shape) for d in dp]
    out = np.zeros(len(gts), np.float64)
    for i, g in enumerate(gts):
        p = np.asarray(g, np.float64).reshape(-1, 2)
        win = _bbox(p, shape)
        if win is None:
            continue
        m = _raster(p, win)
        area = int(np.count_nonzero(m))
        if not area:
            continue
        union = np.zeros_like(m)
        for d, b in zip(dp, db, strict=True):
            if b and b[0] < win[2] and win[0] < b[2] and b[1] < win[3] and win[1] < b[3]:
                _raster(d, win, union)
        out[i] = np.count_nonzero(m & union) / area
    return out


def score_image(
    gts: list[Poly],
    dets: list[Poly],
    shape: tuple[int, int],
    *,
    cover_thresh: float,
    iou_thresh: float = IOU_THRESH,
    iou_gts: list[Poly] | None = None,
) -> dict[str, Any]:
    """Counts for one image: GT lines, detections, IoU matches, covered GT lines, and the sum
    over GT lines of their best IoU with any detection. ``iou_gts`` (same lines, same order):
    the GT in the detector's box convention for the IoU metrics; coverage always uses ``gts``."""
    ig = gts if iou_gts is None else iou_gts
    iou = iou_matrix(ig, dets, shape) if ig and dets else np.zeros((len(ig), len(dets)))
    pairs = greedy_match(iou, iou_thresh)
    cov = covered_fractions(gts, dets, shape) if gts else np.zeros(0)
    return {
        "n_gt": len(gts),
        "n_det": len(dets),
        "matched": len(pairs),
        "covered": int((cov >= cover_thresh).sum()),
        "best_iou_sum": float(iou.max(1).sum()) if iou.size else 0.0,
    }


# ---------------------------------------------------------------- data
def synth_records(n_per: int) -> list[dict[str, Any]]:
    """Synthetic GT: the engine's glyph-tight line polygons (coverage) and the same polygons
    padded by ``workers.training.common.BOX_PAD`` (the shipped detector's measured box margin; IoU metrics)."""
    from bench.read_accuracy import synth_set
    from workers.training.common import BOX_PAD, pad_polygon

    out = []
    for r in synth_set(n_per):
        polys = [np.asarray(poly, np.float64).reshape(-1, 2) for _text, poly in r["lines"]]
        out.append(
            {
                "path": r["path"],
                "bucket": r["bucket"],
                "lines": polys,
                "iou_lines": [pad_polygon(p.copy(), *BOX_PAD) for p in polys],
            }
        )
    return out


def labelled_records(folder: Path, bucket: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` records of ``folder/labels.json`` that have an image (GT = line boxes)."""
    if n <= 0:
        return []
    if not (folder / "labels.json").exists():
        print(f"NOTE: {folder} is absent: the {bucket} rows are skipped", flush=True)
        return []
    out = []
    for r in json.loads((folder / "labels.json").read_text(encoding="utf-8")):
        if not r.get("image") or not (folder / r["image"]).exists():
            continue
        out.append(
            {
                "path": str(folder / r["image"]),
                "bucket": bucket,
                "lines": [ln["box"] for ln in r["lines"]],
            }
        )
        if len(out) >= n:
            break
    return out


# ---------------------------------------------------------------- detectors
def build_detector(
    name: str, spec: str, cfg: Any, device: str, threads: int
) -> tuple[Any, dict[str, Any]]:
    """(TextDetector, provenance) for ``NAME=SPEC`` (see module docstring)."""
    from workers.pipeline.detection import TextDetector
    from workers.pipeline.models import MODEL_SETS, create_session, sha256_of

    if spec in MODEL_SETS:
        ms = MODEL_SETS[spec]
        path = ms.det.path()  # LocalModelFile verifies its sha256 here
        mean, std, model = ms.det_mean, ms.det_std, ms.det.version()
    else:
        path = Path(spec)
        if not path.is_absolute():
            path = (ROOT / path) if (ROOT / path).exists() else path.resolve()
        if not path.is_file():
            raise SystemExit(f"--det {name}={spec}: not a MODEL_SETS key nor an existing file")
        manifest = path.parent / "manifest.json"
        if manifest.is_file():
            entry = json.loads(manifest.read_text()).get("files", {}).get(path.name)
            if entry and entry.get("sha256") and entry["sha256"] != sha256_of(path):
                raise SystemExit(f"--det {name}: sha256 of {path} does not match {manifest}")
        mean, std, model = IMAGENET_MEAN, IMAGENET_STD, path.name
    sess, providers = create_session(path, device, threads)
    det = TextDetector(cfg, sess, mean=mean, std=std)
    info = {
        "spec": spec,
        "path": str(path),
        "model": model,
        "sha256": sha256_of(path),
        "mean": list(mean),
        "std": list(std),
        "providers": providers,
    }
    return det, info


def det_shapes(boxes: list[Any], quads_only: bool) -> list[Poly]:
    out = []
    for b in boxes:
        shape = b.polygon if quads_only or b.outline is None else b.outline
        out.append(np.asarray(shape, np.float64).reshape(-1, 2))
    return out


# ---------------------------------------------------------------- run
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--det", action="append", metavar="NAME=SPEC", help="repeatable")
    ap.add_argument("--n-per-condition", type=int, default=20)
    ap.add_argument("--sroie", type=int, default=60)
    ap.add_argument("--plates", type=int, default=40)
    ap.add_argument("--expdate", type=int, default=0, help="expdate_turner images (date box)")
    ap.add_argument("--device", default=None, help="auto|cpu|cuda:N (default: OCR_DEVICE)")
    ap.add_argument("--threads", type=int, default=None, help="default: the pipeline's")
    ap.add_argument("--iou", type=float, default=IOU_THRESH, help="match threshold")
    ap.add_argument("--quads-only", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "var" / "bench" / "det_accuracy.json"))
    args = ap.parse_args()

    from bench.read_accuracy import interleave
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.io import decode_image
    from workers.pipeline.models import resolve_device

    specs = args.det or ["ppocrv6_small=ppocrv6_small", "ppocrv5=ppocrv5"] + (
        [f"ours={OURS_DEFAULT.relative_to(ROOT)}"] if OURS_DEFAULT.is_file() else []
    )
    cfg = PipelineConfig.from_env()
    if args.device:
        cfg = cfg.replace(device=args.device)
    if args.threads is not None:
        cfg = cfg.replace(threads=args.threads)
    device, _ = resolve_device(cfg.device)
    detectors: dict[str, Any] = {}
    infos: dict[str, dict[str, Any]] = {}
    for s in specs:
        name, sep, spec = s.partition("=")
        if not sep or not name or not spec:
            raise SystemExit(f"--det expects NAME=SPEC, got {s!r}")
        if name in detectors:
            raise SystemExit(f"--det name {name!r} given twice")
        detectors[name], infos[name] = build_detector(
            name, spec, cfg, device, cfg.effective_threads
        )
    names = list(detectors)
    print(
        "detectors: " + ", ".join(f"{n} ({infos[n]['model']})" for n in names) + "; "
        f"device {device}, {cfg.effective_threads} threads",
        flush=True,
    )

    t0 = time.perf_counter()
    synth = synth_records(args.n_per_condition) if args.n_per_condition > 0 else []
    print(f"synthetic set: {len(synth)} images ({time.perf_counter() - t0:.0f} s)", flush=True)
    real = (
        labelled_records(SROIE, "sroie", args.sroie)
        + labelled_records(PLATES, "plates_br", args.plates)
        + labelled_records(EXPDATE, "expdate", args.expdate)
    )
    data = interleave(synth, real)
    if not data:
        raise SystemExit("no images")

    warm = decode_image(Path(data[0]["path"]).read_bytes()).rgb
    for det in detectors.values():
        det(warm)

    per: dict[str, list[dict[str, Any]]] = {n: [] for n in names}

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        for i, rec in enumerate(data):
            rgb = decode_image(Path(rec["path"]).read_bytes()).rgb
            shape = rgb.shape[:2]
            gts = [np.asarray(p, np.float64).reshape(-1, 2) for p in rec["lines"]]
            iou_gts = rec.get("iou_lines")
            plate = rec["bucket"] in COVER_ONLY
            for name, det in detectors.items():
                t = time.perf_counter()
                boxes = det(rgb)
                ms = (time.perf_counter() - t) * 1000.0
                row = score_image(
                    gts,
                    det_shapes(boxes, args.quads_only),
                    shape,
                    cover_thresh=PLATE_COVER_THRESH if plate else COVER_THRESH,
                    iou_thresh=args.iou,
                    iou_gts=iou_gts,
                )
                row.update(path=rec["path"], bucket=rec["bucket"], ms=ms)
                per[name].append(row)
            if (i + 1) % 10 == 0:
                print(
                    f"  {i + 1}/{len(data)} images ({time.perf_counter() - t0:.0f} s)", flush=True
                )
    except KeyboardInterrupt:
        done = min(len(v) for v in per.values())
        per = {k: v[:done] for k, v in per.items()}
        print(f"INTERRUPTED: summarising the first {done} images", flush=True)

    report = summarise(per, names, iou_thresh=args.iou)
    print(report["markdown"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "config": cfg.to_dict(),
                "device": device,
                "detectors": infos,
                "summary": report["summary"],
                "per": per,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


def _groups(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    from bench.read_accuracy import BUCKETS

    groups: dict[str, list[dict[str, Any]]] = {}
    synth = [r for r in rows if r["bucket"] in BUCKETS]
    if synth:
        groups["synthetic (all)"] = synth
    for g in (*BUCKETS, "sroie", *COVER_ONLY):
        sel = [r for r in rows if r["bucket"] == g]
        if sel:
            groups[g] = sel
    return groups


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def summarise(
    per: dict[str, list[dict[str, Any]]], names: list[str], *, iou_thresh: float = IOU_THRESH
) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        summary[name] = {}
        for g, rows in _groups(per[name]).items():
            n_gt = sum(r["n_gt"] for r in rows)
            n_det = sum(r["n_det"] for r in rows)
            m = sum(r["matched"] for r in rows)
            rec, prec = _ratio(m, n_gt), _ratio(m, n_det)
            hmean = None
            if rec is not None and prec is not None:
                hmean = 2 * rec * prec / (rec + prec) if rec + prec else 0.0
            s = {
                "images": len(rows),
                "gt_lines": n_gt,
                "detections": n_det,
                "covered_recall": _ratio(sum(r["covered"] for r in rows), n_gt),
                "median_ms": statistics.median(r["ms"] for r in rows),
                "mean_best_iou": (sum(r["best_iou_sum"] for r in rows) / n_gt) if n_gt else None,
            }
            if g not in COVER_ONLY:
                s.update(recall=rec, precision=prec, hmean=hmean)
            summary[name][g] = s

    def f(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    ref = names[0]
    groups = list(summary[ref])
    md = [
        f"### Detection: recall / precision / hmean (IoU >= {iou_thresh}, one-to-one) and "
        f"covered recall (GT >= {COVER_THRESH:.0%} covered; plates: >= {PLATE_COVER_THRESH:.0%})",
        "",
        "| subset | images | GT lines | "
        + " | ".join(f"{n} {m}" for n in names for m in ("R", "P", "H", "cov"))
        + " |",
        "|---|---|---|" + "---|" * (4 * len(names)),
    ]
    for g in groups:
        s0 = summary[ref][g]
        cells = []
        for n in names:
            s = summary[n][g]
            cells += [f(s.get("recall")), f(s.get("precision")), f(s.get("hmean"))]
            cells.append(f(s["covered_recall"]))
        md.append(f"| {g} | {s0['images']} | {s0['gt_lines']} | " + " | ".join(cells) + " |")
    md += [
        "",
        f"### Detector latency per image (median ms, ratio to {ref} on the same images), "
        "detections per image, mean best IoU of a GT line",
        "",
        "| subset | " + " | ".join(f"{n} ms | {n} det/img | {n} IoU" for n in names) + " |",
        "|---|" + "---|---|---|" * len(names),
    ]
    for g in groups:
        cells = []
        for n in names:
            s = summary[n][g]
            r = s["median_ms"] / summary[ref][g]["median_ms"]
            cells += [
                f"{s['median_ms']:.0f} ({r:.2f}x)",
                f"{s['detections'] / s['images']:.1f}",
                f(s["mean_best_iou"]),
            ]
        md.append(f"| {g} | " + " | ".join(cells) + " |")
    return {"summary": summary, "markdown": "\n".join(md)}


if __name__ == "__main__":
    main()
