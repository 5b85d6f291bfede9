"""Per-process pipeline cache. Models are built on first use, never at import time.

Fork safety: the cache remembers the pid that built it, so a pipeline built in a Celery parent
is never reused by a forked child (each child builds its own sessions).
"""

from __future__ import annotations

import os
import threading

from .config import PipelineConfig
from .pipeline import Pipeline, build_pipeline

_lock = threading.Lock()
_cache: dict[tuple[int, PipelineConfig], Pipeline] = {}


def get_pipeline(config: PipelineConfig | None = None) -> Pipeline:
    """The process-wide ``Pipeline`` for ``config`` (default: ``PipelineConfig.from_env()``)."""
    config = config or PipelineConfig.from_env()
    key = (os.getpid(), config)
    with _lock:
        pipe = _cache.get(key)
        if pipe is None:
            for k in [k for k in _cache if k[0] != key[0]]:
                del _cache[k]  # inherited from a parent process: drop, do not reuse
            pipe = build_pipeline(config)
            _cache[key] = pipe
        return pipe


def clear_pipeline_cache() -> None:
    with _lock:
        _cache.clear()
