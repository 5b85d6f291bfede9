"""Rectified crops of text lines cut from a capture's photo, with Pillow only (no cv2 in the web).

The review page shows each field beside the crop of its line, and ``manage.py export_reviewed``
writes the same crops as a fine-tuning set: one function cuts both.

Coordinates (``workers.contract``): pixels of the decoded, EXIF-corrected photo, x right, y down;
a line polygon runs clockwise from the text's top-left: its first half is the top edge (left to
right), its second half the bottom edge (right to left). A 4-point polygon is one quadrilateral;
a longer one (curved text) is cut as a strip of quadrilaterals between matching top and bottom
points, each mapped to an upright rectangle and put side by side.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import pillow_heif
from PIL import Image, ImageOps

pillow_heif.register_heif_opener()  # HEIC photos from phones (as ocrapp.imagecheck)

Point = tuple[float, float]

PAD = 0.18  # margin around the line, as a fraction of its height (a detector box is tight)
MAX_CROP_SIDE = 4096


class CropError(ValueError):
    """The polygon cannot be cut from the photo (degenerate, outside it)."""


def open_photo(data: bytes) -> Image.Image:
    """The stored original as an RGB image in the pipeline's frame (EXIF orientation applied)."""
    img = Image.open(io.BytesIO(data))
    img = ImageOps.exif_transpose(img)
    return img.convert("RGB")


def jpeg_rendition(data: bytes, *, quality: int = 90) -> bytes:
    """The photo as a JPEG for browsers that cannot show its own format (HEIC outside Safari),
    upright; decoded within the web process's decode budget (``ocrapp.imagecheck``)."""
    from ocrapp.imagecheck import DECODE_BUDGET

    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        with DECODE_BUDGET.hold(width * height * 4 * 3):  # decoded, RGB copy, encoder
            photo = open_photo(data)
            buf = io.BytesIO()
            photo.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _dist(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _edges(polygon: Sequence[Sequence[float]]) -> tuple[list[Point], list[Point]] | None:
    """(top edge left->right, bottom edge left->right) of a contract polygon, or None."""
    pts = [(float(p[0]), float(p[1])) for p in polygon]
    if len(pts) < 4 or len(pts) % 2:
        return None
    half = len(pts) // 2
    return pts[:half], list(reversed(pts[half:]))


def _padded(top: list[Point], bottom: list[Point], pad: float) -> tuple[list[Point], list[Point]]:
    """Both edges moved apart by ``pad`` x the line height, and the ends moved outwards."""
    height = max(_dist(t, b) for t, b in zip(top, bottom, strict=True))
    new_top, new_bottom = [], []
    for t, b in zip(top, bottom, strict=True):
        dx, dy = t[0] - b[0], t[1] - b[1]
        new_top.append((t[0] + dx * pad, t[1] + dy * pad))
        new_bottom.append((b[0] - dx * pad, b[1] - dy * pad))
    for edge in (new_top, new_bottom):
        for end, nxt in ((0, 1), (len(edge) - 1, len(edge) - 2)):
            ex, ey = edge[end][0] - edge[nxt][0], edge[end][1] - edge[nxt][1]
            length = math.hypot(ex, ey) or 1.0
            edge[end] = (
                edge[end][0] + ex / length * height * pad,
                edge[end][1] + ey / length * height * pad,
            )
    return new_top, new_bottom


def line_crop(image: Image.Image, polygon: Sequence[Sequence[float]], *, pad: float = PAD):
    """The upright crop of one text line: ``polygon`` (contract frame, see the module
    docstring) mapped to a rectangle as wide as the line and as high as its tallest part
    (plus ``pad``). Quadrilaterals are mapped with Pillow's QUAD transform (bilinear); a
    polygon of another shape falls back to its bounding box. Raises :class:`CropError`."""
    edges = _edges(polygon)
    if edges is None:
        return _bbox_crop(image, polygon, pad)
    top, bottom = _padded(*edges, pad)
    height = max(_dist(t, b) for t, b in zip(top, bottom, strict=True))
    widths = [
        max(_dist(top[i], top[i + 1]), _dist(bottom[i], bottom[i + 1])) for i in range(len(top) - 1)
    ]
    out_h = max(1, round(height))
    out_w = max(1, round(sum(widths)))
    if height < 2 or sum(widths) < 2:
        raise CropError("the line polygon is degenerate")
    if max(out_w, out_h) > MAX_CROP_SIDE:
        raise CropError(f"the line crop would be {out_w}x{out_h} pixels")
    out = Image.new("RGB", (out_w, out_h), (255, 255, 255))
    x = 0
    for i, w in enumerate(widths):
        strip_w = max(1, round(w)) if i < len(widths) - 1 else max(1, out_w - x)
        ul, ur, lr, ll = top[i], top[i + 1], bottom[i + 1], bottom[i]
        data = (ul[0], ul[1], ll[0], ll[1], lr[0], lr[1], ur[0], ur[1])
        strip = image.transform(
            (strip_w, out_h),
            Image.Transform.QUAD,
            data,
            resample=Image.Resampling.BILINEAR,
            fillcolor=(255, 255, 255),
        )
        out.paste(strip, (x, 0))
        x += strip_w
    return out


def _bbox_crop(image: Image.Image, polygon: Sequence[Sequence[float]], pad: float):
    try:
        xs = [float(p[0]) for p in polygon]
        ys = [float(p[1]) for p in polygon]
    except (TypeError, ValueError, IndexError):
        raise CropError("the line polygon is malformed") from None
    if not xs:
        raise CropError("the line polygon is empty")
    margin = (max(ys) - min(ys)) * pad
    box = (
        max(0, math.floor(min(xs) - margin)),
        max(0, math.floor(min(ys) - margin)),
        min(image.width, math.ceil(max(xs) + margin)),
        min(image.height, math.ceil(max(ys) + margin)),
    )
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise CropError("the line polygon is outside the photo")
    return image.crop(box)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


THUMBNAIL_SIZE = (320, 320)


def thumbnail_jpeg(data: bytes, size: tuple[int, int] = THUMBNAIL_SIZE) -> bytes:
    """A JPEG thumbnail (at most ``size``, aspect kept, EXIF orientation applied) of a photo."""
    photo = open_photo(data).convert("RGB")
    photo.thumbnail(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=80, optimize=True)
    return out.getvalue()
