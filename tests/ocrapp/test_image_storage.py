"""The worker reads originals only through ``services.capture_image_bytes`` (storage API)."""

import uuid

import pytest

from ocrapp import services
from tests.images import label_png

pytestmark = pytest.mark.django_db


def _capture(user, product_type, station, data):
    capture, _ = services.capture_create(
        user=user, image_bytes=data, product_type=product_type, station=station
    )
    return capture


def test_capture_image_bytes_returns_the_stored_original(user, product_type, station):
    data = label_png(["S/N: AB1234567"])
    capture = _capture(user, product_type, station, data)
    assert services.capture_image_bytes(capture_id=capture.pk) == data
    assert services.capture_image_bytes(capture_id=str(capture.pk)) == data
    claim = services.capture_claim(capture_id=capture.pk)
    assert claim.image_name == capture.image.name
    assert not hasattr(claim, "image_path")


def test_a_deleted_original_is_image_missing(user, product_type, station):
    capture = _capture(user, product_type, station, label_png(["S/N: X"]))
    capture.image.storage.delete(capture.image.name)
    with pytest.raises(services.ImageMissing):
        services.capture_image_bytes(capture_id=capture.pk)
    with pytest.raises(services.ImageMissing):
        services.capture_image_bytes(capture_id=uuid.uuid4())
