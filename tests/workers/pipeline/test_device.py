"""The device a read records is the one its onnxruntime sessions really got.

onnxruntime-gpu lists ``CUDAExecutionProvider`` as available even where CUDA cannot run (no GPU
visible, CUDA or cuDNN libraries missing) and then builds CPU-only sessions. That situation is
reproduced here with the real CPU onnxruntime by making ``get_available_providers`` report CUDA:
the sessions are real, ask for CUDA and get the CPU. ``auto`` must then record the CPU (with a
warning), and an explicit ``cuda`` must refuse to run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.pipeline.config import PipelineConfig
from workers.pipeline.errors import ConfigError
from workers.pipeline.models import granted_device

ROOT = Path(__file__).resolve().parents[3]
CPU = ["CPUExecutionProvider"]
# the real CPU build warns when a session asks for CUDA: that request is the point here
_ASKS_FOR_CUDA = pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")


def _has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture
def gpu_build_without_cuda(monkeypatch):
    """onnxruntime says it has CUDA (as onnxruntime-gpu does), but no session can get it."""
    import onnxruntime as ort

    if _has_cuda():
        pytest.skip("this onnxruntime really has CUDA")
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *CPU], raising=True
    )


def test_granted_device_trusts_the_session_not_the_request(caplog):
    assert granted_device("auto", "cuda:0", ["CUDAExecutionProvider", *CPU]) == "cuda:0"
    assert granted_device("cuda:1", "cuda:1", ["CUDAExecutionProvider", *CPU]) == "cuda:1"
    assert granted_device("cpu", "cpu", CPU) == "cpu"
    with caplog.at_level(logging.WARNING, logger="workers.pipeline.models"):
        assert granted_device("auto", "cuda:0", CPU) == "cpu"
    assert "running on the CPU" in caplog.text
    for requested in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="did not get the CUDAExecutionProvider"):
            granted_device(requested, "cuda:0", CPU)


@pytest.mark.slow
@_ASKS_FOR_CUDA
def test_auto_records_the_providers_the_sessions_got(gpu_build_without_cuda, caplog):
    from workers.pipeline.pipeline import build_pipeline
    from workers.warmup import WARMUP_SCHEMA, warmup_image

    with caplog.at_level(logging.INFO, logger="workers.pipeline"):
        pipe = build_pipeline(PipelineConfig(device="auto", field_extractor="rules", codes=False))
    # the sessions asked for CUDA first and really got the CPU alone
    assert pipe.detector.session.get_providers() == CPU
    assert pipe.device == "cpu" and pipe.providers == ("CPUExecutionProvider",)
    assert "OCR_DEVICE=auto: onnxruntime offers CUDA but the session got only" in caplog.text
    assert "OCR_DEVICE=auto -> running on cpu, onnxruntime providers ['CPUExecutionProvider']" in (
        caplog.text
    )
    read = pipe.run(warmup_image(), schema=WARMUP_SCHEMA).to_dict()
    assert read["device"] == "cpu" and read["providers"] == CPU


@pytest.mark.slow
@_ASKS_FOR_CUDA
def test_explicit_cuda_refuses_a_cpu_only_session(gpu_build_without_cuda):
    from workers.pipeline.pipeline import build_pipeline

    with pytest.raises(ConfigError, match="OCR_DEVICE=cuda"):
        build_pipeline(PipelineConfig(device="cuda", field_extractor="rules"))


def _probe(device: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OCR_DEVICE": device}
    return subprocess.run(
        [sys.executable, "-m", "workers.pipeline.probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_probe_reports_the_session_providers_and_fails_for_missing_cuda():
    done = _probe("cpu")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["device"] == "cpu" and report["providers"] == CPU
    assert report["requested"] == "cpu" and "CPUExecutionProvider" in report["available"]
    if _has_cuda():
        pytest.skip("CUDA is available: the refusal cannot be shown here")
    done = _probe("cuda:0")
    assert done.returncode == 2 and done.stdout == ""
    assert "OCR_DEVICE=cuda:0" in done.stderr and "CUDAExecutionProvider" in done.stderr


@pytest.mark.slow
def test_a_cuda_worker_refuses_to_start_without_cuda(tmp_path):
    """The real ``celery worker`` command with ``OCR_DEVICE=cuda`` exits before it forks a pool
    (and before it reads anything) when onnxruntime cannot run CUDA here."""
    if _has_cuda():
        pytest.skip("CUDA is available here")
    env = {**os.environ, "OCR_DEVICE": "cuda", "APP_VAR_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.celery", "worker", "-Q", "ocr-refuse"]
        + ["--pool", "prefork", "--concurrency", "1", "--without-gossip", "--without-mingle"]
        + ["-n", f"refuse-{os.getpid()}@%h", "--loglevel", "INFO"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "OCR_DEVICE=cuda cannot run here, the worker stops" in output, output[-3000:]
    assert "ready." not in output
    assert not (tmp_path / "run" / "warm").exists()  # no pool process ever warmed up
