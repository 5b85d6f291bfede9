"""Recogniser fine-tuning: charset, label-smoothed CTC, pre-processing parity, and a 2+1 step
smoke run (checkpoint, --resume, ONNX export that onnxruntime and the pipeline's
TextRecognizer read). CI never trains for real."""

from __future__ import annotations

import csv
import importlib.util
import math

import numpy as np
import pytest

if importlib.util.find_spec("onnx2torch") is None:
    pytest.skip("onnx2torch is not installed", allow_module_level=True)
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from workers.training import rec_train as R  # noqa: E402
from workers.training.common import latest_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow


def test_charset_covers_serial_formats_and_korean_keywords():
    cs = R.build_charset()
    assert cs[-1] == " " and cs.count(" ") == 1
    assert len(cs) == len(set(cs))
    need = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-/.:#_")
    assert need <= set(cs)
    for (
        word
    ) in "제조번호 일련번호 시리얼 제조일자 모델명 로트 제조사 품번 부품번호 제조년월일".split():
        assert set(word) <= set(cs), word
    idx = {c: i + 1 for i, c in enumerate(cs)}
    assert R.encode("SN: A7-0", idx) == [idx[c] for c in "SN: A7-0"]
    assert R.encode("€", idx) is None


def test_ctc_smoothed_loss():
    torch.manual_seed(0)
    n, t, c = 3, 20, 12
    logits = torch.randn(n, t, c, requires_grad=True)
    targets = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9])
    lengths = torch.tensor([3, 4, 2])
    loss0, ctc0 = R.ctc_smoothed_loss(logits, targets, lengths, eps=0.0)
    ref = torch.nn.functional.ctc_loss(
        torch.log_softmax(logits, -1).transpose(0, 1),
        targets,
        torch.full((n,), t),
        lengths,
        reduction="mean",
        zero_infinity=True,
    )
    assert torch.allclose(loss0, ref) and torch.allclose(ctc0, ref)
    loss1, ctc1 = R.ctc_smoothed_loss(logits, targets, lengths, eps=0.2)
    # KL(uniform || p) >= 0, so smoothing adds 0.2 * (KL - CTC)
    kl = (loss1.detach() - 0.8 * ctc1.detach()) / 0.2
    assert float(kl) > 0
    loss1.backward()
    assert torch.isfinite(logits.grad).all()
    # uniform frames: the KL term vanishes
    flat = torch.zeros(n, t, c)
    lf, cf = R.ctc_smoothed_loss(flat, targets, lengths, eps=0.5)
    assert math.isclose(float(lf), 0.5 * float(cf), rel_tol=1e-5)
    # a confident correct alignment scores a lower CTC than random logits
    good = torch.full((1, t, c), -10.0)
    seq = [1, 0, 2, 0, 3] + [0] * (t - 5)
    for k, cls in enumerate(seq):
        good[0, k, cls] = 10.0
    lg, _ = R.ctc_smoothed_loss(good, torch.tensor([1, 2, 3]), torch.tensor([3]), eps=0.0)
    lr, _ = R.ctc_smoothed_loss(
        torch.randn(1, t, c), torch.tensor([1, 2, 3]), torch.tensor([3]), eps=0.0
    )
    assert float(lg) < 0.01 < float(lr)


def test_preprocess_matches_pipeline():
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.recognition import TextRecognizer

    class _Sess:
        def get_inputs(self):
            class _I:
                name = "x"

            return [_I()]

    rng = np.random.default_rng(1)
    crops = [
        rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((30, 200), (41, 500), (12, 20))
    ]
    rec = TextRecognizer(PipelineConfig(), _Sess(), ["a"])
    np.testing.assert_array_equal(R.preprocess(crops), rec.preprocess(crops))


def test_augment_keeps_shape_and_dtype():
    rng = np.random.default_rng(3)
    img = np.full((32, 160, 3), 200, np.uint8)
    img[8:24, 20:140] = 30
    for _ in range(20):
        out = R.augment(img, rng, strength=3.0)
        assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(R.augment(img, rng, strength=0.0), img)


def test_seed_ranges_are_disjoint():
    from workers.training import common as C
    from workers.training import rec_data

    assert C.TRAIN_SEEDS[1] <= C.VAL_SEEDS[0] < C.VAL_SEEDS[1] <= C.EVAL_SEED_BASE
    with pytest.raises(ValueError):
        rec_data.sample_crops(C.EVAL_SEED_BASE + 1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        rec_data.heldout_crops([5], ["clean"])


def _log_steps(path):
    with path.open() as fh:
        return [row for row in csv.DictReader(fh)]


def test_smoke_train_resume_export(tmp_path):
    out = tmp_path / "run"
    common = [
        "--allow-missing-fonts",  # the mechanics, on any machine
        "--arch",
        "v6_tiny",
        "--batch-size",
        "3",
        "--out",
        str(out),
        "--val-samples",
        "1",
        "--val-every",
        "0",
        "--ckpt-every",
        "1",
        "--pool-min",
        "6",
        "--pool-size",
        "40",
        "--warmup",
        "1",
        "--threads",
        "2",
    ]
    assert R.main([*common, "--max-steps", "2"]) == 0
    rows = _log_steps(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert latest_checkpoint(out).name == "ckpt_0000002.pt"
    ck = torch.load(out / "ckpt_0000002.pt", weights_only=True)
    lr_at_2 = ck["scheduler"]["last_epoch"]
    assert lr_at_2 == 2

    assert R.main([*common, "--max-steps", "3", "--resume"]) == 0
    rows = _log_steps(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]  # continued at step 3, not from 1
    ck3 = torch.load(out / "ckpt_0000003.pt", weights_only=True)
    assert ck3["scheduler"]["last_epoch"] == 3
    assert ck3["optimizer"]["state"]  # AdamW moments carried over

    # export: weights written back into the shipped graph, charset in the metadata
    from workers.training import convert

    onnx_path = tmp_path / "rec.onnx"
    R.main(["--export", str(out / "ckpt_0000003.pt"), "--onnx", str(onnx_path)])
    model = convert.load(out / "ckpt_0000003.pt")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (40, w, 3), dtype=np.uint8) for w in (150, 380)]
    x = R.preprocess(crops)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape and got.shape[-1] == len(R.build_charset()) + 1
    assert np.abs(got - ref).max() < 1e-4

    # the pipeline reads the charset from the metadata and decodes with confidences + top-k
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.models import ModelSet, load_char_list
    from workers.pipeline.recognition import TextRecognizer

    ms = ModelSet(None, None, None, None, None, (0, 0, 0), (1, 1, 1))  # type: ignore[arg-type]
    chars = load_char_list(ms, sess)
    assert [*chars, " "] == R.build_charset()
    res = TextRecognizer(PipelineConfig(), sess, chars)(crops)
    assert len(res) == 2
    for r in res:
        assert len(r.char_confidences) == len(r.text) == len(r.alternatives)
