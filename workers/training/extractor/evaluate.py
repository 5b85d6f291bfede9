"""Entity-level metrics for field extraction (shared by training checks and bench/field_accuracy.py).

Normalisation before comparing a predicted with a gold value:

* SROIE ``company`` / ``address``: upper-cased, runs of whitespace collapsed to one space, ends
  stripped. ``date`` / ``total``: compared as strings, ends stripped (no reformatting).
  ``strict=False`` (reported as an extra column) also drops every space and a trailing ``.``
  from company/address: the SROIE gold text often differs from the line text only there.
* nameplate fields: the field catalogue's normalisation (``workers.fieldspec``), trailing
  punctuation trimmed, as the extractors do.

Counting per field (``workers.training.metrics.Counts``): a non-empty prediction equal to the
gold value is a true positive; any other non-empty prediction is a false positive; a non-empty
gold value without an equal prediction is a false negative (a wrong prediction is both FP and
FN, as in SROIE task 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from workers.fieldspec.catalogue import spec_for
from workers.fieldspec.grammar import normalise as spec_normalise
from workers.training.metrics import Counts

RECEIPT_TEXT_FIELDS = ("company", "address")
RECEIPT_FIELDS = ("company", "date", "address", "total")


def normalise(field_name: str, value: str | None, *, strict: bool = True) -> str:
    v = (value or "").strip()
    if not v:
        return ""
    if field_name in RECEIPT_TEXT_FIELDS:
        v = re.sub(r"\s+", " ", v).upper()
        if not strict:
            v = v.replace(" ", "").rstrip(".")
        return v
    if field_name in ("date", "total"):
        return v
    return spec_normalise(v.strip(" \t.,;|"), spec_for(field_name))


@dataclass
class Scores:
    per_field: dict[str, Counts] = field(default_factory=dict)

    def add(
        self,
        pred: dict[str, str],
        gold: dict[str, str],
        fields: tuple[str, ...],
        *,
        strict: bool = True,
    ) -> None:
        for f in fields:
            c = self.per_field.setdefault(f, Counts())
            p = normalise(f, pred.get(f), strict=strict)
            g = normalise(f, gold.get(f), strict=strict)
            if g:
                c.support += 1
            if p and p == g:
                c.tp += 1
            else:
                if p:
                    c.fp += 1
                if g:
                    c.fn += 1

    @property
    def micro(self) -> Counts:
        t = Counts()
        for c in self.per_field.values():
            t.tp += c.tp
            t.fp += c.fp
            t.fn += c.fn
            t.support += c.support
        return t
