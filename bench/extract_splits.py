"""Field extraction on leave-templates-out and leave-keywords-out splits of the training engine.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/extract_splits.py [--n 600] [--tune]

Documents: ``workers.training.extractor.data.synth_doc`` (the engine's own text and boxes,
ground-truth lines, no OCR), seeds ``EVAL_SEED + k`` (never used for training the
transformer, which saw seeds 0..2999, nor for tuning the ranker, which was tuned on
``TUNE_SEED + k`` of the tuning split only; ``--tune`` prints the tuning split instead).

Splits (``split_of``):

* **templates**: the engine's layouts (``label.LAYOUTS``). Held out from tuning:
  ``HELD_OUT_LAYOUTS`` (tables, key above value).
* **keywords**: a document is held out when one of its printed keys is in ``HELD_OUT_KEYS``
  (one or two keys per field, English and Korean). ``ranker -keys`` is the ranker with those
  keys removed from its vocabulary as well: what it does with keys it has never seen.
* **no key**: the engine's ``value_without_key`` layout (serial exact when its key is absent).

Extractors in the same run, same lines, ``DEFAULT_SCHEMA``: the transformer (trained on this
engine, every template and key: for it nothing here is held out), v0 rules, the ranker.
Per field: exact match over the documents where the field is present (recall), precision over
all predictions; serial: exact, wrong-but-valid (a wrong serial that passes the schema's rules:
the worst outcome), wrong with extraction confidence >= 0.9, mean confidence of right and
wrong serials.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.field_accuracy import to_textlines  # noqa: E402
from workers.fieldspec.catalogue import DEFAULT_SCHEMA  # noqa: E402
from workers.fieldspec.keys import key_norm  # noqa: E402
from workers.pipeline.fields import RuleFieldExtractor  # noqa: E402
from workers.pipeline.ranker import RankerFieldExtractor  # noqa: E402
from workers.training.extractor.data import Doc, load_docs, save_docs, synth_doc  # noqa: E402
from workers.training.extractor.evaluate import normalise  # noqa: E402

EVAL_SEED = 5_000_000
TUNE_SEED = 4_000_000
HELD_OUT_LAYOUTS = frozenset({"table", "key_above_value"})
HELD_OUT_KEYS = frozenset(
    key_norm(k)
    for k in (
        "SER. NO.",
        "S/NO.",
        "시리얼번호",
        "Part Number",
        "BATCH",
        "Lot No.",
        "Date of Mfg.",
        "제조년월",
        "Type",
        "Mfr.",
        "MAC ADDR",
    )
)
FIELDS = tuple(f["name"] for f in DEFAULT_SCHEMA["fields"])
CACHE = Path("var/bench/extract_splits")


def docs(seed0: int, n: int) -> list[Doc]:
    path = CACHE / f"docs-{seed0}-{n}.json"
    if path.is_file():
        return load_docs(path)
    from workers.training.extractor.data import _fonts

    fonts = _fonts()
    out = [synth_doc(seed0 + k, fonts=fonts) for k in range(n)]
    save_docs(out, path)
    return out


def held_key(d: Doc) -> bool:
    for text in d.meta.get("keys", {}).values():
        parts = {key_norm(p) for p in text.replace("(", " ").replace(")", " ").split(" / ")}
        parts |= {key_norm(text)}
        parts |= {key_norm(w) for w in text.split()}
        if parts & HELD_OUT_KEYS:
            return True
    return False


def split_of(d: Doc) -> dict[str, str]:
    layout = d.meta.get("layout", "?")
    return {
        "templates": "held-out" if layout in HELD_OUT_LAYOUTS else "tune",
        "keywords": "held-out" if held_key(d) else "tune",
        "layout": layout,
    }


def run(extractor, ds: list[Doc]) -> list[dict]:
    out = []
    for d in ds:
        res = {r.name: r for r in extractor(to_textlines(d.lines), None) if r.value}
        out.append(
            {f: (r.value, r.valid, r.extraction_confidence or r.confidence) for f, r in res.items()}
        )
    return out


def table(title: str, ds: list[Doc], preds: dict[str, list[dict]]) -> None:
    print(f"\n### {title} ({len(ds)} labels)\n")
    names = list(preds)
    print("| field | n | " + " | ".join(f"{n} exact / prec" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for f in FIELDS:
        n = sum(1 for d in ds if d.fields.get(f))
        if not n:
            continue
        row = [f, str(n)]
        for name in names:
            tp = fp = 0
            for d, p in zip(ds, preds[name], strict=True):
                g = normalise(f, d.fields.get(f))
                v = normalise(f, p[f][0]) if f in p else ""
                if v and v == g:
                    tp += 1
                elif v:
                    fp += 1
            prec = tp / (tp + fp) if tp + fp else 0.0
            row.append(f"{100 * tp / n:.1f} % / {100 * prec:.1f} %")
        print("| " + " | ".join(row) + " |")
    # serial details
    print("\n| serial_number | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    stats = {}
    for name in names:
        right = wrong = valid_wrong = sure_wrong = missing = 0
        cr, cw = [], []
        for d, p in zip(ds, preds[name], strict=True):
            g = normalise("serial_number", d.fields.get("serial_number"))
            if "serial_number" not in p:
                missing += 1
                continue
            v, valid, conf = p["serial_number"]
            if normalise("serial_number", v) == g:
                right += 1
                cr.append(conf)
            else:
                wrong += 1
                cw.append(conf)
                valid_wrong += bool(valid)
                sure_wrong += conf >= 0.9
        stats[name] = (right, wrong, valid_wrong, sure_wrong, missing, cr, cw)
    n = len(ds)
    rows = [
        ("exact", lambda s: f"{100 * s[0] / n:.1f} %"),
        ("wrong (a value, not the serial)", lambda s: str(s[1])),
        ("wrong but valid", lambda s: str(s[2])),
        ("wrong with confidence >= 0.9", lambda s: str(s[3])),
        ("none returned", lambda s: str(s[4])),
        ("mean confidence right / wrong", lambda s: f"{_mean(s[5]):.2f} / {_mean(s[6]):.2f}"),
    ]
    for label, fn in rows:
        print(f"| {label} | " + " | ".join(fn(stats[name]) for name in names) + " |")


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def micro(ds: list[Doc], preds: list[dict]) -> float:
    tp = fp = fn = 0
    for d, p in zip(ds, preds, strict=True):
        for f in FIELDS:
            g = normalise(f, d.fields.get(f))
            v = normalise(f, p[f][0]) if f in p else ""
            if v and v == g:
                tp += 1
            else:
                fp += bool(v)
                fn += bool(g)
    return 2 * tp / max(2 * tp + fp + fn, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--tune", action="store_true", help="the tuning split (seeds TUNE_SEED+k)")
    ap.add_argument("--seed", type=int, default=None, help="first seed (default EVAL_SEED)")
    ap.add_argument("--no-transformer", action="store_true")
    ap.add_argument("--dump", default=None, help="write per-label ranker misses to this JSON")
    args = ap.parse_args()

    seed0 = TUNE_SEED if args.tune else (args.seed if args.seed is not None else EVAL_SEED)
    ds = docs(seed0, args.n)
    splits = [split_of(d) for d in ds]
    extractors = {}
    if not args.no_transformer:
        from workers.pipeline.extractor import TransformerFieldExtractor

        extractors["transformer"] = TransformerFieldExtractor()
    extractors["v0 rules"] = RuleFieldExtractor()
    extractors["ranker"] = RankerFieldExtractor()
    if not args.no_transformer:
        tfx = extractors["transformer"]
        extractors["ranker +tf"] = RankerFieldExtractor(
            transformer=lambda: tfx, use_transformer=True
        )
    extractors["ranker -keys"] = RankerFieldExtractor(exclude_keys=HELD_OUT_KEYS)
    preds = {name: run(ex, ds) for name, ex in extractors.items()}

    which = "tuning split" if args.tune else "evaluation seeds"
    print(f"# Engine splits, ground-truth lines ({which}: {seed0}..{seed0 + args.n - 1})")
    print("\nmicro F1 over the default schema's fields:\n")
    print("| subset | n | " + " | ".join(preds) + " |\n|---|---|" + "---|" * len(preds))

    def subset(pred) -> list[int]:
        return [i for i, s in enumerate(splits) if pred(s)]

    subsets = {
        "all": subset(lambda s: True),
        "templates: tuned-on layouts": subset(lambda s: s["templates"] == "tune"),
        "templates: held-out layouts (table, key above value)": subset(
            lambda s: s["templates"] == "held-out"
        ),
        "keywords: tuned-on keys": subset(lambda s: s["keywords"] == "tune"),
        "keywords: held-out keys": subset(lambda s: s["keywords"] == "held-out"),
        "no key (value_without_key)": subset(lambda s: s["layout"] == "value_without_key"),
    }
    for label, idx in subsets.items():
        sub = [ds[i] for i in idx]
        print(
            f"| {label} | {len(idx)} | "
            + " | ".join(f"{micro(sub, [p[i] for i in idx]):.3f}" for p in preds.values())
            + " |"
        )
    for label, idx in subsets.items():
        if label == "all":
            continue
        table(label, [ds[i] for i in idx], {k: [p[i] for i in idx] for k, p in preds.items()})

    if args.dump:
        miss = []
        for d, s, p in zip(ds, splits, preds["ranker"], strict=True):
            if s["templates"] != "tune" or s["keywords"] != "tune":
                continue  # never look at held-out labels while tuning
            bad = {
                f: [d.fields.get(f), p.get(f, ("",))[0]]
                for f in FIELDS
                if normalise(f, d.fields.get(f)) != normalise(f, p[f][0] if f in p else "")
            }
            if bad:
                miss.append({"id": d.id, "split": s, "bad": bad, "lines": [t for t, _ in d.lines]})
        Path(args.dump).write_text(json.dumps(miss, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
