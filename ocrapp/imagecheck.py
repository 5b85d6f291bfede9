"""Cheap, safe inspection of an uploaded image in the web process (Pillow only, no cv2).

The header is read first so that decompression bombs are refused before any pixel is decoded.
Then the pixel data is checked for truncation and corruption within a memory budget, so that
many concurrent photos just under ``MAX_IMAGE_PIXELS`` cannot take the web process to GBs:

- PNG: the chunks are walked (CRC of each) and the IDAT stream is inflated in 256 KiB pieces
  that are counted and dropped (row filter bytes checked), never kept: constant memory.
- JPEG: decoded at 1/8 scale (``draft``), a 40 MP photo needs about 2.5 MB.
- TIFF, WebP, HEIC/HEIF: decoded in full, under :data:`DECODE_BUDGET`: a per-process budget of
  ``IMAGE_DECODE_BUDGET_BYTES`` (estimated from the header, 4 bytes per pixel); a decode waits
  for room for up to ``IMAGE_DECODE_WAIT_SECONDS``, then the upload is a 503 ``server_busy``.

HEIC/HEIF (phone photos) are read through pillow-heif; libheif applies the photo's rotation
when it decodes (and resets the EXIF orientation to 1), so sizes are upright as for JPEG. The
worker reads them the same way (``workers/pipeline/io.py``).
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pillow_heif
from django.conf import settings
from django.utils.translation import gettext as _
from PIL import Image, UnidentifiedImageError

from ocrapp.errors import ApplicationError

pillow_heif.register_heif_opener()

ALLOWED_FORMATS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "HEIF": ".heic",
}
_EXIF_ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_INFLATE_PIECE = 256 * 1024
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


@dataclass(frozen=True)
class ImageInfo:
    width: int  # after EXIF orientation, as the photo is displayed
    height: int
    format: str
    extension: str


class DecodeBudget:
    """Bytes of decoded pixels that the web process may hold at once, shared by its threads."""

    def __init__(self) -> None:
        self._used = 0
        self._cond = threading.Condition()
        self.peak = 0  # the most bytes ever held at once (for tests and the bench)

    @contextlib.contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        capacity = settings.IMAGE_DECODE_BUDGET_BYTES
        nbytes = max(0, min(int(nbytes), capacity))  # one image over the budget runs alone
        deadline = time.monotonic() + settings.IMAGE_DECODE_WAIT_SECONDS
        with self._cond:
            while self._used + nbytes > capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ApplicationError(
                        "server_busy",
                        _("Too many photos are being checked at once; retry shortly."),
                        status_code=503,
                    )
                self._cond.wait(left)
            self._used += nbytes
            self.peak = max(self.peak, self._used)
        try:
            yield
        finally:
            with self._cond:
                self._used -= nbytes
                self._cond.notify_all()


DECODE_BUDGET = DecodeBudget()


def _corrupt(reason: str) -> ApplicationError:
    return ApplicationError(
        "corrupt_image",
        _("The image data is corrupt or truncated: %(error)s") % {"error": reason},
    )


def _png_raw_size(width: int, height: int, bits: int, channels: int, interlaced: bool) -> list:
    """[(rows, bytes per row incl. the filter byte)] of each (Adam7) pass."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    out = []
    for x0, y0, dx, dy in passes:
        w = (width - x0 + dx - 1) // dx if width > x0 else 0
        h = (height - y0 + dy - 1) // dy if height > y0 else 0
        if w and h:
            out.append((h, 1 + (w * bits * channels + 7) // 8))
    return out


def _orientation(img: Image.Image, exif: bytes | None = None) -> int:
    try:
        if exif is not None:
            tags = Image.Exif()
            tags.load(exif)
        else:
            tags = img.getexif()
        return int(tags.get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block must not reject a good photo
        return 1


def _check_png(data: bytes) -> int:
    """Walk the chunks of a PNG (CRC of each) and inflate its image data without keeping it
    (see module); returns the EXIF orientation of its eXIf chunk (1 without one)."""
    if not data.startswith(_PNG_SIGNATURE):
        raise _corrupt("not a PNG signature")
    view = memoryview(data)
    pos, header, inflater = len(_PNG_SIGNATURE), None, zlib.decompressobj()
    expected = produced = 0
    stride = 0  # bytes per row when not interlaced (filter bytes checked), else 0
    orientation = 1
    while pos + 12 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = view[pos + 8 : pos + 8 + length]  # a view: chunks are not copied
        crc = view[pos + 8 + length : pos + 12 + length]
        if len(body) < length or len(crc) < 4:
            raise _corrupt("truncated chunk")
        if zlib.crc32(body, zlib.crc32(ctype)) & 0xFFFFFFFF != struct.unpack(">I", crc)[0]:
            raise _corrupt(f"bad CRC in {ctype.decode('latin-1')}")
        pos += 12 + length
        if ctype == b"IHDR":
            width, height, bits, color, _c, _f, interlace = struct.unpack(
                ">IIBBBBB", bytes(body[:13])
            )
            channels = _PNG_CHANNELS.get(color)
            if channels is None:
                raise _corrupt("unknown colour type")
            passes = _png_raw_size(width, height, bits, channels, bool(interlace))
            expected = sum(rows * row for rows, row in passes)
            stride = passes[0][1] if not interlace and passes else 0
            header = True
        elif ctype == b"IDAT":
            if header is None:
                raise _corrupt("image data before the header")
            pending = body
            while pending and produced < expected:
                try:
                    piece = inflater.decompress(pending, _INFLATE_PIECE)
                except zlib.error as exc:
                    raise _corrupt(str(exc)) from exc
                pending = inflater.unconsumed_tail
                if stride:
                    first = (-produced) % stride
                    filters = piece[first::stride]
                    if filters and max(filters) > 4:
                        raise _corrupt("bad row filter")
                produced += len(piece)
                if not piece:
                    break
        elif ctype == b"eXIf":
            orientation = _orientation(None, bytes(body))
        elif ctype == b"IEND":
            break
    if header is None:
        raise _corrupt("no header")
    while produced < expected and not inflater.eof:  # data buffered inside the inflater
        try:
            piece = inflater.decompress(b"", _INFLATE_PIECE)
        except zlib.error as exc:
            raise _corrupt(str(exc)) from exc
        if not piece:
            break
        produced += len(piece)
    if produced < expected:  # (a missing IEND alone is tolerated, as Pillow does)
        raise _corrupt("truncated image data")
    return orientation


def _decode_cost(img: Image.Image, fmt: str) -> int:
    """Estimated peak bytes of decoding ``img`` fully (Pillow keeps 4 bytes per pixel for
    RGB; libwebp and libheif hold their own copy while they hand it over)."""
    width, height = img.size
    return width * height * 4 * (2 if fmt in {"WEBP", "HEIF"} else 1)


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
            if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
                raise _corrupt("HEIC/HEIF") from exc
            raise ApplicationError(
                "unsupported_file",
                _("The file is not an image we can read (use JPEG, PNG, TIFF, WebP or HEIC)."),
            ) from exc
        except Exception as exc:  # Pillow raises many types for malformed headers
            raise ApplicationError(
                "corrupt_image", _("The image header is corrupt: %(error)s") % {"error": exc}
            ) from exc
        fmt = (img.format or "").upper()
        if fmt not in ALLOWED_FORMATS:
            raise ApplicationError(
                "unsupported_format",
                _("Image format %(format)s is not supported (use JPEG, PNG, TIFF, WebP or HEIC).")
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
            if fmt == "PNG":
                orientation = _check_png(data)  # (Pillow's PNG getexif() decodes it all)
            else:
                orientation = _orientation(img)
                if fmt in {"JPEG", "MPO"}:
                    img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                with DECODE_BUDGET.hold(_decode_cost(img, fmt)):
                    img.load()
                    img.close()  # the pixels go now, inside the budget
        except ApplicationError:
            raise
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
