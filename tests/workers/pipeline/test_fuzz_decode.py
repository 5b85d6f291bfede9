"""Property-based fuzzing of the worker's decoder (``workers.pipeline.io.decode_image``, the
pipeline's first stage: bytes -> pixels).

Whatever the bytes (``tests.fuzz_images``), the decoder returns an upright (H, W, 3) uint8 RGB
array within the pixel limit, or raises its own typed ``BadImageError`` (a terminal error: the
task fails the capture with a reason instead of crashing or retrying). No Django, no database.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, seed

from tests.fuzz_images import (
    FUZZ_SEED,
    FUZZ_SETTINGS,
    MAX_BYTES,
    MAX_PIXELS,
    declare_size,
    mutated_images,
    seed_images,
    upload_bytes,
)
from workers.pipeline.errors import BadImageError
from workers.pipeline.io import SUPPORTED_FORMATS, DecodedImage, decode_image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow on corrupt EXIF/tags

CODES = {"bad_image", "image_too_large", "unsupported_format"}


def _check(data: bytes) -> DecodedImage | BadImageError:
    try:
        decoded = decode_image(data, max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES)
    except BadImageError as exc:
        assert exc.code in CODES, exc.code
        assert exc.to_dict()["message"]
        return exc
    rgb = decoded.rgb
    assert isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags["C_CONTIGUOUS"]
    height, width = rgb.shape[:2]
    assert 1 <= width and 1 <= height and width * height <= MAX_PIXELS
    assert (decoded.info.width, decoded.info.height) == (width, height)
    assert decoded.info.format in SUPPORTED_FORMATS
    return decoded


@pytest.mark.parametrize("name", sorted(seed_images()))
def test_every_seed_image_decodes(name):
    assert isinstance(_check(seed_images()[name]), DecodedImage)


@pytest.mark.parametrize("name", sorted(seed_images()))
def test_a_huge_declared_size_is_refused(name):
    result = _check(declare_size(seed_images()[name], 2**14 - 1, 2**14 - 1))
    assert isinstance(result, BadImageError)


@seed(FUZZ_SEED)
@FUZZ_SETTINGS
@given(upload_bytes)
@example(b"")
@example(b"RIFF\x00\x00\x00\x00WEBP")
def test_decode_returns_pixels_within_limits_or_bad_image_error(data):
    _check(data)


@seed(FUZZ_SEED + 1)
@FUZZ_SETTINGS
@given(mutated_images())
def test_mutated_images_decode_or_raise_bad_image_error(data):
    _check(data)
