"""Stages: 0/180 line classification and CTC text recognition (PP-OCR ONNX models).

Inputs of both stages are line crops: list of (h, w, 3) uint8 RGB arrays (upright, from
``geometry.crop_quad``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np

from workers.fieldspec.grammar import SCRIPTS, char_script

from .config import PipelineConfig
from .errors import TransientError
from .rectification import orientation_from_classifier
from .types import RecognizedText

_REC_H = 48
_CLS_SHAPE = (48, 192)


def _normalise_bgr(resized_rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (3, h, w) float32 BGR in [-1, 1] (PaddleOCR rec/cls input)."""
    x = resized_rgb[:, :, ::-1].astype(np.float32) * (2.0 / 255.0) - 1.0
    return x.transpose(2, 0, 1)


class LineClassifier:
    """0/180 degree line classifier. ``__call__`` returns the crops (rotated where the model is
    confident the line is upside down) and a flag per crop telling whether it was rotated."""

    def __init__(self, config: PipelineConfig, session: Any) -> None:
        self.config = config
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.batch_size = max(1, config.rec_batch_size)

    def preprocess(self, crop: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 -> (3, 48, 192) float32, aspect kept, right-padded with zeros."""
        ih, iw = _CLS_SHAPE
        h, w = crop.shape[:2]
        rw = min(iw, max(1, int(math.ceil(ih * w / h))))
        out = np.zeros((3, ih, iw), dtype=np.float32)
        out[:, :, :rw] = _normalise_bgr(cv2.resize(crop, (rw, ih), interpolation=cv2.INTER_LINEAR))
        return out

    def __call__(self, crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[bool]]:
        out = list(crops)
        flipped = [False] * len(crops)
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            x = np.stack([self.preprocess(c) for c in chunk])
            try:
                probs = self.session.run(None, {self.input_name: x})[0]  # (n, 2): [p0, p180]
            except Exception as exc:
                raise TransientError(f"line classification failed: {exc}") from exc
            for j, p in enumerate(probs):
                if orientation_from_classifier(p, threshold=self.config.cls_thresh).rotate_180:
                    out[start + j] = np.ascontiguousarray(np.rot90(chunk[j], 2))
                    flipped[start + j] = True
        return out, flipped


class TextRecognizer:
    """CRNN/SVTR CTC recogniser.

    pre:  each crop resized to height 48 keeping aspect; a batch is padded (zeros, right) to the
          width of its widest member (at least ``rec_min_width``, 320); crops are sorted by
          width and grouped (:meth:`batches`) so a batch holds similar widths, and results are
          returned in the input order.
    fwd:  (n, 3, 48, W) float32 -> (n, T, C) softmax probabilities, T = W / 8.
    post: greedy CTC: argmax per step, collapse repeats, drop blank (class 0). Class i in
          1..len(chars) maps to chars[i-1], class len(chars)+1 is a space.

    Script constraint (``with_scripts``), applied to the (T, C) frame probabilities before the
    greedy decode, so the top-k alternatives obey it too:

    - ``scripts`` given (a product schema's ``scripts``): the classes of every other script
      (``fieldspec.grammar.char_script``) get probability 0 in every frame;
    - ``None`` (the default rule): a Hangul/CJK character the greedy path writes alone, with
      no character of its script beside it (``일RK°641AL``, ``CPOWE호FBZ``, ``(일 0°)``), is
      decoded again from its frames without the Hangul/CJK classes, unless it follows a digit
      (the units of ``2024년 05월``) or the line holds a word of its script (then only a Latin
      letter beside it makes it suspect); runs of two or more (a keyword such as ``제조번호``)
      are kept.

    Masked probability mass is not redistributed: a character read under the mask keeps the
    probability the network gave it (an honest, lower confidence).
    """

    def __init__(self, config: PipelineConfig, session: Any, chars: list[str]) -> None:
        self.config = config
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.labels = np.array(["", *chars, " "], dtype=object)
        self.top_k = config.top_k
        self.batch_size = config.rec_batch_size
        self.min_width = config.rec_min_width
        self.bucket = config.rec_bucket
        # per class: its script ("" for blank and space, never masked)
        self.class_scripts = np.array(
            ["", *(char_script(c[0]) if c else "latin" for c in chars), ""], dtype=object
        )
        self._foreign = np.isin(self.class_scripts, ["hangul", "cjk"])
        self.scripts: tuple[str, ...] | None = None
        self._allowed: np.ndarray | None = None  # (C,) bool, None: the default rule

    def with_scripts(self, scripts: Iterable[str] | None) -> TextRecognizer:
        """A recogniser sharing this one's session that writes only characters of ``scripts``
        (``SCRIPTS`` names; None: the default rule of the class docstring)."""
        out = copy.copy(self)
        if scripts is None:
            out.scripts, out._allowed = None, None
            return out
        chosen = tuple(dict.fromkeys(scripts))
        bad = [x for x in chosen if x not in SCRIPTS]
        if bad:
            raise ValueError(f"unknown scripts {bad}; known {list(SCRIPTS)}")
        out.scripts = chosen
        out._allowed = (self.class_scripts == "") | np.isin(self.class_scripts, chosen)
        return out

    def _constrain(self, probs: np.ndarray) -> np.ndarray:
        """(T, C) -> (T, C) with the script constraint applied (a copy when anything changes)."""
        if self._allowed is not None:
            if self._allowed.all():
                return probs
            return probs * self._allowed[None, :].astype(probs.dtype)
        if not self._foreign.any():
            return probs
        idx = probs.argmax(axis=1)
        segs: list[tuple[int, int, int]] = []  # (class, start, end) of emitted characters
        t, T = 0, len(idx)
        while t < T:
            c, end = int(idx[t]), t + 1
            while end < T and idx[end] == c:
                end += 1
            if c != 0:
                segs.append((c, t, end))
            t = end
        out = probs
        scripts = [self.class_scripts[c] for c, _, _ in segs]
        # a line that holds a word (2+ characters) of a foreign script is a line of that script
        pairs = zip(scripts[:-1], scripts[1:], strict=True)
        words = {a for a, b in pairs if a == b and a in ("hangul", "cjk")}
        for k, (c, t0, t1) in enumerate(segs):
            if not self._foreign[c]:
                continue
            prev = str(self.labels[segs[k - 1][0]]) if k > 0 else ""
            nxt = str(self.labels[segs[k + 1][0]]) if k + 1 < len(segs) else ""
            script = self.class_scripts[c]
            if char_script(prev or " ") == script or char_script(nxt or " ") == script:
                continue  # part of a word of its script
            latin_letter = any(n.isalpha() and char_script(n) == "latin" for n in (prev, nxt))
            if script in words and not latin_letter:
                continue  # a one-syllable word or unit of a Korean/CJK line
            if prev.isdigit() and not latin_letter:
                continue  # a unit after a number: the 년 / 월 of "2024년 05월"
            if out is probs:
                out = probs.copy()
            out[t0:t1, self._foreign] = 0.0
        return out

    def input_width(self, crop: np.ndarray) -> int:
        """The recogniser input width of one crop alone: 48 * aspect, at least
        ``rec_min_width``, rounded up to a multiple of 8."""
        width = max(self.min_width, int(math.ceil(_REC_H * crop.shape[1] / max(crop.shape[0], 1))))
        return int(math.ceil(width / 8) * 8)

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """list of (h, w, 3) uint8 -> (n, 3, 48, W) float32, W = the widest ``input_width``."""
        ratios = [c.shape[1] / max(c.shape[0], 1) for c in crops]
        width = max(self.input_width(c) for c in crops)
        batch = np.zeros((len(crops), 3, _REC_H, width), dtype=np.float32)
        for i, (c, r) in enumerate(zip(crops, ratios, strict=True)):
            rw = min(width, max(1, int(math.ceil(_REC_H * r))))
            batch[i, :, :, :rw] = _normalise_bgr(
                cv2.resize(c, (rw, _REC_H), interpolation=cv2.INTER_LINEAR)
            )
        return batch

    def batches(self, crops: list[np.ndarray]) -> list[list[int]]:
        """Crop indices in recognition batches: sorted by input width, a batch closes at
        ``rec_batch_size`` crops or when the next crop is wider than ``rec_bucket`` times the
        batch's first (a short word is not padded to the width of a long line)."""
        widths = [self.input_width(c) for c in crops]
        order = sorted(range(len(crops)), key=lambda i: (widths[i], i))
        out: list[list[int]] = []
        for i in order:
            if (
                out
                and len(out[-1]) < self.batch_size
                and widths[i] <= widths[out[-1][0]] * self.bucket
            ):
                out[-1].append(i)
            else:
                out.append([i])
        return out

    def decode(self, probs: np.ndarray) -> RecognizedText:
        """(T, C) float32 softmax -> RecognizedText (script constraint, greedy CTC + per-char
        top-k)."""
        n_classes = probs.shape[1]
        if n_classes != len(self.labels):
            raise TransientError(
                f"recogniser outputs {n_classes} classes but the char list has {len(self.labels)}"
            )
        probs = self._constrain(probs)
        idx = probs.argmax(axis=1)
        text: list[str] = []
        confs: list[float] = []
        alts: list[tuple[tuple[str, float], ...]] = []
        t, T = 0, len(idx)
        while t < T:
            c = int(idx[t])
            end = t + 1
            while end < T and idx[end] == c:
                end += 1
            if c != 0:
                run = probs[t:end, c]
                peak = t + int(run.argmax())
                step = probs[peak].copy()
                step[0] = -1.0  # blank is never an alternative character
                top = np.argpartition(-step, self.top_k)[: self.top_k]
                top = top[np.argsort(-step[top])]
                text.append(str(self.labels[c]))
                confs.append(float(probs[peak, c]))
                alts.append(tuple((str(self.labels[k]), float(step[k])) for k in top))
            t = end
        conf = float(np.mean(confs)) if confs else 0.0
        return RecognizedText(
            text="".join(text),
            confidence=conf,
            char_confidences=tuple(confs),
            alternatives=tuple(alts),
        )

    def __call__(self, crops: list[np.ndarray]) -> list[RecognizedText]:
        if not crops:
            return []
        results: list[RecognizedText | None] = [None] * len(crops)
        for ids in self.batches(crops):
            x = self.preprocess([crops[i] for i in ids])
            try:
                probs = self.session.run(None, {self.input_name: x})[0]
            except Exception as exc:
                raise TransientError(f"text recognition failed: {exc}") from exc
            for j, i in enumerate(ids):
                results[i] = self.decode(np.asarray(probs[j], dtype=np.float32))
        return [r for r in results if r is not None]
