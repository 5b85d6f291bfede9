"""Our own trained weights (``models.LocalModelFile``): sha256 checked against manifest.json on
every path() call, version from the manifest; the "ours" model set is registered."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest

from workers.pipeline import models
from workers.pipeline.errors import ConfigError


@pytest.fixture()
def pkg(tmp_path, monkeypatch):
    root = tmp_path / "ourpkg_models_test"
    (root / "m").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    blob = b"not really onnx"
    (root / "m" / "rec.onnx").write_bytes(blob)
    man = {
        "name": "rec_x",
        "version": "v7",
        "files": {"rec.onnx": {"sha256": hashlib.sha256(blob).hexdigest()}},
    }
    (root / "m" / "manifest.json").write_text(json.dumps(man))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    sys.modules.pop("ourpkg_models_test", None)
    models._sha_cache.clear()


def test_local_model_file_verifies_sha256(pkg):
    mf = models.LocalModelFile("ourpkg_models_test", "ourpkg_models_test", "m/rec.onnx", "rec_x")
    assert mf.path() == pkg / "m" / "rec.onnx"
    assert mf.version() == "rec_x==v7"
    models._sha_cache.clear()
    (pkg / "m" / "rec.onnx").write_bytes(b"tampered")
    with pytest.raises(ConfigError, match="sha256"):
        mf.path()


def test_local_model_file_needs_a_manifest_entry(pkg):
    (pkg / "m" / "manifest.json").write_text(json.dumps({"files": {}}))
    mf = models.LocalModelFile("ourpkg_models_test", "ourpkg_models_test", "m/rec.onnx", "rec_x")
    with pytest.raises(ConfigError, match="no sha256"):
        mf.path()


def test_ours_model_set_reads_charset_from_metadata():
    ms = models.MODEL_SETS["ours"]
    assert isinstance(ms.rec, models.LocalModelFile)
    assert isinstance(ms.det, models.LocalModelFile)
    assert ms.dict_relpath is None  # load_char_list reads the ONNX "character" metadata


def test_committed_det_ours_loads_and_finds_the_lines():
    """The committed detector: sha256 matches its manifest, and through the pipeline's
    TextDetector it finds each line of a rendered label (one box per line, covering it) with
    the same box style as the shipped detector it was fine-tuned from (heights within 25 %)."""
    ort = pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.detection import TextDetector
    from workers.training.synth.simple_labels import render_label

    ms = models.MODEL_SETS["ours"]
    assert ms.det.version().startswith("det_ours==")
    lines = ["SN: QX7781234", "P/N 4471-220-B", "LOT 2024-118"]
    rgb = np.asarray(render_label(lines, size=(900, 500), font_size=40, seed=3))

    def boxes(model_set):
        s = models.MODEL_SETS[model_set]
        sess = ort.InferenceSession(str(s.det.path()), providers=["CPUExecutionProvider"])
        found = TextDetector(PipelineConfig(), sess, mean=s.det_mean, std=s.det_std)(rgb)
        return sorted(found, key=lambda b: min(p[1] for p in b.polygon))

    ours, shipped = boxes("ours"), boxes("ppocrv6_small")
    assert len(ours) == len(lines) == len(shipped)

    def height(b):
        ys = [p[1] for p in b.polygon]
        return max(ys) - min(ys)

    for a, b in zip(ours, shipped, strict=True):
        assert 0.75 < height(a) / height(b) < 1.25
        # the same line: vertical centres within half a line height
        ca = np.mean([p[1] for p in a.polygon])
        cb = np.mean([p[1] for p in b.polygon])
        assert abs(ca - cb) < 0.5 * height(b)


def test_committed_rec_ours_loads_and_reads():
    """The committed recogniser: sha256 matches its manifest, the charset comes from the ONNX
    metadata, and the pipeline's TextRecognizer decodes with per-char confidences."""
    ort = pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    ms = models.MODEL_SETS["ours"]
    path = ms.rec.path()
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.recognition import TextRecognizer

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    chars = models.load_char_list(ms, sess)
    assert {"S", "N", "0", "9", "-", "/", "제", "번", "호"} <= set(chars)
    assert ms.rec.version().startswith("rec_ours==")
    crop = np.full((48, 200, 3), 255, np.uint8)
    res = TextRecognizer(PipelineConfig(), sess, chars)([crop])[0]
    assert len(res.char_confidences) == len(res.text) == len(res.alternatives)
