"""DB detector fine-tuning: target construction, loss, polygon post-processing for curved
lines, and a 2+1 step smoke run (checkpoint, --resume, ONNX export matching torch)."""

from __future__ import annotations

import csv
import importlib.util
import math

import cv2
import numpy as np
import pytest

if importlib.util.find_spec("onnx2torch") is None:
    pytest.skip("onnx2torch is not installed", allow_module_level=True)
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from workers.training import det_train as D  # noqa: E402

pytestmark = pytest.mark.slow


def _inside(poly: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    m = np.zeros(hw, np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    return m.astype(bool)


def test_db_targets_quad():
    poly = np.array([[20, 20], [140, 20], [140, 50], [20, 50]], float)
    hw = (80, 170)
    t = D.db_targets([poly], hw)
    inside = _inside(poly, hw)
    shrink = t["shrink"] > 0.5
    # shrink map: non-empty, strictly inside the polygon, smaller than it, centre covered
    assert shrink.any() and not (shrink & ~inside).any()
    assert shrink.sum() < 0.8 * inside.sum()
    assert t["shrink"][35, 80] == 1.0
    # D = A (1 - 0.4^2) / L for a 120 x 30 box
    d = 120 * 30 * (1 - 0.16) / (2 * (120 + 30))
    assert not shrink[20 + int(d) - 2, 80] and shrink[20 + int(d) + 2, 80]
    # threshold map: 0.7 on the polygon edge, falling to 0.3 at distance >= D, 0.3 far away
    assert t["thresh"][20, 80] == pytest.approx(0.7, abs=0.02)
    assert t["thresh"][20 - int(d) // 2, 80] == pytest.approx(0.7 - 0.4 * (d // 2) / d, abs=0.04)
    assert t["thresh"][35, 80] == pytest.approx(0.3, abs=1e-6)  # centre: > D from every edge
    assert t["thresh"][2, 2] == pytest.approx(0.3)
    # threshold mask: the polygon dilated by D (contains the polygon, not the far corner)
    assert t["thresh_mask"][inside].min() == 1.0
    assert t["thresh_mask"][20 - int(d) + 2, 80] == 1.0 and t["thresh_mask"][0, 0] == 0.0
    assert t["shrink_mask"].min() == 1.0


def test_db_targets_curved_and_ignored():
    xs = np.linspace(30, 290, 9)
    yc = 40 + 0.003 * (xs - 160) ** 2
    curved = np.concatenate([np.stack([xs, yc - 12], 1), np.stack([xs[::-1], yc[::-1] + 12], 1)])
    tiny = np.array([[200, 100], [204, 100], [204, 103], [200, 103]], float)
    hw = (120, 320)
    t = D.db_targets([curved, tiny], hw)
    inside = _inside(curved, hw)
    shrink = t["shrink"] > 0.5
    assert shrink.sum() > 0.1 * inside.sum() and not (shrink & ~inside).any()
    # the shrink follows the bend: the centre line is text at both ends and in the middle
    for x in (60, 160, 260):
        y = int(round(40 + 0.003 * (x - 160) ** 2))
        assert t["shrink"][y, x] == 1.0
    # too small to learn from: masked out, no positive
    assert t["shrink_mask"][101, 202] == 0.0 and t["shrink"][101, 202] == 0.0


def test_db_loss_prefers_the_target():
    poly = np.array([[10, 10], [70, 10], [70, 30], [10, 30]], float)
    tg = D.db_targets([poly], (48, 96))
    batch = {k: torch.from_numpy(v)[None] for k, v in tg.items()}
    good_logits = (torch.from_numpy(tg["shrink"]) * 20 - 10)[None, None]
    good_t = torch.from_numpy(tg["thresh"])[None, None]
    bad_logits = -good_logits
    g = D.db_loss(good_logits, good_t, batch)
    b = D.db_loss(bad_logits, torch.full_like(good_t, 0.5), batch)
    assert all(math.isfinite(float(v)) for v in g.values())
    assert float(g["loss"]) < 0.05 < float(b["loss"])
    assert float(g["l1"]) < 1e-6 and float(g["dice"]) < 0.01


def test_line_polygon_keeps_curvature():
    from workers.pipeline.det_polygons import line_polygon
    from workers.pipeline.rectification import classify_line, split_edges

    hw = (200, 420)
    xs = np.linspace(20, 400, 60)
    yc = 70 + 0.0025 * (xs - 210) ** 2
    band = np.concatenate([np.stack([xs, yc - 9], 1), np.stack([xs[::-1], yc[::-1] + 9], 1)])
    m = _inside(band, hw).astype(np.uint8)
    cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    poly = line_polygon(cs[0].reshape(-1, 2), 1.5)
    assert poly is not None and len(poly) % 2 == 0 and len(poly) >= 10
    top, bot = split_edges(poly)
    assert (top[:, 1] < bot[:, 1]).all() and (np.diff(top[:, 0]) > 0).all()
    assert classify_line(poly) == "curved"
    # the middle of the top edge follows the arc (a box would put it ~90 px higher)
    mid = top[len(top) // 2]
    assert abs(mid[1] - (70 + 0.0025 * (mid[0] - 210) ** 2 - 9)) < 15
    # a straight band stays straight
    m2 = np.zeros(hw, np.uint8)
    m2[50:70, 30:330] = 1
    cs2, _ = cv2.findContours(m2, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    p2 = line_polygon(cs2[0].reshape(-1, 2), 1.5)
    assert classify_line(p2) != "curved"


def test_smoke_train_resume_export(tmp_path):
    out = tmp_path / "det"
    common = [
        "--allow-missing-fonts",  # the mechanics, on any machine
        "--batch-size",
        "1",
        "--size",
        "192",
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
    ]
    assert D.main([*common, "--max-steps", "2"]) == 0
    with (out / "log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert 0.0 <= float(rows[-1]["recall"]) <= 1.0
    assert (out / "ckpt_0000002.pt").exists() and (out / "best.pt").exists()
    assert D.main([*common, "--max-steps", "3", "--resume"]) == 0
    with (out / "log.csv").open() as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 2, 3]
    ck = torch.load(out / "ckpt_0000003.pt", weights_only=True)
    assert ck["scheduler"]["last_epoch"] == 3 and "thresh_head" in ck

    from workers.training import convert

    onnx_path = tmp_path / "det.onnx"
    D.main(["--export", str(out / "ckpt_0000003.pt"), "--onnx", str(onnx_path)])
    net = convert.load(out / "ckpt_0000003.pt")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = D.normalise(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))[None]
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape == (1, 1, 96, 128)
    assert np.abs(got - ref).max() < 1e-4


@pytest.mark.parametrize(
    ("model_set", "channels"), [("ppocrv5", 96), ("ppocrv6_small", None), ("ppocrv6_tiny", None)]
)
def test_head_feature_is_found_in_every_base(model_set, channels):
    """The fused FPN feature the threshold head reads is found from the graph itself (the
    PP-OCRv5 name used to be hard-coded) and feeds a Conv of the converted network."""
    name, c = D.head_feature(model_set)
    if model_set == "ppocrv5":
        assert name == "p2o.pd_op.concat.0.0"
    assert c == (channels or c) and c >= 16
    trainer = D.DBTrainer(model_set=model_set)
    x = torch.from_numpy(D.normalise(np.zeros((64, 96, 3), np.uint8), model_set)[None])
    logits, thresh = trainer(x)
    assert logits.shape == thresh.shape == (1, 1, 64, 96)


def test_distractors_never_touch_the_text_lines():
    rng = np.random.default_rng(3)
    img = np.full((240, 320, 3), 128, np.uint8)
    polys = [np.array([[40, 40], [200, 40], [200, 70], [40, 70]], np.float64)]
    changed = np.zeros((240, 320), bool)
    for _ in range(5):
        out = D.distractors(img, polys, rng)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert (out[_inside(polys[0], (240, 320))] == 128).all()
        changed |= (out != img).any(-1)
    assert changed.mean() > 0.01  # clutter was drawn around them


def test_training_polygons_are_padded_to_the_shipped_box_style():
    """``resized_sample`` pads the engine's glyph-tight polygons by BOX_PAD (line heights)."""
    from workers.training.common import pad_polygon

    rect = np.array([[10, 20], [110, 20], [110, 40], [10, 40]], np.float64)
    p = pad_polygon(rect.copy(), *D.BOX_PAD)
    h = p[:, 1].max() - p[:, 1].min()
    w = p[:, 0].max() - p[:, 0].min()
    assert h == pytest.approx(20 * (1 + D.BOX_PAD[0] + D.BOX_PAD[1]))
    assert w == pytest.approx(100 + 20 * (D.BOX_PAD[2] + D.BOX_PAD[3]))
    img, polys = D.resized_sample(D.TRAIN_SEEDS[0] + 7, 320, None, 0.0)
    _, raw = D.resized_sample(D.TRAIN_SEEDS[0] + 7, 320, None, 0.0, pad=(0, 0, 0, 0))
    assert len(polys) == len(raw)
    assert sum(cv2.contourArea(p.astype(np.float32)) for p in polys) > 1.5 * sum(
        cv2.contourArea(p.astype(np.float32)) for p in raw
    )


def test_interpolate_weights_is_a_weight_space_mix():
    from workers.training import convert

    ft = convert.build("ppocrv6_tiny", "det")
    base = {k: v.clone() for k, v in ft.state_dict().items()}
    with torch.no_grad():
        for v in ft.state_dict().values():
            if v.is_floating_point():
                v.add_(1.0)
    D.interpolate_weights(ft, 0.25)
    for k, v in ft.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, base[k] + 0.25, atol=1e-5), k
    with pytest.raises(ValueError):
        D.interpolate_weights(ft, 1.5)
