"""Capture images on S3-compatible object storage (IMAGE_STORAGE=s3), end to end.

The S3 server is moto in standalone server mode (``python -m moto.server``), started here as a
subprocess on a free 127.0.0.1 port. It is a real HTTP server speaking the S3 REST API, so the
web side (django-storages/boto3 in this process), the real Celery worker (another process, same
settings through its environment) and the independent boto3 client of the checks all talk to it
over HTTP exactly as they would to MinIO or AWS; nothing is patched in any process. Moto is used
because it is the only S3-compatible server installable from PyPI / Debian on the machines this
project runs on: MinIO, SeaweedFS and Garage ship as binaries or images that cannot be fetched
there (docker-compose uses MinIO where Docker is available).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.test.utils import override_settings

from ocrapp import services
from ocrapp.config import image_storage_from_env
from ocrapp.models import Capture, ProductType, Read
from tests.conftest import run_celery_worker, wait_for
from tests.images import label_png

_MISSING = [
    m for m in ("moto", "flask", "boto3", "storages") if importlib.util.find_spec(m) is None
]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        bool(_MISSING),
        reason=f"the S3 test server needs moto[s3] + Flask (requirements-dev.txt); missing: {_MISSING}",
    ),
]

BUCKET = "serialread-test-images"


@dataclass(frozen=True)
class S3:
    env: dict[str, str]  # what web and worker get: IMAGE_STORAGE=s3 + S3_* variables
    client: object  # a boto3 S3 client of its own, independent of Django's storage

    def keys(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server in a subprocess on 127.0.0.1, with an empty private bucket."""
    import boto3

    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = {
            "IMAGE_STORAGE": "s3",
            "S3_ENDPOINT_URL": endpoint,
            "S3_BUCKET": BUCKET,
            "S3_REGION": "us-east-1",
            "S3_ACCESS_KEY_ID": "test-access-key",
            "S3_SECRET_ACCESS_KEY": "test-secret-key",
            "S3_ADDRESSING_STYLE": "path",
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test-access-key",
            aws_secret_access_key="test-secret-key",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.list_buckets()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        client.create_bucket(Bucket=BUCKET)
        yield S3(env=env, client=client)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def worker_media(tmp_path_factory) -> Path:
    """The worker's MEDIA_ROOT: empty, and it must stay so (images come from the bucket)."""
    return tmp_path_factory.mktemp("worker-media")


@pytest.fixture(scope="module")
def s3_worker(s3, worker_media, django_db_setup, django_db_blocker, tmp_path_factory):
    """The same real Celery worker as test_worker.py, with IMAGE_STORAGE=s3 in its environment."""
    extra = {**s3.env, "MEDIA_ROOT": str(worker_media)}
    with run_celery_worker(django_db_blocker, tmp_path_factory.mktemp("worker"), extra) as w:
        yield w


@pytest.fixture
def s3_storage(s3):
    """This (web) process with the settings IMAGE_STORAGE=s3 gives, as the worker has them."""
    storages = {
        "default": image_storage_from_env(s3.env),
        "staticfiles": settings.STORAGES["staticfiles"],
    }
    with override_settings(STORAGES=storages):
        yield


def _media_files() -> set[str]:
    found = set()
    for root, _dirs, files in os.walk(settings.MEDIA_ROOT):
        found.update(os.path.join(root, f) for f in files)
    return found


def _upload(client, data: bytes):
    return client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile("label.png", data, "image/png"),
            "product_type": "nameplate",
            "client_ref": "s3-1",
        },
        format="multipart",
    )


def test_upload_goes_to_the_bucket_and_a_real_worker_reads_it_back(
    s3, s3_worker, worker_media, s3_storage, station_client, product_type, user, client
):
    from storages.backends.s3 import S3Storage

    data = label_png(["S/N: SN20260077", "P/N: PN-7731"])
    media_before = _media_files()
    resp = _upload(station_client, data)
    assert resp.status_code == 202, resp.content
    capture = Capture.objects.get(pk=resp.json()["id"])
    assert isinstance(capture.image.storage, S3Storage)

    # The object is in the bucket, as the S3 server itself reports it (not through Django) ...
    stored = s3.client.get_object(Bucket=BUCKET, Key=capture.image.name)["Body"].read()
    assert stored == data
    assert hashlib.sha256(stored).hexdigest() == capture.sha256 == hashlib.sha256(data).hexdigest()
    # ... private (no grant to everyone / any AWS user), and nothing went to the local disk.
    grants = s3.client.get_object_acl(Bucket=BUCKET, Key=capture.image.name)["Grants"]
    assert not [g for g in grants if "URI" in g["Grantee"]], grants
    assert _media_files() == media_before

    # The real worker (IMAGE_STORAGE=s3 in its environment) reads it from the bucket.
    wait_for(
        lambda: (
            Capture.objects.get(pk=capture.pk).status
            in (Capture.Status.DONE, Capture.Status.FAILED)
        ),
        120,
    )
    capture.refresh_from_db()
    assert capture.status == Capture.Status.DONE, (
        capture.failure_code,
        capture.failure_reason,
        s3_worker.log()[-3000:],
    )
    body = station_client.get(f"/api/v1/captures/{capture.pk}").json()
    assert body["fields"]["serial_number"] == "SN20260077"
    assert Read.objects.filter(capture=capture).count() == 1
    assert (
        capture.sha256
        == hashlib.sha256(services.capture_image_bytes(capture_id=capture.pk)).hexdigest()
    )
    assert not any(worker_media.rglob("*"))

    # The operator's image page streams the original from the bucket too.
    client.force_login(user)
    page = client.get(f"/captures/{capture.pk}/image")
    assert page.status_code == 200
    assert b"".join(page.streaming_content) == data


def test_a_capture_whose_object_was_deleted_fails_image_missing(
    s3, s3_worker, s3_storage, user, station, product_type, client
):
    with transaction.atomic():  # the task is enqueued when this block commits
        capture, _ = services.capture_create(
            user=user,
            image_bytes=label_png(["S/N: GONE123"]),
            product_type=product_type,
            station=station,
        )
        assert capture.image.name in s3.keys()
        s3.client.delete_object(Bucket=BUCKET, Key=capture.image.name)
        assert capture.image.name not in s3.keys()
    wait_for(lambda: Capture.objects.get(pk=capture.pk).status == Capture.Status.FAILED, 90)
    capture.refresh_from_db()
    assert capture.failure_code == "image_missing", (
        capture.failure_reason,
        s3_worker.log()[-3000:],
    )
    assert capture.attempts == 1  # terminal: retrying will not bring the object back
    assert not Read.objects.filter(capture=capture).exists()
    with pytest.raises(services.ImageMissing):
        services.capture_image_bytes(capture_id=capture.pk)
    client.force_login(user)
    assert client.get(f"/captures/{capture.pk}/image").status_code == 404


def test_failed_database_write_deletes_the_uploaded_object(s3, s3_storage, user, station):
    """The object is written first; when the row cannot be committed it is deleted again."""
    from ocrapp.demo import DEMO_PRODUCT_TYPES

    gone = services.product_type_create(name="retired", **DEMO_PRODUCT_TYPES["nameplate"])
    ProductType.objects.filter(pk=gone.pk).delete()  # deleted while the upload was in flight
    keys_before = s3.keys()
    with pytest.raises(IntegrityError, match="foreign key"):
        services.capture_create(
            user=user, image_bytes=label_png(["S/N: X1"]), product_type=gone, station=station
        )
    assert s3.keys() == keys_before
    assert not Capture.objects.exists()


def test_unreachable_object_store_is_a_json_503_and_nothing_is_stored(station_client, product_type):
    """No S3 server listens on the endpoint: the upload is refused cleanly, not half-stored."""
    env = {
        "IMAGE_STORAGE": "s3",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
        "S3_BUCKET": BUCKET,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": "k",
        "S3_SECRET_ACCESS_KEY": "s",
        "S3_ADDRESSING_STYLE": "path",
    }
    storages = {
        "default": image_storage_from_env(env),
        "staticfiles": settings.STORAGES["staticfiles"],
    }
    media_before = _media_files()
    with override_settings(STORAGES=storages):
        resp = _upload(station_client, label_png(["S/N: X2"]))
    assert resp.status_code == 503, resp.content
    assert resp.json()["error"]["code"] == "storage_unavailable"
    assert not Capture.objects.exists()
    assert _media_files() == media_before


def test_an_object_deleted_between_open_and_read_counts_as_missing(s3, s3_storage):
    """S3Storage.open checks the object (HEAD); a delete before the GET is a botocore
    NoSuchKey, which capture_image_bytes must treat as missing too, not as a retryable error."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    name = default_storage.save("captures/race/x.png", ContentFile(b"bytes"))
    fh = default_storage.open(name, "rb")
    s3.client.delete_object(Bucket=BUCKET, Key=name)
    with pytest.raises(Exception) as err:
        fh.read()
    assert type(err.value).__name__ in {"ClientError", "NoSuchKey"}
    assert services._is_missing_object(err.value)


def test_retention_deletes_the_object_and_keeps_the_records(s3, s3_storage, user, station):
    """purge_images on S3: the object leaves the bucket (the storage API), the capture, its read
    and sha256 stay; a second run deletes nothing more."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.review_data import accepted_result, stored_capture

    product = ProductType.objects.get_or_create(name="nameplate")[0]
    old = stored_capture(user, station, product, accepted_result("SN20250077"))
    new = stored_capture(user, station, product, accepted_result("SN20260078"))
    assert {old.image.name, new.image.name} <= s3.keys()
    Capture.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=100))

    report = services.images_purge(older_than_days=90)
    assert report.purged == 1 and report.errors == 0
    keys = s3.keys()
    assert old.image.name not in keys and new.image.name in keys
    kept = Capture.objects.get(pk=old.pk)
    assert kept.image_purged_at is not None and kept.sha256 == old.sha256
    assert Read.objects.filter(capture=kept).count() == 1
    assert services.images_purge(older_than_days=90).purged == 0
