"""Weight-space mixing of the fine-tuned recogniser with its base (``rec_mix``): the wide
charset, the mixing rule at its ends (alpha 1 = ours on our classes, alpha 0 = the shipped
model) and the exported file read by the pipeline's recogniser on real pixels. Plus the
distillation loss (``rec_distill.kd_loss``) on real frames."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("onnx2torch") is None:
    pytest.skip("onnx2torch is not installed", allow_module_level=True)
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow


def _line(text: str) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=40)
    img = Image.new("RGB", (760, 80), (236, 236, 230))
    ImageDraw.Draw(img).text((16, 14), text, font=font, fill=(20, 20, 30))
    return np.asarray(img)


def test_wide_charset_keeps_ours_and_adds_what_receipts_and_labels_need():
    from workers.training.rec_mix import _ours_charset, wide_charset

    ours = _ours_charset()
    wide = wide_charset(ours)
    assert wide[: len(ours) - 1] == ours[:-1]  # our class order kept (space last on both)
    assert wide[-1] == " " and wide.count(" ") == 1
    assert set('$£€¥%"µΩ±°äéßłő') <= set(wide)
    assert set("製造番号序列号型号シリアル") <= set(wide)
    assert {"제", "조", "번", "호"} <= set(wide)
    assert len(wide) == len(set(wide))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    from workers.training import rec_mix

    out = tmp_path_factory.mktemp("mix")
    return {a: rec_mix.export(a, out / f"rec_{a:g}.onnx") for a in (0.0, 1.0)}


def _read(path, crops, scripts=None):
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.recognition import TextRecognizer

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    chars = sess.get_modelmeta().custom_metadata_map["character"].splitlines()
    rec = TextRecognizer(PipelineConfig(), sess, chars)
    if scripts:
        rec = rec.with_scripts(scripts)
    return rec, [r.text for r in rec(crops)]


def test_mixing_ends_reproduce_ours_and_the_base_on_real_pixels(mixed):
    from workers.pipeline.models import MODEL_SETS

    crops = [_line("SN: A7K-20931"), _line("TOTAL 12.50 %"), _line("LOT 2026/11 X")]
    x = _read(MODEL_SETS["ours"].rec.path(), crops)[0].preprocess(crops)
    rec1, _ = _read(mixed[1.0], crops)
    ours = ort.InferenceSession(
        str(MODEL_SETS["ours"].rec.path()), providers=["CPUExecutionProvider"]
    )
    p_ours = ours.run(None, {ours.get_inputs()[0].name: x})[0]
    p_one = rec1.session.run(None, {rec1.input_name: x})[0]
    n = p_ours.shape[-1]
    cols = [*range(n - 1), p_one.shape[-1] - 1]  # our classes in the wide head (space last)
    # alpha = 1: our logits on our classes (the wide head only adds base columns): the same
    # best class among them in every frame, and the same text where no base-only class wins
    assert (p_one[..., cols].argmax(-1) == p_ours.argmax(-1)).mean() > 0.99
    texts_ours = [r.text for r in _read(MODEL_SETS["ours"].rec.path(), crops)[0](crops)]
    texts_one = _read(mixed[1.0], crops)[1]
    assert texts_one[0] == texts_ours[0] and texts_one[2] == texts_ours[2]
    # alpha = 0: the shipped model restricted to the wide charset reads the symbol it knows
    base_text = _read(mixed[0.0], crops)[1]
    shipped = MODEL_SETS["ppocrv6_small"]
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.models import load_char_list
    from workers.pipeline.recognition import TextRecognizer

    sess = ort.InferenceSession(str(shipped.rec.path()), providers=["CPUExecutionProvider"])
    ref = TextRecognizer(PipelineConfig(), sess, load_char_list(shipped, sess))(crops)
    assert base_text == [r.text for r in ref]
    assert "%" in base_text[1]


def test_kd_loss_is_zero_for_the_teacher_itself_and_positive_otherwise():
    from workers.training.rec_distill import kd_loss

    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 5, 7, generator=g)
    idx = torch.tensor([0, 1, 2, 3])  # student classes = the teacher's first four
    has = torch.tensor([True, True, True, False])  # the last one the teacher lacks
    same = t.index_select(-1, idx).clone()
    same[..., 3] = -1e9  # the student gives the class the teacher lacks no mass
    same = same - torch.logsumexp(t.index_select(-1, idx[:3]), -1, keepdim=True)
    assert float(kd_loss(same, t, idx, has, 1.0)) == pytest.approx(0.0, abs=1e-5)
    other = torch.randn(2, 5, 4, generator=g)
    assert float(kd_loss(other, t, idx, has, 1.0)) > 0.01


def test_real_mix_shares_set_how_often_each_real_set_is_drawn():
    from workers.training.rec_distill import parse_real_mix, real_sampler

    pool = {
        "plates_br": [np.zeros((4, 4, 3), np.uint8)] * 2,
        "expdate": [np.ones((4, 4, 3), np.uint8)] * 8,
        "sroie": [np.full((4, 4, 3), 2, np.uint8)] * 90,
    }
    crops, p = real_sampler(pool, parse_real_mix("plates_br=0.5", list(pool)))
    assert len(crops) == 100 and p.sum() == pytest.approx(1.0)
    assert p[:2].sum() == pytest.approx(0.5)  # 2 crops get half the draws...
    assert p[2:10].sum() == pytest.approx(0.5 * 8 / 98)  # ...the rest go by size
    _, by_size = real_sampler(pool, parse_real_mix("", list(pool)))
    assert by_size == pytest.approx(np.full(100, 0.01))
    with pytest.raises(ValueError, match="unknown set"):
        parse_real_mix("plates=0.3", list(pool))
    with pytest.raises(ValueError, match="more than 1"):
        parse_real_mix("plates_br=0.7,expdate=0.5", list(pool))
