"""Field-extraction accuracy: layout-aware transformer extractor vs the v0 rule extractor.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 nice -n 10 python bench/field_accuracy.py \
        [--synth 300] [--no-e2e] [--latency-runs 30] [--model-dir workers/models/extractor]

Sections (both extractors in the same run, same inputs):

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

Normalisation (``workers/training/extractor/evaluate.py``): SROIE company/address upper-case,
whitespace collapsed; date/total exact strings (stripped). Column ``F1 nospace`` also ignores
spaces and a trailing "." in company/address (SROIE gold text vs line text noise). Nameplate
fields: ``fields.normalize_value`` with the field's default mode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.pipeline.extraction import TransformerFieldExtractor  # noqa: E402
from workers.pipeline.fields import DEFAULT_SCHEMA, RuleFieldExtractor  # noqa: E402
from workers.pipeline.types import TextLine  # noqa: E402
from workers.training.extractor.data import SROIE_DIR, Doc, load_sroie, synth_docs  # noqa: E402
from workers.training.extractor.evaluate import RECEIPT_FIELDS, Scores  # noqa: E402

RECEIPT_SCHEMA = {
    "fields": [
        {"name": "company", "normalize": "text", "keywords": ["SDN BHD"]},
        {
            "name": "date",
            "normalize": "text",
            "keywords": ["DATE", "TARIKH", "DATE/TIME"],
            "pattern": r"^\d{1,4}[-./]\d{1,2}[-./]\d{2,4}$",
        },
        {"name": "address", "normalize": "text", "keywords": ["ADDRESS"]},
        {
            "name": "total",
            "normalize": "text",
            "keywords": ["TOTAL", "GRAND TOTAL", "NETT TOTAL", "TOTAL AMOUNT", "ROUNDED TOTAL"],
            "pattern": r"^\d+(,\d{3})*\.\d{2}$",
        },
    ]
}
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--synth", type=int, default=300, help="held-out synthetic nameplates")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--latency-runs", type=int, default=30)
    args = ap.parse_args()

    tfx = TransformerFieldExtractor(args.model_dir)
    extractors = {"transformer": tfx, "v0 rules": RuleFieldExtractor()}
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
    lat_ex = {"transformer fp32": tfx, "v0 rules": RuleFieldExtractor()}
    if not args.no_int8:
        lat_ex["transformer int8"] = TransformerFieldExtractor(args.model_dir, quantize=True)
    lat = latency(lat_ex, lines, RECEIPT_SCHEMA, args.latency_runs)
    print(f"\n## (d) latency per image, {nwords} words, median of {args.latency_runs}\n")
    print("| extractor | ms |\n|---|---|")
    for k, v in lat.items():
        print(f"| {k} | {v:.1f} |")
    if not args.no_int8:
        q = run_docs(
            {"transformer int8": lat_ex["transformer int8"]}, val, RECEIPT_SCHEMA, RECEIPT_FIELDS
        )
        print(f"\nint8 SROIE validation GT-lines micro F1: {q['transformer int8'][0].micro.f1:.3f}")


if __name__ == "__main__":
    main()
