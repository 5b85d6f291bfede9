"""Rectification geometry: a rendered label warped with a known ~35 degree perspective and with a
cylindrical curvature comes back close to the original text crop (normalised cross-correlation)
and is read back exactly by the real PP-OCRv4 recogniser (rapidocr's ONNX via onnxruntime)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from workers.pipeline import rectification as R

TEXT = "SN 4471-B09K"
PAD = 10


@pytest.fixture(scope="module")
def label():
    """(label (300, 640, 3) uint8, text box (x0, y0, x1, y1) with padding, label-frame)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=40)
    img = Image.new("RGB", (640, 300), (230, 228, 220))
    draw = ImageDraw.Draw(img)
    tw = draw.textlength(TEXT, font=font)
    xy = (int(320 - tw / 2), 120)  # centred: the cylinder test bends it symmetrically
    draw.text(xy, TEXT, font=font, fill=(25, 25, 35))
    x0, y0, x1, y1 = draw.textbbox(xy, TEXT, font=font)
    return np.asarray(img), (x0 - PAD, y0 - PAD, x1 + PAD, y1 + PAD)


@pytest.fixture(scope="module")
def recognizer():
    from workers.pipeline.config import PipelineConfig
    from workers.pipeline.models import MODEL_SETS, create_session, load_char_list
    from workers.pipeline.recognition import TextRecognizer

    ms = MODEL_SETS["ppocrv4"]
    sess, _ = create_session(ms.rec.path(), "cpu", 2)
    return TextRecognizer(PipelineConfig(device="cpu"), sess, load_char_list(ms, sess))


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two gray images, b resized to a's size, both smoothed
    (sigma 1.5 px) so a sub-pixel shift of thin strokes does not dominate."""
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    gb = cv2.resize(gb, (ga.shape[1], ga.shape[0]), interpolation=cv2.INTER_AREA)
    ga = cv2.GaussianBlur(ga, (0, 0), 1.5).astype(np.float64)
    gb = cv2.GaussianBlur(gb, (0, 0), 1.5).astype(np.float64)
    ga, gb = ga - ga.mean(), gb - gb.mean()
    return float((ga * gb).sum() / math.sqrt((ga * ga).sum() * (gb * gb).sum()))


def box_crop(img, box):
    x0, y0, x1, y1 = box
    return img[y0:y1, x0:x1]


def perspective_h(w: int, h: int, yaw_deg: float, pitch_deg: float, out: tuple[int, int]):
    """Homography of a plane (label, w x h px) rotated by yaw (about the vertical axis) and
    pitch, seen by a pinhole camera with focal length = label width, centred in ``out``."""
    f = float(w)
    ya, pa = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(ya), 0, math.sin(ya)], [0, 1, 0], [-math.sin(ya), 0, math.cos(ya)]])
    rx = np.array([[1, 0, 0], [0, math.cos(pa), -math.sin(pa)], [0, math.sin(pa), math.cos(pa)]])
    rot = ry @ rx
    # label point (x, y) -> 3D (x - w/2, y - h/2, 0) -> rotated -> + (0, 0, 1.6 f)
    t = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 0]], dtype=np.float64)
    m3 = rot @ t + np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1.6 * f]])
    k = np.array([[f, 0, out[0] / 2], [0, f, out[1] / 2], [0, 0, 1]])
    hom = k @ m3
    return hom / hom[2, 2]


def warp_pts(hom, pts):
    return cv2.perspectiveTransform(np.asarray(pts, np.float64).reshape(-1, 1, 2), hom).reshape(
        -1, 2
    )


def cylinder(img: np.ndarray, radius: float, sag: float):
    """Wrap the label around a vertical cylinder seen from slightly above: label column x goes
    to u = cx + R sin((x - cx) / R); rows bend by sag * (1 - cos) so lines become arcs.
    Returns (warped image, forward point map)."""
    h, w = img.shape[:2]
    cx = w / 2.0
    out_w = int(2 * radius * math.sin(min(w / 2 / radius, math.pi / 2))) + 20
    ox = out_w / 2.0

    def fwd(pts):
        p = np.asarray(pts, np.float64)
        th = (p[:, 0] - cx) / radius
        return np.stack([ox + radius * np.sin(th), p[:, 1] + sag * (1 - np.cos(th)) + 10], axis=1)

    uu, vv = np.meshgrid(
        np.arange(out_w, dtype=np.float64), np.arange(h + int(sag) + 20, dtype=np.float64)
    )
    s = np.clip((uu - ox) / radius, -1, 1)
    th = np.arcsin(s)
    map_x = (cx + radius * th).astype(np.float32)
    map_y = (vv - 10 - sag * (1 - np.cos(th))).astype(np.float32)
    warped = cv2.remap(
        img, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=(60, 60, 60)
    )
    return warped, fwd


def edge_polygon(box, n: int, fwd) -> np.ndarray:
    """(2N, 2) polygon of the text box: N top points left->right, N bottom points right->left."""
    x0, y0, x1, y1 = box
    xs = np.linspace(x0, x1, n)
    top = np.stack([xs, np.full(n, y0)], axis=1)
    bot = np.stack([xs[::-1], np.full(n, y1)], axis=1)
    return fwd(np.vstack([top, bot]))


def read(recognizer, crop) -> str:
    return recognizer([crop])[0].text.strip()


def test_recognizer_reads_the_flat_label(label, recognizer):
    img, box = label
    assert read(recognizer, box_crop(img, box)) == TEXT


@pytest.mark.slow
def test_perspective_35deg_line_comes_back_readable(label, recognizer):
    img, box = label
    hom = perspective_h(640, 300, 35.0, 12.0, (900, 600))
    warped = cv2.warpPerspective(
        img, hom, (900, 600), flags=cv2.INTER_CUBIC, borderValue=(50, 50, 50)
    )
    x0, y0, x1, y1 = box
    quad = warp_pts(
        hom,
        [[x0 - 0.5, y0 - 0.5], [x1 - 0.5, y0 - 0.5], [x1 - 0.5, y1 - 0.5], [x0 - 0.5, y1 - 0.5]],
    )
    assert R.classify_line(quad) == "perspective"
    out = R.rectify_line(warped, quad)
    assert out.method == "perspective"
    ref = box_crop(img, box)
    assert ncc(ref, out.crop) > 0.85
    assert ncc(ref, R.axis_crop(warped, quad)) < 0.6  # the warp really was needed
    assert read(recognizer, out.crop) == TEXT


@pytest.mark.slow
def test_whole_label_perspective_correction(label, recognizer):
    """The label outline is found in a 35-degree view and the label comes back rectangular;
    the known text box mapped through both homographies reads back."""
    img, box = label
    hom = perspective_h(640, 300, 35.0, 12.0, (900, 600))
    warped = cv2.warpPerspective(
        img, hom, (900, 600), flags=cv2.INTER_CUBIC, borderValue=(50, 50, 50)
    )
    found = R.find_label_quad(warped)
    assert found is not None
    corners = warp_pts(hom, [[-0.5, -0.5], [639.5, -0.5], [639.5, 299.5], [-0.5, 299.5]])
    assert np.abs(found - corners).max() < 6.0
    rect = R.rectify_label(warped)
    assert rect is not None
    h, w = rect.image.shape[:2]
    # the text box in the rectified label frame is an axis-aligned rectangle again
    x0, y0, x1, y1 = box
    tb = rect.map_points(warp_pts(hom, [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
    assert R.classify_line(tb) == "axis" or R.line_geometry(tb).angle_deg < 1.0
    crop = R.rectify_line(rect.image, tb).crop
    assert read(recognizer, crop) == TEXT
    # a flat, front-facing label is left alone
    assert R.rectify_label(img, np.array([[0, 0], [639, 0], [639, 299], [0, 299]], float)) is None


@pytest.mark.slow
def test_cylindrical_curvature_line_comes_back_readable(label, recognizer):
    img, box = label
    warped, fwd = cylinder(img, radius=240.0, sag=90.0)
    poly = edge_polygon(box, 8, fwd)
    assert R.classify_line(poly) == "curved"
    out = R.rectify_line(warped, poly)
    assert out.method == "curved"
    ref = box_crop(img, box)
    # column sampling cannot undo the cylinder's foreshortening towards the edges (it keeps
    # equal image arc lengths), hence a lower bar than for the perspective case (measured 0.79)
    assert ncc(ref, out.crop) > 0.7
    # a plain quad through the polygon's corners is clearly worse: curvature handling matters
    top, bot = R.split_edges(poly)
    as_quad = R.rectify_quad(warped, np.array([top[0], top[-1], bot[-1], bot[0]]))
    assert ncc(ref, as_quad) < ncc(ref, out.crop) - 0.3  # measured 0.21
    assert read(recognizer, out.crop) == TEXT


def test_flat_text_is_not_warped(label):
    img, box = label
    x0, y0, x1, y1 = box
    quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
    out = R.rectify_line(img, quad)
    assert out.method == "axis"
    np.testing.assert_array_equal(out.crop, box_crop(img, (x0, y0, x1 + 1, y1 + 1)))
    # slightly skewed (2 deg) still counts as flat; 6 deg does not
    for deg, expected in ((2.0, "axis"), (6.0, "perspective")):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        rot = (quad - quad.mean(0)) @ np.array([[c, s], [-s, c]]) + quad.mean(0)
        assert R.classify_line(rot) == expected
    # a straight 2N polygon is not treated as curved
    flat_poly = edge_polygon(box, 6, lambda p: np.asarray(p, float))
    assert R.classify_line(flat_poly) == "axis"


@pytest.mark.slow
def test_upside_down_decision(label, recognizer):
    img, box = label
    crop = box_crop(img, box)
    flipped = np.ascontiguousarray(crop[::-1, ::-1])

    def score(cs):
        return [r.confidence for r in recognizer(cs)]

    fixed, d = R.upright(flipped, score)
    assert d.rotate_180 and d.score_rotated > d.score_upright
    assert read(recognizer, fixed) == TEXT
    same, d2 = R.upright(crop, score)
    assert not d2.rotate_180 and same is crop
    # a polygon given in reading order on an upside-down label yields an upright crop directly
    rot_img = np.ascontiguousarray(img[::-1, ::-1])
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
    quad_rot = np.array([w - 1, h - 1]) - quad  # same points, reading order kept
    out = R.rectify_line(rot_img, quad_rot)
    assert out.method == "perspective"  # reading right-to-left in the image: not "axis"
    assert read(recognizer, out.crop) == TEXT
    # classifier variant
    assert R.orientation_from_classifier(np.array([0.02, 0.98])).rotate_180
    assert not R.orientation_from_classifier(np.array([0.3, 0.7])).rotate_180
