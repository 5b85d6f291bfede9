"""SROIE receipt fields from ground-truth lines: development half vs held-out half.

    HF_HUB_OFFLINE=1 nice -n 15 .venv/bin/python bench/sroie_lines.py \
        [--no-transformer] [--errors FIELD[,FIELD]] [--limit 40] [--e2e] [--dev-only]

The evaluators measure on SROIE *test*, which we do not have. ``sroie_train`` (625 unique
receipts, ``workers/training/extractor/data.load_sroie``) is split deterministically by the
receipts' content hash (``Doc.id``, its first 12 hex digits):

- **dev** (312): receipts of the transformer's *training* split whose second hash byte is
  < 152. The receipt rules (``workers/pipeline/receipt.py``) were written and tuned looking
  at these only (``--errors`` prints mismatches of this half, and of no other).
- **held-out** (313): every other receipt: the rest of the transformer's training split (214)
  and the whole validation split (99, the one ``bench/field_accuracy.py`` section (a)
  reports: the transformer never trained on it, and the rules were never looked at on it).

Extractors, same lines: ``ranker`` (the default: receipt fields by the rules of
``receipt.py`` with the catalogue's receipt keywords) and ``ranker receipt=transformer`` (what
the default did before: the receipt fields handed to the layout transformer). The
transformer's numbers on ``dev`` and on the training part of ``held-out`` are on receipts it was
trained on (memory, not generalisation): only its validation-split number is a fair one.

``--e2e``: also the receipts that have images (58 unique), read by our OCR pipeline, lines
from the cache ``bench/field_accuracy.py`` writes (``var/extractor/ocr_lines.json``; run that
bench once without ``--no-e2e`` to fill it), per half.

Metric: SROIE task-3 entity precision / recall / F1 per field and micro over the four
(``workers/training/extractor/evaluate.py``: company / address upper-cased with whitespace
collapsed, date / total exact strings; ``F1 nospace`` also ignores spaces and a trailing ".").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.field_accuracy import OCR_CACHE, RECEIPT_SCHEMA, to_textlines  # noqa: E402
from workers.pipeline.ranker import RankerFieldExtractor  # noqa: E402
from workers.training.extractor.data import Doc, is_validation, load_sroie  # noqa: E402
from workers.training.extractor.evaluate import RECEIPT_FIELDS, Scores, normalise  # noqa: E402

DEV_BYTE = 152  # second hash byte below this: development half


def halves() -> dict[str, list[Doc]]:
    """``dev``, ``held-out`` and ``validation`` (a part of held-out) as described above."""
    train, val = load_sroie()
    dev = [d for d in train if int(d.id[2:4], 16) < DEV_BYTE]
    rest = [d for d in train if int(d.id[2:4], 16) >= DEV_BYTE]
    assert all(is_validation(d.id) for d in val)
    return {"dev": dev, "held-out": rest + val, "validation (in held-out)": val}


def predict_all(extractor, docs: list[Doc]) -> dict[str, dict[str, str]]:
    out = {}
    for d in docs:
        res = extractor(to_textlines(d.lines), RECEIPT_SCHEMA)
        out[d.id] = {r.name: r.value for r in res if r.value}
    return out


def score(docs: list[Doc], preds: dict[str, dict[str, str]]) -> tuple[Scores, Scores]:
    strict, loose = Scores(), Scores()
    for d in docs:
        strict.add(preds[d.id], d.fields, RECEIPT_FIELDS)
        loose.add(preds[d.id], d.fields, RECEIPT_FIELDS, strict=False)
    return strict, loose


def table(title: str, docs: list[Doc], preds: dict[str, dict[str, dict[str, str]]]) -> None:
    print(f"\n### {title} ({len(docs)} receipts)\n")
    names = list(preds)
    print("| field | n |" + "".join(f" {n} P | {n} R | {n} F1 | {n} F1 nospace |" for n in names))
    print("|" + "---|" * (2 + 4 * len(names)))
    scored = {n: score(docs, p) for n, p in preds.items()}
    for f in (*RECEIPT_FIELDS, "ALL (micro)"):
        cells, support = [], 0
        for n in names:
            s, lo = scored[n]
            c = s.micro if f.startswith("ALL") else s.per_field[f]
            cl = lo.micro if f.startswith("ALL") else lo.per_field[f]
            support = c.support
            cells.append(f" {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} | {cl.f1:.3f} |")
        print(f"| {f} | {support} |" + "".join(cells))


def wrong_table(extractor, sets: dict[str, list[Doc]]) -> None:
    """Per field and half: predictions that are wrong, of them marked valid, of them with
    extraction confidence >= 0.9 (what would be trusted), and the mean confidence of right
    and wrong values."""
    print("\n### ranker: wrong values (valid / confidence >= 0.9)\n")
    print(
        "| half | field | predicted | wrong | wrong & valid | wrong & conf >= 0.9 | conf right / wrong |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, docs in sets.items():
        stats = {f: [0, 0, 0, 0, [], []] for f in RECEIPT_FIELDS}
        for d in docs:
            for r in extractor(to_textlines(d.lines), RECEIPT_SCHEMA):
                if not r.value or r.name not in stats:
                    continue
                st = stats[r.name]
                st[0] += 1
                conf = float(r.extraction_confidence or 0.0)
                if normalise(r.name, r.value) == normalise(r.name, d.fields.get(r.name, "")):
                    st[4].append(conf)
                    continue
                st[1] += 1
                st[2] += bool(r.valid)
                st[3] += bool(r.valid and conf >= 0.9)
                st[5].append(conf)
        for f, (n, w, wv, wc, cr, cw) in stats.items():
            mr = sum(cr) / len(cr) if cr else float("nan")
            mw = sum(cw) / len(cw) if cw else float("nan")
            print(f"| {name} | {f} | {n} | {w} | {wv} | {wc} | {mr:.2f} / {mw:.2f} |")


def errors(
    docs: list[Doc], preds: dict[str, dict[str, str]], fields: list[str], limit: int
) -> None:
    for f in fields:
        n = 0
        print(f"\n## dev mismatches: {f}\n")
        for d in docs:
            got, gold = preds[d.id].get(f, ""), d.fields.get(f, "")
            if normalise(f, got) == normalise(f, gold):
                continue
            n += 1
            if n <= limit:
                print(f"{d.id}  gold={gold!r}\n              got={got!r}")
        print(f"({n} mismatches of {len(docs)})")


def ocr_docs(docs: list[Doc]) -> list[Doc]:
    """``docs`` that have an image, with the cached OCR lines instead of the ground truth's."""
    import json

    cache = json.loads(OCR_CACHE.read_text())
    return [
        Doc(d.id, d.source, [(t, tuple(map(tuple, p))) for t, p in cache[d.image]], d.fields)
        for d in docs
        if d.image and d.image in cache
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-transformer", action="store_true", help="skip the old receipt path")
    ap.add_argument("--errors", default="", help="print dev-half mismatches of these fields")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--e2e", action="store_true", help="also on our OCR's lines (cached)")
    ap.add_argument("--dev-only", action="store_true", help="the development half only")
    args = ap.parse_args()

    sets = halves()
    if args.dev_only:  # what to iterate on: the held-out half is neither printed nor scored
        sets = {"dev": sets["dev"]}
    extractors = {"ranker": RankerFieldExtractor()}
    if not args.no_transformer:
        extractors["ranker receipt=transformer"] = RankerFieldExtractor(receipt="transformer")
    docs = [d for part in sets.values() for d in part]
    preds = {n: predict_all(ex, docs) for n, ex in extractors.items()}
    print("## SROIE from ground-truth lines: entity P / R / F1")
    for name, part in sets.items():
        table(name, part, preds)
    wrong_table(extractors["ranker"], {n: p for n, p in sets.items() if "in held-out" not in n})
    if args.e2e:
        if not OCR_CACHE.is_file():
            sys.exit(f"{OCR_CACHE} missing: run bench/field_accuracy.py (without --no-e2e) first")
        print("\n## SROIE end to end: our OCR's lines (receipts with images)")
        for name in [n for n in ("dev", "held-out") if n in sets]:
            part = ocr_docs(sets[name])
            table(
                f"{name}, our OCR", part, {n: predict_all(ex, part) for n, ex in extractors.items()}
            )
    if args.errors:
        errors(sets["dev"], preds["ranker"], args.errors.split(","), args.limit)


if __name__ == "__main__":
    main()
