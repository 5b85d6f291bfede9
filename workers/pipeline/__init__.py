"""Framework-free vision pipeline: image bytes in, ``ReadResult`` (frozen, JSON-safe) out.

Importing this package is cheap: no onnxruntime, no model. Use::

    from workers.pipeline.loader import get_pipeline
    result = get_pipeline().run(image_bytes, schema=product_type.schema)
    payload = result.to_dict()
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadImageError",
    "PipelineConfig",
    "PipelineError",
    "TerminalError",
    "TransientError",
    "build_pipeline",
    "get_pipeline",
]


def __getattr__(name: str) -> Any:  # lazy re-exports (PEP 562)
    if name in ("PipelineError", "TerminalError", "BadImageError", "TransientError", "ConfigError"):
        from . import errors

        return getattr(errors, name)
    if name == "PipelineConfig":
        from .config import PipelineConfig

        return PipelineConfig
    if name == "build_pipeline":
        from .pipeline import build_pipeline

        return build_pipeline
    if name == "get_pipeline":
        from .loader import get_pipeline

        return get_pipeline
    raise AttributeError(name)
