"""Fixtures for pipeline tests (no Django, no database)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pipeline():
    """One real pipeline (real ONNX models, CPU) shared by the slow tests of the session."""
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.pipeline import build_pipeline

    return build_pipeline(PipelineConfig(device="cpu"))
