"""End to end: REST upload -> PostgreSQL -> real Celery worker (real Redis broker) -> real OCR."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ocrapp.models import Capture, Field, Read
from tests.conftest import wait_for
from tests.images import label_png

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _upload(client, data, name="label.png", ctype="image/png", **headers):
    return client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile(name, data, ctype),
            "product_type": "nameplate",
            "client_ref": "it-1",
        },
        format="multipart",
        **headers,
    )


def test_upload_is_read_by_real_worker(celery_worker_proc, station_client, product_type):
    resp = _upload(station_client, label_png(["S/N: SN20260042", "P/N: PN-7731"]))
    assert resp.status_code == 202, resp.content
    capture_id = resp.json()["id"]
    body = station_client.get(f"/api/v1/captures/{capture_id}?wait=30").json()
    if body["status"] not in ("DONE", "FAILED"):
        body = station_client.get(f"/api/v1/captures/{capture_id}?wait=30").json()
    assert body["status"] == "DONE", (body, celery_worker_proc.log()[-3000:])
    assert body["fields"]["serial_number"] == "SN20260042"
    read = body["read"]
    texts = " ".join(line["text"] for line in read["lines"])
    assert "SN20260042" in texts.replace(" ", "")
    assert read["device"] == "cpu"
    assert {m["stage"] for m in read["models"]} >= {"detection", "recognition"}
    assert all(m["sha256"] for m in read["models"] if m["stage"] in ("detection", "recognition"))
    assert read["timings_ms"]["total"] > 0
    # verified by the worker against the product type's schema and threshold
    assert "fields" in {m["stage"] for m in read["models"]}
    assert read["review"]["auto_accept"] == pytest.approx(product_type.auto_accept_threshold)
    assert body["needs_review"] is read["needs_review"]
    sn = next(f for f in read["fields"] if f["name"] == "serial_number")
    assert sn["valid"] and set(sn["confidence_parts"]) == {
        "recognition",
        "extraction",
        "validation",
        "lookalike",  # the look-alike doubt (a factor of raw)
        "raw",  # their product; ``confidence`` is its calibrated probability
    }
    # the serial is searchable right away
    hits = station_client.get("/api/v1/serials", {"q": "SN20260042"}).json()["results"]
    assert hits and hits[0]["value"] == "SN20260042" and hits[0]["match"] == "exact"


def test_redelivered_message_does_not_duplicate_the_read(
    celery_worker_proc, station_client, product_type
):
    from workers.tasks import read_capture

    capture_id = _upload(station_client, label_png(["S/N: AB12345678"])).json()["id"]
    wait_for(lambda: Capture.objects.get(pk=capture_id).status == Capture.Status.DONE, 90)
    # the broker delivers the same message again (e.g. after a lost ack)
    read_capture.delay(capture_id)
    marker = f"capture {capture_id} already finished"
    wait_for(lambda: marker in celery_worker_proc.log(), 60)
    assert Read.objects.filter(capture_id=capture_id).count() == 1
    assert Field.objects.filter(read__capture_id=capture_id, name="serial_number").count() == 1


def _replace_stored_image(capture, data: bytes) -> None:
    """Overwrite a capture's original in place through the storage API (local files or S3)."""
    from django.core.files.base import ContentFile

    storage, name = capture.image.storage, capture.image.name
    storage.delete(name)
    assert storage.save(name, ContentFile(data)) == name


def test_undecodable_image_fails_terminally(celery_worker_proc, user, station, product_type):
    from django.db import transaction

    from ocrapp import services

    with transaction.atomic():  # the task is enqueued when this block commits
        capture, _ = services.capture_create(
            user=user,
            image_bytes=label_png(["S/N: X1"]),
            product_type=product_type,
            station=station,
        )
        _replace_stored_image(capture, b"\x89PNG\r\n\x1a\n garbage after a PNG signature")
    wait_for(lambda: Capture.objects.get(pk=capture.pk).status == Capture.Status.FAILED, 90)
    capture.refresh_from_db()
    assert capture.failure_code and capture.failure_reason
    assert capture.attempts == 1  # terminal: no retries
    assert not Read.objects.filter(capture=capture).exists()


def test_heic_phone_photo_is_read_upright_by_real_worker(
    celery_worker_proc, station_client, product_type
):
    """A phone's HEIC, stored turned with EXIF orientation 6 (made here by pillow-heif): the
    web accepts it with upright sizes and the worker reads the serial from it."""
    from PIL import Image

    from tests.images import encode, label_image

    exif = Image.Exif()
    exif[0x0112] = 6
    stored = label_image(["S/N: SN20261234", "P/N: PN-4410"]).transpose(Image.Transpose.ROTATE_90)
    data = encode(stored, "HEIF", exif=exif.tobytes(), quality=92)
    resp = _upload(station_client, data, name="IMG_0042.HEIC", ctype="image/heic")
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["image_format"] == "HEIF" and (body["width"], body["height"]) == (900, 420)
    capture_id = body["id"]
    body = station_client.get(f"/api/v1/captures/{capture_id}?wait=30").json()
    if body["status"] not in ("DONE", "FAILED"):
        body = station_client.get(f"/api/v1/captures/{capture_id}?wait=30").json()
    assert body["status"] == "DONE", (body, celery_worker_proc.log()[-3000:])
    assert body["fields"]["serial_number"] == "SN20261234"
    assert body["read"]["quality"]
