"""Latency of the transformer key-field extractor per image at ~100 words, torch vs ONNX Runtime.

    HF_HUB_OFFLINE=1 PYTHONPATH=. nice -n 10 .venv/bin/python bench/extractor_latency.py \
        [--source sroie|synth] [--words 100] [--runs 30] [--no-int8] [--no-optimized]

Input: ``sroie`` (default when the dataset is present): the SROIE validation receipt whose word
count is closest to ``--words`` (the same document as ``bench/field_accuracy.py`` (d));
``synth``: held-out synthetic nameplates (seeds 1,000,000+) stacked top to bottom until they
hold about ``--words`` words (one label has 3 to 30 words).

A call = ``extractor(lines, schema)`` end to end (word split, tokenizer, forward, decoding).
Configurations are timed round-robin (one call of each in turn, ``--runs`` rounds after 3
warm-up calls) so that load from other processes hits them alike. Printed per configuration:
median and p90 wall ms, median process CPU ms (for 1 thread: the cost without contention;
for 2 threads it also counts spinning worker threads), the ratio of the median to torch fp32
at the same thread count, and the largest word-probability difference from torch fp32.

Rows, each at 1 and 2 threads: torch fp32 and int8 (``backend="torch"``, ``quantize`` off/on),
ONNX Runtime fp32 and int8 (``backend="onnx"``, the default, ``quantize`` off/on: ORT dynamic
int8 with per-channel weights), and ``onnx optimized``, an experiment the extractor does not
offer: onnxruntime.transformers' BERT fusions (Attention, SkipLayerNormalization, BiasGelu) on
an eager-attention export.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from workers.pipeline.extractor import TransformerFieldExtractor  # noqa: E402
from workers.pipeline.extractor.layout import (  # noqa: E402
    encode_words,
    normalize_boxes,
    words_from_lines,
)
from workers.training.extractor.data import SROIE_DIR, load_sroie, synth_docs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from field_accuracy import to_textlines  # noqa: E402  (the sibling bench script)

RECEIPT_SCHEMA = {"fields": [{"name": f} for f in ("company", "date", "address", "total")]}


def n_words(lines: list[tuple[str, tuple]]) -> int:
    return len(words_from_lines(lines))


def sroie_input(target: int) -> tuple[list[tuple[str, tuple]], str]:
    _, val = load_sroie()
    doc = min(val, key=lambda d: abs(sum(len(t.split()) for t, _ in d.lines) - target))
    return doc.lines, f"SROIE validation receipt {doc.id}"


def synth_input(target: int) -> tuple[list[tuple[str, tuple]], str]:
    lines: list[tuple[str, tuple]] = []
    y_off, used = 0.0, 0
    for doc in synth_docs(range(1_000_000, 1_000_100)):
        ys = [y for _, poly in doc.lines for _, y in poly]
        top = min(ys)
        more = [(t, tuple((x, y - top + y_off) for x, y in poly)) for t, poly in doc.lines]
        have = n_words(lines)
        if lines and abs(n_words(lines + more) - target) >= abs(have - target):
            if have >= target * 0.9:
                break
            continue  # this label overshoots: try the next one
        lines += more
        y_off += max(ys) - top + 40.0
        used += 1
    return lines, f"{used} synthetic nameplates stacked"


def onnx_optimized(base: TransformerFieldExtractor, threads: int, tmp: Path):
    """An extractor whose session runs the onnxruntime.transformers BERT-optimised graph of an
    eager-attention export (the SDPA export gets no Attention fusion)."""
    path = tmp / "optimized.onnx"
    if not path.exists():
        from onnxruntime.transformers import optimizer

        from workers.pipeline.extractor.model import load_trained
        from workers.pipeline.extractor.onnx_cache import export_onnx

        model = load_trained(base.model_dir, base.manifest)
        model.bert.set_attn_implementation("eager")
        export_onnx(model, tmp / "eager.onnx")
        opt = optimizer.optimize_model(
            str(tmp / "eager.onnx"),
            model_type="bert",
            num_heads=model.bert.config.num_attention_heads,
            hidden_size=model.bert.config.hidden_size,
            opt_level=0,
        )
        fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        print(f"onnx optimized: fused {fused}", file=sys.stderr)
        opt.save_model_to_file(str(path))
    ex = TransformerFieldExtractor(backend="onnx", num_threads=threads)
    ex.load()
    ex._session = ex._ort_session(path.read_bytes())  # same session options, other graph
    return ex


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", choices=("sroie", "synth"), default=None)
    ap.add_argument("--words", type=int, default=100)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 rows")
    ap.add_argument("--no-optimized", action="store_true", help="skip the onnx optimized rows")
    args = ap.parse_args(argv)

    import torch

    logging_quiet()
    source = args.source or ("sroie" if (SROIE_DIR / "labels.json").is_file() else "synth")
    raw, what = (sroie_input if source == "sroie" else synth_input)(args.words)
    lines = to_textlines(raw)
    schema = RECEIPT_SCHEMA if source == "sroie" else None
    words = words_from_lines(raw)

    configs: dict[str, tuple[int, object]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="extractor-latency-"))  # the optimized graph
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    for th in (1, 2):
        configs[f"torch fp32 threads={th}"] = (th, TransformerFieldExtractor(backend="torch"))
        if not args.no_int8:
            configs[f"torch int8 threads={th}"] = (
                th,
                TransformerFieldExtractor(backend="torch", quantize=True),
            )
        onnx_ex = TransformerFieldExtractor(backend="onnx", num_threads=th)
        configs[f"onnx fp32 threads={th}"] = (th, onnx_ex)
        onnx_ex.load()
        if onnx_ex.active_backend != "onnx":
            sys.exit("the onnx backend did not load (see the warning above)")
        if not args.no_optimized:
            configs[f"onnx optimized threads={th}"] = (th, onnx_optimized(onnx_ex, th, tmp))
        if not args.no_int8:
            configs[f"onnx int8 threads={th}"] = (
                th,
                TransformerFieldExtractor(backend="onnx", quantize=True, num_threads=th),
            )
    for _, ex in configs.values():
        ex.load()  # type: ignore[attr-defined]
    tok = configs["onnx fp32 threads=1"][1]._tokenizer  # type: ignore[attr-defined]
    wins = encode_words(
        tok, [w.text for w in words], normalize_boxes([w.layout_box or w.box for w in words])
    )

    ref = configs["torch fp32 threads=1"][1].word_probs(words)  # type: ignore[attr-defined]
    wall: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, list[float]] = {k: [] for k in configs}
    diff: dict[str, float] = {}
    for th in (1, 2):
        torch.set_num_threads(th)  # torch's setting is per process; ORT's is per session
        group = {k: ex for k, (t, ex) in configs.items() if t == th}
        for k, ex in group.items():
            diff[k] = float(np.abs(ex.word_probs(words) - ref).max())  # type: ignore[attr-defined]
            for _ in range(3):
                ex(lines, schema)  # type: ignore[operator]
        for _ in range(args.runs):
            for k, ex in group.items():
                c0, t0 = time.process_time(), time.perf_counter()
                ex(lines, schema)  # type: ignore[operator]
                wall[k].append((time.perf_counter() - t0) * 1000)
                cpu[k].append((time.process_time() - c0) * 1000)

    load = os.getloadavg()
    print(f"## extractor latency per image: {len(words)} words ({what}), {len(wins)} window(s) ")
    print(f"of {', '.join(str(len(w.input_ids)) for w in wins)} tokens, {args.runs} rounds\n")
    print(
        f"Machine: {os.cpu_count()} CPUs, shared and loaded (load average {load[0]:.1f} / "
        f"{load[1]:.1f} / {load[2]:.1f} over 1/5/15 min while running): wall times include "
        "waiting for the CPU; the 1-thread CPU ms is the closest figure to an idle machine. "
        "torch " + torch.__version__ + ", onnxruntime " + _ort_version() + ".\n"
    )
    print("| configuration | median ms | p90 ms | CPU ms (median) | x torch fp32 | max abs dp |")
    print("|---|---|---|---|---|---|")
    for k in configs:
        th = configs[k][0]
        ts = sorted(wall[k])
        med = statistics.median(ts)
        p90 = ts[min(len(ts) - 1, int(round(0.9 * (len(ts) - 1))))]
        base = statistics.median(wall[f"torch fp32 threads={th}"])
        print(
            f"| {k} | {med:.1f} | {p90:.1f} | {statistics.median(cpu[k]):.1f} | "
            f"{med / base:.2f} | {diff[k]:.1e} |"
        )
    print(
        "\nx torch fp32: median over torch fp32's median at the same thread count (< 1 = faster)."
        " max abs dp: largest word-probability difference from torch fp32 on this input."
    )


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def logging_quiet() -> None:
    import logging
    import warnings

    logging.basicConfig(level=logging.ERROR)  # the ORT quantizer's hint on the root logger
    logging.getLogger("workers").setLevel(logging.WARNING)  # but the extractor's fallback
    warnings.filterwarnings("ignore")


if __name__ == "__main__":
    main()
