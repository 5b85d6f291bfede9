"""Render simple synthetic product-label photos (tests and benchmarks only; PIL + numpy).

Not pipeline code: the pipeline tests and ``bench/`` use these quick, font-independent labels;
the full synthetic engine (conditions, ground-truth polygons) is ``generate_sample``.

Fonts: DejaVu Sans Mono/Sans when installed, else Pillow's built-in scalable default font, so
the output never depends on fonts a fresh machine lacks.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

_FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu")]
_FONTS = ["DejaVuSansMono-Bold.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSans.ttf"]


def load_font(size: int, index: int = 0) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for d in _FONT_DIRS:
        p = d / _FONTS[index % len(_FONTS)]
        if p.is_file():
            return ImageFont.truetype(str(p), size)
    return ImageFont.load_default(size=size)


def render_label(
    lines: list[str],
    *,
    size: tuple[int, int] = (1024, 768),
    font_size: int = 44,
    angle: float = 0.0,
    font_index: int = 0,
    paper: tuple[int, int, int] = (232, 230, 222),
    background: tuple[int, int, int] = (70, 78, 88),
    noise: float = 4.0,
    blur: float = 0.0,
    seed: int = 0,
) -> Image.Image:
    """A label (light paper with dark text lines) on a darker product surface, rotated by
    ``angle`` degrees, with sensor noise. Returns an RGB PIL image of ``size`` (W, H)."""
    rng = np.random.default_rng(seed)
    font = load_font(font_size, font_index)
    pad = font_size
    widths = [int(font.getlength(t)) for t in lines]
    lw = max(widths) + 2 * pad
    lh = len(lines) * int(font_size * 1.6) + 2 * pad
    label = Image.new("RGB", (lw, lh), paper)
    d = ImageDraw.Draw(label)
    for i, t in enumerate(lines):
        d.text((pad, pad + i * int(font_size * 1.6)), t, fill=(25, 25, 30), font=font)
    label = label.convert("RGBA").rotate(angle, expand=True, resample=Image.BICUBIC)
    canvas = Image.new("RGB", size, background)
    x = max(0, (size[0] - label.width) // 2)
    y = max(0, (size[1] - label.height) // 2)
    canvas.paste(label, (x, y), label)
    if blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(canvas).astype(np.float32)
    arr += rng.normal(0, noise, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def add_glare(img: Image.Image, center: tuple[int, int], radius: int) -> Image.Image:
    """Overlay a specular highlight: a saturated white disc with a soft falloff."""
    arr = np.asarray(img).astype(np.float32)
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - center[0], yy - center[1]) / radius
    alpha = np.clip(1.6 - r, 0, 1)[..., None] ** 0.7
    arr = arr * (1 - alpha) + 255.0 * alpha
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def to_bytes(img: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        kw.setdefault("quality", 92)
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def random_serial(rng: random.Random, n: int = 10) -> str:
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    return rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") + "".join(
        rng.choice(alphabet) for _ in range(n - 1)
    )


def label_set(n: int = 16, seed: int = 7) -> list[tuple[bytes, dict[str, str]]]:
    """``n`` varied label photos as JPEG bytes with their ground-truth fields."""
    rng = random.Random(seed)
    out: list[tuple[bytes, dict[str, str]]] = []
    sizes = [(1280, 960), (1024, 768), (1600, 1200), (960, 1280), (800, 600)]
    for i in range(n):
        serial = random_serial(rng, rng.randint(8, 12))
        pn = f"{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        lot = f"L{rng.randint(10000, 99999)}"
        model = rng.choice(["XR-500", "TX200", "MX 77", "HV-9000"])
        date = f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        kind = i % 3
        if kind == 0:
            lines = [f"MODEL: {model}", f"S/N: {serial}", f"P/N: {pn}", f"MFG DATE: {date}"]
        elif kind == 1:
            lines = ["ACME INDUSTRIAL", f"Serial No. {serial}", f"LOT {lot}"]
        else:
            lines = [f"PN {pn}", "SN", serial, f"MFD {date}"]
        img = render_label(
            lines,
            size=sizes[i % len(sizes)],
            font_size=rng.randint(28, 56),
            angle=rng.uniform(-12, 12),
            font_index=i,
            seed=i,
            blur=rng.choice([0.0, 0.0, 0.6, 1.0]),
        )
        truth = {"serial_number": serial, "part_number": pn}
        out.append((to_bytes(img), truth))
    return out
