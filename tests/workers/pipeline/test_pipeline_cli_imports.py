"""CLI (subprocess), config from the environment, and import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from workers.pipeline.config import PipelineConfig
from workers.pipeline.errors import ConfigError
from workers.training.synth.simple_labels import load_font

ROOT = Path(__file__).resolve().parents[3]


def _env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "OCR_DEVICE": "cpu"}


@pytest.mark.slow
def test_cli_reads_images_and_reports_bad_ones(tmp_path):
    img = Image.new("RGB", (700, 220), (232, 230, 222))
    ImageDraw.Draw(img).text((40, 70), "S/N: QZ7788123", fill=(20, 20, 20), font=load_font(48))
    good = tmp_path / "label.png"
    img.save(good)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "workers.pipeline",
            str(good),
            str(bad),
            "--product-type",
            "sticker",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["path"] for o in out] == [str(good), str(bad)]
    sn = next(f for f in out[0]["fields"] if f["name"] == "serial_number")
    assert sn["value"] == "QZ7788123"
    assert out[1]["error"]["code"] == "bad_image"


def test_cli_unknown_product_type_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "workers.pipeline", "x.jpg", "--product-type", "nope"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown product type" in proc.stderr
    assert proc.stdout == ""


def test_import_is_light_and_framework_free():
    code = (
        "import workers.pipeline, workers.pipeline.pipeline, workers.pipeline.loader, "
        "workers.pipeline.cli, workers.pipeline.fields\n"
        "from workers.pipeline import get_pipeline, build_pipeline\n"
        "import sys\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(proc.stdout.strip().split(","))
    assert "workers" in loaded
    assert not loaded & {"django", "ocrapp", "rest_framework", "celery"}
    assert "onnxruntime" not in loaded  # models (and their runtime) load lazily


def test_config_from_env_and_validation():
    cfg = PipelineConfig.from_env(
        {
            "OCR_DEVICE": "CPU",
            "OCR_THREADS": "1",
            "OCR_MAX_IMAGE_PIXELS": "1000",
            "OCR_USE_CLS": "0",
        }
    )
    assert cfg.device == "cpu" and cfg.threads == 1 and cfg.max_image_pixels == 1000
    assert cfg.use_cls is False and cfg.effective_threads == 1
    assert PipelineConfig.from_env({}).max_image_pixels == 40_000_000
    for bad in ({"OCR_DEVICE": "tpu"}, {"OCR_THREADS": "many"}, {"OCR_MODEL": "nope"}):
        with pytest.raises(ConfigError):
            PipelineConfig.from_env(bad)


def test_cuda_device_without_cuda_provider_is_a_config_error():
    import onnxruntime as ort

    from workers.pipeline.models import resolve_device

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert resolve_device("auto")[0] == "cuda:0"
    else:
        assert resolve_device("auto") == ("cpu", ["CPUExecutionProvider"])
        with pytest.raises(ConfigError):
            resolve_device("cuda:0")
