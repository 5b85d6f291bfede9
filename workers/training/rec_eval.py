"""Held-out comparison of recognisers on synthetic line crops, through the pipeline's own
``TextRecognizer`` + onnxruntime (the code path a read uses).

Crops: ``rec_data.heldout_crops`` on seeds ``EVAL_SEED_BASE + offset ...`` (never used in
training), ``--per-condition`` samples for each condition, one crop per line cut with its exact
GT polygon and rectified like the pipeline does (a perfect detector). Metrics per condition:
line exact match and CER over all lines, and over the lines every model can spell (no Hangul:
the shipped heads have none) -- the fair comparison against the shipped models.

    nice -n 10 python -m workers.training.rec_eval --per-condition 8 \
        --model ours=workers/models/rec_ours/rec.onnx --model ppocrv6_small --model ppocrv6_tiny

Crops are cached under var/train/eval/ (pickle) so later runs on the same seeds skip the
rendering; ``--with earlier.json`` adds the models of an earlier run to the table.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path
from typing import Any

from workers.training.common import EVAL_SEED_BASE
from workers.training.metrics import score
from workers.training.rec_data import VAL_CONDITIONS, heldout_crops


def recognizer(spec: str) -> tuple[str, Any]:
    """``MODEL_SETS`` key or ``name=path.onnx`` -> (name, TextRecognizer) on the CPU."""
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.models import MODEL_SETS, create_session, load_char_list
    from workers.pipeline.recognition import TextRecognizer

    name, _, path = spec.partition("=")
    if path:
        sess, _ = create_session(Path(path), "cpu", 2)
        chars = sess.get_modelmeta().custom_metadata_map["character"].splitlines()
    else:
        ms = MODEL_SETS[name]
        sess, _ = create_session(ms.rec.path(), "cpu", 2)
        chars = load_char_list(ms, sess)
    return name, TextRecognizer(PipelineConfig(), sess, chars)


def run(models: list[str], per_condition: int, offset: int = 0) -> dict[str, Any]:
    seeds = range(
        EVAL_SEED_BASE + offset, EVAL_SEED_BASE + offset + per_condition * len(VAL_CONDITIONS)
    )
    cache = Path(f"var/train/eval/crops_{seeds[0]}_{seeds[-1]}.pkl")
    if cache.exists():
        with cache.open("rb") as fh:
            crops = pickle.load(fh)
    else:
        crops = heldout_crops(seeds, VAL_CONDITIONS)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("wb") as fh:
            pickle.dump(crops, fh)
    latin = [i for i, c in enumerate(crops) if all(ord(ch) < 0x1100 for ch in c.text)]
    res: dict[str, Any] = {
        "n_lines": len(crops),
        "n_latin": len(latin),
        "seeds": [seeds[0], seeds[-1]],
        "models": {},
    }
    for spec in models:
        name, rec = recognizer(spec)
        t0 = time.perf_counter()
        preds = [r.text for r in rec([c.image for c in crops])]
        dt = time.perf_counter() - t0
        out: dict[str, Any] = {"seconds": round(dt, 2)}
        for subset, ids in (("all", range(len(crops))), ("latin", latin)):
            ids = list(ids)
            out[subset] = score([preds[i] for i in ids], [crops[i].text for i in ids])
            by: dict[str, list[int]] = {}
            for i in ids:
                by.setdefault(crops[i].condition, []).append(i)
            out[f"{subset}_by_condition"] = {
                k: score([preds[i] for i in v], [crops[i].text for i in v])
                for k, v in sorted(by.items())
            }
        serial = [i for i in latin if crops[i].field == "serial"]
        out["serial_lines"] = score([preds[i] for i in serial], [crops[i].text for i in serial])
        res["models"][name] = out
    return res


def table(res: dict[str, Any], subset: str = "latin") -> str:
    names = list(res["models"])
    conds = list(next(iter(res["models"].values()))[f"{subset}_by_condition"])
    head = "| condition | lines | " + " | ".join(f"{n} exact / loose / CER" for n in names) + " |"
    lines = [head, "|" + "---|" * (2 + len(names))]
    for c in [*conds, "ALL"]:
        cells = []
        n = 0
        for nm in names:
            m = res["models"][nm]
            s = m[subset] if c == "ALL" else m[f"{subset}_by_condition"][c]
            n = s["n"]
            cells.append(f"{s['exact']:.3f} / {s['exact_loose']:.3f} / {s['cer']:.3f}")
        lines.append(f"| {c} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model", action="append", required=True, help="MODEL_SETS key or name=path.onnx"
    )
    p.add_argument("--per-condition", type=int, default=10)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument(
        "--with",
        dest="merge",
        action="append",
        default=[],
        help="JSON of an earlier run on the same seeds: its models join the table",
    )
    a = p.parse_args(argv)
    res = run(a.model, a.per_condition, a.offset)
    for path in a.merge:
        old = json.loads(Path(path).read_text())
        if old["seeds"] != res["seeds"] or old["n_lines"] != res["n_lines"]:
            raise SystemExit(f"{path}: other seeds/lines than this run")
        res["models"] = {**old["models"], **res["models"]}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))
    print(f"{res['n_lines']} lines ({res['n_latin']} without Hangul), seeds {res['seeds']}")
    print("\nlines without Hangul (every model can spell them):\n" + table(res, "latin"))
    print("\nall lines:\n" + table(res, "all"))
    for nm, m in res["models"].items():
        sl = m["serial_lines"]
        print(
            f"{nm}: serial-field lines n={sl['n']} exact {sl['exact']:.3f} "
            f"loose {sl['exact_loose']:.3f} CER {sl['cer']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
