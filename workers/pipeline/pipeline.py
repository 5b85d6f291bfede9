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
import threading
import time
from typing import Any

import cv2
import numpy as np

from .barcodes import decode_codes
from .config import PipelineConfig
from .detection import TextDetector
from .errors import ConfigError, TerminalError
from .fields import FieldExtractor, RuleFieldExtractor, parse_schema
from .geometry import crop_quad, reading_order
from .glare import glare_mask, line_glare
from .io import DecodedImage, ImageDecoder
from .models import MODEL_SETS, create_session, load_char_list, model_info, resolve_device
from .quality import QualityAssessor
from .recognition import LineClassifier, TextRecognizer
from .rectification import (
    _corner_deviation_deg as corner_deviation_deg,
)
from .rectification import (
    _order_corners as order_corners,
)
from .rectification import (
    decide_orientation,
    find_label_quad,
    rectify_label,
    rectify_line,
    rectify_quad,
)
from .types import (
    LineQuality,
    ModelInfo,
    QualityWarning,
    ReadResult,
    RecognizedText,
    TextLine,
)
from .verification import FieldVerifier, product_schema

# Whole-label warp only when the outline is tilted by more than this (degrees, max deviation of
# its corners from 90 and of its sides from the axes): smaller tilts are handled per line and
# would cost a second detection pass for nothing.
LABEL_RECTIFY_MIN_DEG = 6.0
# Lines read with a lower mean character confidence are also read rotated by 180 degrees.
ORIENT_CHECK_CONF = 0.9
# A character cell (line split proportionally by the characters read) this much in glare -> retake.
CHAR_RETAKE_COVER = 0.5
GLARE_TEXT_MSG = "Glare covers characters on line {n}: retake the photo at a different angle."


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
        schema's ``auto_accept``, else ``validation.DEFAULT_AUTO_ACCEPT``).

        Raises ``BadImageError`` (terminal) for unusable input, ``TerminalError("bad_schema")``
        for a malformed schema, ``TransientError`` for retryable model faults.
        """
        check_schema(schema)  # fail fast, before any model work
        with self._lock:
            t0 = time.perf_counter()
            decoded = self.decoder(image)
            t1 = time.perf_counter()
            return self._read(decoded, schema, auto_accept, {"decode": (t1 - t0) * 1000.0}, t0)

    def run_decoded(
        self,
        decoded: DecodedImage,
        *,
        schema: dict[str, Any] | None = None,
        auto_accept: float | None = None,
    ) -> ReadResult:
        """Read an already decoded image (``decoded.rgb``: (H, W, 3) uint8 RGB, upright)."""
        check_schema(schema)
        with self._lock:
            return self._read(decoded, schema, auto_accept, {"decode": 0.0}, time.perf_counter())

    def _read(
        self,
        decoded: DecodedImage,
        schema: dict[str, Any] | None,
        auto_accept: float | None,
        timings: dict[str, float],
        t_start: float,
    ) -> ReadResult:
        rgb = decoded.rgb
        cfg = self.config
        t = time.perf_counter()
        glare = self._glare(rgb) if cfg.glare_aware else None
        timings["quality"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        cands = self._detect(rgb)
        timings["detection"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        crops = [self._crop(c) for c in cands]
        flipped = [False] * len(crops)
        if self.classifier is not None and crops:
            crops, flipped = self.classifier(crops)
        texts = self.recognizer(crops)
        if cfg.rectify != "off":
            texts, flipped = self._check_orientation(crops, texts, flipped)
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
        if glare is not None:
            extra = tuple(
                QualityWarning("glare_text", GLARE_TEXT_MSG.format(n=q.order + 1))
                for q in line_q
                if q.retake
            )
            quality = dataclasses.replace(quality, warnings=quality.warnings + extra, lines=line_q)
        timings["quality"] += (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        codes = decode_codes(rgb) if cfg.codes else []
        timings["codes"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        extracted = self.field_extractor(lines, schema)
        verified = self.verifier(extracted, lines, schema, codes, auto_accept=auto_accept)
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

    def _glare(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) uint8 glare mask, once per image: ``glare.glare_mask`` (clipped cores + bloom,
        dark surroundings) united with the quality stage's blob test (hot spots on white
        stickers, which the ring test of ``glare_mask`` rejects)."""
        return np.maximum(glare_mask(rgb).mask, self.quality.blob_glare_mask(rgb))

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

    def _check_orientation(
        self,
        crops: list[np.ndarray],
        texts: list[RecognizedText],
        flipped: list[bool],
    ) -> tuple[list[RecognizedText], list[bool]]:
        """0/180 decision beyond the classifier: lines read with a confidence below
        ``ORIENT_CHECK_CONF`` are read again rotated by 180 degrees (one batch) and the rotation
        is kept when the recogniser is more confident by ``rectification.ORIENT_MARGIN``
        (``rectification.decide_orientation``)."""
        doubt = [i for i, r in enumerate(texts) if r.confidence < ORIENT_CHECK_CONF]
        if not doubt:
            return texts, flipped
        rotated = [np.ascontiguousarray(crops[i][::-1, ::-1]) for i in doubt]
        again = self.recognizer(rotated)
        texts, flipped = list(texts), list(flipped)
        for i, r2 in zip(doubt, again, strict=True):
            d = decide_orientation(texts[i].confidence, r2.confidence)
            if d.rotate_180:
                texts[i] = r2
                flipped[i] = not flipped[i]
        return texts, flipped


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


def label_view(
    rgb: np.ndarray, text_polygons: list[np.ndarray], *, min_dev_deg: float = LABEL_RECTIFY_MIN_DEG
) -> tuple[np.ndarray, np.ndarray] | None:
    """Fronto-parallel label image and the (3, 3) homography original pixels -> label pixels,
    or None (no outline holding at least half of ``text_polygons``, or one tilted by at most
    ``min_dev_deg``: corner angles and side directions, see ``rectification``). When the text
    quads, mapped into the label, run closer to vertical than to horizontal, the label image
    is turned by 90 degrees counter-clockwise (and the homography with it)."""
    quad = find_label_quad(rgb, text_polygons=text_polygons)
    if quad is None:
        return None
    if corner_deviation_deg(order_corners(quad)) <= min_dev_deg:
        return None
    rect = rectify_label(rgb, quad)
    if rect is None or min(rect.image.shape[:2]) < 32:
        return None
    image, hom = rect.image, rect.homography
    # dominant text direction inside the label (length-weighted, angle doubled: 0 == 180)
    vx = vy = 0.0
    for p in text_polygons:
        q = np.asarray(p, np.float64).reshape(4, 2)
        a, b = q[1] - q[0], q[3] - q[0]
        axis = a if np.linalg.norm(a) >= np.linalg.norm(b) else b
        c = q.mean(axis=0)
        ends = rect.map_points(np.stack([c - axis / 2, c + axis / 2]))
        d = ends[1] - ends[0]
        ang = 2.0 * np.arctan2(d[1], d[0])
        ln = float(np.linalg.norm(d))
        vx += ln * np.cos(ang)
        vy += ln * np.sin(ang)
    if vx < 0 and abs(vx) > abs(vy):  # mean doubled angle near 180 deg: vertical text
        hh, ww = image.shape[:2]
        image = np.ascontiguousarray(np.rot90(image))  # CCW: (x, y) -> (y, ww - 1 - x)
        turn = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, ww - 1.0], [0.0, 0.0, 1.0]])
        hom = turn @ hom
    return image, hom


def apply_line_glare(
    lines: list[TextLine], mask: np.ndarray
) -> tuple[list[TextLine], tuple[LineQuality, ...]]:
    """Glare-aware confidences. ``mask``: (H, W) uint8 glare mask (original pixels, nonzero =
    glare); line polygons in original pixels, starting at the text's own top-left.

    Per line: ``glare.line_glare`` (area and column fractions, ``retake``). Per character: the
    mask is warped into the line's reading frame (``rectify_quad`` of the polygon) and cut into
    ``len(text)`` equal columns -- character positions are mapped proportionally along the
    polygon; character i's confidence is multiplied by (1 - share of its cell in glare). The
    line confidence becomes mean(lowered char confidences) x (1 - column_fraction), since glare
    can also hide characters the recogniser never emitted. Lines without glare are untouched.
    ``retake``: ``line_glare``'s column rule, or some character cell at least
    ``CHAR_RETAKE_COVER`` washed out (one hidden character already spoils a serial)."""
    out: list[TextLine] = []
    report: list[LineQuality] = []
    for ln in lines:
        poly = np.asarray(ln.polygon, np.float64).reshape(-1, 2)
        lg = line_glare(mask, poly)
        if lg.area_fraction <= 0.0 or not ln.char_confidences:
            report.append(LineQuality(ln.order, lg.area_fraction, lg.column_fraction, lg.retake))
            out.append(ln)
            continue
        cell = rectify_quad(mask, poly[:4] if len(poly) == 4 else _corners(poly)) > 127
        if cell.ndim == 3:
            cell = cell[..., 0]
        w = cell.shape[1]
        n = len(ln.char_confidences)
        bounds = np.linspace(0, w, n + 1)
        confs = []
        worst = 0.0
        for i, c in enumerate(ln.char_confidences):
            a, b = int(bounds[i]), max(int(bounds[i + 1]), int(bounds[i]) + 1)
            cov = float(cell[:, a:b].mean()) if b <= w else 0.0
            worst = max(worst, cov)
            confs.append(float(c) * (1.0 - cov))
        retake = lg.retake or worst >= CHAR_RETAKE_COVER
        report.append(LineQuality(ln.order, lg.area_fraction, lg.column_fraction, retake))
        conf = float(np.mean(confs)) * (1.0 - lg.column_fraction)
        out.append(
            dataclasses.replace(
                ln, confidence=min(conf, ln.confidence), char_confidences=tuple(confs)
            )
        )
    return out, tuple(report)


def _corners(poly: np.ndarray) -> np.ndarray:
    n = len(poly) // 2
    return np.stack([poly[0], poly[n - 1], poly[n], poly[2 * n - 1]])


def check_schema(schema: dict[str, Any] | None) -> None:
    """``TerminalError("bad_schema")`` unless both the extractor's and the validation's
    grammar accept ``schema`` (None: the default schema)."""
    try:
        parse_schema(schema)
        product_schema(schema)
    except ValueError as exc:  # validation.SchemaError is a ValueError
        raise TerminalError("bad_schema", str(exc)) from exc


def build_field_extractor(config: PipelineConfig) -> FieldExtractor:
    """The swappable field step (``OCR_FIELD_EXTRACTOR``): ``transformer`` (default, the
    layout-aware extractor, see workers/models/extractor/MODEL_CARD.md; run in ONNX Runtime or
    torch, ``OCR_EXTRACTOR_BACKEND``) or ``rules`` (v0)."""
    if config.field_extractor == "rules":
        return RuleFieldExtractor()
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
        verifier=FieldVerifier(),
        models=tuple(models),
        device=real_device,
        providers=tuple(providers),
    )
