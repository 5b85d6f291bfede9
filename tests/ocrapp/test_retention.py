"""Retention: ``manage.py purge_images`` deletes old images through the storage API and keeps
the records (capture, reads, fields, search rows, sha256); pages and API say so."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from ocrapp import audit, services
from ocrapp.models import AuditEvent, Capture, Field, Read, SerialRecord
from tests.review_data import (
    accepted_result,
    failed_capture,
    grant,
    person,
    queued_result,
    stored_capture,
)

pytestmark = pytest.mark.django_db


def _age(capture: Capture, days: int) -> Capture:
    Capture.objects.filter(pk=capture.pk).update(created_at=timezone.now() - timedelta(days=days))
    return Capture.objects.get(pk=capture.pk)


def _purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_images", *args, stdout=out)
    return out.getvalue()


def _stored(capture: Capture) -> bool:
    return capture.image.storage.exists(capture.image.name)


@pytest.fixture
def captures(user, station, product_type):
    old = _age(stored_capture(user, station, product_type, accepted_result("SN20250001")), 40)
    new = _age(stored_capture(user, station, product_type, accepted_result("SN20260002")), 5)
    pending = _age(stored_capture(user, station, product_type, None), 40)
    waiting = _age(stored_capture(user, station, product_type, queued_result("SN20250003")), 40)
    failed = _age(failed_capture(user, station, product_type), 40)
    return {"old": old, "new": new, "pending": pending, "waiting": waiting, "failed": failed}


def test_dry_run_changes_nothing(captures):
    events = AuditEvent.objects.count()
    out = _purge("--older-than", "30", "--dry-run")
    assert "would delete 2" in out and "1 still being read" in out and "1 waiting" in out
    assert all(_stored(c) for c in captures.values())
    assert not Capture.objects.filter(image_purged_at__isnull=False).exists()
    assert AuditEvent.objects.count() == events


def test_purge_deletes_old_images_and_keeps_the_records(captures):
    old = captures["old"]
    reads = Read.objects.count()
    fields = list(Field.objects.filter(read__capture=old).values_list("name", "value"))
    records = SerialRecord.objects.filter(capture=old).count()
    out = _purge("--older-than", "30")
    assert "deleted 2" in out

    purged = {c.pk for c in Capture.objects.filter(image_purged_at__isnull=False)}
    assert purged == {captures["old"].pk, captures["failed"].pk}
    for name in ("old", "failed"):
        assert not _stored(captures[name])
    for name in ("new", "pending", "waiting"):
        assert _stored(captures[name])  # too new, still being read, waiting for review

    again = Capture.objects.get(pk=old.pk)
    assert again.sha256 == old.sha256 and again.image.name == old.image.name
    assert Read.objects.count() == reads
    assert list(Field.objects.filter(read__capture=old).values_list("name", "value")) == fields
    assert SerialRecord.objects.filter(capture=old).count() == records

    events = AuditEvent.objects.filter(action=services.IMAGE_PURGED_ACTION)
    assert {e.object_id for e in events} == {str(pk) for pk in purged}
    assert events.get(object_id=str(old.pk)).after["sha256"] == old.sha256
    run = AuditEvent.objects.get(action=services.RETENTION_RUN_ACTION)
    assert run.after["purged"] == 2 and run.after["kept_for_review"] == 1
    assert audit.verify_chain()[1] is None


def test_purge_is_idempotent(captures):
    _purge("--older-than", "30")
    marked = dict(
        Capture.objects.filter(image_purged_at__isnull=False).values_list("pk", "image_purged_at")
    )
    assert "deleted 0" in _purge("--older-than", "30")
    assert (
        dict(
            Capture.objects.filter(image_purged_at__isnull=False).values_list(
                "pk", "image_purged_at"
            )
        )
        == marked
    )
    assert AuditEvent.objects.filter(action=services.IMAGE_PURGED_ACTION).count() == 2


def test_interrupted_after_the_delete_is_finished_by_the_next_run(captures):
    """A run killed between deleting the file and committing the mark: the file is gone, the
    capture unmarked; the next run marks it (deleting a missing file is not an error)."""
    old = captures["old"]
    old.image.storage.delete(old.image.name)
    assert "deleted 2" in _purge("--older-than", "30")
    assert Capture.objects.get(pk=old.pk).image_purged_at is not None


def test_bad_days_is_an_error(db):
    with pytest.raises(CommandError):
        _purge("--older-than", "-1")
    with pytest.raises(CommandError):
        _purge("--older-than", "soon")
    assert not AuditEvent.objects.filter(action=services.RETENTION_RUN_ACTION).exists()


def test_pages_and_api_say_image_deleted(client, captures, station):
    services.images_purge(older_than_days=30)
    old = captures["old"]
    qm = person("qm", "quality_manager")
    client.force_login(qm)

    page = client.get(f"/captures/{old.pk}/")
    assert page.status_code == 200
    assert b"Image deleted by retention" in page.content and b"data-image-purged" in page.content
    assert old.sha256.encode() in page.content
    image = client.get(f"/captures/{old.pk}/image")
    assert image.status_code == 410
    crop = client.get(f"/captures/{old.pk}/lines/0/crop.png")
    assert crop.status_code in (404, 410)

    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(qm)
    body = api.get(f"/api/v1/captures/{old.pk}").json()
    assert body["image_url"] is None
    assert body["image_purged"]["message"] == "Image deleted by retention."
    assert body["sha256"] == old.sha256 and body["status"] == "DONE"
    assert body["fields"]["serial_number"] == "SN20250001"
    fresh = api.get(f"/api/v1/captures/{captures['new'].pk}").json()
    assert fresh["image_purged"] is None and fresh["image_url"]


def test_purged_failed_capture_cannot_be_retried(captures):
    services.images_purge(older_than_days=30)
    qm = grant(person("qm2", "quality_manager"), "quality_manager")
    failed = captures["failed"]
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(qm)
    resp = api.post(f"/api/v1/captures/{failed.pk}/retry")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "image_purged"
    assert Capture.objects.get(pk=failed.pk).status == Capture.Status.FAILED
    with pytest.raises(services.ImageMissing):
        services.capture_image_bytes(capture_id=failed.pk)
