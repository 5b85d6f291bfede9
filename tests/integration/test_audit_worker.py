"""The real Celery worker writes the audit trail: one system event per saved read, carrying
the field values that ``audit_verify`` later checks."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from ocrapp.models import AuditEvent, Capture, Read
from tests.conftest import wait_for
from tests.images import label_png

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_worker_audits_the_read_it_saves(celery_worker_proc, station_client, product_type):
    resp = station_client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile("l.png", label_png(["S/N: SN20260042"]), "image/png"),
            "product_type": "nameplate",
        },
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    capture_id = resp.json()["id"]
    wait_for(lambda: Capture.objects.get(pk=capture_id).status == Capture.Status.DONE, 120)
    read = Read.objects.get(capture_id=capture_id)
    [event] = AuditEvent.objects.filter(object_type="ocrapp.read", object_id=str(read.pk))
    assert event.action == "create" and event.actor is None and event.actor_name == "system"
    assert event.after["fields"] == {
        str(f.pk): {"name": f.name, "value": f.value} for f in read.fields.all()
    }
    assert event.after["capture"] == capture_id
    created = AuditEvent.objects.get(object_type="ocrapp.capture", object_id=capture_id)
    assert created.action == "create" and created.id < event.id
    call_command("audit_verify")  # the worker's rows chain onto the web's
