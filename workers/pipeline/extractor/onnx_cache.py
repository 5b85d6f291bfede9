"""The field extractor's ONNX graph: export from torch, int8 quantisation, an on-disk cache.

The graph is not committed (the frozen word-piece table alone is 47 MB): it is exported from the
loaded torch model (``export_onnx``) on first use into ``$APP_VAR_DIR/cache/extractor-onnx/
<key>.onnx`` (``onnx_cache_dir``; ``APP_VAR_DIR`` defaults to ``var/`` in the repository root),
where ``<key>`` (``onnx_cache_key``) hashes our weights' sha256, the base weights' sha256, the
torch and transformers versions and the export recipe. ``cached_graph`` writes a file
atomically (temporary file + rename, under a lock file) with a ``.sha256`` sidecar and, later,
returns its bytes only when they match the sidecar (a missing or corrupt file is written
again). A fresh export is checked against torch on a probe input (``check_parity``). The int8
graph (``quantize_onnx``: ``onnxruntime.quantization.quantize_dynamic``, per-channel int8
weights, ``reduce_range``) is cached next to it as ``<key>-int8-<tag>.onnx`` (``int8_path``).
Sessions are not made here: the stage builds them with ``models.create_session``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .layout import COORD_MAX

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]

ONNX_INPUTS = ("input_ids", "bbox", "attention_mask")
ONNX_OPSET = 17
# Part of the cache key: bump it when ``export_onnx`` changes, so that old files are not reused.
ONNX_EXPORT_VERSION = 1
# A fresh export is used only when its logits match torch's this closely on a probe input.
ONNX_PARITY_ATOL = 1e-3
# ORT dynamic int8: per-channel int8 weights with reduce_range (7-bit: no int16 saturation in
# the AVX2 u8s8 kernels). Measured on SROIE validation / 300 synthetic nameplates it keeps the
# fp32 accuracy (see the model card); per-tensor weights do not.
ONNX_INT8_RECIPE = "dynamic-qint8-per-channel-reduce-range"


def quantize_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """ORT dynamic int8 quantisation (``ONNX_INT8_RECIPE``) of the fp32 graph ``src``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger()  # the quantizer prints a pre-processing hint on the root logger
    level = quiet.level
    quiet.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        quiet.setLevel(level)


def int8_path(fp32_path: Path) -> Path:
    """Cache file of the int8 graph derived from ``fp32_path`` (depends on the ORT version)."""
    import onnxruntime  # onnxruntime or onnxruntime-gpu: the module's version, not a dist's

    tag = hashlib.sha256(f"{onnxruntime.__version__}|{ONNX_INT8_RECIPE}".encode()).hexdigest()[:8]
    return fp32_path.with_name(f"{fp32_path.stem}-int8-{tag}.onnx")


def var_dir() -> Path:
    """``APP_VAR_DIR`` (the same variable and default as ``ocrapp/settings.py``: ``var/`` in
    the repository root); read here so that the pipeline stays Django-free."""
    return Path(os.environ.get("APP_VAR_DIR") or REPO_ROOT / "var")


def onnx_cache_dir() -> Path:
    """Default folder of the exported extractor graphs: ``$APP_VAR_DIR/cache/extractor-onnx``."""
    return var_dir() / "cache" / "extractor-onnx"


def onnx_cache_key(weights_sha256: str, base_sha256: str) -> str:
    """Name of the cached graph: everything the exported bytes depend on (our weights, the base
    weights, the exporter's torch and the model code's transformers, the export recipe)."""
    blob = json.dumps(
        {
            "weights": weights_sha256,
            "base": base_sha256,
            "torch": importlib.metadata.version("torch"),
            "transformers": importlib.metadata.version("transformers"),
            "opset": ONNX_OPSET,
            "export": ONNX_EXPORT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def export_onnx(model: Any, path: str | os.PathLike[str], *, opset: int = ONNX_OPSET) -> None:
    """Write a ``build_model`` classifier (fp32, eval mode) to ``path`` as ONNX: inputs
    ``ONNX_INPUTS`` (int64; ``bbox`` (B, L, 6)), output ``logits`` (B, L, num_labels), batch and
    sequence length dynamic. Uses the TorchScript exporter (``dynamo=False``: torch's default
    exporter needs ``onnxscript``, which is not installed)."""
    import torch

    n = 24  # any length: the sequence axis is dynamic (the parity probe uses another one)
    ids = torch.arange(1000, 1000 + n, dtype=torch.long)[None]
    box = (torch.arange(n * 6, dtype=torch.long).reshape(1, n, 6) * 37) % (COORD_MAX + 1)
    mask = torch.ones_like(ids)
    axes = {name: {0: "batch", 1: "seq"} for name in (*ONNX_INPUTS, "logits")}
    with warnings.catch_warnings(), torch.no_grad():
        # the legacy exporter's deprecation notice and tracer notes on shape checks
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, box, mask),
            str(path),
            dynamo=False,
            input_names=list(ONNX_INPUTS),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )


def probe_feeds(vocab_size: int, n: int = 37) -> dict[str, Any]:
    """A deterministic input of another length than the export's, with two padded tokens."""
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, min(vocab_size, 30000), size=(1, n), dtype=np.int64)
    box = np.sort(rng.integers(0, COORD_MAX + 1, size=(1, n, 6), dtype=np.int64), axis=-1)
    mask = np.ones((1, n), dtype=np.int64)
    mask[0, -2:] = 0
    return {"input_ids": ids, "bbox": box, "attention_mask": mask}


def check_parity(session: Any, model: Any) -> None:
    """Raise ``ValueError`` when the onnxruntime ``session``'s logits differ from the torch
    ``model``'s (fp32, eval mode, CPU) by more than ``ONNX_PARITY_ATOL`` on ``probe_feeds``."""
    import numpy as np
    import torch

    feeds = probe_feeds(int(model.bert.config.vocab_size))
    with torch.inference_mode():
        ref = model(*(torch.from_numpy(feeds[k]) for k in ONNX_INPUTS)).float().numpy()
    got = session.run(None, feeds)[0]
    keep = feeds["attention_mask"][0] == 1
    diff = float(np.abs(got[:, keep] - ref[:, keep]).max())
    if not diff <= ONNX_PARITY_ATOL:
        raise ValueError(f"ONNX logits differ from torch by {diff:.3g} on the probe input")


def read_verified(path: Path) -> bytes | None:
    """The cached graph's bytes when they match their ``.sha256`` sidecar; None when either
    file is missing or the digest differs (a warning: the file is corrupt and is rewritten)."""
    side = path.with_name(path.name + ".sha256")
    try:
        want = side.read_text().strip()
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        log.warning(
            "cached extractor graph %s has sha256 %s, its sidecar says %s: writing it again",
            path,
            got,
            want,
        )
        return None
    return data


def write_with_digest(path: Path, write: Callable[[Path], None]) -> bytes:
    """``write(tmp)`` into ``path`` atomically, then its ``.sha256`` sidecar; the bytes."""
    replace_atomically(path, write)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    side = path.with_name(path.name + ".sha256")
    replace_atomically(side, lambda tmp: tmp.write_text(digest + "\n"))
    return data


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, flush it to disk, rename it over
    ``path``: readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock between processes (POSIX ``flock``; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def cached_graph(path: Path, write: Callable[[Path], None], what: str) -> tuple[bytes, bool]:
    """The bytes of the cached graph at ``path`` and whether they were written now: the
    verified file when there is one, else ``write(tmp)`` (``what`` names it in the log) into
    ``path`` atomically with its sidecar, under a lock file, so that concurrent processes
    write it once."""
    data = read_verified(path)
    if data is not None:
        return data, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.stem + ".lock")):
        data = read_verified(path)  # another process may have just written it
        if data is not None:
            return data, False
        log.info("extractor: %s to %s", what, path)
        return write_with_digest(path, write), True


def remove_cached(path: Path) -> None:
    """Delete a cached graph and its sidecar (a fresh export that failed its checks)."""
    for f in (path.with_name(path.name + ".sha256"), path):
        with contextlib.suppress(OSError):
            f.unlink()
