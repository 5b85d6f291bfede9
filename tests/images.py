"""Test images generated on the fly (nothing binary is committed)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont


def label_image(lines: list[str], *, size: tuple[int, int] = (900, 420), font_size: int = 52):
    """A clean light label with dark text lines; Pillow's built-in scalable font (no system fonts)."""
    img = Image.new("RGB", size, (236, 236, 230))
    draw = ImageDraw.Draw(img)
    draw.rectangle([12, 12, size[0] - 12, size[1] - 12], outline=(60, 60, 60), width=4)
    font = ImageFont.load_default(size=font_size)
    y = 50
    for text in lines:
        draw.text((50, y), text, fill=(20, 20, 20), font=font)
        y += int(font_size * 1.7)
    return img


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def label_png(lines: list[str], **kwargs) -> bytes:
    return encode(label_image(lines, **kwargs), "PNG")


def png_bomb(side: int = 20000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (1-bit, compresses to almost nothing)."""
    img = Image.new("1", (side, side), 0)
    return encode(img, "PNG", optimize=False)


def png_rgb_bomb(width: int = 6300, height: int = 6300) -> bytes:
    """A small PNG of ``width`` x ``height`` white RGB pixels (39.7 MP by default: just under
    MAX_IMAGE_PIXELS), built row by row so that making it never holds the decoded image."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    deflate = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * (3 * width)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
