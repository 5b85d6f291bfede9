"""Recogniser-level accuracy on REAL ground-truth line crops (issue 10, point 3) next to the
held-out synthetic crops of ``workers.training.rec_eval``, for any set of recognisers, through
the pipeline's own ``TextRecognizer`` + onnxruntime (the code path a read uses).

    nice -n 10 .venv/bin/python bench/rec_real.py --model ours=workers/models/rec_ours/rec.onnx \
        --model ppocrv6_small --model ppocrv4 --json var/bench/rec_real/run.json

Real sets (``/work/shared/datasets``, ``workers.training.real_crops``; crops cut with the GT
box + a fixed margin, the one ``rec_data.EVAL_PAD`` of the synthetic evaluation,
perspective-cropped like the pipeline; ``--split eval``: only the images at even positions,
the half the distillation fine-tune never sees):

- ``plates_br``: all 114 plate boxes; compared after removing spaces, dashes and middle dots
  (the labels omit separators), upper-cased.
- ``expdate``: the date line of the first ``--expdate`` records (``16 NOV``); strict and loose.
- ``sroie``: ``--sroie`` GT lines drawn (seed 0) from the 60 SROIE receipts with images, lines
  holding ``$ % "`` excluded; ``sroie_sym``: every line holding one of ``$ % "`` (about 130).

Synthetic: ``rec_eval.run`` on ``--per-condition`` evaluation photos per condition (seeds
9 000 000+, never trained on), lines without Hangul (every model can spell them) and all lines.

Metrics per set: exact line %, exact after the set's normalisation ("loose"), CER, and
``foreign``: lines whose prediction holds a Hangul or CJK character although the GT has none.

``--mask`` (repeatable; default ``auto``) runs each model once per decoding-time script rule
of ``workers.pipeline.recognition``: ``auto`` (the default rule of a schema without
``scripts``: a lone Hangul/CJK character inside Latin text is decoded again without those
classes; rows named ``<model>``), ``raw`` (no constraint: the network as it is, rows
``<model>+raw``), or a ``+``-joined script list such as ``latin`` (a product schema's
``scripts``; rows ``<model>+latin``).
Crops are cached under ``var/bench/rec_real/`` (pickle); the datasets are read only.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.training.metrics import levenshtein  # noqa: E402

DATASETS = Path("/work/shared/datasets")
CACHE = ROOT / "var/bench/rec_real"
SYMBOLS = set('$%"')


def is_foreign(ch: str) -> bool:
    """Hangul (jamo, compatibility jamo, syllables) or CJK/kana: a script no Latin line holds."""
    from workers.fieldspec.grammar import char_script

    return char_script(ch) != "latin"


def _plate_norm(s: str) -> str:
    return "".join(ch for ch in s if ch not in " -·.").upper()


def _loose(s: str) -> str:
    return s.replace(" ", "").replace("-", "").upper()


def real_crops(split: str, n_expdate: int, n_sroie: int) -> dict[str, list[tuple[Any, str]]]:
    """``workers.training.real_crops.line_crops``, cached under ``var/bench/rec_real/``."""
    from workers.training.real_crops import line_crops

    suffix = "" if split == "all" else f"_{split}"
    cache = CACHE / f"real_e{n_expdate}_s{n_sroie}{suffix}.pkl"
    if cache.exists():
        with cache.open("rb") as fh:
            return pickle.load(fh)
    out = line_crops(split, n_expdate, n_sroie)
    CACHE.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as fh:
        pickle.dump(out, fh)
    return out


def set_score(preds: list[str], gts: list[str], norm: Any) -> dict[str, float]:
    n = max(len(gts), 1)
    edits = sum(levenshtein(p, g) for p, g in zip(preds, gts, strict=True))
    chars = max(sum(len(g) for g in gts), 1)
    return {
        "n": len(gts),
        "exact": sum(p == g for p, g in zip(preds, gts, strict=True)) / n,
        "loose": sum(norm(p) == norm(g) for p, g in zip(preds, gts, strict=True)) / n,
        "cer": edits / chars,
        "foreign": sum(
            any(map(is_foreign, p)) and not any(map(is_foreign, g))
            for p, g in zip(preds, gts, strict=True)
        ),
        "symbols_kept": sum(
            sum(1 for ch in g if ch in SYMBOLS) for p, g in zip(preds, gts, strict=True) if p == g
        ),
    }


def recognizer(spec: str, scripts: tuple[str, ...] | None = None) -> tuple[str, Any]:
    """``MODEL_SETS`` key or ``name=path.onnx`` -> (name, TextRecognizer); ``scripts`` sets the
    decoding-time script mask (None: the recogniser's default)."""
    from workers.training.rec_eval import recognizer as load

    name, rec = load(spec)
    if scripts == ("raw",):
        from workers.fieldspec.grammar import SCRIPTS

        return f"{name}+raw", rec.with_scripts(SCRIPTS)
    if scripts is not None and scripts != ("auto",):
        rec = rec.with_scripts(scripts)
        name = f"{name}+{'+'.join(scripts)}"
    return name, rec


def run(
    specs: list[str],
    masks: list[str],
    n_expdate: int,
    n_sroie: int,
    per_condition: int,
    split: str = "all",
    json_path: str | None = None,
) -> dict[str, Any]:
    from workers.training.common import EVAL_SEED_BASE
    from workers.training.rec_data import VAL_CONDITIONS, heldout_crops

    real = real_crops(split, n_expdate, n_sroie)
    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + per_condition * len(VAL_CONDITIONS))
    cache = ROOT / f"var/train/eval/crops_{seeds[0]}_{seeds[-1]}.pkl"
    if cache.exists():
        with cache.open("rb") as fh:
            synth = pickle.load(fh)
    else:
        synth = heldout_crops(seeds, VAL_CONDITIONS)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("wb") as fh:
            pickle.dump(synth, fh)
    sets: dict[str, tuple[list[np.ndarray], list[str], Any]] = {
        "plates_br": (*map(list, zip(*real["plates_br"], strict=True)), _plate_norm),
        "expdate": (*map(list, zip(*real["expdate"], strict=True)), _loose),
        "sroie": (*map(list, zip(*real["sroie"], strict=True)), _loose),
        "sroie_sym": (*map(list, zip(*real["sroie_sym"], strict=True)), _loose),
    }
    latin_ids = [i for i, c in enumerate(synth) if not any(map(is_foreign, c.text))]
    latin = [synth[i] for i in latin_ids]
    conds = sorted({c.condition for c in latin})
    n_sets = {k: len(v[1]) for k, v in sets.items()}
    n_sets.update(synth_latin=len(latin), synth_all=len(synth))
    res: dict[str, Any] = {"sets": n_sets, "split": split, "models": {}}
    runs = [(s, tuple(m.split("+"))) for m in masks or ["auto"] for s in specs]
    for spec, scripts in runs:
        name, rec = recognizer(spec, scripts)
        t0 = time.perf_counter()
        out: dict[str, Any] = {}
        for set_name, (imgs, gts, norm) in sets.items():
            out[set_name] = set_score([r.text for r in rec(imgs)], gts, norm)
        preds_all = [r.text for r in rec([c.image for c in synth])]
        preds = [preds_all[i] for i in latin_ids]
        out["synth_latin"] = set_score(preds, [c.text for c in latin], _loose)
        out["synth_by_condition"] = {
            c: set_score(
                [p for p, x in zip(preds, latin, strict=True) if x.condition == c],
                [x.text for x in latin if x.condition == c],
                _loose,
            )
            for c in conds
        }
        out["synth_all"] = set_score(preds_all, [c.text for c in synth], _loose)
        out["seconds"] = round(time.perf_counter() - t0, 1)
        res["models"][name] = out
        print(f"{name}: done in {out['seconds']} s", file=sys.stderr, flush=True)
        if json_path:  # after every model: a stopped run keeps what it measured
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(res, indent=1))
    return res


def tables(res: dict[str, Any]) -> str:
    names = list(res["models"])
    sets = list(res["sets"])
    lines = ["exact / loose / CER (foreign-script lines) per set", ""]
    lines.append("| set | lines | " + " | ".join(names) + " |")
    lines.append("|" + "---|" * (2 + len(names)))
    for s in sets:
        cells = []
        for nm in names:
            m = res["models"][nm][s]
            cells.append(f"{m['exact']:.3f} / {m['loose']:.3f} / {m['cer']:.3f} ({m['foreign']})")
        lines.append(f"| {s} | {res['sets'][s]} | " + " | ".join(cells) + " |")
    first = res["models"][names[0]]
    if "synth_by_condition" in first:
        lines += ["", "synthetic lines without Hangul by condition, exact / CER", ""]
        lines.append("| condition | lines | " + " | ".join(names) + " |")
        lines.append("|" + "---|" * (2 + len(names)))
        for c, m0 in first["synth_by_condition"].items():
            cells = [
                f"{res['models'][nm]['synth_by_condition'][c]['exact']:.3f} / "
                f"{res['models'][nm]['synth_by_condition'][c]['cer']:.3f}"
                for nm in names
            ]
            lines.append(f"| {c} | {m0['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, help="MODEL_SETS key or name=path")
    p.add_argument("--mask", action="append", default=[], help="auto | raw | latin[+hangul]")
    p.add_argument("--expdate", type=int, default=200)
    p.add_argument("--sroie", type=int, default=400)
    p.add_argument("--per-condition", type=int, default=6)
    p.add_argument(
        "--split", default="all", choices=("all", "eval"), help="real images: all or the eval half"
    )
    p.add_argument("--json", default=None)
    p.add_argument("--with", dest="merge", action="append", default=[], help="earlier JSON")
    a = p.parse_args(argv)
    if not DATASETS.is_dir():
        print(f"{DATASETS} is absent: nothing to measure", file=sys.stderr)
        return 1
    res = run(a.model, a.mask, a.expdate, a.sroie, a.per_condition, a.split, a.json)
    for path in a.merge:
        old = json.loads(Path(path).read_text())
        if old["sets"] != res["sets"] or old.get("split", "all") != res["split"]:
            raise SystemExit(f"{path}: other sets than this run")
        res["models"] = {**old["models"], **res["models"]}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))
    print(tables(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
