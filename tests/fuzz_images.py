"""Hypothesis strategies for fuzzing the upload decoders (web ``inspect_image``, worker
``decode_image``): arbitrary bytes, and valid JPEG / PNG / TIFF / WebP files (generated here,
nothing binary is committed) mutated by bit flips, truncation, spliced garbage and huge declared
sizes patched into their headers.

Bounded and reproducible: ``FUZZ_SETTINGS`` (``max_examples``, no per-example deadline: a
deadline would be a wall-clock assertion) with a fixed ``FUZZ_SEED``. Failing examples are kept
in hypothesis's local example database (``.hypothesis/``, not committed).
"""

from __future__ import annotations

import functools
import struct
import zlib

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from tests.images import encode, label_image

FUZZ_SEED = 20261201
FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Limits small enough that an accepted fuzzed image decodes in milliseconds.
MAX_PIXELS = 2_000_000
MAX_SIDE = 4_000
MAX_BYTES = 1_000_000

HUGE = st.sampled_from([0, 1, 2**14 - 1, 2**15, 2**16 - 1, 65_500, 2**24, 2**31 - 1, 2**32 - 1])


@functools.cache
def seed_images() -> dict[str, bytes]:
    """Small valid files of every accepted format and a few encoder variants."""
    img = label_image(["S/N 42"], size=(96, 48), font_size=14)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the decoders swap width and height
    gray16 = Image.new("I;16", (40, 20), 1000)
    return {
        "jpeg": encode(img, "JPEG", quality=80),
        "jpeg_progressive_exif": encode(img, "JPEG", progressive=True, exif=exif.tobytes()),
        "png": encode(img, "PNG"),
        "png_palette": encode(img.convert("P"), "PNG"),
        "png_rgba": encode(img.convert("RGBA"), "PNG"),
        "png_gray16": encode(gray16, "PNG"),
        "tiff": encode(img, "TIFF"),
        "tiff_lzw": encode(img, "TIFF", compression="tiff_lzw"),
        "tiff_deflate": encode(img.convert("L"), "TIFF", compression="tiff_adobe_deflate"),
        "tiff_g4": encode(img.convert("1"), "TIFF", compression="group4"),
        "webp": encode(img, "WEBP", quality=70),
        "webp_lossless": encode(img, "WEBP", lossless=True),
        "webp_extended": encode(img, "WEBP", quality=70, exif=exif.tobytes()),
    }


def _patch(data: bytes, offset: int, packed: bytes) -> bytes:
    if offset < 0 or offset + len(packed) > len(data):
        return data
    return data[:offset] + packed + data[offset + len(packed) :]


def declare_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its header claiming ``width`` x ``height`` (pixel data unchanged)."""
    if data.startswith(b"\x89PNG"):  # IHDR: width, height as big-endian uint32 at 16 (+ CRC)
        data = _patch(data, 16, struct.pack(">II", width, height))
        return _patch(data, 29, struct.pack(">I", zlib.crc32(data[12:29])))
    if data.startswith(b"\xff\xd8"):  # SOF0/SOF2: height, width as big-endian uint16
        for marker in (b"\xff\xc0", b"\xff\xc2"):
            at = data.find(marker)
            if at >= 0:
                return _patch(data, at + 5, struct.pack(">HH", height & 0xFFFF, width & 0xFFFF))
        return data
    if (
        data[:4] in (b"II*\x00", b"MM\x00*") and len(data) >= 8
    ):  # first IFD: ImageWidth (256), ImageLength (257)
        order = "<" if data[:2] == b"II" else ">"
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        if ifd + 2 > len(data):
            return data
        (count,) = struct.unpack_from(order + "H", data, ifd)
        for i in range(count):
            entry = ifd + 2 + 12 * i
            if entry + 12 > len(data):
                break
            (tag,) = struct.unpack_from(order + "H", data, entry)
            if tag in (256, 257):
                value = width if tag == 256 else height
                data = _patch(data, entry + 2, struct.pack(order + "HII", 4, 1, value))
        return data
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8X":  # canvas width-1, height-1 as 24-bit little-endian at 24
            w, h = max(width - 1, 0) & 0xFFFFFF, max(height - 1, 0) & 0xFFFFFF
            return _patch(data, 24, w.to_bytes(3, "little") + h.to_bytes(3, "little"))
        if chunk == b"VP8 ":  # key frame: 14-bit width and height at 26
            return _patch(data, 26, struct.pack("<HH", width & 0x3FFF, height & 0x3FFF))
        if chunk == b"VP8L":  # 14-bit width-1, height-1 packed after the 0x2f signature
            bits = (max(width - 1, 0) & 0x3FFF) | ((max(height - 1, 0) & 0x3FFF) << 14)
            old = int.from_bytes(data[21:25], "little")
            return _patch(data, 21, ((old & ~0xFFFFFFF) | bits).to_bytes(4, "little"))
    return data


@st.composite
def _bit_flips(draw, data: bytes) -> bytes:
    buf = bytearray(data)
    rnd = draw(st.randoms(use_true_random=False))  # uniform positions, not biased to byte 0
    for _ in range(draw(st.integers(1, 24))):
        buf[rnd.randrange(len(buf))] ^= 1 << rnd.randrange(8)
    return bytes(buf)


@st.composite
def _truncated(draw, data: bytes) -> bytes:
    keep = draw(
        st.one_of(st.integers(0, len(data) - 1), st.integers(len(data) // 2, len(data) - 1))
    )
    return data[:keep]


@st.composite
def _spliced(draw, data: bytes) -> bytes:
    start = draw(st.randoms(use_true_random=False)).randrange(len(data) + 1)
    end = draw(st.integers(start, min(len(data), start + 64)))
    return data[:start] + draw(st.binary(max_size=64)) + data[end:]


@st.composite
def _huge(draw, data: bytes) -> bytes:
    return declare_size(data, draw(HUGE), draw(HUGE))


@st.composite
def mutated_images(draw) -> bytes:
    """A valid seed file with one to three mutations applied."""
    data = seed_images()[draw(st.sampled_from(sorted(seed_images())))]
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        mutate = draw(st.sampled_from([_bit_flips, _truncated, _spliced, _huge]))
        data = draw(mutate(data))
    return data


MAGICS = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF\x00\x00\x00\x00WEBP",
]

upload_bytes = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGICS), st.binary(max_size=512)),
    mutated_images(),
)
