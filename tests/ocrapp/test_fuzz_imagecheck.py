"""Property-based fuzzing of the web tier's upload check (``ocrapp.imagecheck.inspect_image``).

Whatever the bytes (``tests.fuzz_images``: random, magic numbers with garbage, valid JPEG /
PNG / TIFF / WebP mutated by bit flips, truncation, splices and huge declared sizes), the check
either describes a photo within the limits or refuses it with ``ApplicationError`` (400, a known
code): never another exception, which the API would answer with a 500.
"""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, example, given, seed
from hypothesis import settings as hypothesis_settings

from ocrapp.errors import ApplicationError
from ocrapp.imagecheck import ALLOWED_FORMATS, ImageInfo, inspect_image
from ocrapp.models import Capture
from tests.fuzz_images import (
    FUZZ_SEED,
    FUZZ_SETTINGS,
    MAX_PIXELS,
    MAX_SIDE,
    declare_size,
    mutated_images,
    seed_images,
    upload_bytes,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow on corrupt EXIF/tags

CODES = {"empty_file", "unsupported_file", "unsupported_format", "corrupt_image", "image_too_large"}


def _check(data: bytes) -> ImageInfo | ApplicationError:
    try:
        info = inspect_image(data, max_pixels=MAX_PIXELS, max_side=MAX_SIDE)
    except ApplicationError as exc:
        assert exc.code in CODES, exc.code
        assert exc.status_code == 400
        assert isinstance(exc.message, str) and exc.message
        return exc
    assert isinstance(info, ImageInfo)
    assert info.format in ALLOWED_FORMATS and info.extension == ALLOWED_FORMATS[info.format]
    assert 1 <= info.width <= MAX_SIDE and 1 <= info.height <= MAX_SIDE
    assert info.width * info.height <= MAX_PIXELS
    return info


@pytest.mark.parametrize("name", sorted(seed_images()))
def test_every_seed_image_is_accepted(name):
    """The fuzzing starts from files the check accepts (else the mutations prove little)."""
    assert isinstance(_check(seed_images()[name]), ImageInfo)


@pytest.mark.parametrize("name", sorted(seed_images()))
def test_a_huge_declared_size_is_refused(name):
    result = _check(declare_size(seed_images()[name], 2**14 - 1, 2**14 - 1))
    assert isinstance(result, ApplicationError)


@seed(FUZZ_SEED)
@FUZZ_SETTINGS
@given(upload_bytes)
@example(b"")
@example(b"\xff\xd8\xff")
@example(b"\x89PNG\r\n\x1a\n")
def test_inspect_image_accepts_or_refuses_with_application_error(data):
    _check(data)


@seed(FUZZ_SEED + 1)
@FUZZ_SETTINGS
@given(mutated_images())
def test_mutated_images_accept_or_refuse_with_application_error(data):
    _check(data)


def _media_files(root) -> set[str]:
    return {os.path.join(d, f) for d, _dirs, files in os.walk(root) for f in files}


@pytest.mark.django_db
@seed(FUZZ_SEED + 2)
@hypothesis_settings(
    FUZZ_SETTINGS,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mutated_images())
def test_fuzzed_uploads_are_accepted_or_refused_with_nothing_left(
    station_client, product_type, settings, tmp_path, data
):
    """Through the API: 202, or a 400 in the JSON error shape that left no row and no file."""
    settings.MEDIA_ROOT = str(tmp_path)
    settings.API_RATE_UPLOAD = "off"  # 200 uploads from one token: the decoder is under test here
    rows, files = Capture.objects.count(), _media_files(tmp_path)
    upload = SimpleUploadedFile("fuzz.bin", data, "application/octet-stream")
    resp = station_client.post(
        "/api/v1/captures", {"product_type": product_type.name, "image": upload}, format="multipart"
    )
    assert resp.status_code in (202, 400), resp.content
    if resp.status_code == 400:
        assert resp.json()["error"]["code"] in CODES
        assert Capture.objects.count() == rows
        assert _media_files(tmp_path) == files
    else:
        assert Capture.objects.count() == rows + 1
