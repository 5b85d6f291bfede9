"""Cheap, safe inspection of an uploaded image in the web process (Pillow only, no cv2).

The header is read first so that decompression bombs are refused before any pixel is decoded;
then the image is decoded once (JPEG at reduced scale) to catch truncated or corrupt files.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from django.utils.translation import gettext as _
from PIL import Image, UnidentifiedImageError

from ocrapp.errors import ApplicationError

ALLOWED_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    width: int  # after EXIF orientation, as the photo is displayed
    height: int
    format: str
    extension: str


def inspect_image(data: bytes, *, max_pixels: int, max_side: int) -> ImageInfo:
    """Validate ``data`` as a supported photo; raise ApplicationError with a clear code if not."""
    if not data:
        raise ApplicationError("empty_file", _("The uploaded file is empty."))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ApplicationError(
                "image_too_large",
                _("The image has too many pixels to process."),
                details={"max_pixels": max_pixels},
            ) from exc
        except UnidentifiedImageError as exc:
            raise ApplicationError(
                "unsupported_file",
                _("The file is not an image we can read (use JPEG, PNG, TIFF or WebP)."),
            ) from exc
        except Exception as exc:  # Pillow raises many types for malformed headers
            raise ApplicationError(
                "corrupt_image", _("The image header is corrupt: %(error)s") % {"error": exc}
            ) from exc
        fmt = (img.format or "").upper()
        if fmt not in ALLOWED_FORMATS:
            raise ApplicationError(
                "unsupported_format",
                _("Image format %(format)s is not supported (use JPEG, PNG, TIFF or WebP).")
                % {"format": fmt or "?"},
            )
        width, height = img.size
        if width < 1 or height < 1:
            raise ApplicationError("corrupt_image", _("The image has no pixels."))
        if width * height > max_pixels or max(width, height) > max_side:
            raise ApplicationError(
                "image_too_large",
                _(
                    "The image is %(width)sx%(height)s pixels; the limit is %(max_pixels)s "
                    "pixels and %(max_side)s pixels per side."
                )
                % {
                    "width": width,
                    "height": height,
                    "max_pixels": max_pixels,
                    "max_side": max_side,
                },
                details={"width": width, "height": height, "max_pixels": max_pixels},
            )
        try:
            orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1))
        except Exception:
            orientation = 1
        try:
            if fmt in {"JPEG", "MPO"}:
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ApplicationError("image_too_large", _("The image has too many pixels.")) from exc
        except Exception as exc:
            raise ApplicationError(
                "corrupt_image",
                _("The image data is corrupt or truncated: %(error)s") % {"error": exc},
            ) from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(width=width, height=height, format=fmt, extension=ALLOWED_FORMATS[fmt])
