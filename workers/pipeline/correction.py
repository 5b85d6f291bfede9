"""Format-constrained correction of recognised field values.

The recogniser gives, for every output character, its top-k alternatives with
probabilities. :func:`correct` finds the most probable string (product of the
chosen characters' probabilities) that *fully validates* against a
:class:`~workers.fieldspec.grammar.FieldSpec`: format grammar, regex pattern,
check digit and date rules.

Search:

1. Exact Viterbi over the product automaton *format NFA x check-digit automaton*
   (see ``checkdigits.CheckDigitAlgorithm.start/feed/accepts``). The format
   grammar compiles to per-position character classes (optional slots for
   ``{m,n}``), so the optimum under both constraints is found in
   O(positions x states x alternatives). Used when every normalisation op is
   per character; the best few end states are re-checked with
   :func:`validate_field` (which also applies the regex pattern and date rules).
2. Otherwise (whole-string normalisations such as ``mac``, or the Viterbi
   answer failing the regex/date rules) a best-first enumeration of the lattice
   in decreasing probability, each candidate normalised and validated in full,
   capped at ``max_candidates``.

Missing alternatives are made up from a look-alike table (``O``/``0``,
``I``/``1``, ``S``/``5`` ...) with a low prior (``lookalike_prior`` times the
probability of the character they stand in for), so a lone ``O`` where the
format needs a digit can still become ``0``.

Dropping a character (``allow_drop``, off by default) models the recogniser's
most common insertion error, a spurious character (a doubled glyph or a speck
read as ``.``/``1``) that makes a fixed-length value one character too long.
Each drop costs ``drop_prob``. Insertions of missing characters are never
invented: the recogniser gave no evidence for their identity.

A value that already validates is never changed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from workers.fieldspec.checkdigits import CHECK_DIGITS
from workers.fieldspec.grammar import (
    PER_CHAR_OPS,
    FieldSpec,
    char_allowed,
    compile_format,
    normalise_char,
    validate_field,
)

__all__ = ["LOOKALIKES", "Alternatives", "Correction", "constrain_chars", "correct"]

Alternatives = Sequence[Sequence[tuple[str, float]]]
"""One list per recognised character: ``(char, probability)`` pairs, best first."""

_PAIRS = [
    ("O", "0"), ("o", "0"), ("D", "0"), ("Q", "0"), ("U", "0"),
    ("I", "1"), ("i", "1"), ("l", "1"), ("L", "1"), ("|", "1"), ("T", "7"),
    ("S", "5"), ("s", "5"), ("B", "8"), ("Z", "2"), ("z", "2"), ("G", "6"),
    ("A", "4"), ("g", "9"), ("q", "9"), ("b", "6"),
    ("O", "D"), ("O", "Q"), ("I", "L"), ("I", "l"), ("U", "V"), ("M", "N"),
]  # fmt: skip
LOOKALIKES: dict[str, tuple[str, ...]] = {}
"""Visually confusable characters (symmetric): fallback alternatives."""
for _a, _b in _PAIRS:
    LOOKALIKES[_a] = (*LOOKALIKES.get(_a, ()), _b)
    LOOKALIKES[_b] = (*LOOKALIKES.get(_b, ()), _a)

_SEPARATORS = frozenset(" \t-./:\u2010\u2011\u2012\u2013\u2014\u2015\u2212")
_DROP = "\x00drop"


@dataclass(frozen=True)
class Correction:
    """Result of :func:`correct`.

    ``original``: the top-1 recognised text; ``value``: the normalised valid value;
    ``corrected``: whether any character was changed or dropped; ``probability``:
    product of the chosen characters' probabilities (0..1); ``changes``:
    ``(position in original, from, to)``, ``to`` is ``""`` for a dropped char.
    """

    original: str
    value: str
    corrected: bool
    probability: float
    changes: tuple[tuple[int, str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "original": self.original,
            "value": self.value,
            "corrected": self.corrected,
            "probability": self.probability,
            "changes": [list(c) for c in self.changes],
        }


@dataclass(frozen=True)
class _Option:
    emit: str  # normalised text this option contributes ('' for removed/dropped)
    logp: float
    raw: str  # raw recognised char ('' when dropped)


def _build_lattice(
    alternatives: Alternatives,
    spec: FieldSpec,
    *,
    lookalike_prior: float,
    allow_drop: bool,
    drop_prob: float,
) -> list[list[_Option]]:
    lattice: list[list[_Option]] = []
    for alts in alternatives:
        best: dict[str, tuple[float, str]] = {}

        def offer(raw: str, p: float, _best: dict[str, tuple[float, str]] = best) -> None:
            if p <= 0.0:
                return
            emit = _DROP if raw == _DROP else normalise_char(raw, spec)
            if emit not in _best or _best[emit][0] < p:
                _best[emit] = (p, raw)

        given = [(c, min(max(float(p), 0.0), 1.0)) for c, p in alts if isinstance(c, str) and c]
        for c, p in given:
            offer(c, p)
        if lookalike_prior > 0:
            for c, p in given:
                for la in LOOKALIKES.get(c, ()) + LOOKALIKES.get(c.upper(), ()):
                    offer(la, p * lookalike_prior)
        if allow_drop:
            offer(_DROP, drop_prob)
        opts = [
            _Option("" if e == _DROP else e, math.log(p), "" if r == _DROP else r)
            for e, (p, r) in best.items()
        ]
        opts.sort(key=lambda o: -o.logp)
        lattice.append(opts)
    return lattice


class _FormatNFA:
    """Format grammar as an NFA over slots; state k = number of slots consumed.
    Optional slots (from ``{m,n}``) can be skipped."""

    def __init__(self, fmt: str | None) -> None:
        self.slots: list[tuple[frozenset[str], bool]] = []  # (chars, optional)
        if fmt is None:
            self.free = True
            return
        self.free = False
        for tok in compile_format(fmt):
            self.slots += [(tok.chars, False)] * tok.min + [(tok.chars, True)] * (tok.max - tok.min)

    def start(self) -> int:
        return 0

    def step(self, state: int, ch: str) -> list[int]:
        if self.free:
            return [0]
        out = []
        k = state
        while k < len(self.slots):
            chars, optional = self.slots[k]
            if ch in chars:
                out.append(k + 1)
            if not optional:
                break
            k += 1
        return out

    def accepts(self, state: int) -> bool:
        return self.free or all(opt for _, opt in self.slots[state:])


def _viterbi(lattice: list[list[_Option]], spec: FieldSpec, top_n: int = 8) -> list[list[int]]:
    """Best option-index paths through the lattice that satisfy format + check digit,
    best first (up to ``top_n`` distinct end states)."""
    nfa = _FormatNFA(spec.format)
    algo = CHECK_DIGITS[spec.check_digit] if spec.check_digit else None
    min_len = (algo.check_length + 1) if algo else 1

    def advance(key: tuple[int, Hashable, int], text: str) -> list[tuple[int, Hashable, int]]:
        states = [key]
        for ch in text:
            nxt: list[tuple[int, Hashable, int]] = []
            for nfa_s, cd_s, n in states:
                if algo is not None and not (ch in _SEPARATORS or ch.isspace()):
                    cd2 = algo.feed(cd_s, ch.upper())
                    if cd2 is None:
                        continue
                else:
                    cd2 = cd_s
                for nfa2 in nfa.step(nfa_s, ch):
                    nxt.append((nfa2, cd2, min(n + 1, min_len)))
            states = nxt
            if not states:
                break
        return states

    start = (nfa.start(), algo.start() if algo else None, 0)
    layer: dict[tuple[int, Hashable, int], float] = {start: 0.0}
    back: list[dict[tuple[int, Hashable, int], tuple[tuple[int, Hashable, int], int]]] = []
    for opts in lattice:
        new: dict[tuple[int, Hashable, int], float] = {}
        bp: dict[tuple[int, Hashable, int], tuple[tuple[int, Hashable, int], int]] = {}
        for key, lp in layer.items():
            for j, opt in enumerate(opts):
                score = lp + opt.logp
                for key2 in advance(key, opt.emit):
                    if score > new.get(key2, -math.inf):
                        new[key2] = score
                        bp[key2] = (key, j)
        back.append(bp)
        layer = new
        if not layer:
            return []
    finals = [
        (lp, key)
        for key, lp in layer.items()
        if key[2] >= min_len and nfa.accepts(key[0]) and (algo is None or algo.accepts(key[1]))
    ]
    finals.sort(key=lambda t: -t[0])
    paths: list[list[int]] = []
    for _, key in finals[:top_n]:
        path: list[int] = []
        for bp in reversed(back):
            key, j = bp[key]
            path.append(j)
        paths.append(path[::-1])
    return paths


def _best_first(lattice: list[list[_Option]], max_candidates: int):
    """Yield option-index paths in decreasing probability (lazy k-best)."""
    if any(not opts for opts in lattice):
        return
    n = len(lattice)
    first = (0,) * n
    heap = [(-sum(opts[0].logp for opts in lattice), first)]
    seen = {first}
    popped = 0
    while heap and popped < max_candidates:
        neg, idx = heapq.heappop(heap)
        popped += 1
        yield list(idx)
        for i in range(n):
            if idx[i] + 1 < len(lattice[i]):
                nxt = idx[:i] + (idx[i] + 1,) + idx[i + 1 :]
                if nxt not in seen:
                    seen.add(nxt)
                    delta = lattice[i][idx[i]].logp - lattice[i][idx[i] + 1].logp
                    heapq.heappush(heap, (neg + delta, nxt))


def correct(
    text: str,
    alternatives: Alternatives | None,
    spec: FieldSpec,
    *,
    today: date | None = None,
    lookalike_prior: float = 0.05,
    allow_drop: bool = False,
    drop_prob: float = 0.02,
    max_candidates: int = 2000,
) -> Correction | None:
    """Most probable fully valid value reachable from the recognised characters.

    Args:
        text: the top-1 recognised string (one character per lattice position).
        alternatives: per character ``[(char, prob), ...]`` best first, probs in
            0..1; ``None`` means no alternatives (each char certain, look-alikes only).
        spec: the field spec to satisfy (normalisation, format, pattern, check digit,
            date rules).
        today: anchors date rules (default: today's date).
        lookalike_prior: probability factor of an invented look-alike alternative
            (0 disables the look-alike fallback).
        allow_drop: also consider deleting characters, each at ``drop_prob``.
        max_candidates: cap on candidates validated by the best-first fallback.

    Returns:
        A :class:`Correction` (``corrected=False`` when ``text`` already validates),
        or ``None`` when no valid value is reachable.

    Raises:
        ValueError: when ``alternatives`` does not have one entry per character.
    """
    today = today or date.today()
    if alternatives is None:
        alternatives = [[(c, 1.0)] for c in text]
    if len(alternatives) != len(text):
        raise ValueError(f"{len(alternatives)} alternative lists for {len(text)} characters")
    top_p = 1.0
    for c, alts in zip(text, alternatives, strict=True):
        top_p *= next((min(max(p, 0.0), 1.0) for a, p in alts if a == c), 1.0)

    check = validate_field(text, spec, today=today)
    if check.valid:  # never "correct" a value that already validates
        return Correction(text, check.value, False, top_p, ())

    # Outer whitespace is trimmed by normalisation anyway: drop it from the lattice.
    lo, hi = 0, len(text)
    while lo < hi and text[lo].isspace():
        lo += 1
    while hi > lo and text[hi - 1].isspace():
        hi -= 1
    lattice = _build_lattice(
        alternatives[lo:hi],
        spec,
        lookalike_prior=lookalike_prior,
        allow_drop=allow_drop,
        drop_prob=drop_prob,
    )
    if not lattice:
        return None

    def result(path: list[int]) -> Correction | None:
        raw_value = "".join(lattice[i][j].raw for i, j in enumerate(path))
        fc = validate_field(raw_value, spec, today=today)
        if not (fc.valid and fc.value):
            return None
        changes = tuple(
            (lo + i, text[lo + i], lattice[i][j].raw)
            for i, j in enumerate(path)
            if lattice[i][j].raw != text[lo + i]
        )
        prob = math.exp(sum(lattice[i][j].logp for i, j in enumerate(path)))
        return Correction(text, fc.value, bool(changes), prob, changes)

    per_char = all(op in PER_CHAR_OPS for op in spec.normalise)
    if per_char and (spec.format or spec.check_digit):
        for path in _viterbi(lattice, spec):
            res = result(path)
            if res is not None:
                return res
        if not (spec.pattern or spec.date):
            # Viterbi is exact for format + check digit: nothing valid is reachable.
            return None
    for path in _best_first(lattice, max_candidates):
        res = result(path)
        if res is not None:
            return res
    return None


def constrain_chars(
    text: str, alternatives: Alternatives | None, spec: FieldSpec
) -> Correction | None:
    """Replace every character of ``text`` that no valid value of ``spec`` can hold
    (``grammar.char_allowed``: another script, a sign outside the format or pattern, e.g. ``°``
    or Hangul inside a serial) by its most probable recognised alternative that it can hold.

    This needs no precise grammar (unlike :func:`correct`): it never turns one possible
    character into another, it only removes impossible ones, and only where the recogniser
    itself offered a possible one (no look-alikes are invented). A changed character keeps the
    probability the recogniser gave its replacement, so the value's confidence drops.

    Returns None when nothing is impossible, or when some impossible character has no
    possible alternative (the value then fails validation as read)."""
    if not text or alternatives is None or len(alternatives) != len(text):
        return None
    out = list(text)
    changes: list[tuple[int, str, str]] = []
    prob = 1.0
    for i, (ch, alts) in enumerate(zip(text, alternatives, strict=True)):
        if char_allowed(ch, spec):
            prob *= next((min(max(float(p), 0.0), 1.0) for a, p in alts if a == ch), 1.0)
            continue
        best = max(
            (
                (a, float(p))
                for a, p in alts
                if a and a != ch and float(p) > 0.0 and char_allowed(a, spec)
            ),
            key=lambda t: t[1],
            default=None,
        )
        if best is None:
            return None
        out[i] = best[0]
        prob *= min(best[1], 1.0)
        changes.append((i, ch, best[0]))
    if not changes:
        return None
    value = "".join(out)
    return Correction(text, value, True, prob, tuple(changes))
