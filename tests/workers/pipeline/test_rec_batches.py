"""Recognition batches (``TextRecognizer.batches``): crops grouped by input width so a short
word is not padded to the width of a long line, at most ``rec_batch_size`` per batch, results
in the input order; the committed recogniser reads a crop the same whether its batch is
shared with crops of a similar width or not."""

from __future__ import annotations

import numpy as np
import pytest

from workers.pipeline.config import PipelineConfig
from workers.pipeline.errors import ConfigError
from workers.pipeline.recognition import TextRecognizer


class _NoSession:
    def get_inputs(self):
        return [type("I", (), {"name": "x"})()]


def _rec(**cfg) -> TextRecognizer:
    return TextRecognizer(PipelineConfig(**cfg), _NoSession(), ["a"])


def _crop(width: int, height: int = 48) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def test_short_words_are_not_batched_with_long_lines():
    rec = _rec()  # defaults: min width 320, bucket 1.3, batch 8
    crops = [_crop(900), _crop(60), _crop(100), _crop(1000), _crop(300), _crop(2000)]
    batches = rec.batches(crops)
    assert sorted(i for b in batches for i in b) == list(range(len(crops)))
    # the three short ones share the 320 px minimum; 900 and 1000 are within 1.3x; 2000 alone
    assert batches == [[1, 2, 4], [0, 3], [5]]
    x = rec.preprocess([crops[i] for i in batches[0]])
    assert x.shape == (3, 3, 48, 320)


def test_batch_size_and_a_single_group_when_the_bucket_is_off():
    crops = [_crop(w) for w in (50, 2000, 60, 70, 80, 90)]
    assert _rec(rec_batch_size=4).batches(crops) == [[0, 2, 3, 4], [5], [1]]
    assert _rec(rec_batch_size=4, rec_bucket=1e9).batches(crops) == [[0, 2, 3, 4], [5, 1]]
    assert _rec(rec_bucket=1e9).batches(crops) == [[0, 2, 3, 4, 5, 1]]


def test_min_width_is_the_padding_floor():
    assert _rec().input_width(_crop(40)) == 320
    assert _rec(rec_min_width=96).input_width(_crop(40)) == 96
    assert _rec().input_width(_crop(1001)) == 1008  # rounded up to a multiple of 8


@pytest.mark.parametrize(
    ("field", "value"), [("rec_min_width", 4), ("rec_bucket", 0.5), ("rec_min_width", 99999)]
)
def test_bad_batching_config_is_refused(field, value):
    with pytest.raises(ConfigError):
        PipelineConfig(**{field: value})


def test_env_sets_the_batching():
    cfg = PipelineConfig.from_env({"OCR_REC_MIN_WIDTH": "160", "OCR_REC_BUCKET": "1.5"})
    assert (cfg.rec_min_width, cfg.rec_bucket) == (160, 1.5)


def test_results_come_back_in_input_order_with_the_committed_recogniser():
    ort = pytest.importorskip("onnxruntime")
    cv2 = pytest.importorskip("cv2")
    from workers.pipeline import models

    ms = models.MODEL_SETS["ours"]
    sess = ort.InferenceSession(str(ms.rec.path()), providers=["CPUExecutionProvider"])
    chars = models.load_char_list(ms, sess)

    def word(text: str) -> np.ndarray:
        w = 30 * len(text) + 20
        img = np.full((48, w, 3), 255, np.uint8)
        cv2.putText(img, text, (8, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (0, 0, 0), 2)
        return img

    texts = ["SN4471", "LOT 20B", "MODEL X200 SERIAL 88231945 MADE 2024", "QX7781", "A12"]
    crops = [word(t) for t in texts]
    rec = TextRecognizer(PipelineConfig(), sess, chars)
    assert len(rec.batches(crops)) >= 2  # the long line is read in its own batch
    got = [r.text.replace(" ", "") for r in rec(crops)]
    assert got[0] == "SN4471" and got[3] == "QX7781" and got[4] == "A12"
    assert got[1] == "LOT20B"
    # each crop alone reads the same as in the grouped batches
    alone = [rec([c])[0].text.replace(" ", "") for c in crops]
    assert alone[:2] + alone[3:] == got[:2] + got[3:]
