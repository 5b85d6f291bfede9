"""The recipe: decode -> glare mask -> detection (on the fronto-parallel label when one is found
and tilted) -> per-line rectified crops -> 0/180 (classifier + recogniser check) -> recognition
-> glare-aware confidences + quality -> fields (extractor) -> codes (zxing-cpp, GS1) ->
verification (schema validation, format-constrained correction, code fill / cross-check,
per-field confidence, ``needs_review``). ``OCR_RECTIFY=off`` is the v0 path
(``crop_quad`` + classifier only); ``OCR_GLARE_AWARE=0`` skips the per-line glare step.

Coordinate frame of every polygon in the result: original (decoded, EXIF-upright) image pixels,
also when detection ran on the rectified label (quads are mapped back through the inverse
homography).

``build_pipeline(config)`` is the only place that creates onnxruntime sessions and wires the
stages; ``Pipeline.run`` is pure orchestration plus timing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import cv2
import numpy as np

from workers.fieldspec.catalogue import resolve_schema
from workers.fieldspec.grammar import ProductSchema

from .barcodes import CodeReader
from .calibration import IDENTITY, load_calibration
from .config import PipelineConfig
from .detection import TextDetector
from .errors import ConfigError, TerminalError
from .fields import FieldExtractor, RuleFieldExtractor
from .geometry import crop_quad, reading_order
from .glare import apply_line_glare, image_glare_mask, line_glare_warnings
from .io import DecodedImage, ImageDecoder
from .models import (
    MODEL_SETS,
    create_session,
    granted_device,
    load_char_list,
    model_info,
    resolve_device,
)
from .quality import QualityAssessor
from .recognition import LineClassifier, TextRecognizer
from .rectification import label_view, orient_lines, rectify_line
from .truncation import line_cuts
from .types import (
    LineQuality,
    ModelInfo,
    ReadResult,
    TextLine,
)
from .verification import FieldVerifier

log = logging.getLogger(__name__)


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
        verifier: FieldVerifier,
        code_reader: CodeReader,
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
        self.verifier = verifier
        self.code_reader = code_reader
        self.models = models
        self.device = device
        self.providers = providers
        self._lock = threading.Lock()

    def run(
        self,
        image: bytes,
        *,
        schema: dict[str, Any] | None = None,
        auto_accept: float | None = None,
    ) -> ReadResult:
        """Read one image. ``auto_accept``: the product's auto-accept threshold (None: the
        schema's ``auto_accept``, else ``fieldspec.DEFAULT_AUTO_ACCEPT``).

        Raises ``BadImageError`` (terminal) for unusable input, ``TerminalError("bad_schema")``
        for a malformed schema, ``TransientError`` for retryable model faults.
        """
        ps = check_schema(schema)  # fail fast, before any model work; parsed once per read
        with self._lock:
            t0 = time.perf_counter()
            decoded = self.decoder(image)
            t1 = time.perf_counter()
            return self._read(decoded, ps, auto_accept, {"decode": (t1 - t0) * 1000.0}, t0)

    def run_decoded(
        self,
        decoded: DecodedImage,
        *,
        schema: dict[str, Any] | None = None,
        auto_accept: float | None = None,
    ) -> ReadResult:
        """Read an already decoded image (``decoded.rgb``: (H, W, 3) uint8 RGB, upright)."""
        ps = check_schema(schema)
        with self._lock:
            return self._read(decoded, ps, auto_accept, {"decode": 0.0}, time.perf_counter())

    def _read(
        self,
        decoded: DecodedImage,
        schema: ProductSchema,
        auto_accept: float | None,
        timings: dict[str, float],
        t_start: float,
    ) -> ReadResult:
        rgb = decoded.rgb
        cfg = self.config
        t = time.perf_counter()
        glare = image_glare_mask(rgb, self.quality.work_side) if cfg.glare_aware else None
        timings["quality"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        cands = self._detect(rgb)
        timings["detection"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        crops = [self._crop(c) for c in cands]
        flipped = [False] * len(crops)
        if self.classifier is not None and crops:
            crops, flipped = self.classifier(crops)
        recognizer = self.recognizer.with_scripts(schema.scripts)  # the label's scripts
        texts = recognizer(crops)
        if cfg.rectify != "off":
            texts, flipped = orient_lines(crops, texts, flipped, recognizer)
        kept: list[int] = [
            i for i, r in enumerate(texts) if r.text.strip() and r.confidence >= cfg.min_line_score
        ]
        order = reading_order([cands[i].polygon for i in kept])
        lines: list[TextLine] = []
        for n, k in enumerate(order):
            i = kept[k]
            r = texts[i]
            poly = [(float(x), float(y)) for x, y in cands[i].line_polygon]
            if flipped[i]:  # the text runs the other way: start the polygon at its own top-left
                half = len(poly) // 2  # (the bottom edge, read backwards, becomes the top)
                poly = poly[half:] + poly[:half]
            lines.append(
                TextLine(
                    order=n,
                    text=r.text,
                    confidence=r.confidence,
                    char_confidences=r.char_confidences,
                    alternatives=r.alternatives,
                    polygon=tuple(poly),
                    rotated_180=flipped[i],
                )
            )
        timings["recognition"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        line_q: tuple[LineQuality, ...] = ()
        if glare is not None:
            lines, line_q = apply_line_glare(lines, glare)
        quality = self.quality(
            rgb,
            [np.asarray(ln.polygon) for ln in lines] or [c.polygon for c in cands],
            len(lines),
            glare=glare,
        )
        cuts = None
        if cfg.truncation_guard:
            cuts = line_cuts(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), lines, glare)
            line_q = tuple(
                dataclasses.replace(q, cut_start=cuts[q.order].start, cut_end=cuts[q.order].end)
                if q.order in cuts
                else q
                for q in line_q
            )
        if glare is not None:
            extra = line_glare_warnings(line_q)
            quality = dataclasses.replace(quality, warnings=quality.warnings + extra, lines=line_q)
        timings["quality"] += (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        codes = self.code_reader(rgb)
        timings["codes"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        extracted = self.field_extractor(lines, schema)
        verified = self.verifier(
            extracted, lines, schema, codes, auto_accept=auto_accept, cuts=cuts
        )
        timings["fields"] = (time.perf_counter() - t) * 1000.0
        timings["total"] = (time.perf_counter() - t_start) * 1000.0

        ordered = {
            k: timings.get(k, 0.0)
            for k in ("decode", "quality", "detection", "recognition", "codes", "fields", "total")
        }
        return ReadResult(
            image=decoded.info,
            quality=quality,
            lines=tuple(lines),
            fields=verified.fields,
            timings_ms=ordered,
            models=self.models,
            device=self.device,
            providers=self.providers,
            config=cfg.to_dict(),
            codes=tuple(c.to_dict() for c in codes),
            mismatches=verified.mismatches,
            review=verified.review,
        )

    # ---- detection (+ whole-label perspective) ----------------------------------------------
    def _detect(self, rgb: np.ndarray) -> list[_Candidate]:
        """Detect text lines. With ``rectify=auto``, when a label outline that holds most of the
        detected lines is found and is tilted by more than ``LABEL_RECTIFY_MIN_DEG``, the label
        is warped fronto-parallel (``rectification.rectify_label``, turned by 90 degrees when its
        text would run vertically), detection runs again on it and its quads are mapped back to
        original pixels through the inverse homography; lines detected outside the outline on
        the original image are kept as they are. Candidates keep the frame they are cut from."""
        boxes = self.detector(rgb)
        cands = [
            _Candidate(
                np.asarray(b.polygon, np.float64),
                rgb,
                np.asarray(b.polygon, np.float64),
                _arr(b.outline),
                _arr(b.outline),
            )
            for b in boxes
        ]
        if self.config.rectify != "auto" or not cands:
            return cands
        view = label_view(rgb, [c.polygon for c in cands])
        if view is None:
            return cands
        image, hom = view
        inner = self.detector(image)
        if not inner:
            return cands
        inv = np.linalg.inv(hom)
        h, w = rgb.shape[:2]
        out: list[_Candidate] = []

        def to_orig(pts: np.ndarray) -> np.ndarray:
            back = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), inv).reshape(-1, 2)
            back[:, 0] = np.clip(back[:, 0], 0, w - 1)
            back[:, 1] = np.clip(back[:, 1], 0, h - 1)
            return back

        for b in inner:
            q = np.asarray(b.polygon, np.float64)
            ol = _arr(b.outline)
            out.append(_Candidate(to_orig(q), image, q, None if ol is None else to_orig(ol), ol))
        outline = cv2.perspectiveTransform(
            np.array(
                [
                    [0, 0],
                    [image.shape[1] - 1, 0],
                    [image.shape[1] - 1, image.shape[0] - 1],
                    [0, image.shape[0] - 1],
                ],
                np.float64,
            ).reshape(-1, 1, 2),
            inv,
        ).astype(np.float32)
        for c in cands:
            cx, cy = c.polygon.mean(axis=0)
            if cv2.pointPolygonTest(outline, (float(cx), float(cy)), False) < 0:
                out.append(c)
        return out

    def _crop(self, c: _Candidate) -> np.ndarray:
        """Upright crop of one candidate: ``crop_quad`` (v0) with ``rectify=off``, else
        ``rectification.rectify_line`` (flat, axis-aligned text is sliced without resampling;
        tilted text is perspective-warped); tall crops (h / w >= 1.5, vertical lines) are turned
        90 degrees counter-clockwise as in ``crop_quad``."""
        if self.config.rectify == "off":
            return crop_quad(c.source, c.quad.astype(np.float32))
        if c.outline_src is not None:  # a bent line: sampled along its centre line
            crop = rectify_line(c.source, c.outline_src, method="curved").crop
        else:
            crop = rectify_line(c.source, c.quad).crop
        if crop.shape[0] / max(crop.shape[1], 1) >= 1.5:
            crop = np.ascontiguousarray(np.rot90(crop))
        return crop


@dataclasses.dataclass(frozen=True)
class _Candidate:
    """One detected line: ``polygon`` (4, 2) float64 in original image pixels (TL, TR, BR, BL by
    image position); ``source`` the (H', W', 3) uint8 image it is cut from (the original or the
    rectified label); ``quad`` (4, 2) the same line in ``source`` pixels; ``outline`` /
    ``outline_src``: a bent line's 2N-point polygon in both frames (None for straight lines)."""

    polygon: np.ndarray
    source: np.ndarray
    quad: np.ndarray
    outline: np.ndarray | None = None  # (2N, 2) bent-line polygon, original pixels
    outline_src: np.ndarray | None = None  # the same in ``source`` pixels

    @property
    def line_polygon(self) -> np.ndarray:
        """What the read reports: the bent outline when there is one, else the quad."""
        return self.outline if self.outline is not None else self.polygon


def _arr(poly: Any) -> np.ndarray | None:
    return None if poly is None else np.asarray(poly, np.float64).reshape(-1, 2)


def check_schema(schema: dict[str, Any] | None) -> ProductSchema:
    """The product schema resolved with the field catalogue (None: the default schema);
    ``TerminalError("bad_schema")`` when the grammar rejects it."""
    try:
        return resolve_schema(schema)
    except ValueError as exc:  # fieldspec.SchemaError is a ValueError
        raise TerminalError("bad_schema", str(exc)) from exc


def build_field_extractor(config: PipelineConfig) -> FieldExtractor:
    """The swappable field step (``OCR_FIELD_EXTRACTOR``): ``ranker`` (default,
    ``ranker.RankerFieldExtractor``: candidates ranked by key, geometry, the schema's rules and
    shape; receipt free-text fields by the transformer), ``transformer`` (the layout-aware
    extractor, see workers/models/extractor/MODEL_CARD.md; run in ONNX Runtime or torch,
    ``OCR_EXTRACTOR_BACKEND``) or ``rules`` (v0)."""
    if config.field_extractor == "rules":
        return RuleFieldExtractor()
    if config.field_extractor == "ranker":
        from .ranker import RankerFieldExtractor

        return RankerFieldExtractor.from_config(config)
    if config.field_extractor == "transformer":
        from .extractor import TransformerFieldExtractor

        return TransformerFieldExtractor.from_config(config)
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
    # what really runs, from the sessions' own providers: CPU if CUDA was asked for but not
    # granted (OCR_DEVICE=auto, with a warning), a ConfigError for an explicit cuda:N
    real_device = granted_device(config.device, device, det_prov)
    granted_device(config.device, device, rec_prov)
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
    load = getattr(extractor, "load", None)
    if callable(load):  # verify sha256 and build the model now, not on the first read
        load()
    if getattr(extractor, "model_info", None) is not None:
        models.append(extractor.model_info)  # type: ignore[arg-type]
    # the read records every provider that really ran, the extractor's too
    providers.extend(p for p in getattr(extractor, "providers", ()) if p not in providers)

    log.info(
        "pipeline %s: OCR_DEVICE=%s -> running on %s, onnxruntime providers %s",
        config.model,
        config.device,
        real_device,
        providers,
    )
    return Pipeline(
        config=config,
        decoder=ImageDecoder(max_pixels=config.max_image_pixels, max_bytes=config.max_image_bytes),
        quality=QualityAssessor(),
        detector=TextDetector(config, det_sess, mean=ms.det_mean, std=ms.det_std),
        classifier=classifier,
        recognizer=TextRecognizer(config, rec_sess, load_char_list(ms, rec_sess)),
        field_extractor=extractor,
        verifier=FieldVerifier(
            calibration=load_calibration(models) if config.calibrate else IDENTITY
        ),
        code_reader=CodeReader(enabled=config.codes),
        models=tuple(models),
        device=real_device,
        providers=tuple(providers),
    )
