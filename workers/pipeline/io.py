"""Stage 1: decode upload bytes into an RGB array.

Output: ``numpy.ndarray`` of shape (H, W, 3), dtype uint8, RGB channel order, EXIF orientation
already applied (so H, W are the upright image; every later coordinate is in this frame).

Safety: the pixel count is checked from the file header (``Image.open`` reads only the header)
BEFORE any pixel is decoded, so a decompression bomb (e.g. a 20000x20000 PNG of a few KB) is
refused in milliseconds without allocating the full image.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadImageError
from .types import ImageInfo

# HEIC/HEIF (phone photos) through pillow-heif: libheif applies the photo's rotation (irot/imir)
# when it decodes and resets the EXIF orientation to 1, so the array is upright as for JPEG.
pillow_heif.register_heif_opener()

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "WEBP", "BMP", "GIF", "HEIF"})
_EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class DecodedImage:
    """``rgb``: (H, W, 3) uint8 RGB, upright. ``info``: size/format/EXIF orientation."""

    rgb: np.ndarray
    info: ImageInfo


def _sniff_unsupported(data: bytes) -> str | None:
    """Name a real image format we do not read (so the user gets a precise error)."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
    if data[:4] == b"%PDF":
        return "PDF"
    if data.lstrip()[:5] in (b"<?xml", b"<svg ") or b"<svg" in data[:256]:
        return "SVG"
    return None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    - 16/32-bit integer and float gray (``I;16*``, ``I``, ``F``): 16-bit data is scaled by
      255/65535 (full range, not clipped); 32-bit/float data is scaled by its own max.
    - alpha (``RGBA``, ``LA``, ``PA``, palette with transparency): composited over white.
    - ``CMYK``/``YCbCr``/``LAB``/palette/1-bit: Pillow's conversion to RGB.
    """
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            scaled = arr.astype(np.float32) * (255.0 / 65535.0)
        else:
            arr = arr.astype(np.float64)
            lo, hi = float(arr.min()), float(arr.max())
            if hi <= 255 and lo >= 0:
                scaled = arr
            elif hi <= 65535 and lo >= 0:
                scaled = arr * (255.0 / 65535.0)
            else:
                scaled = (arr - lo) * (255.0 / max(hi - lo, 1e-9))
        gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return im.convert("RGB")
    return im


class ImageDecoder:
    """bytes -> ``DecodedImage``. No model; config = limits."""

    def __init__(self, *, max_pixels: int, max_bytes: int) -> None:
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes

    def __call__(self, data: bytes) -> DecodedImage:
        return decode_image(data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)


def decode_image(
    data: bytes, *, max_pixels: int = 40_000_000, max_bytes: int = 50 * 1024 * 1024
) -> DecodedImage:
    """Decode ``data`` to an upright RGB uint8 (H, W, 3) array or raise ``BadImageError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadImageError("bad_image", f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise BadImageError("bad_image", "The file is empty (0 bytes).")
    if len(data) > max_bytes:
        raise BadImageError(
            "image_too_large", f"The file is {len(data)} bytes; the limit is {max_bytes} bytes."
        )
    unsupported = _sniff_unsupported(data)
    if unsupported:
        raise BadImageError(
            "unsupported_format",
            f"{unsupported} files are not supported; upload JPEG, PNG, TIFF, WebP or HEIC.",
        )
    with warnings.catch_warnings():
        # Our own pixel limit below is stricter than Pillow's bomb warning.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))  # reads the header only
        except Image.DecompressionBombError as exc:
            # Pillow's own header check fired first (> 2 x Image.MAX_IMAGE_PIXELS).
            m = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(m.group(1)) / 1e6:.1f} megapixels" if m else "too many pixels"
            raise BadImageError(
                "image_too_large",
                f"The image header declares {size}; the limit is {max_pixels / 1e6:.1f} megapixels.",
            ) from exc
        except UnidentifiedImageError as exc:
            raise BadImageError(
                "bad_image", "The file is not a recognised image (or its header is corrupt)."
            ) from exc
        except Exception as exc:  # Pillow plugins raise assorted errors on broken headers
            raise BadImageError("bad_image", f"The image header could not be read: {exc}") from exc

        fmt = (im.format or "").upper()
        if fmt not in SUPPORTED_FORMATS:
            raise BadImageError(
                "unsupported_format",
                f"{fmt or 'This'} images are not supported; upload JPEG, PNG, TIFF, WebP or HEIC.",
            )
        width, height = im.size
        if width <= 0 or height <= 0:
            raise BadImageError("bad_image", f"The image has an invalid size {width}x{height}.")
        if width * height > max_pixels:
            raise BadImageError(
                "image_too_large",
                f"The image is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
                f"the limit is {max_pixels / 1e6:.1f} megapixels.",
            )
        try:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # multi-page TIFF / animated WebP/GIF: first frame
            orientation = 1
            try:
                orientation = int(im.getexif().get(_EXIF_ORIENTATION_TAG, 1) or 1)
            except Exception:  # a broken EXIF block must not reject a good image
                orientation = 1
            if orientation not in range(1, 9):
                orientation = 1
            if fmt == "HEIF":  # libheif rotated it already; record what the photo said
                recorded = int(im.info.get("original_orientation") or 1)
                orientation = 1
            im.load()  # full decode; raises on truncated/corrupt data
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            rgb = np.ascontiguousarray(np.asarray(_to_rgb(im), dtype=np.uint8))
        except BadImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise BadImageError("image_too_large", str(exc)) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise BadImageError(
                "bad_image", f"The {fmt} image is corrupt or truncated and cannot be decoded: {exc}"
            ) from exc
        except MemoryError as exc:
            raise BadImageError("image_too_large", "The image is too large to decode.") from exc
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BadImageError("bad_image", f"Unexpected decoded shape {rgb.shape}.")
    info = ImageInfo(
        width=int(rgb.shape[1]),
        height=int(rgb.shape[0]),
        format="JPEG" if fmt == "MPO" else fmt,
        exif_orientation=recorded if fmt == "HEIF" else orientation,
    )
    return DecodedImage(rgb=rgb, info=info)
