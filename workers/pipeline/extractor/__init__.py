"""The layout-aware transformer field extractor, by job:

- ``layout``: OCR lines -> words with pixel boxes (in ``geometry.reading_order``) -> normalised
  boxes -> model windows; the BIO label names.
- ``model``: the model definition, label set, base and committed weights (shared with
  ``workers/training/extractor``).
- ``onnx_cache``: ONNX export, int8 quantisation, the digest-checked on-disk graph cache.
- ``decode``: per-word label probabilities -> one value per field.
- ``stage``: ``TransformerFieldExtractor``, the pipeline stage (sessions from
  ``models.create_session``, device and threads from ``PipelineConfig``).

``from workers.pipeline.extractor import TransformerFieldExtractor`` imports the stage lazily
(PEP 562), so that importing ``layout`` or ``model`` alone does not load it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TransformerFieldExtractor"]


def __getattr__(name: str) -> Any:
    if name == "TransformerFieldExtractor":
        from .stage import TransformerFieldExtractor

        return TransformerFieldExtractor
    raise AttributeError(name)
