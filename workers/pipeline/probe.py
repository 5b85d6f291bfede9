"""Which device and onnxruntime providers this machine really gives the pipeline.

``python -m workers.pipeline.probe`` builds one onnxruntime session (the detector of the
configured ``OCR_MODEL``) on ``OCR_DEVICE`` in its own process and prints one JSON object::

    {"requested": "cuda:0", "device": "cuda:0", "available": [...], "providers": [...],
     "onnxruntime": "1.31.1"}

``providers`` is ``session.get_providers()``: what the session got, not what it asked for.
Exit status 0, or 2 with the reason on stderr when the configuration cannot run (``OCR_DEVICE``
asks for CUDA and the session did not get the ``CUDAExecutionProvider``).

The Celery worker's parent runs it as a subprocess before it forks its pool when ``OCR_DEVICE``
asks for CUDA (``workers/celery.py``), so the parent itself never initialises CUDA and a GPU
worker without a usable GPU refuses to start instead of reading on the CPU. By hand, in the GPU
image: ``docker compose exec worker python -m workers.pipeline.probe``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from .config import PipelineConfig
from .errors import ConfigError


def probe(config: PipelineConfig) -> dict[str, Any]:
    """Build one session for ``config`` and report where it really runs; ``ConfigError`` when
    ``config.device`` asks for CUDA and it is not there (``models.granted_device``)."""
    import onnxruntime as ort

    from .models import MODEL_SETS, create_session, granted_device, resolve_device

    label, _ = resolve_device(config.device)
    _, providers = create_session(MODEL_SETS[config.model].det.path(), label, 1)
    return {
        "requested": config.device,
        "device": granted_device(config.device, label, providers),
        "available": list(ort.get_available_providers()),
        "providers": providers,
        "onnxruntime": ort.__version__,
    }


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    del argv  # no options: everything comes from the environment, as in the worker
    try:
        report = probe(PipelineConfig.from_env(env))
    except ConfigError as exc:
        print(f"device probe: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
