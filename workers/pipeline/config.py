"""Pipeline configuration, read from the environment and validated once.

Environment variables (all optional):

=========================  ==========================================================  =========
variable                   meaning                                                     default
=========================  ==========================================================  =========
OCR_DEVICE                 ``auto`` (CUDA via onnxruntime when available, else CPU),   auto
                           ``cpu`` or ``cuda:N``
OCR_THREADS                onnxruntime intra-op threads per session; 0 = all CPUs      0
OCR_MAX_IMAGE_PIXELS       refuse images with more pixels (checked from the header)    40000000
OCR_MAX_IMAGE_BYTES        refuse uploads larger than this many bytes                  52428800
OCR_MODEL                  OCR model set, see ``models.MODEL_SETS``: ``ours`` (our     ours
                           fine-tuned detector + recogniser), ``ppocrv6_small`` (the
                           shipped models), ``ppocrv4``, ``ppocrv5``, ``ppocrv6_tiny``
OCR_DET_LIMIT_SIDE         detector input: long side scaled down to this (``max``)     960
OCR_DET_LIMIT_TYPE         ``max`` (cap the long side) or ``min`` (raise short side)   max
OCR_DET_THRESH             DB probability threshold for the binary map                 0.3
OCR_DET_BOX_THRESH         minimum mean probability inside a box                       0.5
OCR_DET_UNCLIP_RATIO       DB unclip ratio (box expansion)                             1.6
OCR_USE_CLS                run the 0/180 line classifier (1/0)                         1
OCR_CLS_THRESH             rotate a line only when the 180 score is above this         0.9
OCR_REC_BATCH_SIZE         recognition batch size (most crops in one batch)            8
OCR_REC_MIN_WIDTH          recognition input: crops padded to at least this width       320
OCR_REC_BUCKET             a recognition batch holds crops whose input widths lie      1.3
                           within this factor of its narrowest (a short word is not
                           padded to a long line's width; 1e9: batches of any widths)
OCR_MIN_LINE_SCORE         drop recognised lines with a lower confidence               0.3
OCR_TOP_K                  alternatives kept per character                             3
OCR_FIELD_EXTRACTOR        field extractor: ``ranker`` (candidates ranked by key,     ranker
                           geometry, schema rules and shape; receipt fields by
                           the receipt rules), ``transformer`` (the
                           layout-aware token classifier alone) or ``rules`` (v0)
OCR_RANKER_TRANSFORMER     ranker: required fields no key names (part number, lot,     1
                           model on a label without keys) ranked by the transformer's
                           word probabilities, always to review (1/0)
OCR_EXTRACTOR_BACKEND      runtime of the transformer extractor: ``onnx`` (ONNX        onnx
                           Runtime, graph exported once into
                           ``$APP_VAR_DIR/cache/extractor-onnx``, torch fallback) or
                           ``torch``
OCR_EXTRACTOR_INT8         dynamic int8 weights for the extractor (faster, ~1 point    0
                           less accurate, see its model card) (1/0)
OCR_RECTIFY                geometric rectification: ``auto`` (label perspective when   auto
                           an outline is found and tilted, per-line rectified crops,
                           recogniser-checked 0/180), ``lines`` (per-line only, no
                           label warp) or ``off`` (the v0 path: ``crop_quad`` + the
                           0/180 classifier)
OCR_GLARE_AWARE            glare mask -> per-line glare, lowered confidences, the      1
                           ``glare_text`` warning (1/0)
OCR_CODES                  decode DataMatrix / QR / 1-D codes (zxing-cpp), fill        1
                           fields from GS1 data and cross-check the print (1/0)
=========================  ==========================================================  =========
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class PipelineConfig:
    """Effective pipeline configuration (immutable, hashable, JSON-safe via ``to_dict``)."""

    device: str = "auto"
    threads: int = 0
    max_image_pixels: int = 40_000_000
    max_image_bytes: int = 50 * 1024 * 1024
    model: str = "ours"
    det_limit_side: int = 960
    det_limit_type: str = "max"
    det_thresh: float = 0.3
    det_box_thresh: float = 0.5
    det_unclip_ratio: float = 1.6
    det_max_candidates: int = 1000
    use_cls: bool = True
    cls_thresh: float = 0.9
    rec_batch_size: int = 8
    rec_min_width: int = 320
    rec_bucket: float = 1.3
    min_line_score: float = 0.3
    top_k: int = 3
    field_extractor: str = "ranker"
    ranker_transformer: bool = True
    extractor_backend: str = "onnx"
    extractor_int8: bool = False
    rectify: str = "auto"
    glare_aware: bool = True
    codes: bool = True
    # calibrated field confidences (workers/models/calibration; identity for other models)
    calibrate: bool = True
    # truncation guard: values at a line end cut by glare, the frame edge or the detector
    truncation_guard: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ConfigError`` with every problem found."""
        from .models import MODEL_SETS  # local: models imports nothing heavy, but keep acyclic

        problems: list[str] = []
        if not _DEVICE_RE.match(self.device):
            problems.append(f"OCR_DEVICE must be auto, cpu or cuda:N, got {self.device!r}")
        if self.threads < 0:
            problems.append("OCR_THREADS must be >= 0")
        if self.max_image_pixels < 1:
            problems.append("OCR_MAX_IMAGE_PIXELS must be positive")
        if self.max_image_bytes < 1:
            problems.append("OCR_MAX_IMAGE_BYTES must be positive")
        if self.model not in MODEL_SETS:
            problems.append(f"OCR_MODEL must be one of {sorted(MODEL_SETS)}, got {self.model!r}")
        if not 32 <= self.det_limit_side <= 4096:
            problems.append("OCR_DET_LIMIT_SIDE must be in [32, 4096]")
        if self.det_limit_type not in ("max", "min"):
            problems.append("OCR_DET_LIMIT_TYPE must be max or min")
        for name in ("det_thresh", "det_box_thresh", "cls_thresh", "min_line_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1]")
        if not 1.0 <= self.det_unclip_ratio <= 4.0:
            problems.append("OCR_DET_UNCLIP_RATIO must be in [1, 4]")
        if self.det_max_candidates < 1:
            problems.append("det_max_candidates must be positive")
        if not 1 <= self.rec_batch_size <= 256:
            problems.append("OCR_REC_BATCH_SIZE must be in [1, 256]")
        if not 8 <= self.rec_min_width <= 2048:
            problems.append("OCR_REC_MIN_WIDTH must be in [8, 2048]")
        if not self.rec_bucket >= 1.0:
            problems.append("OCR_REC_BUCKET must be >= 1")
        if not 1 <= self.top_k <= 10:
            problems.append("OCR_TOP_K must be in [1, 10]")
        if self.field_extractor not in ("ranker", "rules", "transformer"):
            problems.append(
                "OCR_FIELD_EXTRACTOR must be 'ranker', 'rules' or 'transformer', "
                f"got {self.field_extractor!r}"
            )
        if self.extractor_backend not in ("onnx", "torch"):
            problems.append(
                f"OCR_EXTRACTOR_BACKEND must be 'onnx' or 'torch', got {self.extractor_backend!r}"
            )
        if self.rectify not in ("auto", "lines", "off"):
            problems.append(f"OCR_RECTIFY must be auto, lines or off, got {self.rectify!r}")
        if problems:
            raise ConfigError("invalid pipeline config: " + "; ".join(problems))

    @property
    def effective_threads(self) -> int:
        """Threads actually given to onnxruntime (``threads`` or the CPUs this process may use)."""
        if self.threads:
            return self.threads
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - non-Linux
            return max(1, os.cpu_count() or 1)

    def replace(self, **changes: Any) -> PipelineConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["effective_threads"] = self.effective_threads
        return d

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PipelineConfig:
        """Build from ``OCR_*`` environment variables; raise ``ConfigError`` on bad values."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        problems: list[str] = []
        for f in dataclasses.fields(cls):
            key = "OCR_" + f.name.upper()
            if key not in env or env[key].strip() == "":
                continue
            raw = env[key].strip()
            try:
                kwargs[f.name] = _parse(raw, f.type)
            except ValueError:
                problems.append(f"{key}={raw!r} is not a valid {f.type}")
        if problems:
            raise ConfigError("invalid pipeline config: " + "; ".join(problems))
        return cls(**kwargs)


def _parse(raw: str, type_name: Any) -> Any:
    t = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    if t == "bool":
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if t == "int":
        return int(raw)
    if t == "float":
        return float(raw)
    return raw.lower() if t == "str" else raw
