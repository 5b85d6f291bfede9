"""Scene assembly: label + camera + background + photometric effects -> :class:`Sample`.

Coordinate frame of every annotation in a Sample: image pixels (x right, y down, origin at the
top-left corner of the top-left pixel's centre, as OpenCV does), float.

Polygon point order (lines and words): the first point is the text's own top-left corner *in
reading direction*, then the points go clockwise around the text as it reads (top edge left to
right, then bottom edge right to left). For an upside-down label the first point therefore lies
at the bottom-right of the polygon in the image. Flat lines have 4 points
(TL, TR, BR, BL of the text); curved lines have 2*N points (N >= 3 along the top edge, then N
along the bottom edge back). ``box`` is always 4 points: the polygon's corners TL, TR, BR, BL.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import photometric as P
from .fonts import FontRegistry, default_registry
from .geometry import Camera
from .label import Box, LabelRender, build_label
from .textures import make_background

CONDITIONS = (
    "glare",
    "perspective",
    "curved",
    "rotated",
    "upside_down",
    "dot_matrix",
    "segment",
    "engraved",
    "blur",
    "low_res",
    "clean",
)
SIZES = ((1280, 960), (960, 720))


@dataclass(frozen=True)
class SynthConfig:
    """Probabilities of each condition when ``generate_sample`` picks them at random, and
    ranges of the always-on mild effects."""

    p_glare: float = 0.35
    p_perspective: float = 0.4
    p_curved: float = 0.15
    p_rotated: float = 0.15
    p_upside_down: float = 0.1
    p_dot_matrix: float = 0.15
    p_segment: float = 0.08
    p_engraved: float = 0.15
    p_blur: float = 0.25
    p_low_res: float = 0.12
    fill: tuple[float, float] = (0.45, 0.92)  # label extent / canvas (limiting dimension)
    max_out_of_plane: float = 40.0  # degrees
    p_jpeg: float = 0.7
    jpeg_quality: tuple[int, int] = (40, 95)
    noise_sigma: tuple[float, float] = (0.8, 5.0)


@dataclass
class Word:
    text: str
    polygon: np.ndarray  # (4, 2) float64 image pixels, reading-order TL, TR, BR, BL
    field: str | None
    role: str


@dataclass
class Line:
    text: str
    polygon: np.ndarray  # (2N, 2) float64 image pixels, see the module docstring
    words: list[Word]
    field: str | None
    role: str  # key | value | key_value | other
    style: str

    @property
    def box(self) -> np.ndarray:
        """(4, 2) corners TL, TR, BR, BL (in reading direction) of the polygon."""
        n = len(self.polygon) // 2
        p = self.polygon
        return np.stack([p[0], p[n - 1], p[n], p[2 * n - 1]])


def _pts(a: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2)] for x, y in a]


@dataclass
class Sample:
    """One synthetic photo. ``image``: (H, W, 3) uint8 RGB. ``label``: the flat rendered label
    (label frame) kept for recognizer crops; not serialised."""

    image: np.ndarray
    lines: list[Line]
    fields: dict[str, str]
    conditions: frozenset[str]
    seed: int
    meta: dict[str, object] = field(default_factory=dict)
    label: LabelRender | None = field(default=None, repr=False)

    def field_lines(self) -> dict[str, list[int]]:
        """field -> indices of the lines that carry its value (role value or key_value)."""
        out: dict[str, list[int]] = {}
        for i, ln in enumerate(self.lines):
            if ln.field and ln.role in ("value", "key_value"):
                out.setdefault(ln.field, []).append(i)
        return out

    def to_dict(self, image_path: str | None = None) -> dict:
        """JSON-safe record in the shared dataset format plus extra keys."""
        h, w = self.image.shape[:2]
        return {
            "image": image_path,
            "lines": [
                {
                    "text": ln.text,
                    "box": _pts(ln.box),
                    "polygon": _pts(ln.polygon),
                    "field": ln.field,
                    "role": ln.role,
                    "style": ln.style,
                    "words": [
                        {
                            "text": wd.text,
                            "box": _pts(wd.polygon),
                            "field": wd.field,
                            "role": wd.role,
                        }
                        for wd in ln.words
                    ],
                }
                for ln in self.lines
            ],
            "fields": dict(self.fields),
            "field_lines": self.field_lines(),
            "conditions": sorted(self.conditions),
            "seed": self.seed,
            "size": [w, h],
            "meta": self.meta,
        }


# ---------------------------------------------------------------- conditions


def resolve_conditions(
    conditions: set[str] | frozenset[str] | None, rng: random.Random, cfg: SynthConfig
) -> set[str]:
    """The effect families to apply. ``None``: drawn from ``cfg``. A set: exactly those
    (``{"clean"}`` means none). rotated and upside_down exclude each other."""
    if conditions is not None:
        unknown = set(conditions) - set(CONDITIONS)
        if unknown:
            raise ValueError(f"unknown conditions {sorted(unknown)}; known: {CONDITIONS}")
        if "clean" in conditions and len(conditions) > 1:
            raise ValueError("'clean' cannot be combined with other conditions")
        if {"rotated", "upside_down"} <= set(conditions):
            raise ValueError("'rotated' and 'upside_down' exclude each other")
        return set(conditions) - {"clean"}
    out = set()
    for name in (
        "glare",
        "perspective",
        "curved",
        "dot_matrix",
        "segment",
        "engraved",
        "blur",
        "low_res",
    ):
        if rng.random() < getattr(cfg, f"p_{name}"):
            out.add(name)
    r = rng.random()
    if r < cfg.p_upside_down:
        out.add("upside_down")
    elif r < cfg.p_upside_down + cfg.p_rotated:
        out.add("rotated")
    return out


def _camera(
    label: LabelRender, want: set[str], rng: random.Random, cfg: SynthConfig
) -> tuple[Camera, set[str]]:
    lw, lh = label.size
    big = max(lw, lh)
    tags: set[str] = set()
    cam = Camera(label_w=lw, label_h=lh)
    mx = cfg.max_out_of_plane
    if "perspective" in want:
        a = rng.uniform(12, mx) * rng.choice([-1, 1])
        b = rng.uniform(-min(25, mx), min(25, mx))
        cam.yaw, cam.pitch = (a, b) if rng.random() < 0.6 else (b, a)
        cam.dist = big * rng.uniform(1.1, 2.5)
        tags.add("perspective")
    else:
        lim = 2.0 if not want else 4.0
        cam.yaw, cam.pitch = rng.uniform(-lim, lim), rng.uniform(-lim, lim)
        cam.dist = big * rng.uniform(3.0, 6.0)
    if "curved" in want:
        half = math.radians(rng.uniform(30, 60))
        cam.dist = big * rng.uniform(1.1, 2.2)
        if "perspective" not in want:
            cam.pitch = rng.uniform(-9, 9)
            cam.yaw = rng.uniform(-5, 5)
        cam.radius = (lw / 2) / half
        # keep every part of the label visible at a readable angle (<= ~70 degrees)
        while cam.min_view_cosine() < 0.34 and half > math.radians(12):
            half *= 0.9
            cam.radius = (lw / 2) / half
        tags.add("curved")
    if "upside_down" in want:
        cam.roll = 180 + rng.uniform(-20, 20)
        tags.add("upside_down")
    elif "rotated" in want:
        cam.roll = rng.choice([-1, 1]) * (
            rng.uniform(8, 45) if rng.random() < 0.75 else rng.uniform(45, 90)
        )
        tags.add("rotated")
    else:
        cam.roll = rng.uniform(-1.5, 1.5) if not want else rng.uniform(-3, 3)
    return cam, tags


def _line_polygon(box: Box, cam: Camera) -> np.ndarray:
    x0, y0, x1, y1 = box
    if not cam.curved:
        pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    else:
        step = cam.label_w / 24.0
        n = max(3, int(math.ceil((x1 - x0) / step)) + 1)
        xs = np.linspace(x0, x1, n)
        pts = np.concatenate(
            [np.stack([xs, np.full(n, y0)], 1), np.stack([xs[::-1], np.full(n, y1)], 1)]
        )
    return cam.project(pts)


def _word_polygon(box: Box, cam: Camera) -> np.ndarray:
    x0, y0, x1, y1 = box
    return cam.project(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))


def generate_sample(
    seed: int,
    *,
    conditions: set[str] | frozenset[str] | None = None,
    size: tuple[int, int] | None = (1280, 960),
    config: SynthConfig | None = None,
    fonts: FontRegistry | None = None,
) -> Sample:
    """Render one synthetic product photo with exact annotations.

    ``seed``: everything is a pure function of it (and of the installed fonts).
    ``conditions``: None = random per ``config``; a set = exactly these effects (see
    ``CONDITIONS``; ``{"clean"}`` = no glare, blur, low-res or geometry beyond +-2 degrees).
    ``size``: (width, height) of the output; None picks one of ``SIZES`` at random.
    Returns a :class:`Sample` whose image is (H, W, 3) uint8 RGB.
    """
    cfg = config or SynthConfig()
    reg = fonts if fonts is not None else default_registry()
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    want = resolve_conditions(conditions, rng, cfg)
    if size is None:
        size = SIZES[rng.randrange(len(SIZES))]
    cw, ch = int(size[0]), int(size[1])

    label = build_label(rng, nrng, reg, want & {"dot_matrix", "segment", "engraved"})
    tags = set(label.tags)
    cam, geo_tags = _camera(label, want, rng, cfg)
    tags |= geo_tags
    cam.fit(cw, ch, rng.uniform(*cfg.fill), nrng)

    # label layer: RGB premultiplied by alpha, plus alpha, warped together
    lrgb = label.rgb
    if cam.curved:  # cylinder shading across the wrap angle
        lw = label.size[0]
        th = (np.arange(lw, dtype=np.float32) - lw / 2) / cam.radius
        light = rng.uniform(-0.6, 0.6)
        shade = 0.55 + 0.45 * np.clip(np.cos(th - light), 0, 1) ** 1.5
        lrgb = lrgb * shade[None, :, None]
    rgba = np.concatenate([lrgb * label.alpha[..., None], label.alpha[..., None]], axis=2)
    layer = cam.warp(np.ascontiguousarray(rgba, dtype=np.float32), cw, ch)
    a = layer[..., 3:4]

    bg, bg_kind = make_background(ch, cw, nrng)
    # work only inside the label's bounding box (plus the shadow's reach)
    outline = cam.project(cam.outline(16))
    pad = 40
    bx0 = int(max(outline[:, 0].min() - pad, 0))
    by0 = int(max(outline[:, 1].min() - pad, 0))
    bx1 = int(min(outline[:, 0].max() + pad, cw))
    by1 = int(min(outline[:, 1].max() + pad, ch))
    roi = (slice(by0, by1), slice(bx0, bx1))
    img = bg
    a_roi = a[roi]
    if label.meta["material"] != "paper" or rng.random() < 0.5:
        sh_sig = rng.uniform(3, 14)
        off = rng.uniform(2, 12)
        ang = rng.uniform(0, 2 * math.pi)
        q = 4  # blur at quarter resolution: the shadow is soft anyway
        rh, rw = by1 - by0, bx1 - bx0
        small = cv2.resize(
            a_roi[..., 0], (max(rw // q, 1), max(rh // q, 1)), interpolation=cv2.INTER_AREA
        )
        small = cv2.GaussianBlur(small, (0, 0), sh_sig / q)
        m = np.float32([[1, 0, off * math.cos(ang) / q], [0, 1, off * math.sin(ang) / q]])
        small = cv2.warpAffine(small, m, (small.shape[1], small.shape[0]))
        shadow = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_LINEAR)
        img[roi] *= 1 - rng.uniform(0.25, 0.6) * shadow[..., None]
    img[roi] = img[roi] * (1 - a_roi) + layer[roi][..., :3]

    clean = not want
    img = P.illumination(img, nrng, strength=0.35 if clean else rng.uniform(0.4, 1.0))
    img = P.highlight_knee(img)

    # annotations (label frame -> image frame)
    lines: list[Line] = []
    for ln in label.lines:
        poly = _line_polygon(ln.box, cam)
        words = [Word(w.text, _word_polygon(w.box, cam), w.field, w.role) for w in ln.words]
        lines.append(Line(ln.text, poly, words, ln.field, ln.role, ln.style))
    for ln in lines:  # guard against sub-pixel spill at the canvas border
        np.clip(ln.polygon[:, 0], 0, cw - 1, out=ln.polygon[:, 0])
        np.clip(ln.polygon[:, 1], 0, ch - 1, out=ln.polygon[:, 1])
        for wd in ln.words:
            np.clip(wd.polygon[:, 0], 0, cw - 1, out=wd.polygon[:, 0])
            np.clip(wd.polygon[:, 1], 0, ch - 1, out=wd.polygon[:, 1])

    meta: dict[str, object] = dict(label.meta)
    meta["background"] = bg_kind
    meta["camera"] = {
        "yaw": round(cam.yaw, 3),
        "pitch": round(cam.pitch, 3),
        "roll": round(cam.roll, 3),
        "dist": round(cam.dist, 2),
        "radius": None if cam.radius is None else round(cam.radius, 2),
        "scale": round(cam.scale, 5),
    }
    if "glare" in want:
        targets = [ln.polygon for ln in lines]
        serial = [ln.polygon for ln in lines if ln.field == "serial" and ln.role != "key"]
        if serial and rng.random() < 0.6:
            targets = serial
        outline = cam.project(cam.outline(8))
        region = (*outline.min(0), *outline.max(0))
        img, spots = P.glare(img, targets, nrng, extra_region=np.array(region))
        meta["glare"] = spots
        tags.add("glare")
    if "blur" in want:
        img, info = P.blur(img, nrng)
        meta["blur"] = info
        tags.add("blur")
    if "low_res" in want:
        img, info = P.low_res(img, nrng)
        meta["low_res"] = info
        tags.add("low_res")
    sig = rng.uniform(*cfg.noise_sigma) * (0.5 if clean else 1.0)
    img = P.sensor_noise(img, nrng, sig)
    out = P.finish(img)
    if rng.random() < cfg.p_jpeg:
        lo, hi = cfg.jpeg_quality
        q = rng.randint(max(lo, 80), hi) if clean else rng.randint(lo, hi)
        out = P.jpeg(out, q)
        meta["jpeg_quality"] = q
    if not tags:
        tags.add("clean")
    return Sample(
        image=out,
        lines=lines,
        fields=dict(label.fields),
        conditions=frozenset(tags),
        seed=seed,
        meta=meta,
        label=label,
    )
