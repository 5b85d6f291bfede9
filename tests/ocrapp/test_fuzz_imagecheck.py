"""Property-based fuzzing of the web tier's upload check (``ocrapp.imagecheck.inspect_image``).

Whatever the bytes (``tests.fuzz_images``: random, magic numbers with garbage, valid JPEG /
PNG / TIFF / WebP mutated by bit flips, truncation, splices and huge declared sizes), the check
either describes a photo within the limits or refuses it with ``ApplicationError`` (400, a known
code): never another exception, which the API would answer with a 500.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, seed

from ocrapp.errors import ApplicationError
from ocrapp.imagecheck import ALLOWED_FORMATS, ImageInfo, inspect_image
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
