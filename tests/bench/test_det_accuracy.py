"""bench/det_accuracy.py: one-to-one greedy matching, rasterised polygon IoU, covered recall.

Pure numpy (+ cv2.fillPoly inside the module), no model, no data set.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.det_accuracy import (  # noqa: E402
    covered_fractions,
    greedy_match,
    iou_matrix,
    score_image,
)

SHAPE = (100, 200)  # (H, W)


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def arc(cx: float, cy: float, r_in: float, r_out: float, n: int = 12) -> np.ndarray:
    """A curved line polygon of 2n points: the outer edge start -> end, the inner edge back."""
    t = np.linspace(np.pi * 1.15, np.pi * 1.85, n)
    outer = np.stack([cx + r_out * np.cos(t), cy + r_out * np.sin(t)], 1)
    inner = np.stack([cx + r_in * np.cos(t), cy + r_in * np.sin(t)], 1)[::-1]
    return np.concatenate([outer, inner])


def test_greedy_match_takes_pairs_in_decreasing_iou_one_to_one() -> None:
    iou = np.array(
        [
            [0.60, 0.55, 0.00],
            [0.70, 0.20, 0.00],
            [0.00, 0.00, 0.49],  # below the threshold: unmatched
        ]
    )
    # (1, 0) first; (0, 0) then loses det 0 and gt 0 falls back to det 1
    assert greedy_match(iou, 0.5) == [(0, 1), (1, 0)]
    assert greedy_match(iou, 0.45) == [(0, 1), (1, 0), (2, 2)]


def test_greedy_match_is_greedy_not_optimal_and_handles_empty() -> None:
    # greedy keeps (0, 0) at 0.9 although (0, 1) + (1, 0) would match two pairs
    iou = np.array([[0.9, 0.8], [0.85, 0.0]])
    assert greedy_match(iou, 0.5) == [(0, 0)]
    assert greedy_match(np.zeros((0, 3)), 0.5) == []
    assert greedy_match(np.zeros((2, 0)), 0.5) == []
    # ties break on the lower index
    assert greedy_match(np.array([[0.7, 0.7], [0.7, 0.7]]), 0.5) == [(0, 0), (1, 1)]


def test_iou_matrix_of_rectangles() -> None:
    gt = [rect(10, 10, 50, 30)]
    dets = [rect(10, 10, 50, 30), rect(30, 10, 70, 30), rect(100, 50, 150, 80)]
    iou = iou_matrix(gt, dets, SHAPE)
    assert iou.shape == (1, 3)
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[0, 1] == pytest.approx(1 / 3, abs=0.02)  # half overlap: 400 / 1200
    assert iou[0, 2] == 0.0


def test_iou_matrix_ignores_parts_outside_the_image() -> None:
    # GT half outside the left border: only the inside half counts
    iou = iou_matrix([rect(-40, 10, 40, 30)], [rect(0, 10, 40, 30)], SHAPE)
    assert iou[0, 0] == pytest.approx(1.0, abs=0.02)
    assert iou_matrix([rect(-50, -50, -10, -10)], [rect(0, 0, 10, 10)], SHAPE)[0, 0] == 0.0


def test_curved_polygon_iou() -> None:
    curved = arc(100, 120, 60, 80)
    box = np.array([curved[:, 0].min(), curved[:, 1].min(), curved[:, 0].max(), curved[:, 1].max()])
    iou = iou_matrix([curved], [curved, rect(*box)], SHAPE)
    assert iou[0, 0] == pytest.approx(1.0)
    assert 0.2 < iou[0, 1] < 0.9  # the bounding quad of a bent line is a poor match


def test_covered_recall_counts_a_split_line_that_iou_matching_misses() -> None:
    gt = [rect(10, 10, 110, 30), rect(10, 50, 110, 70)]
    # line 0 split into three pieces (no piece reaches IoU 0.5); line 1 not detected
    dets = [rect(10, 10, 40, 30), rect(40, 10, 75, 30), rect(75, 10, 108, 30)]
    cov = covered_fractions(gt, dets, SHAPE)
    assert cov[0] == pytest.approx(0.98, abs=0.02)
    assert cov[1] == 0.0
    row = score_image(gt, dets, SHAPE, cover_thresh=0.6)
    assert row["n_gt"] == 2 and row["n_det"] == 3
    assert row["matched"] == 0
    assert row["covered"] == 1
    # a detection covering only part of the line: covered at 0.5, not at 0.6
    part = score_image([gt[0]], [rect(10, 10, 65, 30)], SHAPE, cover_thresh=0.6)
    assert part["covered"] == 0 and part["matched"] == 1
    assert score_image([gt[0]], [rect(10, 10, 65, 30)], SHAPE, cover_thresh=0.5)["covered"] == 1


def test_score_image_without_detections_or_gt() -> None:
    row = score_image([rect(10, 10, 50, 30)], [], SHAPE, cover_thresh=0.6)
    assert (row["n_gt"], row["n_det"], row["matched"], row["covered"]) == (1, 0, 0, 0)
    row = score_image([], [rect(10, 10, 50, 30)], SHAPE, cover_thresh=0.6)
    assert (row["n_gt"], row["n_det"], row["matched"], row["covered"]) == (0, 1, 0, 0)
