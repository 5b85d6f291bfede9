"""Training/evaluation documents for the field extractor: SROIE receipts and synthetic nameplates.

A ``Doc`` is what the extractor sees at inference (lines: text + pixel polygon, clockwise from
the text's top-left) plus the gold field values and, for training, char-level value spans
``(line index, start, end, field, group)`` (a value spread over several lines shares a group).
``doc_to_words`` turns a doc into the extractor's words (same code path as inference,
``workers.pipeline.extractor.layout.words_from_lines``) with word-level BIO labels.

SROIE: ``../shared/datasets/sroie_train/labels.json``; duplicates are removed by content (line
texts + fields); the split is deterministic: sha1 of the content, validation when its first
byte < 39 (about 15 %). Values are matched to words: exact (case-insensitive, whitespace
collapsed), else ignoring spaces, else fuzzy (difflib ratio >= 0.85 over word windows), else the
field is unlabelled in that receipt; totals and dates label every occurrence (amount found as a
number inside a word, e.g. "RM9.00" for "9.00").

Synthetic nameplates: ``workers.training.synth.label.build_label`` (the synthetic data engine's
layouts: key before/above value, no key, tables, bilingual, distractors); the text and word
annotations are used directly (no rendering of a photo / OCR). Line boxes go through a random
similarity transform, sometimes a key/value line is split in two OCR lines or glued at the colon.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.pipeline.extractor.layout import Word, words_from_lines

SROIE_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "sroie_train"
SROIE_FIELDS = ("company", "date", "address", "total")
SYNTH_FIELD_MAP = {"serial": "serial_number"}

Polygon = tuple[tuple[float, float], ...]


@dataclass
class Doc:
    id: str
    source: str  # "sroie" | "synth"
    lines: list[tuple[str, Polygon]]
    fields: dict[str, str]
    spans: list[tuple[int, int, int, str, int]] = field(default_factory=list)
    image: str | None = None
    match: dict[str, str] = field(default_factory=dict)  # field -> exact|nospace|fuzzy|none
    # synthetic: {"layout": the engine's template, "keys": {field: printed key text}}
    meta: dict[str, Any] = field(default_factory=dict)


def doc_to_dict(d: Doc) -> dict[str, Any]:
    return {
        "id": d.id,
        "source": d.source,
        "lines": [[t, [list(p) for p in poly]] for t, poly in d.lines],
        "fields": d.fields,
        "spans": [list(s) for s in d.spans],
        "image": d.image,
        "match": d.match,
        "meta": d.meta,
    }


def doc_from_dict(x: dict[str, Any]) -> Doc:
    return Doc(
        id=x["id"],
        source=x["source"],
        lines=[(t, tuple((float(a), float(b)) for a, b in poly)) for t, poly in x["lines"]],
        fields=dict(x["fields"]),
        spans=[tuple(s) for s in x["spans"]],  # type: ignore[misc]
        image=x.get("image"),
        match=dict(x.get("match", {})),
        meta=dict(x.get("meta", {})),
    )


# ---------------------------------------------------------------------------- labels


def word_labels(doc: Doc, words: list[Word]) -> list[str]:
    """BIO label per word: a word overlapping a value span of field F is F; the first such word
    (reading order) of each span group is B-F, the rest I-F."""
    labels = ["O"] * len(words)
    seen_groups: set[int] = set()
    for k, w in enumerate(words):
        for li, s, e, f, g in doc.spans:
            if li == w.line_index and s < w.end and w.start < e:
                labels[k] = ("I-" if g in seen_groups else "B-") + f
                seen_groups.add(g)
                break
    return labels


def doc_to_words(doc: Doc) -> tuple[list[Word], list[str]]:
    words = words_from_lines(doc.lines)
    return words, word_labels(doc, words)


# ---------------------------------------------------------------------------- SROIE


def _content_key(rec: dict[str, Any]) -> str:
    payload = json.dumps([[ln["text"] for ln in rec["lines"]], rec["fields"]], sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()


def is_validation(key: str) -> bool:
    return int(key[:2], 16) < 39  # ~15 % of the unique receipts


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().upper()


def _match_text(words: list[Word], value: str) -> tuple[list[int], str]:
    """Word indices (reading order) covering ``value``, and how they were found."""
    v = _norm(value)
    if not v:
        return [], "none"
    # exact on the space-joined word string
    pieces, owner = [], []
    for k, w in enumerate(words):
        t = w.text.upper()
        pieces.append(t)
        owner.extend([k] * len(t))
        owner.append(-1)
    doc = " ".join(pieces)
    pos = doc.find(v)
    if pos >= 0:
        return sorted({o for o in owner[pos : pos + len(v)] if o >= 0}), "exact"
    # ignoring spaces
    ns_chars = [(c, o) for c, o in zip(doc, owner, strict=False) if c != " "]
    ns = "".join(c for c, _ in ns_chars)
    vn = v.replace(" ", "")
    pos = ns.find(vn)
    if pos >= 0:
        return sorted({o for _, o in ns_chars[pos : pos + len(vn)]}), "nospace"
    # fuzzy: best window of consecutive words
    nv = len(v.split())
    best, best_r = None, 0.0
    sm = difflib.SequenceMatcher(autojunk=False)
    sm.set_seq2(v)
    for i in range(len(words)):
        for n in range(max(1, nv - 3), nv + 4):
            if i + n > len(words):
                break
            sm.set_seq1(" ".join(pieces[i : i + n]))
            if sm.real_quick_ratio() < 0.85 or sm.quick_ratio() < 0.85:
                continue
            r = sm.ratio()
            if r > best_r:
                best, best_r = list(range(i, i + n)), r
    if best is not None and best_r >= 0.85:
        return best, "fuzzy"
    return [], "none"


def _amount(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def _match_all(words: list[Word], value: str, fld: str) -> tuple[list[list[int]], str]:
    """Every occurrence of a short value (date/total) as a list of word-index groups."""
    v = value.strip()
    if not v:
        return [], "none"
    groups: list[list[int]] = []
    if " " not in v:
        pat = re.compile(rf"(?<![\d.]){re.escape(v)}(?![\d])", re.IGNORECASE)
        groups = [[k] for k, w in enumerate(words) if pat.search(w.text)]
        if groups:
            return groups, "exact"
    else:
        toks = v.upper().split()
        n = len(toks)
        for i in range(len(words) - n + 1):
            if all(toks[j] in words[i + j].text.upper() for j in range(n)):
                groups.append(list(range(i, i + n)))
        if groups:
            return groups, "exact"
    if fld == "total":
        target = _amount(v)
        if target is not None:
            for k, w in enumerate(words):
                for m in re.findall(r"\d[\d,]*\.\d+", w.text):
                    a = _amount(m)
                    if a is not None and abs(a - target) < 1e-6:
                        groups.append([k])
                        break
            if groups:
                return groups, "fuzzy"
    ks, how = _match_text(words, v)
    return ([ks] if ks else []), how


def sroie_doc(rec: dict[str, Any], key: str) -> Doc:
    lines = [
        (ln["text"], tuple((float(x), float(y)) for x, y in ln["box"]))
        for ln in rec["lines"]
        if ln["text"].strip()
    ]
    fields = {f: str(rec["fields"].get(f, "")).strip() for f in SROIE_FIELDS}
    doc = Doc(id=key[:12], source="sroie", lines=lines, fields=fields, image=rec.get("image"))
    words = words_from_lines(lines)
    group = 0
    for f in SROIE_FIELDS:
        v = fields[f]
        if f in ("date", "total"):
            groups, how = _match_all(words, v, f)
        else:
            ks, how = _match_text(words, v)
            groups = [ks] if ks else []
        doc.match[f] = how if v else "empty"
        for g in groups:
            for k in g:
                w = words[k]
                doc.spans.append((w.line_index, w.start, w.end, f, group))
            group += 1
    return doc


def load_sroie(path: Path | None = None) -> tuple[list[Doc], list[Doc]]:
    """(train, validation) unique SROIE receipts, deterministic split by content hash."""
    path = path or SROIE_DIR / "labels.json"
    records = json.loads(Path(path).read_text())
    seen: set[str] = set()
    train, val = [], []
    for rec in records:
        key = _content_key(rec)
        if key in seen:
            continue
        seen.add(key)
        d = sroie_doc(rec, key)
        (val if is_validation(key) else train).append(d)
    return train, val


def match_coverage(docs: list[Doc]) -> dict[str, dict[str, int]]:
    """Per field: how many receipts' values were matched exactly / ignoring spaces / fuzzily /
    not at all (and empty gold values)."""
    out: dict[str, dict[str, int]] = {}
    for d in docs:
        for f, how in d.match.items():
            out.setdefault(f, {}).setdefault(how, 0)
            out[f][how] += 1
    return out


# ---------------------------------------------------------------------------- synthetic


def _fonts() -> Any:
    from workers.training.synth.fonts import default_registry

    return default_registry()


def synth_doc(seed: int, *, fonts: Any = None, augment: bool = True) -> Doc:
    """One synthetic nameplate as lines + value spans (label frame, randomly transformed)."""
    import numpy as np

    from workers.training.synth.label import build_label

    rng = random.Random(seed)
    tags: set[str] = set()
    r = rng.random()
    if r < 0.08:
        tags.add("dot_matrix")
    elif r < 0.14:
        tags.add("segment")
    render = build_label(rng, np.random.default_rng(seed), fonts or _fonts(), tags)
    arng = random.Random(seed * 7919 + 13)
    ang = math.radians(arng.uniform(-6, 6)) if augment and arng.random() < 0.5 else 0.0
    scale = arng.uniform(0.5, 2.0) if augment else 1.0
    ox, oy = (arng.uniform(0, 300), arng.uniform(0, 300)) if augment else (0.0, 0.0)
    ca, sa = math.cos(ang), math.sin(ang)

    def tf(x: float, y: float) -> tuple[float, float]:
        return (ox + scale * (ca * x - sa * y), oy + scale * (sa * x + ca * y))

    def quad(b: tuple[float, float, float, float]) -> Polygon:
        x0, y0, x1, y1 = b
        return (tf(x0, y0), tf(x1, y0), tf(x1, y1), tf(x0, y1))

    lines: list[tuple[str, Polygon]] = []
    spans: list[tuple[int, int, int, str, int]] = []
    fields: dict[str, str] = {}
    group = 0
    for ln in render.lines:
        words = [w for w in ln.words if w.text]
        if not words:
            continue
        # OCR-like variations: split a key/value line in two lines, or glue "KEY:" to the value
        cut = None
        if augment and ln.role == "key_value" and len(words) >= 2 and arng.random() < 0.15:
            cut = next((i for i, w in enumerate(words) if w.role == "value"), None)
        glue = augment and ln.role == "key_value" and arng.random() < 0.08
        parts = [words] if not cut else [words[:cut], words[cut:]]
        for part in parts:
            text = ""
            starts = []
            for i, w in enumerate(part):
                sep = ""
                if i:
                    prev = part[i - 1]
                    sep = (
                        ""
                        if glue
                        and prev.role == "key"
                        and w.role == "value"
                        and prev.text.endswith(":")
                        else " "
                    )
                text += sep
                starts.append(len(text))
                text += w.text
            li = len(lines)
            x0 = min(w.box[0] for w in part)
            y0 = min(w.box[1] for w in part)
            x1 = max(w.box[2] for w in part)
            y1 = max(w.box[3] for w in part)
            lines.append((text, quad((x0, y0, x1, y1))))
            run_group = None
            for w, s in zip(part, starts, strict=False):
                if w.role == "value" and w.field:
                    f = SYNTH_FIELD_MAP.get(w.field, w.field)
                    if run_group is None:
                        run_group = group
                        group += 1
                    spans.append((li, s, s + len(w.text), f, run_group))
                else:
                    run_group = None
    for f, v in render.fields.items():
        fields[SYNTH_FIELD_MAP.get(f, f)] = v
    keys: dict[str, str] = {}
    for ln in render.lines:
        for w in ln.words:
            if w.role == "key" and w.field:
                f = SYNTH_FIELD_MAP.get(w.field, w.field)
                keys[f] = f"{keys[f]} {w.text}" if f in keys else w.text
    meta = {"layout": render.meta.get("layout"), "keys": keys}
    return Doc(
        id=f"synth-{seed}", source="synth", lines=lines, fields=fields, spans=spans, meta=meta
    )


def synth_docs(seeds: range, *, augment: bool = True) -> list[Doc]:
    fonts = _fonts()
    return [synth_doc(s, fonts=fonts, augment=augment) for s in seeds]


def save_docs(docs: list[Doc], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([doc_to_dict(d) for d in docs]))


def load_docs(path: Path) -> list[Doc]:
    return [doc_from_dict(x) for x in json.loads(Path(path).read_text())]
