"""The field extractor's decoding: per-word label probabilities -> one value per field.

Pure numpy, no model. ``probs``: (N, 1 + 2F) float label probabilities of the N words of a
document in reading order (``layout.words_from_lines``), columns in ``layout.bio_labels`` order
(``O``, then ``B-f``, ``I-f`` per field f). A field's mass of a word is P(B-f) + P(I-f).

``restrict`` adapts the probabilities to the fields a schema asks for, ``decode_spans`` finds
runs of words per field, ``select_fields`` keeps the best run per field (plus the fallback
word run of a field no word was assigned to), ``clean_value`` trims receipt values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .layout import Word

# Fields that name the same thing in the two document kinds the model knows. When a schema asks
# for one and not the other, the other's probability counts for the one asked for.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "manufacturer": ("company",),
    "company": ("manufacturer",),
    "mfg_date": ("date",),
    "date": ("mfg_date",),
}


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


def span_rank(span: Span) -> float:
    """Ranking of a field's candidate spans: favour confident spans, with a little length
    bonus so that a whole address beats a fragment."""
    return span.score + 0.02 * min(len(span.words), 10)


def softmax(x: Any) -> Any:
    """Softmax over the last axis of a float numpy array."""
    import numpy as np

    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def restrict(probs: Any, fields: Sequence[str], wanted: set[str] | None) -> Any:
    """Adapt label probabilities (columns of ``bio_labels(fields)``) to the ``wanted`` fields
    (None: all): an unwanted field's probability moves to its alias when the alias is wanted
    (``FIELD_ALIASES``: a receipt's company is what a nameplate calls the manufacturer); other
    unwanted fields keep theirs (they still claim their words, e.g. a GTIN is not offered as an
    IMEI) and are simply not reported. Returns a copy (or ``probs`` itself when ``wanted`` is
    None)."""
    if wanted is None:
        return probs
    p = probs.copy()
    index = {f: j for j, f in enumerate(fields)}
    for j, f in enumerate(fields):
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


def select_fields(
    probs: Any,
    labels: list[str],
    words: Sequence[Word],
    wanted: set[str] | None,
    fallback_min_prob: float | None,
) -> dict[str, tuple[str, float, list[Word]]]:
    """Best span per field of ``decode_spans(probs, labels)`` (by ``span_rank``):
    ``{field: (raw value = the span's words joined by spaces, confidence = its mean field
    probability, words)}``. Spans of fields outside ``wanted`` (None: all are wanted) are
    returned too but do not claim their words. With ``fallback_min_prob``, a field no word was
    assigned to gets its most probable word not already in another field's value (and the
    neighbours above the same threshold) when that probability reaches ``fallback_min_prob``."""
    import numpy as np

    fields = [lab[2:] for lab in labels[1::2]]
    out: dict[str, tuple[str, float, list[Word]]] = {}
    claimed: set[int] = set()
    for f, cands in decode_spans(probs, labels).items():
        best = max(cands, key=span_rank)
        ws = [words[k] for k in best.words]
        out[f] = (" ".join(w.text for w in ws), best.score, ws)
        if wanted is None or f in wanted:  # an unwanted field's span does not block others
            claimed.update(best.words)
    if fallback_min_prob is None:
        return out
    free = np.ones(len(words), dtype=bool)
    free[list(claimed)] = False
    for j, f in enumerate(fields):
        if f in out or not free.any():
            continue
        mass = np.where(free, probs[:, 1 + 2 * j] + probs[:, 2 + 2 * j], 0.0)
        k = int(mass.argmax())
        if mass[k] < fallback_min_prob:
            continue
        a, b = k, k
        while a > 0 and mass[a - 1] >= fallback_min_prob:
            a -= 1
        while b + 1 < len(words) and mass[b + 1] >= fallback_min_prob:
            b += 1
        ws = list(words[a : b + 1])
        out[f] = (" ".join(w.text for w in ws), float(mass[a : b + 1].mean()), ws)
        free[a : b + 1] = False
    return out
