"""``manage.py fill_reads`` (small N): synthetic reads that search, list and audit_verify see."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from ocrapp import roles, selectors
from ocrapp.models import AuditEvent, Capture, Field, Read, SerialRecord, TextLine
from tests.review_data import person

pytestmark = pytest.mark.django_db


def test_fill_reads_writes_marked_searchable_audited_reads(capsys):
    call_command("fill_reads", "300", "--batch", "120", "--days", "30")
    caps = Capture.objects.filter(station_line__startswith="SYN-")
    assert caps.count() == 300
    assert set(caps.values_list("original_filename", flat=True)) == {"synthetic"}
    done = caps.filter(status="DONE").count()
    assert 270 <= done < 300 or done == 300
    assert Field.objects.filter(read__capture__in=caps).count() == 3 * done
    rows = SerialRecord.objects.filter(capture__in=caps)
    assert rows.filter(source="text").count() == 3 * done
    assert len({s.station_id for s in rows[:300]}) > 3  # spread over stations
    # each read has its printed lines; a field points at the line that prints its value
    assert TextLine.objects.filter(read__capture__in=caps).count() == 5 * done
    f = Field.objects.filter(read__capture__in=caps, name="serial_number").select_related("line")[0]
    assert f.line.text == f"S/N: {f.value}" and len(f.line.char_confidences) == len(f.line.text)
    # in time order (as a line writes them), spread over the 30 days
    times = list(
        Read.objects.filter(capture__in=caps).order_by("id").values_list("created_at", flat=True)
    )
    assert times == sorted(times)
    assert (times[-1] - times[0]).days >= 28
    # one audit event per batch records the values: audit_verify checks them like any other
    events = AuditEvent.objects.filter(reason__contains="synthetic bench data", action="create")
    assert events.filter(object_type="ocrapp.read").count() == 3
    call_command("audit_verify")
    assert "audit trail intact" in capsys.readouterr().out
    # found by search (exact, printed form kept) and listed
    qm = person("qm", roles.QUALITY_MANAGER)
    row = rows.filter(field_name="serial_number").first()
    hits = selectors.serial_search(q=row.display, user=qm)
    assert hits[0].value == row.value and hits[0].match == "exact"
    assert hits[0].display == row.display
    # the capture's review columns are what read_save would have written
    for capture in caps.order_by("id")[:60]:
        want = selectors.capture_review_columns(capture_id=capture.pk)
        assert (capture.review_state, capture.weakest_confidence) == want
    assert caps.filter(review_state="needs_review").exists()
    page = selectors.capture_page(user=qm, filters=selectors.SearchFilters(line="SYN-1"))
    assert page.total == caps.filter(station_line="SYN-1").count() > 0
    # a second run adds more (numbering goes on) and stays consistent
    call_command("fill_reads", "50")
    assert caps.count() == 350
    call_command("audit_verify")
