"""The recipe: decode -> detection -> (0/180 classification) -> recognition -> quality -> fields.

``build_pipeline(config)`` is the only place that creates onnxruntime sessions and wires the
stages; ``Pipeline.run`` is pure orchestration plus timing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from .config import PipelineConfig
from .detection import TextDetector
from .errors import ConfigError, TerminalError
from .fields import FieldExtractor, RuleFieldExtractor, parse_schema
from .geometry import crop_quad, reading_order
from .io import DecodedImage, ImageDecoder
from .models import MODEL_SETS, create_session, load_char_list, model_info, resolve_device
from .quality import QualityAssessor
from .recognition import LineClassifier, TextRecognizer
from .types import ModelInfo, ReadResult, TextLine


class Pipeline:
    """Holds built stages. Thread-safety: one ``run`` at a time per instance (a lock), which is
    what a prefork Celery worker does anyway."""

    def __init__(
        self,
        *,
        config: PipelineConfig,
        decoder: ImageDecoder,
        quality: QualityAssessor,
        detector: TextDetector,
        classifier: LineClassifier | None,
        recognizer: TextRecognizer,
        field_extractor: FieldExtractor,
        models: tuple[ModelInfo, ...],
        device: str,
        providers: tuple[str, ...],
    ) -> None:
        self.config = config
        self.decoder = decoder
        self.quality = quality
        self.detector = detector
        self.classifier = classifier
        self.recognizer = recognizer
        self.field_extractor = field_extractor
        self.models = models
        self.device = device
        self.providers = providers
        self._lock = threading.Lock()

    def run(self, image: bytes, *, schema: dict[str, Any] | None = None) -> ReadResult:
        """Read one image.

        Raises ``BadImageError`` (terminal) for unusable input, ``TerminalError("bad_schema")``
        for a malformed schema, ``TransientError`` for retryable model faults.
        """
        try:
            parse_schema(schema)  # fail fast, before any model work
        except ValueError as exc:
            raise TerminalError("bad_schema", str(exc)) from exc
        with self._lock:
            t0 = time.perf_counter()
            decoded = self.decoder(image)
            t1 = time.perf_counter()
            return self._read(decoded, schema, {"decode": (t1 - t0) * 1000.0}, t0)

    def run_decoded(
        self, decoded: DecodedImage, *, schema: dict[str, Any] | None = None
    ) -> ReadResult:
        """Read an already decoded image (``decoded.rgb``: (H, W, 3) uint8 RGB, upright)."""
        with self._lock:
            return self._read(decoded, schema, {"decode": 0.0}, time.perf_counter())

    def _read(
        self,
        decoded: DecodedImage,
        schema: dict[str, Any] | None,
        timings: dict[str, float],
        t_start: float,
    ) -> ReadResult:
        rgb = decoded.rgb
        t = time.perf_counter()
        boxes = self.detector(rgb)
        timings["detection"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        quads = [np.asarray(b.polygon, dtype=np.float32) for b in boxes]
        crops = [crop_quad(rgb, q) for q in quads]
        flipped = [False] * len(crops)
        if self.classifier is not None and crops:
            crops, flipped = self.classifier(crops)
        texts = self.recognizer(crops)
        kept: list[int] = [
            i
            for i, r in enumerate(texts)
            if r.text.strip() and r.confidence >= self.config.min_line_score
        ]
        order = reading_order([quads[i] for i in kept])
        lines: list[TextLine] = []
        for n, k in enumerate(order):
            i = kept[k]
            r = texts[i]
            poly = boxes[i].polygon
            if flipped[i]:  # the text runs the other way: start the polygon at its own top-left
                poly = poly[2:] + poly[:2]
            lines.append(
                TextLine(
                    order=n,
                    text=r.text,
                    confidence=r.confidence,
                    char_confidences=r.char_confidences,
                    alternatives=r.alternatives,
                    polygon=poly,
                    rotated_180=flipped[i],
                )
            )
        timings["recognition"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        quality = self.quality(rgb, [np.asarray(ln.polygon) for ln in lines] or quads, len(lines))
        timings["quality"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        fields = self.field_extractor(lines, schema)
        timings["fields"] = (time.perf_counter() - t) * 1000.0
        timings["total"] = (time.perf_counter() - t_start) * 1000.0

        ordered = {
            k: timings.get(k, 0.0)
            for k in ("decode", "quality", "detection", "recognition", "fields", "total")
        }
        return ReadResult(
            image=decoded.info,
            quality=quality,
            lines=tuple(lines),
            fields=tuple(fields),
            timings_ms=ordered,
            models=self.models,
            device=self.device,
            providers=self.providers,
            config=self.config.to_dict(),
        )


def build_field_extractor(config: PipelineConfig) -> FieldExtractor:
    """The swappable field step (``OCR_FIELD_EXTRACTOR``)."""
    if config.field_extractor == "rules":
        return RuleFieldExtractor()
    raise ConfigError(f"unknown field extractor {config.field_extractor!r}")


def build_pipeline(
    config: PipelineConfig | None = None, *, field_extractor: FieldExtractor | None = None
) -> Pipeline:
    """Create the onnxruntime sessions and wire every stage. Slow (loads models): call once per
    process through ``loader.get_pipeline``. ``field_extractor`` overrides the configured one."""
    config = config or PipelineConfig.from_env()
    ms = MODEL_SETS[config.model]
    device, _ = resolve_device(config.device)
    threads = config.effective_threads

    det_sess, det_prov = create_session(ms.det.path(), device, threads)
    rec_sess, rec_prov = create_session(ms.rec.path(), device, threads)
    models: list[ModelInfo] = [model_info("detection", ms.det), model_info("recognition", ms.rec)]
    providers: list[str] = []
    for p in det_prov + rec_prov:
        if p not in providers:
            providers.append(p)

    classifier = None
    if config.use_cls and ms.cls is not None:
        cls_sess, cls_prov = create_session(ms.cls.path(), device, threads)
        classifier = LineClassifier(config, cls_sess)
        models.append(model_info("classification", ms.cls))
        providers.extend(p for p in cls_prov if p not in providers)

    extractor = field_extractor or build_field_extractor(config)
    if getattr(extractor, "model_info", None) is not None:
        models.append(extractor.model_info)  # type: ignore[arg-type]

    # The device label reports what really runs: CPU if CUDA was requested but not granted.
    real_device = device if "CUDAExecutionProvider" in det_prov else "cpu"
    return Pipeline(
        config=config,
        decoder=ImageDecoder(max_pixels=config.max_image_pixels, max_bytes=config.max_image_bytes),
        quality=QualityAssessor(),
        detector=TextDetector(config, det_sess, mean=ms.det_mean, std=ms.det_std),
        classifier=classifier,
        recognizer=TextRecognizer(config, rec_sess, load_char_list(ms, rec_sess)),
        field_extractor=extractor,
        models=tuple(models),
        device=real_device,
        providers=tuple(providers),
    )
