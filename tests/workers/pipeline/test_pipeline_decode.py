"""Decode stage: formats, EXIF orientation, odd modes, and rejection of bad input."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from workers.pipeline.errors import BadImageError, TerminalError
from workers.pipeline.io import decode_image


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _quadrants(w: int = 64, h: int = 32) -> Image.Image:
    """Left half red, right half blue: orientation shows in where red ends up."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP", "BMP"])
def test_decodes_common_formats_to_rgb_uint8(fmt):
    img = _quadrants()
    d = decode_image(_save(img, fmt))
    assert d.rgb.shape == (32, 64, 3) and d.rgb.dtype == np.uint8
    assert d.info.format == fmt and (d.info.width, d.info.height) == (64, 32)
    assert d.rgb[16, 5, 0] > 200 and d.rgb[16, 5, 2] < 60  # red on the left
    assert d.rgb[16, 60, 2] > 200  # blue on the right


def test_exif_orientation_is_applied():
    img = _quadrants(64, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise to display
    d = decode_image(_save(img, "JPEG", exif=exif.tobytes()))
    assert d.info.exif_orientation == 6
    assert (d.info.width, d.info.height) == (32, 64)
    assert d.rgb.shape == (64, 32, 3)
    # rotating clockwise puts the stored left (red) half at the top
    assert d.rgb[5, 16, 0] > 200 and d.rgb[60, 16, 2] > 200


def test_grayscale_png():
    arr = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (10, 1))
    d = decode_image(_save(Image.fromarray(arr, "L"), "PNG"))
    assert d.rgb.shape == (10, 64, 3)
    assert np.array_equal(d.rgb[..., 0], arr) and np.array_equal(d.rgb[..., 2], arr)


def test_16bit_png_is_scaled_not_clipped():
    arr = np.tile(np.linspace(0, 65535, 50).astype(np.uint16), (8, 1))
    data = _save(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    d = decode_image(data)
    assert d.rgb[0, 0, 0] == 0 and d.rgb[0, -1, 0] == 255
    mid = d.rgb[0, 25, 0]
    assert 120 <= mid <= 140  # ~half range: scaled, not clipped at 255
    assert np.all(np.diff(d.rgb[0, :, 0].astype(int)) >= 0)


def test_cmyk_jpeg():
    img = Image.new("CMYK", (40, 20), (0, 255, 255, 0))  # pure red in CMYK
    data = _save(img, "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    d = decode_image(data)
    r, g, b = d.rgb[10, 20].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency_composited_on_white():
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    img.paste((0, 0, 0, 255), (0, 0, 10, 20))
    d = decode_image(_save(img.convert("P"), "PNG"))
    d2 = decode_image(_save(img, "PNG"))
    for dd in (d, d2):
        assert dd.rgb[10, 15].min() > 240  # transparent -> white
        assert dd.rgb[10, 2].max() < 15  # opaque black stays black


def test_webp_and_tiff_with_alpha():
    img = Image.new("RGBA", (30, 30), (0, 128, 0, 255))
    for fmt in ("WEBP", "TIFF"):
        d = decode_image(_save(img, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
        assert d.rgb.shape == (30, 30, 3) and d.rgb[15, 15, 1] > 100


def _code(exc_info) -> str:
    return exc_info.value.code


def test_zero_bytes_rejected():
    with pytest.raises(BadImageError) as e:
        decode_image(b"")
    assert _code(e) == "bad_image" and "empty" in e.value.message.lower()


def test_text_file_rejected():
    with pytest.raises(BadImageError) as e:
        decode_image(b"serial,part\nAB123,XY\n" * 20)
    assert _code(e) == "bad_image"
    assert isinstance(e.value, TerminalError)


def test_truncated_jpeg_rejected():
    data = _save(Image.effect_noise((400, 300), 60).convert("RGB"), "JPEG", quality=95)
    with pytest.raises(BadImageError) as e:
        decode_image(data[: len(data) // 2])
    assert _code(e) == "bad_image" and "truncated" in e.value.message.lower()


def test_corrupt_jpeg_header_rejected():
    data = bytearray(_save(_quadrants(), "JPEG"))
    data[2:40] = b"\x00" * 38
    with pytest.raises(BadImageError) as e:
        decode_image(bytes(data))
    assert _code(e) == "bad_image"


def test_heic_is_decoded_upright():
    """A phone's HEIC (made here by pillow-heif) with orientation 6: the array is upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(_quadrants(64, 32), "HEIF", exif=exif.tobytes(), quality=95)
    assert data[4:12] == b"ftypheic"
    d = decode_image(data)
    assert d.info.format == "HEIF" and d.info.exif_orientation == 6
    assert d.rgb.shape == (64, 32, 3) and (d.info.width, d.info.height) == (32, 64)
    assert d.rgb[5, 16, 0] > 180 and d.rgb[5, 16, 2] < 80  # stored left (red) half on top
    assert d.rgb[60, 16, 2] > 180 and d.rgb[60, 16, 0] < 80


def test_broken_heic_is_bad_image_and_avif_unsupported():
    fake = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100
    with pytest.raises(BadImageError) as e:
        decode_image(fake)
    assert _code(e) == "bad_image"
    avif = b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif" + b"\x00" * 100
    with pytest.raises(BadImageError) as e:
        decode_image(avif)
    assert _code(e) == "unsupported_format"


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def _png_bomb(w: int, h: int) -> bytes:
    """A valid 1-bit gray PNG of w x h zero pixels, compressed to a few KB."""
    row = b"\x00" + b"\x00" * ((w + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def test_png_bomb_refused_from_header_without_decoding(monkeypatch):
    data = _png_bomb(20000, 20000)
    assert len(data) < 200_000  # tiny file, 400 megapixels

    def no_pixel_decode(self, *a, **k):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pixel_decode)
    tracemalloc.start()
    try:
        with pytest.raises(BadImageError) as e:
            decode_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _code(e) == "image_too_large"
    assert "400.0 megapixels" in e.value.message
    assert peak < 20_000_000  # a decoded 20000x20000 image would need >= 400 MB


def test_moderate_bomb_refused_by_our_limit(monkeypatch):
    # 8000x8000 = 64 MP: under Pillow's own bomb limit, over our 40 MP default
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded pixels"))
    with pytest.raises(BadImageError) as e:
        decode_image(_png_bomb(8000, 8000))
    assert _code(e) == "image_too_large" and "8000x8000" in e.value.message


def test_pixel_limit_is_configurable():
    data = _save(_quadrants(64, 32), "PNG")
    with pytest.raises(BadImageError) as e:
        decode_image(data, max_pixels=1000)
    assert _code(e) == "image_too_large"
    assert decode_image(data, max_pixels=64 * 32).rgb.shape == (32, 64, 3)


def test_byte_limit():
    with pytest.raises(BadImageError) as e:
        decode_image(_save(_quadrants(), "PNG"), max_bytes=10)
    assert _code(e) == "image_too_large"
