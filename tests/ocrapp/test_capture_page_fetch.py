"""The capture pages' fetch of reads, lines, fields and revisions (``selectors._fetch_reads``):
the same objects as Django's prefetch, in a fixed number of queries, and a relation's
further queries stay the relation's."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Count, Prefetch
from django.test.utils import CaptureQueriesContext

from ocrapp import roles, selectors, services
from ocrapp.api import CaptureOutput
from ocrapp.models import Capture, Read
from tests.review_data import PASSWORD, accepted_result, person, queued_result, stored_capture

pytestmark = pytest.mark.django_db


def _shape(capture) -> list:
    return [
        (
            r.run,
            [(ln.order, ln.text) for ln in r.lines.all()],
            [
                (
                    f.name,
                    f.current_value,
                    f.line.order if f.line else None,
                    [(v.seq, v.new_value) for v in f.revisions.all()],
                )
                for f in r.fields.all()
            ],
        )  # fmt: skip
        for r in capture.reads.all()
    ]


def test_list_page_fetch_matches_the_prefetch_and_keeps_relations_scoped(station, product_type):
    qm = person("qm", roles.QUALITY_MANAGER)
    a = stored_capture(qm, station, product_type, accepted_result("SN1001"))
    b = stored_capture(qm, station, product_type, queued_result("SN1002", confidence=0.5))
    serial = b.reads.get().fields.get(name="serial_number")
    services.field_revise(
        user=qm, field_id=serial.pk, value="SN1003", reason="misread", meaning="corrected",
        password=PASSWORD,
    )  # fmt: skip
    stored_capture(qm, station, product_type, accepted_result("SN1004"))
    page = selectors.capture_page(user=qm)
    assert [c.pk for c in page.items][-2:] == [b.pk, a.pk]
    for c in page.items:
        # Django's prefetch of the same relations as the reference
        ref = Capture.objects.prefetch_related(
            Prefetch("reads", queryset=Read.objects.order_by("-run")),
            "reads__lines",
            "reads__fields__line",
            "reads__fields__revisions",
        ).get(pk=c.pk)
        assert _shape(c) == _shape(ref) and _shape(c)[0][2]  # the same reads, lines, fields
        detail = selectors.capture_get(capture_id=c.pk, user=qm)  # the detail page's fetch
        assert _shape(detail) == _shape(ref)
    listed_b = next(c for c in page.items if c.pk == b.pk)
    # everything the API shows of the page comes from the fetch: no query per capture
    with CaptureQueriesContext(connection) as ctx:
        out = CaptureOutput(page.items, many=True, context={"request": None}).data
        shapes = [_shape(c) for c in page.items]
    assert len(ctx.captured_queries) == 0
    assert {o["fields"]["serial_number"] for o in out} == {"SN1001", "SN1003", "SN1004"}
    assert shapes[[c.pk for c in page.items].index(b.pk)][0][2][0][3] == [(1, "SN1003")]
    # a new query on a fetched relation is the relation's (this read's fields only) ...
    read = listed_b.reads.all()[0]
    assert {f.read_id for f in read.fields.filter(name__in=["serial_number", "part_number"])} == {
        read.pk
    }
    assert read.fields.count() == len(read.fields.all()) == read.fields.all().count()
    assert list(read.fields.order_by("-id")) == list(reversed(read.fields.all()))
    total = read.fields.aggregate(n=Count("id"))["n"]
    assert total == len(read.fields.all())
    # ... and the way back is set
    f = next(f for f in read.fields.all() if f.name == "serial_number")
    with CaptureQueriesContext(connection) as ctx:
        assert f.read is read and read.capture is listed_b
        assert f.revisions.all()[0].field is f and f.line is not None
    assert len(ctx.captured_queries) == 0
