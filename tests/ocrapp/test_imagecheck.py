"""The web process's image check: bounded decoding (PNG inflated piece by piece, JPEG at 1/8,
the rest under a per-process byte budget) and HEIC photos (pillow-heif), upright."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from ocrapp import imagecheck
from ocrapp.errors import ApplicationError
from ocrapp.imagecheck import DECODE_BUDGET, inspect_image
from ocrapp.models import Capture
from tests.conftest import ROOT
from tests.images import encode, label_image, png_rgb_bomb

LIMITS = {"max_pixels": 40_000_000, "max_side": 12_000}


def _code(data: bytes) -> str:
    with pytest.raises(ApplicationError) as e:
        inspect_image(data, **LIMITS)
    return e.value.code


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png(width: int, height: int, raw: bytes, *, interlace: int = 0) -> bytes:
    """A hand-made 8-bit gray PNG whose (filtered) image data is ``raw``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def test_good_pngs_pass_gray_rgb_palette_interlaced():
    for img in (label_image(["S/N: 1"]), label_image(["x"]).convert("L")):
        assert inspect_image(encode(img, "PNG"), **LIMITS).format == "PNG"
    assert inspect_image(encode(label_image(["x"]).convert("P"), "PNG"), **LIMITS).width == 900
    size = sum(rows * row for rows, row in imagecheck._png_raw_size(13, 11, 8, 1, True))
    interlaced = _png(13, 11, b"\x00" * size, interlace=1)
    Image.open(io.BytesIO(interlaced)).load()  # Pillow reads it too
    assert inspect_image(interlaced, **LIMITS).height == 11
    assert inspect_image(_png(10, 4, b"\x00" + b"\x7f" * 10 + b"\x01" * 33), **LIMITS).width == 10


@pytest.mark.parametrize(
    "data",
    [
        _png(10, 4, b"\x00" * 33),  # fewer rows than the header says
        _png(10, 4, (b"\x07" + b"\x00" * 10) * 4),  # row filter 7 does not exist
        _png(10, 4, b"\x00" * 44)[:-20],  # cut in the middle of the data chunk
        _png(10, 4, b"\x00" * 44).replace(b"IEND", b"IENX"),  # bad CRC
        _png(13, 11, b"\x00" * 40, interlace=1),  # interlaced, short
    ],
    ids=["short", "bad_filter", "cut", "bad_crc", "interlaced_short"],
)
def test_corrupt_pngs_are_refused_without_decoding(data):
    assert _code(data) == "corrupt_image"


def test_png_bad_deflate_stream():
    good = _png(10, 4, b"\x00" * 44)
    start = good.index(b"IDAT") + 4
    payload = bytearray(good[start : start + struct.unpack(">I", good[start - 8 : start - 4])[0]])
    payload[3:9] = b"\xff" * 6
    bad = good[: start - 8] + _chunk(b"IDAT", bytes(payload)) + _chunk(b"IEND", b"")
    assert _code(bad) == "corrupt_image"


def test_near_limit_png_bomb_is_checked_without_a_budget(settings):
    """A 39 MP PNG of a few hundred KB: inflated and dropped piece by piece; the byte budget
    (for formats decoded in full) is never asked for."""
    settings.IMAGE_DECODE_BUDGET_BYTES = 1
    settings.IMAGE_DECODE_WAIT_SECONDS = 0
    bomb = png_rgb_bomb(6300, 6300)
    assert len(bomb) < 1_000_000
    info = inspect_image(bomb, **LIMITS)
    assert (info.width, info.height) == (6300, 6300)
    cut = bomb[: len(bomb) - 5000] + _chunk(b"IEND", b"")
    assert _code(cut) == "corrupt_image"


def test_full_decodes_wait_for_the_budget(settings):
    """TIFF decodes in full: 8 concurrent 2000x2000 checks under a 40 MB budget never hold
    more than 40 MB at once (each needs 16 MB), and all pass."""
    settings.IMAGE_DECODE_BUDGET_BYTES = 40_000_000
    settings.IMAGE_DECODE_WAIT_SECONDS = 60
    data = encode(Image.new("RGB", (2000, 2000), (200, 10, 10)), "TIFF")
    DECODE_BUDGET.peak = 0
    results, errors = [], []

    def check():
        try:
            results.append(inspect_image(data, **LIMITS))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 8
    assert 16_000_000 <= DECODE_BUDGET.peak <= 40_000_000


def test_budget_full_is_503_server_busy(settings):
    settings.IMAGE_DECODE_BUDGET_BYTES = 20_000_000
    settings.IMAGE_DECODE_WAIT_SECONDS = 0
    data = encode(Image.new("RGB", (2000, 2000)), "TIFF")
    with DECODE_BUDGET.hold(10_000_000), pytest.raises(ApplicationError) as e:
        inspect_image(data, **LIMITS)
    assert e.value.code == "server_busy" and e.value.status_code == 503
    assert inspect_image(data, **LIMITS).width == 2000  # room again once released


_RSS_SCRIPT = r"""
import json, resource, threading
import django
django.setup()
from ocrapp.imagecheck import inspect_image
from tests.images import png_rgb_bomb
bomb = png_rgb_bomb(6300, 6300)
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = rss()
threads = [threading.Thread(target=inspect_image, args=(bomb,),
           kwargs={"max_pixels": 40_000_000, "max_side": 12_000}) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"before": before, "after": rss()}))
"""


def test_concurrent_near_limit_png_bombs_stay_small():
    """6 concurrent 39 MP PNG checks in a fresh process: its peak RSS grows by less than one
    decoded copy (a full decode is about 160 MB each)."""
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "ocrapp.settings"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rss = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rss["after"] - rss["before"] < 100 * 1024 * 1024, rss


# --- HEIC -----------------------------------------------------------------------------------


def _heic(img: Image.Image, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "HEIF", exif=exif.tobytes(), quality=90)


def test_heic_is_accepted_upright():
    stored = label_image(["S/N: 1"]).transpose(Image.Transpose.ROTATE_90)  # 420 x 900
    info = inspect_image(_heic(stored, orientation=6), **LIMITS)
    assert info.format == "HEIF" and info.extension == ".heic"
    assert (info.width, info.height) == (900, 420)


def test_broken_heic_is_corrupt():
    data = _heic(label_image(["x"]))
    assert _code(data[: len(data) // 2]) == "corrupt_image"


@pytest.mark.django_db
def test_heic_upload_through_the_api(station_client, product_type):
    data = _heic(label_image(["S/N: 1"]).transpose(Image.Transpose.ROTATE_90), orientation=6)
    resp = station_client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile("IMG_0001.HEIC", data, "image/heic"),
            "product_type": product_type.name,
        },
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["image_format"] == "HEIF" and (body["width"], body["height"]) == (900, 420)
    assert Capture.objects.get(pk=body["id"]).image.name.endswith(".heic")


def test_imagecheck_registers_heif_once():
    assert "HEIF" in Image.registered_extensions().values()
    assert imagecheck.ALLOWED_FORMATS["HEIF"] == ".heic"


@pytest.mark.django_db
def test_heic_capture_image_page_serves_a_jpeg(client, user, station, product_type):
    from ocrapp import services

    data = _heic(label_image(["S/N: 1"]).transpose(Image.Transpose.ROTATE_90), orientation=6)
    capture, _ = services.capture_create(
        user=user, image_bytes=data, product_type=product_type, station=station
    )
    client.force_login(user)
    resp = client.get(f"/captures/{capture.pk}/image")
    assert resp.status_code == 200 and resp["Content-Type"] == "image/jpeg"
    shown = Image.open(io.BytesIO(resp.content))
    assert shown.format == "JPEG" and shown.size == (900, 420)
    png = services.capture_create(
        user=user,
        image_bytes=encode(label_image(["x"])),
        product_type=product_type,
        station=station,
    )[0]
    resp = client.get(f"/captures/{png.pk}/image")
    assert resp.status_code == 200 and b"".join(resp.streaming_content).startswith(b"\x89PNG")


_FUZZ_SCRIPT = r"""
import json, random, sys
import django
django.setup()
from ocrapp.errors import ApplicationError
from ocrapp.imagecheck import inspect_image
from tests.images import encode, label_image
from workers.pipeline.errors import BadImageError
from workers.pipeline.io import decode_image
rng = random.Random(12)
img = label_image(["S/N: 1"], size=(320, 160))
base = [encode(img, fmt) for fmt in ("HEIF", "PNG", "JPEG", "WEBP", "TIFF")]
unexpected = []
for i in range(int(sys.argv[1])):
    data = bytearray(rng.choice(base))
    for _ in range(rng.randint(1, 20)):
        op, pos = rng.random(), rng.randrange(len(data))
        if op < 0.6:
            data[pos] = rng.randrange(256)
        elif op < 0.8:
            del data[pos : pos + rng.randint(1, 200)]
        else:
            data[pos:pos] = rng.randbytes(rng.randint(1, 50))
    for check, expected in ((lambda d: inspect_image(d, max_pixels=40_000_000, max_side=12_000),
                             ApplicationError), (decode_image, BadImageError)):
        try:
            check(bytes(data))
        except expected:
            pass
        except Exception as exc:
            unexpected.append(f"{i}: {type(exc).__name__}: {exc}")
print(json.dumps(unexpected))
"""


def test_fuzzed_images_never_crash_the_web_check_or_the_worker_decoder():
    """200 mutated HEIC/PNG/JPEG/WebP/TIFF files (fixed seed), in a fresh process so that a
    crash in a native decoder would show: the web check refuses with an ApplicationError or
    passes, the worker's decoder with a BadImageError or decodes; nothing else."""
    proc = subprocess.run(
        [sys.executable, "-c", _FUZZ_SCRIPT, "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "ocrapp.settings"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
