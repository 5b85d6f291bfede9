"""Photometric degradations of a rendered scene.

Images are float32 (H, W, 3) RGB in a linear-ish 0..255 range where values above 255 mean
"brighter than the sensor can hold": they survive blur and noise and clip to 255 only in
:func:`finish`, which is how real glare produces flat saturated cores.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .textures import normal_field, smooth_noise

SATURATED = 250  # a pixel counts as saturated when all three channels are >= this (uint8)


def _small_grid(h: int, w: int, factor: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    sh, sw = max(h // factor, 2), max(w // factor, 2)
    ys = (np.arange(sh, dtype=np.float32) + 0.5) * h / sh - 0.5
    xs = (np.arange(sw, dtype=np.float32) + 0.5) * w / sw - 0.5
    return xs[None, :], ys[:, None], sw, sh


def illumination(img: np.ndarray, rng: np.random.Generator, *, strength: float) -> np.ndarray:
    """Multiply by a smooth gain field: directional gradient x vignetting x low-frequency
    blotches. ``strength`` in 0..1 scales how uneven it is. Max gain stays <= 1.05."""
    h, w = img.shape[:2]
    xs, ys, sw, sh = _small_grid(h, w, 16)
    ang = rng.uniform(0, 2 * math.pi)
    g = ((xs - w / 2) * math.cos(ang) + (ys - h / 2) * math.sin(ang)) / max(w, h)
    gain = 1.0 + g * rng.uniform(0.2, 0.9) * strength
    r2 = ((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2
    gain = gain * (1 - rng.uniform(0.05, 0.35) * strength * r2 / 2)
    gain = gain + smooth_noise(sh, sw, 6, rng) * 0.06 * strength
    gain = gain / max(float(gain.max()), 1e-3) * rng.uniform(0.85, 1.05)
    gain = cv2.resize(gain.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return img * gain[..., None]


def highlight_knee(img: np.ndarray, knee: float = 210.0, top: float = 232.0) -> np.ndarray:
    """Soft tone-curve shoulder: values above ``knee`` roll off towards ``top`` (never above)."""
    span = top - knee
    over = img > knee
    out = img.copy()
    out[over] = knee + span * np.tanh((img[over] - knee) / span)
    return out


def glare(
    img: np.ndarray,
    targets: list[np.ndarray],
    rng: np.random.Generator,
    *,
    extra_region: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Add specular highlights: blobs and streaks with a core far above 255 (clips to white)
    plus a soft bloom.

    ``targets``: polygons (N, 2) in image pixels; the first highlight is centred on a random
    point inside a random one of them, with a saturated core at least as large as the local
    text height, so glare always covers some text. ``extra_region``: (x0, y0, x1, y1) where
    further highlights may land (the label's bounding box). Returns the image and a list of
    highlight descriptions (centre, sigmas, angle, amplitude) in image pixels.
    """
    h, w = img.shape[:2]
    f = 4
    xs, ys, sw, sh = _small_grid(h, w, f)
    field = np.zeros((sh, sw), np.float32)
    spots: list[dict] = []

    def add(cx: float, cy: float, s_long: float, s_short: float, ang: float, amp: float) -> None:
        ca, sa = math.cos(ang), math.sin(ang)
        dx, dy = xs - cx, ys - cy
        a = (dx * ca + dy * sa) / s_long
        b = (-dx * sa + dy * ca) / s_short
        field[...] += amp * np.exp(-0.5 * (a * a + b * b))
        spots.append(
            {
                "center": [float(cx), float(cy)],
                "sigma": [float(s_long), float(s_short)],
                "angle": float(ang),
                "amp": float(amp),
            }
        )

    if targets:
        poly = targets[int(rng.integers(len(targets)))]
        n = len(poly) // 2
        t = rng.uniform(0.1, 0.9)
        i = t * (n - 1)
        i0 = int(math.floor(i))
        i1 = min(i0 + 1, n - 1)
        fr = i - i0
        top = poly[i0] * (1 - fr) + poly[i1] * fr
        bot = poly[-1 - i0] * (1 - fr) + poly[-1 - i1] * fr
        c = top + (bot - top) * rng.uniform(0.3, 0.7)
        th = float(np.linalg.norm(bot - top))
        streak = rng.random() < 0.35
        amp = rng.uniform(1.8, 3.5)
        # radius where amp * exp(-r^2 / 2s^2) = 1 must be >= 0.8 * text height
        s_short = max(th * rng.uniform(0.8, 1.6), 3.0) / math.sqrt(2 * math.log(amp))
        s_long = s_short * (rng.uniform(2.5, 5) if streak else rng.uniform(1.0, 1.8))
        add(float(c[0]), float(c[1]), s_long, s_short, rng.uniform(0, math.pi), amp)
    if extra_region is not None:
        x0, y0, x1, y1 = (float(v) for v in extra_region)
        for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
            s = rng.uniform(0.015, 0.05) * max(x1 - x0, y1 - y0)
            add(
                rng.uniform(x0, x1),
                rng.uniform(y0, y1),
                s * rng.uniform(1, 4),
                s,
                rng.uniform(0, math.pi),
                rng.uniform(0.3, 1.6),
            )
    core = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    bloom_small = cv2.GaussianBlur(field, (0, 0), rng.uniform(4, 10))
    bloom = cv2.resize(bloom_small, (w, h), interpolation=cv2.INTER_LINEAR)
    total = core * 255.0 + bloom * rng.uniform(40, 110)
    tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 1.0)], np.float32)
    return img + total[..., None] * tint, spots


def gaussian_blur(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    s = float(rng.uniform(1.0, 2.6))
    return cv2.GaussianBlur(img, (0, 0), s), {"type": "gaussian", "sigma": s}


def motion_blur(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    length = int(rng.integers(5, 14))
    ang = float(rng.uniform(0, 180))
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), ang, 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    k /= max(float(k.sum()), 1e-6)
    return cv2.filter2D(img, -1, k), {"type": "motion", "length": length, "angle": ang}


def blur(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    return motion_blur(img, rng) if rng.random() < 0.45 else gaussian_blur(img, rng)


def low_res(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    h, w = img.shape[:2]
    f = float(rng.uniform(2.2, 4.0))
    small = cv2.resize(img, (max(int(w / f), 8), max(int(h / f), 8)), interpolation=cv2.INTER_AREA)
    interp = cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC
    return cv2.resize(small, (w, h), interpolation=interp), {"factor": f}


def sensor_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Luma noise (full resolution, signal-dependent) plus weaker chroma noise (half res)."""
    h, w = img.shape[:2]
    luma = normal_field((h, w), rng)
    grey = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    shot = cv2.sqrt(np.clip(grey, 0, 255) * (1 / 255.0) + 0.15)
    out = img + cv2.multiply(luma, shot, scale=float(sigma))[..., None]
    ch = normal_field((max(h // 2, 1), max(w // 2, 1), 3), rng) * (sigma * 0.4)
    return out + cv2.resize(ch, (w, h), interpolation=cv2.INTER_LINEAR)


def finish(img: np.ndarray) -> np.ndarray:
    """Clip to the sensor range and quantise to uint8."""
    pos = np.maximum(img, 0)
    return cv2.convertScaleAbs(pos)  # rounds and saturates at 255


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of an RGB uint8 image (encoder/decoder are deterministic)."""
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
