"""Field-extraction accuracy: the ranker (default), the layout-aware transformer and v0 rules.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 nice -n 10 python bench/field_accuracy.py \
        [--synth 300] [--no-e2e] [--e2e-synth 150] [--latency-runs 30] [--no-int8] \
        [--model-dir workers/models/extractor]

Sections (every extractor in the same run, same inputs; the ranker finds the receipt fields
with its receipt rules, ``workers/pipeline/receipt.py``; ``bench/sroie_lines.py`` has the
development / held-out halves):

(a) SROIE validation split (deterministic, ``workers/training/extractor/data.py``; never used in
    training), ground-truth lines; entity precision/recall/F1 per field.
(b) SROIE end to end: the images we have (``sroie_train/images``), read by our own OCR pipeline
    (``workers.pipeline.loader.get_pipeline``), its lines fed to both extractors. Reported for
    all images and for the validation-split images only (the others were training receipts).
    OCR lines are cached in ``var/extractor/ocr_lines.json`` (delete it to re-run the OCR).
(c) held-out synthetic nameplates (seeds >= 1_000_000, training uses 0..n-1): field exact match
    per field (= recall over present fields) with precision on all predictions.
(d) extractor latency per image at ~100 words (median of N calls after warm-up), torch threads
    1 and 2, fp32 and dynamic int8; the rule extractor in the same run.
(e) held-out synthetic nameplates end to end (``--e2e-synth N``, 0 skips it; independent of
    ``--no-e2e``, which only skips (b)): seeds 9_500_000 + k (the evaluation range of
    ``bench/read_accuracy.py``, never used in training), conditions drawn by the engine, each
    read once by our OCR pipeline (default config, JPEG q95) with its codes decoded on the
    rendered RGB (``barcodes.decode_codes``); lines and codes cached per seed in
    ``var/bench/e2e_synth_lines.json`` (delete it to re-run the OCR). On the same lines:
    (1) v0 rules, (2) transformer raw, (3) transformer + ``FieldVerifier``, (4) ranker raw,
    (5) ranker + ``FieldVerifier`` (what the worker does by default), all with ``fields.DEFAULT_SCHEMA`` plus the sample's other ground-truth fields (gtin,
    by name), and (4) the verifier with the same names but no rules of their own (every field
    held to its ``validation.DEFAULT_FIELD_SPECS`` rules: IMEI Luhn, GTIN GS1, dates parsed),
    to show what the check digits and date rules add. ``today`` is pinned after every date the
    engine prints. Per field: exact match, corrections, valid/invalid x right/wrong; per read:
    auto-accept share and precision. Per-image details: ``var/bench/e2e_synth_results.json``.

Normalisation (``workers/training/extractor/evaluate.py``): SROIE company/address upper-case,
whitespace collapsed; date/total exact strings (stripped). Column ``F1 nospace`` also ignores
spaces and a trailing "." in company/address (SROIE gold text vs line text noise). Nameplate
fields: the catalogue's normalisation of the field; in (e)
``validation.normalise`` with the field's default spec on both sides (plus the trailing
``.,;|`` the extractors strip), dates compared as parsed dates when both parse.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.fieldspec.catalogue import DEFAULT_FIELD_SPECS, DEFAULT_SCHEMA, spec_for  # noqa: E402
from workers.fieldspec.grammar import normalise, parse_date, parse_month_day  # noqa: E402
from workers.pipeline.extractor import TransformerFieldExtractor  # noqa: E402
from workers.pipeline.extractor.model import NAMEPLATE_FIELDS as NAMEPLATE_FIELDS_MODEL  # noqa: E402
from workers.pipeline.fields import RuleFieldExtractor  # noqa: E402
from workers.pipeline.ranker import RankerFieldExtractor  # noqa: E402
from workers.pipeline.types import TextLine  # noqa: E402
from workers.training.extractor.data import SROIE_DIR, Doc, load_sroie, synth_docs  # noqa: E402
from workers.training.extractor.evaluate import RECEIPT_FIELDS, Scores  # noqa: E402

# the receipt fields by name: keywords and rules from the catalogue (workers/fieldspec/receipt.py),
# what a receipt product type gets by default (a schema's own keywords would replace them)
RECEIPT_SCHEMA = {"fields": [{"name": n} for n in RECEIPT_FIELDS]}
NAMEPLATE_FIELDS = tuple(f["name"] for f in DEFAULT_SCHEMA["fields"])
OCR_CACHE = Path("var/extractor/ocr_lines.json")


def to_textlines(lines: list[tuple[str, tuple]]) -> list[TextLine]:
    return [
        TextLine(
            order=i,
            text=t,
            confidence=1.0,
            char_confidences=(),
            alternatives=(),
            polygon=tuple((float(x), float(y)) for x, y in p),
        )
        for i, (t, p) in enumerate(lines)
    ]


def predict(extractor, lines: list[TextLine], schema) -> dict[str, str]:
    return {r.name: r.value for r in extractor(lines, schema) if r.value}


def run_docs(extractors: dict, docs: list[Doc], schema, fields) -> dict[str, tuple[Scores, Scores]]:
    out = {}
    for name, ex in extractors.items():
        strict, loose = Scores(), Scores()
        for d in docs:
            pred = predict(ex, to_textlines(d.lines), schema)
            strict.add(pred, d.fields, fields)
            loose.add(pred, d.fields, fields, strict=False)
        out[name] = (strict, loose)
    return out


def print_table(
    title: str, res: dict[str, tuple[Scores, Scores]], fields, *, exact: bool = False
) -> None:
    print(f"\n## {title}\n")
    names = list(res)
    head = "| field | n |" + "".join(
        f" {n} P | {n} R | {n} F1 |" + (f" {n} exact |" if exact else f" {n} F1 nospace |")
        for n in names
    )
    print(head)
    print("|" + "---|" * (2 + 4 * len(names)))
    for f in list(fields) + ["ALL (micro)"]:
        row = None
        cells = []
        for n in names:
            s, lo = res[n]
            c = s.micro if f.startswith("ALL") else s.per_field[f]
            cl = lo.micro if f.startswith("ALL") else lo.per_field[f]
            row = c.support
            cells.append(
                f" {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} | "
                + (f"{c.exact:.3f} |" if exact else f"{cl.f1:.3f} |")
            )
        print(f"| {f} | {row} |" + "".join(cells))


def ocr_lines(images: list[str]) -> dict[str, list]:
    cache = json.loads(OCR_CACHE.read_text()) if OCR_CACHE.is_file() else {}
    todo = [im for im in images if im not in cache]
    if todo:
        from workers.pipeline.loader import get_pipeline

        pipe = get_pipeline()
        t = time.time()
        for im in todo:
            res = pipe.run((SROIE_DIR / im).read_bytes(), schema=None)
            cache[im] = [[ln.text, [list(p) for p in ln.polygon]] for ln in res.lines]
        print(f"OCR of {len(todo)} images: {time.time() - t:.0f} s", file=sys.stderr)
        OCR_CACHE.parent.mkdir(parents=True, exist_ok=True)
        OCR_CACHE.write_text(json.dumps(cache))
    return cache


def latency(extractors: dict, lines: list[TextLine], schema, runs: int) -> dict[str, float]:
    import torch

    out = {}
    for name, ex in extractors.items():
        for th in (1, 2):
            torch.set_num_threads(th)
            for _ in range(3):
                ex(lines, schema)
            ts = []
            for _ in range(runs):
                t = time.perf_counter()
                ex(lines, schema)
                ts.append((time.perf_counter() - t) * 1000)
            out[f"{name} threads={th}"] = statistics.median(ts)
    return out


# ---------------------------------------------------------------------------- (e) end to end
E2E_SEED_BASE = 9_500_000  # inside the evaluation range 9_000_000.. (read_accuracy uses 9_0xx_xxx)
E2E_CACHE = Path("var/bench/e2e_synth_lines.json")
E2E_DETAILS = Path("var/bench/e2e_synth_results.json")
E2E_FIELDS = NAMEPLATE_FIELDS_MODEL  # every nameplate field the model knows
CHECK_DIGIT_FIELDS = ("imei", "gtin")
# The synthetic engine prints dates from 2018-01-01 to 2026-12-28 (``content.gen_date``; ISO
# week 26W52 = 2026-12-21): anchor the date rules after all of them, so that a correct date is
# never "in the future".
E2E_TODAY = date(2027, 1, 1)
_TRAIL = " \t.,;|"  # what ``fields.check_value`` strips from both ends of a value


def _line_to_json(ln: TextLine) -> dict:
    return {
        "text": ln.text,
        "confidence": float(ln.confidence),
        "char_confidences": [float(c) for c in ln.char_confidences],
        "alternatives": [[[str(c), float(p)] for c, p in alts] for alts in ln.alternatives],
        "polygon": [[float(x), float(y)] for x, y in ln.polygon],
        "rotated_180": bool(ln.rotated_180),
    }


def _line_from_json(i: int, d: dict) -> TextLine:
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


def _code_from_json(d: dict):
    from workers.fieldspec.gs1 import GS1Element
    from workers.pipeline.barcodes import CodeResult

    gs1 = d.get("gs1")
    return CodeResult(
        format=d["format"],
        text=d["text"],
        raw_bytes_b64=d.get("raw_bytes_b64"),
        polygon=tuple((int(x), int(y)) for x, y in d["polygon"]),
        gs1=None
        if gs1 is None
        else tuple(
            GS1Element(
                ai=e["ai"],
                name=e["name"],
                value=e["value"],
                valid=bool(e["valid"]),
                reason=e.get("reason"),
                normalised=e.get("normalised"),
            )
            for e in gs1
        ),
        gs1_errors=tuple(d.get("gs1_errors") or ()),
        symbology_identifier=d.get("symbology_identifier", ""),
        content_type=d.get("content_type", ""),
        orientation=int(d.get("orientation", 0)),
    )


def e2e_synth_reads(n: int) -> dict[int, dict]:
    """Held-out synthetic nameplates (seeds ``E2E_SEED_BASE + k``, conditions drawn by the
    engine), each read once by our OCR pipeline (default config, JPEG q95 bytes as in
    ``bench/read_accuracy.py``) and its codes decoded on the rendered RGB. Cached per seed in
    ``E2E_CACHE``: ground-truth fields, conditions, the recognised lines (text, confidence,
    char confidences, alternatives, polygon) and the codes (``CodeResult.to_dict``)."""
    import cv2

    cache = json.loads(E2E_CACHE.read_text()) if E2E_CACHE.is_file() else {}
    seeds = [E2E_SEED_BASE + k for k in range(n)]
    todo = [s for s in seeds if str(s) not in cache]
    if todo:
        from workers.pipeline.barcodes import decode_codes
        from workers.pipeline.config import PipelineConfig
        from workers.pipeline.pipeline import build_pipeline
        from workers.training.extractor.data import SYNTH_FIELD_MAP
        from workers.training.synth import generate_sample

        # codes are decoded below on the rendered RGB; the cheap rule extractor keeps the
        # read itself short (only its lines are used)
        cfg = PipelineConfig.from_env().replace(codes=False)
        pipe = build_pipeline(cfg, field_extractor=RuleFieldExtractor())
        cache.setdefault("_meta", {})["config"] = cfg.to_dict()
        t = time.time()
        for i, seed in enumerate(todo):
            s = generate_sample(seed)
            ok, jpeg = cv2.imencode(".jpg", s.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            res = pipe.run(jpeg.tobytes(), schema=None)
            codes = decode_codes(s.image)
            cache[str(seed)] = {
                "fields": {SYNTH_FIELD_MAP.get(k, k): v for k, v in s.fields.items()},
                "conditions": sorted(s.conditions),
                "lines": [_line_to_json(ln) for ln in res.lines],
                "codes": [c.to_dict() for c in codes],
            }
            if (i + 1) % 10 == 0 or i + 1 == len(todo):
                E2E_CACHE.parent.mkdir(parents=True, exist_ok=True)
                E2E_CACHE.write_text(json.dumps(cache))
                print(
                    f"  e2e synth OCR {i + 1}/{len(todo)} ({time.time() - t:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return {s: cache[str(s)] for s in seeds}


def _spec(field: str):
    """The catalogue's spec of a label field, and of ``expiry_date`` (the food-pack date of
    expdate_turner, not in the default label fields); None for the rest (compared as they are)."""
    return DEFAULT_FIELD_SPECS.get(field) or (spec_for(field) if field == "expiry_date" else None)


def _cmp_key(field: str, value: str) -> str:
    spec = _spec(field)
    v = normalise(value, spec) if spec is not None else value.strip()
    return v.strip(_TRAIL)


def same_value(field: str, pred: str | None, truth: str) -> bool:
    """Prediction == ground truth after ``validation.normalise`` with the field's default spec
    on both (and the trailing ``.,;|`` the extractors strip: "Co., Ltd." == "Co., Ltd"); date
    fields compare parsed dates when both parse, and dates printed without a year (the
    expdate_turner ground truth: ``16 NOV``) their month and day when both have no year
    (``16 NOV`` == ``16.11.``; ``16 NOV`` != ``16 NOV 2026``)."""
    if not pred:
        return False
    p, t = _cmp_key(field, pred), _cmp_key(field, truth)
    spec = _spec(field)
    if spec is not None and spec.date is not None:
        dp, dt = parse_date(p, today=E2E_TODAY), parse_date(t, today=E2E_TODAY)
        if dp is not None and dt is not None:
            return dp == dt
        if dp is None and dt is None:
            # the final dot _cmp_key strips is what makes "16.11." a day and a month
            mp = parse_month_day(p) or parse_month_day(pred.strip())
            mt = parse_month_day(t) or parse_month_day(truth.strip())
            if mp is not None and mt is not None:
                return mp == mt
    return p == t


def e2e_schema(truth_fields) -> dict:
    """The fields of ``fields.DEFAULT_SCHEMA`` plus every ground-truth field it lacks (gtin), by
    name (+ required) only, as the demo product types do: ``verification.product_schema`` gives
    each its built-in rules (IMEI Luhn, GTIN GS1, date parsing)."""
    fields = [
        {"name": f["name"], **({"required": True} if f.get("required") else {})}
        for f in DEFAULT_SCHEMA["fields"]
    ]
    have = {f["name"] for f in fields}
    fields += [{"name": n} for n in E2E_FIELDS if n in truth_fields and n not in have]
    return {"fields": fields}


def v0_schema(truth_fields) -> dict:
    """What the v0 rule extractor gets: the catalogue's ``DEFAULT_SCHEMA`` (its keyless
    fallback takes the catalogue's rules) plus the missing ground-truth fields by name."""
    fields = [dict(f) for f in DEFAULT_SCHEMA["fields"]]
    have = {f["name"] for f in fields}
    fields += [{"name": n} for n in E2E_FIELDS if n in truth_fields and n not in have]
    return {"fields": fields}


def _field_row(f) -> dict:
    return {
        "raw_value": f.raw_value,
        "value": f.value,
        "valid": bool(f.valid),
        "reason": f.reason,
        "corrected": bool(f.corrected),
        "correction": f.correction,
        "confidence": round(float(f.confidence), 4),
        "confidence_parts": dict(f.confidence_parts),
        "source": f.source,
    }


VERIFIED = ("transformer + verifier", "ranker + verifier")


def run_e2e_synth(tfx, n: int) -> None:
    from workers.pipeline.verification import FieldVerifier

    reads = e2e_synth_reads(n)
    rules = RuleFieldExtractor()
    rfx = RankerFieldExtractor(transformer=lambda: tfx, use_transformer=True)  # the default
    verifier = FieldVerifier(today=lambda: E2E_TODAY)
    variants = (
        "v0 rules",
        "transformer raw",
        "transformer + verifier",
        "ranker raw",
        "ranker + verifier",
    )
    details = []
    for seed, rec in reads.items():
        truth = rec["fields"]
        lines = [_line_from_json(i, d) for i, d in enumerate(rec["lines"])]
        codes = [_code_from_json(c) for c in rec["codes"]]
        schema = e2e_schema(truth)
        extracted = tfx(lines, schema)
        ver = verifier(extracted, lines, schema, codes)
        ranked = rfx(lines, schema)
        rver = verifier(ranked, lines, schema, codes)
        outs = {
            "v0 rules": {f.name: f for f in rules(lines, v0_schema(truth))},
            "transformer raw": {f.name: f for f in extracted},
            "transformer + verifier": {f.name: f for f in ver.fields},
            "ranker raw": {f.name: f for f in ranked},
            "ranker + verifier": {f.name: f for f in rver.fields},
        }
        details.append(
            {
                "seed": seed,
                "conditions": rec["conditions"],
                "truth": truth,
                "codes": [c["text"] for c in rec["codes"]],
                "pred": {v: {k: _field_row(f) for k, f in o.items()} for v, o in outs.items()},
                "review": {
                    "transformer + verifier": ver.review.to_dict(),
                    "ranker + verifier": rver.review.to_dict(),
                },
            }
        )
    E2E_DETAILS.parent.mkdir(parents=True, exist_ok=True)
    E2E_DETAILS.write_text(json.dumps(details, ensure_ascii=False, indent=1))
    print_e2e_synth(details, variants)


def _pct(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "-"


def print_e2e_synth(details: list[dict], variants: tuple[str, ...]) -> None:
    n_img = len(details)
    conds: dict[str, int] = {}
    for d in details:
        for c in d["conditions"]:
            conds[c] = conds.get(c, 0) + 1
    n_codes = sum(1 for d in details if d["codes"])
    print(
        f"\n## (e) synthetic nameplates end to end ({n_img} images, seeds "
        f"{E2E_SEED_BASE}..{E2E_SEED_BASE + n_img - 1}, our OCR, verifier today={E2E_TODAY})\n"
    )
    print(
        "conditions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(conds.items(), key=lambda kv: -kv[1]))
        + f"; images with a decoded code: {n_codes}\n"
    )

    def pv(d: dict, v: str, f: str) -> dict | None:
        r = d["pred"][v].get(f)
        return r if r is not None and r["value"] else None

    def all_right(d: dict, v: str, strict: bool) -> bool:
        """Every ground-truth field of image ``d`` right in variant ``v`` (``strict``: a
        missing field counts as wrong)."""
        for f, t in d["truth"].items():
            p = pv(d, v, f)
            if p is None:
                if strict:
                    return False
                continue
            if not same_value(f, p["value"], t):
                return False
        return True

    def serial_ok(d: dict, v: str) -> bool:
        p = pv(d, v, "serial_number")
        t = d["truth"].get("serial_number")
        return p is not None and t is not None and same_value("serial_number", p["value"], t)

    # exact match per field and variant
    print("### exact match per field (share of images whose ground truth has the field)\n")
    print(
        "| field | n | "
        + " | ".join(variants)
        + " | spurious v0 / transformer / ranker |\n|---|---|"
        + "---|" * (len(variants) + 1)
    )
    tot = {v: 0 for v in variants}
    tot_n = 0
    for f in E2E_FIELDS:
        has = [d for d in details if f in d["truth"]]
        cells = []
        for v in variants:
            k = sum(
                1
                for d in has
                if (p := pv(d, v, f)) is not None and same_value(f, p["value"], d["truth"][f])
            )
            tot[v] += k
            cells.append(_pct(k, len(has)))
        tot_n += len(has)
        spur = [
            sum(1 for d in details if f not in d["truth"] and pv(d, v, f) is not None)
            for v in ("v0 rules", "transformer raw", "ranker raw")
        ]
        print(
            f"| {f} | {len(has)} | " + " | ".join(cells) + f" | {spur[0]} / {spur[1]} / {spur[2]} |"
        )
    print(
        f"| ALL (micro) | {tot_n} | " + " | ".join(_pct(tot[v], tot_n) for v in variants) + " | |"
    )

    # verification outcome per field
    for v in VERIFIED:
        print(
            f"\n### {v}: validity x correctness per field (fields in ground truth and predicted)\n"
        )
        print(
            "| field | n | predicted | corrected | corrections right | corrections that broke "
            "a right read | valid & right | **valid & wrong** | invalid & right | "
            "invalid & wrong |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for f in E2E_FIELDS:
            has = [d for d in details if f in d["truth"]]
            c = dict.fromkeys(("pred", "corr", "corr_ok", "broke", "vr", "vw", "ir", "iw"), 0)
            for d in has:
                p = pv(d, v, f)
                if p is None:
                    continue
                ok = same_value(f, p["value"], d["truth"][f])
                c["pred"] += 1
                if p["corrected"]:
                    c["corr"] += 1
                    c["corr_ok"] += ok
                    raw = pv(d, v.replace(" + verifier", " raw"), f)
                    c["broke"] += (
                        not ok and raw is not None and same_value(f, raw["value"], d["truth"][f])
                    )
                key = ("v" if p["valid"] else "i") + ("r" if ok else "w")
                c[key] += 1
            vw = f"**{c['vw']}**" if f in CHECK_DIGIT_FIELDS else str(c["vw"])
            print(
                f"| {f} | {len(has)} | {c['pred']} | {c['corr']} | {c['corr_ok']} | "
                f"{c['broke']} | {c['vr']} | {vw} | {c['ir']} | {c['iw']} |"
            )

    # read level
    print("\n### read level: auto-accept (needs_review False)\n")
    print(
        "| variant | auto-accepted | precision (every predicted GT field right) | "
        "strict (every GT field predicted and right) | serial exact among auto-accepted | "
        "serial exact among needs_review | needs_review although every GT field predicted "
        "and right |"
    )
    print("|---|---|---|---|---|---|---|")
    for v in VERIFIED:
        acc = [d for d in details if not d["review"][v]["needs_review"]]
        rev = [d for d in details if d["review"][v]["needs_review"]]
        print(
            f"| {v} | {len(acc)}/{n_img} ({_pct(len(acc), n_img)}) | "
            f"{_pct(sum(all_right(d, v, False) for d in acc), len(acc))} | "
            f"{_pct(sum(all_right(d, v, True) for d in acc), len(acc))} | "
            f"{_pct(sum(serial_ok(d, v) for d in acc), len(acc))} | "
            f"{_pct(sum(serial_ok(d, v) for d in rev), len(rev))} | "
            f"{sum(all_right(d, v, True) for d in rev)}/{len(rev)} |"
        )
    for v in VERIFIED:
        # the same decision at other auto-accept thresholds (missing / invalid / mislabel
        # reasons do not depend on the threshold; low confidence does)
        print(
            f"\n### auto-accept threshold sweep ({v})\n\n"
            "| threshold | auto-accepted | precision (every predicted GT field right) | "
            "serial exact among auto-accepted |\n|---|---|---|---|"
        )
        for t in (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98):
            acc_t = [
                d
                for d in details
                if not any(
                    r["code"] in ("missing", "invalid", "mislabel")
                    for r in d["review"][v]["reasons"]
                )
                and all(
                    f["confidence"] >= t for f in d["pred"][v].values() if f["valid"] and f["value"]
                )
            ]
            print(
                f"| {t:.2f} | {len(acc_t)}/{n_img} ({_pct(len(acc_t), n_img)}) | "
                f"{_pct(sum(all_right(d, v, False) for d in acc_t), len(acc_t))} | "
                f"{_pct(sum(serial_ok(d, v) for d in acc_t), len(acc_t))} |"
            )
    # why reads go to review
    print("\n### review reasons (reads that have at least one, by code and field)\n")
    print("| reason | " + " | ".join(VERIFIED) + " |")
    print("|---|---|---|")
    counts: dict[str, dict[str, int]] = {}
    for v in VERIFIED:
        for d in details:
            seen = {f"{r['code']} {r['field']}" for r in d["review"][v]["reasons"]}
            for k in seen:
                counts.setdefault(k, {}).setdefault(v, 0)
                counts[k][v] += 1
    for k in sorted(counts, key=lambda k: -sum(counts[k].values())):
        print(f"| {k} | " + " | ".join(str(counts[k].get(v, 0)) for v in VERIFIED) + " |")
    print(f"\nper-image details: {E2E_DETAILS}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--synth", type=int, default=300, help="held-out synthetic nameplates")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument(
        "--int8", action="store_true", help="evaluate the int8 extractor in (a)-(c), (e)"
    )
    ap.add_argument("--latency-runs", type=int, default=30)
    ap.add_argument(
        "--e2e-synth",
        type=int,
        default=150,
        help="(e) held-out synthetic nameplates read end to end (0: skip)",
    )
    args = ap.parse_args()

    tfx = TransformerFieldExtractor(args.model_dir, quantize=args.int8)
    rfx = RankerFieldExtractor(transformer=lambda: tfx, use_transformer=True)  # the default
    extractors = {"ranker": rfx, "transformer": tfx, "v0 rules": RuleFieldExtractor()}
    print(f"transformer: {tfx.model_info}")

    # (a) SROIE validation, GT lines
    _, val = load_sroie()
    res = run_docs(extractors, val, RECEIPT_SCHEMA, RECEIPT_FIELDS)
    print_table(
        f"(a) SROIE validation, ground-truth lines ({len(val)} receipts)", res, RECEIPT_FIELDS
    )

    # (b) SROIE end to end from our OCR
    if not args.no_e2e:
        train, _ = load_sroie()
        with_img = [(d, "val") for d in val if d.image] + [(d, "train") for d in train if d.image]
        cache = ocr_lines([d.image for d, _ in with_img])
        e2e = []
        for d, split in with_img:
            lines = [(t, tuple(tuple(p) for p in poly)) for t, poly in cache[d.image]]
            e2e.append((Doc(d.id, "sroie", lines, d.fields, image=d.image), split))
        all_docs = [d for d, _ in e2e]
        val_docs = [d for d, s in e2e if s == "val"]
        res = run_docs(extractors, all_docs, RECEIPT_SCHEMA, RECEIPT_FIELDS)
        print_table(
            f"(b) SROIE end to end, our OCR, all {len(all_docs)} images "
            f"({len(all_docs) - len(val_docs)} of them were training receipts)",
            res,
            RECEIPT_FIELDS,
        )
        if val_docs:
            res = run_docs(extractors, val_docs, RECEIPT_SCHEMA, RECEIPT_FIELDS)
            print_table(
                f"(b') SROIE end to end, our OCR, validation images only ({len(val_docs)})",
                res,
                RECEIPT_FIELDS,
            )

    # (c) held-out synthetic nameplates
    if args.synth:
        docs = synth_docs(range(1_000_000, 1_000_000 + args.synth))
        res = run_docs(extractors, docs, None, NAMEPLATE_FIELDS)
        print_table(
            f"(c) held-out synthetic nameplates ({len(docs)})", res, NAMEPLATE_FIELDS, exact=True
        )

    # (d) latency at ~100 words
    doc = max(val, key=lambda d: -abs(sum(len(t.split()) for t, _ in d.lines) - 100))
    lines = to_textlines(doc.lines)
    nwords = sum(len(t.split()) for t, _ in doc.lines)
    lat_ex = {"transformer fp32": tfx, "ranker": rfx, "v0 rules": RuleFieldExtractor()}
    if not args.no_int8:
        lat_ex["transformer int8"] = TransformerFieldExtractor(args.model_dir, quantize=True)
    lat = latency(lat_ex, lines, RECEIPT_SCHEMA, args.latency_runs)
    print(f"\n## (d) latency per image, {nwords} words, median of {args.latency_runs}\n")
    print("| extractor | ms |\n|---|---|")
    for k, v in lat.items():
        print(f"| {k} | {v:.1f} |")
    # (d') latency on a synthetic nameplate, the default schema (the ranker alone)
    plate = max(synth_docs(range(1_000_000, 1_000_020)), key=lambda d: len(d.lines))
    plate_lines = to_textlines(plate.lines)
    pw = sum(len(t.split()) for t, _ in plate.lines)
    lat = latency(
        {"transformer fp32": tfx, "ranker": rfx, "v0 rules": RuleFieldExtractor()},
        plate_lines,
        None,
        args.latency_runs,
    )
    print(f"\n## (d') latency per nameplate, {pw} words, median of {args.latency_runs}\n")
    print("| extractor | ms |\n|---|---|")
    for k, v in lat.items():
        print(f"| {k} | {v:.1f} |")
    if not args.no_int8:
        q = run_docs(
            {"transformer int8": lat_ex["transformer int8"]}, val, RECEIPT_SCHEMA, RECEIPT_FIELDS
        )
        print(f"\nint8 SROIE validation GT-lines micro F1: {q['transformer int8'][0].micro.f1:.3f}")

    # (e) synthetic nameplates end to end, with and without the verification stage
    if args.e2e_synth:
        run_e2e_synth(tfx, args.e2e_synth)


if __name__ == "__main__":
    main()
