"""Procedural textures: label materials and photo-like backgrounds.

All functions take a ``numpy.random.Generator`` and return float32 arrays in 0..255,
shape (H, W, 3) RGB (or (H, W) for single-channel fields).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

MATERIALS = ("brushed_metal", "anodized", "plastic", "paper", "dark_metal", "laser_mark")


def smooth_noise(h: int, w: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, roughly unit-variance smooth noise (H, W) float32 with feature size ``cell``."""
    gh = max(int(h / cell) + 2, 2)
    gw = max(int(w / cell) + 2, 2)
    g = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(
        g, (w, h), interpolation=cv2.INTER_CUBIC if h * w < 400_000 else cv2.INTER_LINEAR
    )


_BANK_SIZE = 1 << 22


@functools.lru_cache(maxsize=1)
def _normal_bank() -> np.ndarray:
    """4M standard normal float32 values from a fixed seed (built once per process)."""
    return np.random.default_rng(20241123).standard_normal(_BANK_SIZE, dtype=np.float32)


def normal_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Standard normal noise of ``shape`` (float32), a window of a fixed noise bank at an
    offset drawn from ``rng``: deterministic per seed and far cheaper than sampling afresh.
    Fields larger than the bank fall back to direct sampling."""
    n = int(np.prod(shape))
    if n > _BANK_SIZE // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    off = int(rng.integers(0, _BANK_SIZE - n))
    return _normal_bank()[off : off + n].reshape(shape).copy()


def fine_noise(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance white noise (H, W) float32 (surface grain)."""
    return normal_field((h, w), rng)


def brushed_streaks(
    h: int, w: int, rng: np.random.Generator, *, length: float = 40.0
) -> np.ndarray:
    """Anisotropic horizontal streaks (H, W) float32, about unit variance."""
    gw = max(int(w / length) + 2, 2)
    g = rng.standard_normal((h, gw), dtype=np.float32)
    s = cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)
    s = cv2.GaussianBlur(s, (1, 3), 0, sigmaY=0.6)
    return s / max(float(s.std()), 1e-3)


def _colour(base: tuple[float, float, float], field: np.ndarray) -> np.ndarray:
    """Broadcast a grey-level modulation field (H, W) over an RGB colour (additive)."""
    return field[..., None] + np.asarray(base, np.float32).reshape(1, 1, 3)


def make_material(
    kind: str, h: int, w: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, object]]:
    """Base texture (H, W, 3) float32 0..255 for a label material plus its style properties.

    The returned dict has ``ink`` (RGB of printed/marked text), ``mode`` (how text is applied:
    print, etched, laser_light, laser_dark, engrave, emboss options are chosen by the caller) and
    ``name``.
    """
    props: dict[str, object] = {"name": kind}
    if kind == "brushed_metal":
        tone = rng.uniform(150, 205)
        tint = rng.choice([0, 0, 0, 1])  # 1 = brass-like
        base = (
            (tone, tone, tone + rng.uniform(0, 6)) if tint == 0 else (tone, tone * 0.9, tone * 0.62)
        )
        field = (
            brushed_streaks(h, w, rng, length=rng.uniform(25, 80)) * rng.uniform(5, 11)
            + smooth_noise(h, w, rng.uniform(80, 200), rng) * rng.uniform(4, 10)
            + fine_noise(h, w, rng) * 2.0
        )
        img = _colour(base, field)
        props["ink"] = tuple(rng.uniform(15, 45, 3)) if rng.random() < 0.8 else (20, 30, 90)
    elif kind == "anodized":
        palette = [(40, 70, 150), (150, 30, 35), (25, 25, 28), (170, 130, 40), (35, 110, 60)]
        base = palette[int(rng.integers(len(palette)))]
        base = tuple(float(c) * rng.uniform(0.85, 1.15) for c in base)
        field = (
            brushed_streaks(h, w, rng, length=60) * rng.uniform(2, 5)
            + smooth_noise(h, w, 120, rng) * 5
            + fine_noise(h, w, rng) * 1.5
        )
        img = _colour(base, field)
        props["ink"] = tuple(rng.uniform(200, 230, 3))
    elif kind == "plastic":
        palette = [(60, 62, 66), (215, 212, 202), (30, 30, 32), (190, 192, 195), (225, 220, 200)]
        base = palette[int(rng.integers(len(palette)))]
        field = smooth_noise(h, w, 150, rng) * 5 + fine_noise(h, w, rng) * 2.5
        img = _colour(base, field)
        dark = np.mean(base) < 120
        props["ink"] = (225, 225, 225) if dark else tuple(rng.uniform(10, 40, 3))
    elif kind == "paper":
        palette = [
            (236, 236, 232),
            (240, 238, 228),
            (232, 222, 120),
            (205, 208, 212),
            (244, 244, 244),
        ]
        base = palette[int(rng.integers(len(palette)))]
        field = smooth_noise(h, w, 60, rng) * 2.5 + fine_noise(h, w, rng) * 2.5
        img = _colour(base, field)
        props["ink"] = tuple(rng.uniform(5, 35, 3))
    elif kind == "dark_metal":
        tone = rng.uniform(30, 75)
        field = (
            brushed_streaks(h, w, rng, length=rng.uniform(20, 60)) * rng.uniform(2, 6)
            + smooth_noise(h, w, 100, rng) * 4
            + fine_noise(h, w, rng) * 3.0
        )
        img = _colour((tone, tone, tone * 1.04), field)
        props["ink"] = tuple(rng.uniform(150, 215, 1).repeat(3))
    elif kind == "laser_mark":
        tone = rng.uniform(160, 200)
        field = (
            brushed_streaks(h, w, rng, length=50) * rng.uniform(3, 7)
            + smooth_noise(h, w, 120, rng) * 5
            + fine_noise(h, w, rng) * 2.0
        )
        img = _colour((tone, tone, tone), field)
        # annealing marks: dark grey with a slight blue/brown cast
        props["ink"] = tuple(
            np.array([45, 45, 60]) if rng.random() < 0.6 else np.array([60, 48, 40])
        ) + rng.uniform(-10, 10, 3)
    else:
        raise ValueError(f"unknown material {kind!r}")
    return img, props


def apply_ink(
    base: np.ndarray,
    mask: np.ndarray,
    mode: str,
    ink: tuple[float, float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Put text ``mask`` (H, W) float32 0..1 onto ``base`` (H, W, 3) float32 with a marking mode.

    Modes: ``print`` (opaque ink), ``etched`` (bright metal through anodising), ``laser_light``
    (light speckled marks on dark metal), ``laser_dark`` (dark annealing marks), ``engrave``
    (recessed: shadow and highlight edges offset along the light direction) and ``emboss``
    (raised: the opposite shading).
    """
    h, w = mask.shape
    ink_arr = np.asarray(ink, np.float32).reshape(1, 1, 3)
    m = mask[..., None]
    if mode in ("print", "etched"):
        opacity = rng.uniform(0.8, 0.97) if mode == "print" else rng.uniform(0.85, 1.0)
        mod = 1.0 + 0.08 * smooth_noise(h, w, 30, rng)[..., None]  # uneven ink
        return base * (1 - m * opacity) + ink_arr * mod * m * opacity
    if mode == "laser_light":
        speck = 0.78 + 0.22 * np.clip(fine_noise(h, w, rng) * 0.5 + 0.5, 0, 1)
        halo = cv2.GaussianBlur(mask, (0, 0), rng.uniform(1.0, 2.0))[..., None] * 0.25
        mm = np.clip(m * speck[..., None] + halo, 0, 1)
        return base * (1 - mm) + ink_arr * mm
    if mode == "laser_dark":
        speck = 0.85 + 0.15 * np.clip(fine_noise(h, w, rng) * 0.5 + 0.5, 0, 1)
        mm = m * speck[..., None] * rng.uniform(0.8, 0.95)
        return base * (1 - mm) + ink_arr * mm
    if mode in ("engrave", "emboss"):
        soft = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.6, 1.2))
        ang = rng.uniform(0, 2 * np.pi)
        d = rng.uniform(1.0, 2.2)
        dx, dy = float(np.cos(ang) * d), float(np.sin(ang) * d)
        mat_p = np.float32([[1, 0, dx], [0, 1, dy]])
        mat_n = np.float32([[1, 0, -dx], [0, 1, -dy]])
        sp = cv2.warpAffine(soft, mat_p, (w, h), borderMode=cv2.BORDER_CONSTANT)
        sn = cv2.warpAffine(soft, mat_n, (w, h), borderMode=cv2.BORDER_CONSTANT)
        grad = (sp - sn)[..., None]  # > 0 on one side of each stroke, < 0 on the other
        sign = 1.0 if mode == "engrave" else -1.0
        amp = rng.uniform(55, 95)
        out = base + sign * amp * grad
        if mode == "engrave":
            out = out * (1 - 0.3 * soft[..., None])  # recess interior is darker
        else:
            out = out * (1 + 0.08 * soft[..., None])
        return out
    raise ValueError(f"unknown ink mode {mode!r}")


# ---------------------------------------------------------------- backgrounds


def grey_tint(rng: np.random.Generator) -> np.ndarray:
    """A mostly neutral product colour (industrial housings are rarely saturated)."""
    grey = rng.uniform(35, 200)
    sat = rng.uniform(0.0, 0.5) if rng.random() < 0.4 else rng.uniform(0.0, 0.15)
    return grey * (1 - sat) + sat * rng.uniform(20, 230, 3)


def make_background(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A photo-like product/scene background (H, W, 3) float32 and its kind name."""
    kind = str(rng.choice(["surface", "brushed", "clutter", "clutter", "fibre", "casting"]))
    if kind == "surface":
        base = grey_tint(rng)
        field = smooth_noise(h, w, rng.uniform(150, 400), rng) * rng.uniform(6, 16)
        img = _colour(tuple(base), field + fine_noise(h, w, rng) * 2.5)
    elif kind == "brushed":
        tone = rng.uniform(90, 180)
        if rng.random() < 0.5:
            streaks = brushed_streaks(h, w, rng, length=rng.uniform(60, 160))
        else:  # brushed vertically
            streaks = np.ascontiguousarray(
                brushed_streaks(w, h, rng, length=rng.uniform(60, 160)).T
            )
        streaks = cv2.GaussianBlur(streaks, (0, 0), 1.2)
        field = streaks * rng.uniform(3, 7) + smooth_noise(h, w, 300, rng) * 10
        img = _colour((tone, tone, tone + 4), field)
    elif kind == "fibre":  # cardboard / wood-like
        base = np.array([150, 115, 75]) * rng.uniform(0.6, 1.2)
        s = brushed_streaks(h, w, rng, length=rng.uniform(100, 300)) * 10
        warp = smooth_noise(h, w, 200, rng) * 12
        img = _colour(tuple(base), s + warp + fine_noise(h, w, rng) * 3)
    elif kind == "casting":  # rough cast / painted machine body
        base = rng.uniform(50, 140, 3) * np.array([1.0, 1.05, 1.1])
        rough = cv2.GaussianBlur(fine_noise(h, w, rng), (0, 0), 1.5) * 18
        img = _colour(tuple(base), rough + smooth_noise(h, w, 250, rng) * 12)
    else:
        base = grey_tint(rng)
        img = _colour(tuple(base), smooth_noise(h, w, 300, rng) * 14)
        n = int(rng.integers(2, 7))
        grey = rng.uniform(40, 190)
        q = 4  # shapes are out of focus: draw and blur them at quarter resolution
        qh, qw = max(h // q, 2), max(w // q, 2)
        layer = np.zeros((qh, qw, 3), np.float32)
        cover = np.zeros((qh, qw), np.float32)
        for _ in range(n):
            sat = rng.uniform(0.0, 0.45)
            col = tuple(float(c) for c in grey * (1 - sat) + sat * rng.uniform(10, 230, 3))
            shape = rng.choice([0, 0, 1, 2])
            if shape == 0:
                cx, cy = rng.uniform(0, qw), rng.uniform(0, qh)
                rw, rh = rng.uniform(0.1, 0.5) * qw, rng.uniform(0.1, 0.5) * qh
                ang = rng.uniform(0, 180)
                box = cv2.boxPoints(((cx, cy), (rw, rh), ang)).astype(np.int32)
                cv2.fillPoly(layer, [box], col)
                cv2.fillPoly(cover, [box], 1.0)
            elif shape == 1:
                c = (int(rng.uniform(0, qw)), int(rng.uniform(0, qh)))
                r = int(rng.uniform(0.05, 0.3) * qw)
                cv2.circle(layer, c, r, col, -1)
                cv2.circle(cover, c, r, 1.0, -1)
            else:  # a cable
                start = np.array([rng.uniform(0, qw), rng.uniform(0, qh)])
                tt = np.linspace(0, 1, 24)[:, None]
                d1, d2 = rng.normal(0, 0.6 * qw, 2), rng.normal(0, 0.3 * qw, 2)
                pts = start + tt * d1 + (tt * (1 - tt)) * d2  # a smooth bend
                t = max(int(rng.uniform(10, 40) / q), 2)
                cv2.polylines(layer, [pts.astype(np.int32)], False, col, t, cv2.LINE_AA)
                cv2.polylines(cover, [pts.astype(np.int32)], False, 1.0, t, cv2.LINE_AA)
        sig = rng.uniform(4, 14) / q  # out of focus
        layer = cv2.GaussianBlur(layer, (0, 0), sig)
        cover = cv2.GaussianBlur(cover, (0, 0), sig)
        shade = 1 + 0.1 * smooth_noise(qh, qw, 200 / q, rng)
        layer = cv2.resize(layer * shade[..., None], (w, h), interpolation=cv2.INTER_LINEAR)
        cover = cv2.resize(cover, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
        img = img * (1 - cover) + layer
        img += fine_noise(h, w, rng)[..., None] * 2
    return img.astype(np.float32, copy=False), kind
