"""Bad input gets a clear JSON error, the right status, and nothing is stored."""

import os

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from ocrapp.models import Capture
from tests.images import encode, label_image, label_png, png_bomb

pytestmark = pytest.mark.django_db


def _media_files() -> set[str]:
    found = set()
    for root, _dirs, files in os.walk(settings.MEDIA_ROOT):
        found.update(os.path.join(root, f) for f in files)
    return found


@pytest.fixture
def nothing_stored():
    before_files = _media_files()
    before_rows = Capture.objects.count()
    yield
    assert Capture.objects.count() == before_rows
    assert _media_files() == before_files


def _upload(client, product_type, name, data, content_type="image/png", **fields):
    payload = {"product_type": product_type.name, **fields}
    if data is not None:
        payload["image"] = SimpleUploadedFile(name, data, content_type)
    return client.post("/api/v1/captures", payload, format="multipart")


def _corrupt_jpeg() -> bytes:
    data = encode(label_image(["S/N: 123"]), "JPEG", quality=90)
    return data[: len(data) // 2]  # truncated scan data


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("notes.txt", b"this is not an image\n" * 50, 400, "unsupported_file"),
        ("broken.jpg", None, 400, "corrupt_image"),
        ("empty.png", b"", 400, "empty_file"),
        ("bomb.png", "bomb", 400, "image_too_large"),
        ("anim.gif", "gif", 400, "unsupported_format"),
    ],
)
def test_bad_images_are_refused(
    station_client, product_type, nothing_stored, name, data, status, code
):
    if data is None:
        data = _corrupt_jpeg()
    elif data == "bomb":
        data = png_bomb()
    elif data == "gif":
        data = encode(label_image(["x"]), "GIF")
    resp = _upload(station_client, product_type, name, data)
    assert resp.status_code == status, resp.content
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"]


def test_too_large_file_is_413(station_client, product_type, nothing_stored, settings):
    settings.MAX_UPLOAD_BYTES = 10_000
    resp = _upload(
        station_client, product_type, "big.png", label_png(["S/N: 1"] * 3) + b"\0" * 20_000
    )
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "file_too_large"


def test_missing_image_and_product_type(station_client, product_type, nothing_stored):
    resp = station_client.post(
        "/api/v1/captures", {"product_type": "nameplate"}, format="multipart"
    )
    assert resp.status_code == 400
    body = resp.json()["error"]
    assert body["code"] == "invalid" and "image" in body["details"]
    resp = station_client.post(
        "/api/v1/captures",
        {"image": SimpleUploadedFile("a.png", label_png(["x"]), "image/png")},
        format="multipart",
    )
    assert resp.status_code == 400 and "product_type" in resp.json()["error"]["details"]


def test_unknown_product_type_and_station(station_client, product_type, nothing_stored):
    resp = station_client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile("a.png", label_png(["x"]), "image/png"),
            "product_type": "no-such-type",
        },
        format="multipart",
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unknown_product_type"
    resp = _upload(station_client, product_type, "a.png", label_png(["x"]), station="LINE-9/none")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unknown_station"


def test_user_without_station_must_name_one(api_client, user, product_type, nothing_stored):
    api_client.force_authenticate(user)
    resp = _upload(api_client, product_type, "a.png", label_png(["x"]))
    assert resp.status_code == 400
    assert "station" in resp.json()["error"]["details"]


@pytest.mark.parametrize("header", [None, "Token nope", "Bearer abc", "Token "])
def test_bad_or_missing_token_is_401(api_client, product_type, nothing_stored, header):
    if header:
        api_client.credentials(HTTP_AUTHORIZATION=header)
    resp = _upload(api_client, product_type, "a.png", label_png(["x"]))
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] in {"not_authenticated", "authentication_failed"}
    assert resp.json()["error"]["message"]
