"""Synthetic data engine for nameplate / label OCR training and evaluation.

Public API::

    from workers.training.synth import generate_sample, SynthConfig, Sample, CONDITIONS
    s = generate_sample(7, conditions={"glare", "curved"})
    s.image            # (H, W, 3) uint8 RGB
    s.to_dict("images/000007.jpg")   # record in the shared labels.json format (+ extra keys)

CLI: ``python -m workers.training.synth OUT_DIR --n N --seed S [--conditions glare,curved]
[--crops]``. See ``sample.py`` for frames and the polygon point order.
"""

from .crops import Crop, line_crops
from .fonts import FontRegistry, default_registry
from .glyphs import DOT_CHARSET, SEG7_CHARSET
from .sample import CONDITIONS, Line, Sample, SynthConfig, Word, generate_sample

__all__ = [
    "CONDITIONS",
    "DOT_CHARSET",
    "SEG7_CHARSET",
    "Crop",
    "FontRegistry",
    "Line",
    "Sample",
    "SynthConfig",
    "Word",
    "default_registry",
    "generate_sample",
    "line_crops",
]
