"""Calibrated per-field confidence: fit on one half of held-out reads, report on the other.

    nice -n 10 .venv/bin/python bench/calibration.py [--synth 300] [--clean 100] \
        [--expdate 150] [--target 0.005] [--fit] [--refresh-pixels]

What it does (every number from the same run):

1. OCR lines of held-out images (``bench/calib_cache.py``: training-engine nameplates, seeds
   9_500_000+ as ``bench/field_accuracy.py`` (e); clean engine labels, seeds 9_600_000+; the
   real ``expdate_turner`` photos when present), cached under ``var/bench/``.
2. Per image, from its pixels (synthetic images re-rendered from their seed): the glare mask
   (``glare.image_glare_mask``), glare-lowered character confidences (``apply_line_glare``)
   and the truncation causes (``truncation.line_cuts``); cached in
   ``var/bench/calib_pixels_<set>.json`` (``--refresh-pixels`` recomputes them).
3. The field extractor *of the pipeline config* (``OCR_FIELD_EXTRACTOR``, default the
   transformer; ``pipeline.build_field_extractor``) and ``FieldVerifier`` (no calibration)
   give every field its raw confidence; correct = same value as the ground truth
   (``bench/field_accuracy.same_value``). expdate_turner's date is the ``expiry_date`` (schema
   ``[{"name": "expiry_date", "required": true}]``: the catalogue's rule takes a date without a
   year, ``16 NOV``); until 2026-12-02 it was read as ``mfg_date``, which needs a year.
4. Split by image (even / odd position in each set): isotonic regression
   (``calibration.isotonic_fit``) per field with >= ``MIN_GROUP`` fit samples, else per group
   (dates) or pooled (``_all``), on the fit half; reliability table and expected calibration
   error (ECE, 10 equal-width bins) before / after on the report half; risk-coverage table on
   the report half (a field is auto-accepted when valid, calibrated confidence >= threshold and
   not ``truncated``; an image when ``decide_review`` passes: every field, required ones
   present); the threshold recommended for ``--target`` risk is the lowest whose wrong share
   among auto-accepted fields on the *fit* half is <= the target; the same pick per set
   (``per_set``: the threshold for a product whose photos look like that set's) is printed
   with its report-half numbers.
5. ``--fit`` writes ``workers/models/calibration/calibration.json`` (maps, the models' key,
   the report-half risk-coverage table, the recommended threshold). Re-run it after the
   extractor or a reading model changes: the pipeline falls back to raw confidences (with a
   warning) while the key does not match.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import calib_cache  # noqa: E402
import numpy as np  # noqa: E402

MIN_GROUP = 80
THRESHOLDS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
SYNTH_TODAY = dt.date(2027, 1, 1)  # after every date the engine prints (field_accuracy (e))
SETS = ("synth", "clean", "expdate", "indep")


def pixels_path(name: str) -> Path:
    return calib_cache.CACHE_DIR / f"calib_pixels_{name}.json"


def image_of(name: str, key: str) -> np.ndarray:
    import cv2

    if name == "indep":
        return calib_cache.indep_sample(int(key)).image
    if name in ("synth", "clean"):
        rgb, _f, _c = calib_cache.synth_image(int(key), name == "clean")
        # the pipeline read JPEG q95 bytes: the glare and cut measures see the same pixels
        ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    bgr = cv2.imread(str(calib_cache.DATASETS / "expdate_turner" / key), cv2.IMREAD_COLOR)
    return bgr[:, :, ::-1].copy()


def pixel_pass(name: str, cache: dict, refresh: bool) -> dict:
    """Per image: glare-lowered lines and truncation causes (step 2), cached."""
    import cv2

    from workers.pipeline.glare import apply_line_glare, image_glare_mask
    from workers.pipeline.truncation import line_cuts

    path = pixels_path(name)
    out = {} if refresh or not path.is_file() else json.loads(path.read_text())
    todo = [k for k in cache if k != "_meta" and k not in out]
    t = time.time()
    for i, key in enumerate(todo):
        rgb = image_of(name, key)
        lines = [calib_cache.line_from_json(j, d) for j, d in enumerate(cache[key]["lines"])]
        mask = image_glare_mask(rgb)
        lines, _q = apply_line_glare(lines, mask)
        cuts = line_cuts(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), lines, mask)
        out[key] = {
            "lines": [calib_cache.line_to_json(ln) for ln in lines],
            "cuts": {
                str(o): {"start": list(c.start), "end": list(c.end), "g": list(c.char_glare)}
                for o, c in cuts.items()
            },
            "glare": float((mask > 0).mean()),
        }
        if (i + 1) % 25 == 0 or i + 1 == len(todo):
            path.write_text(json.dumps(out))
            print(f"  {name} pixels {i + 1}/{len(todo)} ({time.time() - t:.0f} s)", flush=True)
    return out


def schema_for(name: str, truth: dict) -> dict:
    from field_accuracy import e2e_schema

    if name == "expdate":
        return {"fields": [{"name": "expiry_date", "required": True}]}
    return e2e_schema(truth)


def field_rows(sets: dict[str, dict], pixels: dict[str, dict], extractor) -> list[dict]:
    """One row per image: its fields' raw confidence, validity, correctness, truncation."""
    from field_accuracy import _code_from_json, same_value

    from workers.fieldspec.grammar import parse_month_day
    from workers.pipeline.truncation import LineCut
    from workers.pipeline.verification import FieldVerifier

    rows = []
    for name, cache in sets.items():
        verifier = FieldVerifier(today=lambda: SYNTH_TODAY)
        keys = sorted(k for k in cache if k != "_meta")
        for pos, key in enumerate(keys):
            rec, px = cache[key], pixels[name][key]
            truth = dict(rec["fields"])
            if name == "expdate":
                if not parse_month_day(truth["expiry_date"]):
                    continue  # no real day (40 NOV, 45 NOV: the packs print 30 / 25 NOV)
                truth = {"expiry_date": truth["expiry_date"]}
            ignore = set(rec.get("ignore") or ())  # indep: a brand without a key is not scored
            lines = [calib_cache.line_from_json(j, d) for j, d in enumerate(px["lines"])]
            cuts = {
                int(o): LineCut(int(o), tuple(c["start"]), tuple(c["end"]), tuple(c["g"]))
                for o, c in px["cuts"].items()
            }
            codes = [_code_from_json(c) for c in rec["codes"]]
            schema = schema_for(name, truth)
            ver = verifier(extractor(lines, schema), lines, schema, codes, cuts=cuts)
            trunc = {r.field for r in ver.review.reasons if r.code == "truncated"}
            fields = []
            for f in ver.fields:
                if not f.value or f.name in ignore:
                    continue
                line = (
                    lines[f.line_index].text
                    if f.line_index is not None and 0 <= f.line_index < len(lines)
                    else ""
                )
                fields.append(
                    {
                        "name": f.name,
                        "value": f.value,
                        "truth": truth.get(f.name),
                        "line": line,
                        "parts": dict(f.confidence_parts),
                        "raw": float(f.confidence_parts.get("raw", f.confidence)),
                        "code": f.source != "text",
                        "valid": bool(f.valid),
                        "correct": f.name in truth and same_value(f.name, f.value, truth[f.name]),
                        "truncated": f.name in trunc,
                    }
                )
            missing = [r.field for r in ver.review.reasons if r.code == "missing"]
            mism = [r.field for r in ver.review.reasons if r.code == "mislabel"]
            rows.append(
                {
                    "set": name,
                    "key": key,
                    "half": "fit" if pos % 2 == 0 else "report",
                    "fields": fields,
                    "blocked": bool(missing or mism),
                    "n_truth": len(truth),
                }
            )
    return rows


def calibrated(rows: list[dict], cal) -> None:
    for r in rows:
        for f in r["fields"]:
            # a value a code confirms keeps its code confidence (codes carry error detection)
            f["cal"] = max(f["raw"], 0.99) if f["code"] else cal(f["name"], f["raw"])


def fit(rows: list[dict]):
    from workers.pipeline.calibration import DATE_FIELDS, CalibrationMap, isotonic_fit

    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r["half"] != "fit":
            continue
        for f in r["fields"]:
            if f["code"]:
                continue
            by[f["name"]].append((f["raw"], float(f["correct"])))
            by["_all"].append((f["raw"], float(f["correct"])))
            if f["name"] in DATE_FIELDS:
                by["date"].append((f["raw"], float(f["correct"])))
    maps = {}
    for g, pairs in by.items():
        if g in ("_all", "date") or len(pairs) >= MIN_GROUP:
            if len(pairs) < 20:
                continue
            xs, ys = isotonic_fit([p[0] for p in pairs], [p[1] for p in pairs])
            maps[g] = (tuple(xs), tuple(ys))
    return CalibrationMap(maps=maps), {g: len(p) for g, p in by.items()}


def reliability(rows: list[dict], key: str, half: str = "report", bins: int = 10):
    conf, ok = [], []
    for r in rows:
        if r["half"] != half:
            continue
        for f in r["fields"]:
            if f["code"]:
                continue
            conf.append(f[key])
            ok.append(float(f["correct"]))
    c, o = np.asarray(conf), np.asarray(ok)
    idx = np.clip((c * bins).astype(int), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if not m.any():
            continue
        table.append(
            (b / bins, (b + 1) / bins, float(c[m].mean()), float(o[m].mean()), int(m.sum()))
        )
        ece += m.sum() / len(c) * abs(c[m].mean() - o[m].mean())
    return table, float(ece), len(c)


def risk_coverage(rows: list[dict], t: float, half: str, sets: tuple[str, ...]) -> dict:
    n_f = acc = wrong = 0
    n_img = img_ok = 0
    for r in rows:
        if r["half"] != half or r["set"] not in sets:
            continue
        n_img += 1
        all_ok = not r["blocked"]
        for f in r["fields"]:
            n_f += 1
            a = f["valid"] and f["cal"] >= t and not f["truncated"]
            all_ok &= a
            if a:
                acc += 1
                wrong += not f["correct"]
        img_ok += all_ok and bool(r["fields"])
    return {
        "threshold": t,
        "fields": n_f,
        "coverage": acc / n_f if n_f else 0.0,
        "wrong": wrong / acc if acc else 0.0,
        "wrong_n": wrong,
        "images": n_img,
        "images_accepted": img_ok / n_img if n_img else 0.0,
    }


def diagnose(rows: list[dict], t: float, half: str) -> None:
    """The confident wrong fields (valid, not truncated, calibrated >= 0.3) and what keeps the
    images of ``half`` from being auto-accepted at threshold ``t`` (``--diagnose``)."""
    print(f"\n### confident wrong fields, {half} half (valid, not truncated, calibrated >= 0.3)\n")
    print("| set | image | field | value | truth | raw | calibrated | rec x ext x val | line |")
    print("|---|---|---|---|---|---|---|---|---|")
    bad = [
        (r, f)
        for r in rows
        if r["half"] == half
        for f in r["fields"]
        if f["valid"] and not f["truncated"] and not f["correct"] and f["cal"] >= 0.3
    ]
    for r, f in sorted(bad, key=lambda rf: -rf[1]["cal"]):
        p = f["parts"]
        parts = "x".join(
            f"{p[k]:.3f}" for k in ("recognition", "extraction", "validation") if k in p
        )
        print(
            f"| {r['set']} | {r['key']} | {f['name']} | `{f['value']}` | `{f['truth']}` | "
            f"{f['raw']:.3f} | {f['cal']:.3f} | {parts} | `{f['line']}` |"
        )
    print(f"\n### what blocks the {half} half's images at threshold {t:.3f}\n")
    block: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in rows:
        if r["half"] != half:
            continue
        if r["blocked"]:
            block[(r["set"], "-", "missing/mislabel")] += 1
        for f in r["fields"]:
            why = (
                "invalid"
                if not f["valid"]
                else "truncated"
                if f["truncated"]
                else "low"
                if f["cal"] < t
                else ""
            )
            if why:
                ok = "right" if f["correct"] else "wrong"
                block[(r["set"], f["name"], f"{why} ({ok})")] += 1
    print("| set | field | why | fields |\n|---|---|---|---|")
    for (s, n, w), c in sorted(block.items()):
        print(f"| {s} | {n} | {w} | {c} |")


def pick_threshold(rows: list[dict], target: float, sets: tuple[str, ...]) -> float:
    grid = [round(x, 3) for x in np.arange(0.30, 0.996, 0.005)]
    for t in grid:
        rc = risk_coverage(rows, t, "fit", sets)
        if rc["wrong"] <= target and rc["coverage"] > 0:
            return t
    return 0.99


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synth", type=int, default=600)
    ap.add_argument("--clean", type=int, default=200)
    ap.add_argument("--expdate", type=int, default=150)
    ap.add_argument("--indep", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.005)
    ap.add_argument("--fit", action="store_true", help="write the calibration JSON")
    ap.add_argument("--refresh-pixels", action="store_true")
    ap.add_argument(
        "--diagnose",
        type=float,
        default=None,
        metavar="T",
        help="list the confident wrong fields and the blockers at threshold T (fit half)",
    )
    ap.add_argument("--half", default="fit", choices=("fit", "report"), help="for --diagnose")
    ap.add_argument("--out", default=None, help="calibration JSON path (default: the shipped)")
    a = ap.parse_args()

    from workers.pipeline.calibration import CALIBRATION_PATH, IDENTITY, model_key
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.models import MODEL_SETS, model_info
    from workers.pipeline.pipeline import build_field_extractor

    cfg = PipelineConfig.from_env()
    sets: dict[str, dict] = {}
    for name, n in (
        ("synth", a.synth),
        ("clean", a.clean),
        ("expdate", a.expdate),
        ("indep", a.indep),
    ):
        if n and (name != "expdate" or calib_cache.expdate_records()):
            c = calib_cache.build(name, n)
            keep = {k: v for k, v in c.items() if k != "_meta"}
            sets[name] = dict(sorted(keep.items())[:n])
    pixels = {name: pixel_pass(name, c, a.refresh_pixels) for name, c in sets.items()}

    extractor = build_field_extractor(cfg)
    if callable(getattr(extractor, "load", None)):
        extractor.load()
    ms = MODEL_SETS[cfg.model]
    models = [model_info("detection", ms.det), model_info("recognition", ms.rec)]
    if getattr(extractor, "model_info", None) is not None:
        models.append(extractor.model_info)
    key = model_key(models)

    rows = field_rows(sets, pixels, extractor)
    calibrated(rows, IDENTITY)
    for r in rows:
        for f in r["fields"]:
            f["rawc"] = f["cal"]
    cal, counts = fit(rows)
    calibrated(rows, cal)

    present = tuple(s for s in SETS if s in sets)
    n_img = {s: sum(1 for r in rows if r["set"] == s) for s in present}
    print(f"\n## Calibration ({dt.date.today()}, extractor {key['fields']})\n")
    print(
        "images: "
        + ", ".join(f"{s} {n_img[s]}" for s in present)
        + "; fit half / report half by position; fit samples per group: "
        + ", ".join(f"{g} {n}" for g, n in sorted(counts.items()))
        + f"; maps: {', '.join(sorted(cal.maps))}\n"
    )
    for label, k in (("raw (before)", "rawc"), ("calibrated (after)", "cal")):
        table, ece, n = reliability(rows, k)
        print(f"### reliability, {label}: report half, {n} fields, ECE {ece:.4f}\n")
        print("| bin | mean confidence | accuracy | count |\n|---|---|---|---|")
        for lo, hi, mc, acc, cnt in table:
            print(f"| {lo:.1f}-{hi:.1f} | {mc:.3f} | {acc:.3f} | {cnt} |")
        print()

    t_rec = pick_threshold(rows, a.target, present)
    print(
        "### risk-coverage, report half (auto-accept: valid, calibrated confidence >= t, "
        "not truncated; images: every field accepted, required present)\n"
    )
    head = "| threshold | " + " | ".join(
        f"{s}: fields accepted | {s}: wrong among accepted | {s}: images accepted"
        for s in present + ("all",)
    )
    print(head + " |")
    print("|---" * (1 + 3 * (len(present) + 1)) + "|")
    table = []
    for t in sorted(set(THRESHOLDS) | {t_rec}):
        cells = []
        entry = {"threshold": t}
        for s in present + ("all",):
            rc = risk_coverage(rows, t, "report", present if s == "all" else (s,))
            entry[s] = {k: round(v, 5) if isinstance(v, float) else v for k, v in rc.items()}
            cells.append(
                f"{rc['coverage']:.3f} | {rc['wrong']:.4f} ({rc['wrong_n']}) | "
                f"{rc['images_accepted']:.3f}"
            )
        table.append(entry)
        mark = " **(recommended)**" if t == t_rec else ""
        print(f"| {t:.3f}{mark} | " + " | ".join(cells) + " |")
    rec = next(e for e in table if e["threshold"] == t_rec)
    print(
        f"\nrecommended threshold for <= {a.target:.2%} wrong among auto-accepted fields "
        f"(picked on the fit half): {t_rec:.3f}; on the report half: wrong "
        f"{rec['all']['wrong']:.4f}, fields accepted {rec['all']['coverage']:.3f}, images "
        f"accepted {rec['all']['images_accepted']:.3f}"
    )
    # per-product thresholds: a product whose photos look like one set gets that set's pick
    per_set = {}
    for s in present:
        t_s = pick_threshold(rows, a.target, (s,))
        rc = risk_coverage(rows, t_s, "report", (s,))
        per_set[s] = {
            "threshold": t_s,
            "wrong": round(rc["wrong"], 5),
            "wrong_n": rc["wrong_n"],
            "coverage": round(rc["coverage"], 5),
            "images_accepted": round(rc["images_accepted"], 5),
        }
        print(
            f"per-set threshold (picked on {s}'s fit half): {s} {t_s:.3f}; on its report half: "
            f"wrong {rc['wrong']:.4f} ({rc['wrong_n']}), fields accepted {rc['coverage']:.3f}, "
            f"images accepted {rc['images_accepted']:.3f}"
        )
    trunc = sum(f["truncated"] for r in rows for f in r["fields"])
    trunc_wrong = sum(f["truncated"] and not f["correct"] for r in rows for f in r["fields"])
    nf = sum(len(r["fields"]) for r in rows)
    print(
        f"truncation guard: {trunc} of {nf} predicted fields flagged ({trunc_wrong} of them "
        f"wrong); per set: "
        + ", ".join(
            f"{s} {sum(f['truncated'] for r in rows if r['set'] == s for f in r['fields'])}"
            for s in present
        )
    )

    if a.diagnose is not None:
        diagnose(rows, a.diagnose, a.half)

    if a.fit:
        from workers.pipeline.calibration import CalibrationMap

        out = Path(a.out) if a.out else CALIBRATION_PATH
        out.parent.mkdir(parents=True, exist_ok=True)
        full = CalibrationMap(
            key=key,
            maps=cal.maps,
            groups={},
            meta={
                "fitted": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "command": "bench/calibration.py --fit "
                + " ".join(f"--{s} {len(sets.get(s, {}))}" for s in SETS),
                "data": {s: len(v) for s, v in sets.items()},
                "fit_samples": counts,
                "method": "isotonic regression (PAV) on the fit half (even positions)",
                "target_risk": a.target,
                "recommended": {
                    "threshold": t_rec,
                    "expected_wrong": rec["all"]["wrong"],
                    "coverage": rec["all"]["coverage"],
                    "images_accepted": rec["all"]["images_accepted"],
                },
                "risk_coverage": table,
                "per_set": per_set,
            },
        )
        out.write_text(json.dumps(full.to_dict(), indent=1) + "\n")
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
