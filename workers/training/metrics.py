"""Metrics shared by the trainers, their evaluations and ``bench/`` (pure Python, no model).

- ``levenshtein``: edit distance (insertions, deletions, substitutions, each cost 1).
- ``cer``: character error rate of one string against its ground truth.
- ``score``: CER over a set of line texts (total edits / total ground-truth characters) and
  exact-match rates, strict and ``loose``.
- ``Counts``: true/false positives and negatives with precision, recall, F1 and exact-match
  share (``workers/training/extractor/evaluate.py`` counts extracted fields with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def levenshtein(a: str, b: str) -> int:
    """Edit distance between ``a`` and ``b``."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(pred: str, gt: str) -> float:
    """Character error rate of ``pred``: edit distance / ground-truth length (at least 1)."""
    return levenshtein(pred, gt) / max(len(gt), 1)


def loose(text: str) -> str:
    """Serial comparison key: spaces and dashes removed, case folded."""
    return text.replace(" ", "").replace("-", "").upper()


def score(preds: Sequence[str], gts: Sequence[str]) -> dict[str, float]:
    """CER (edit distance / GT chars) and exact-match rate of line texts (``exact_loose``:
    after ``loose``)."""
    errs = sum(levenshtein(p, g) for p, g in zip(preds, gts, strict=True))
    chars = sum(len(g) for g in gts)
    exact = sum(p == g for p, g in zip(preds, gts, strict=True))
    n_loose = sum(loose(p) == loose(g) for p, g in zip(preds, gts, strict=True))
    n = max(len(gts), 1)
    return {
        "cer": errs / max(chars, 1),
        "exact": exact / n,
        "exact_loose": n_loose / n,
        "n": len(gts),
    }


@dataclass
class Counts:
    """Match counts of predicted against gold values: ``tp`` right predictions, ``fp`` wrong
    or unwanted ones, ``fn`` gold values not predicted, ``support`` gold values present."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    support: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def exact(self) -> float:
        """Share of gold values predicted exactly (exact-match accuracy)."""
        return self.tp / self.support if self.support else 0.0
