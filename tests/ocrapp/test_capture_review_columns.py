"""``Capture.review_state`` / ``weakest_confidence`` (the latest read's, kept on the capture for
the capture list's indexed filters) stay right through read_save, the review and a retry, and
the migration's SQL backfill gives what the Python rule gives."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection

from ocrapp import roles, selectors, services
from ocrapp.errors import ApplicationError
from ocrapp.models import Capture, Field
from tests.review_data import (
    PASSWORD,
    accepted_result,
    failed_capture,
    person,
    queued_result,
    stored_capture,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def qm():
    return person("qm", roles.QUALITY_MANAGER)


def _columns(capture) -> tuple[str, float | None]:
    capture = Capture.objects.get(pk=capture.pk)
    return capture.review_state, capture.weakest_confidence


def _weakest(capture) -> float:
    read = capture.reads.order_by("-run").first()
    return min(Field.objects.filter(read=read).values_list("confidence", flat=True))


def _listed(qm, **filters) -> set:
    page = selectors.capture_page(user=qm, filters=selectors.SearchFilters(**filters))
    return {c.pk for c in page.items}


def test_read_save_writes_the_state_and_weakest_confidence(qm, station, product_type):
    queued = stored_capture(qm, station, product_type, queued_result("SN61000001", confidence=0.4))
    accepted = stored_capture(qm, station, product_type, accepted_result("SN61000002"))
    pending = stored_capture(qm, station, product_type, None)
    assert _columns(queued) == ("needs_review", pytest.approx(0.4))
    assert _columns(queued)[1] == pytest.approx(_weakest(queued))
    assert _columns(accepted) == ("accepted", pytest.approx(_weakest(accepted)))
    assert _columns(pending) == ("", None)
    # the capture list filters on them
    assert _listed(qm, review="needs_review") == {queued.pk}
    assert _listed(qm, review="accepted") == {accepted.pk}
    assert _listed(qm, conf_max=0.5) == {queued.pk}
    assert _listed(qm, conf_min=0.5) == {accepted.pk}


def test_review_accept_and_correct_move_the_state(qm, station, product_type):
    capture = stored_capture(qm, station, product_type, queued_result("SN62000001"))
    weakest = _columns(capture)[1]
    # one field signed of two: still waiting
    serial = Field.objects.get(read__capture=capture, name="serial_number")
    services.field_revise(
        user=qm, field_id=serial.pk, value="SN62000009", reason="misread", password=PASSWORD
    )
    assert _columns(capture) == ("needs_review", weakest)
    assert _listed(qm, review="needs_review") == {capture.pk}
    # every field signed: reviewed (the machine's confidence stays what it was)
    services.read_review(user=qm, capture_id=capture.pk, password=PASSWORD)
    assert _columns(capture) == ("reviewed", weakest)
    assert _listed(qm, review="reviewed") == {capture.pk}
    assert _listed(qm, review="needs_review") == set()
    # search filters by the same state
    hits = selectors.serial_search(
        q="SN62000009", user=qm, filters=selectors.SearchFilters(review="reviewed")
    )
    assert hits[0].value == "SN62000009" and hits[0].match == "exact"
    waiting = selectors.SearchFilters(review="needs_review")
    assert selectors.serial_search(q="SN62000009", user=qm, filters=waiting) == []
    # an accepted read signed as reviewed is reviewed too
    accepted = stored_capture(qm, station, product_type, accepted_result("SN62000002"))
    services.read_review(user=qm, capture_id=accepted.pk, password=PASSWORD)
    assert _columns(accepted)[0] == "reviewed"


def test_a_refused_review_leaves_the_columns(qm, station, product_type):
    capture = stored_capture(qm, station, product_type, queued_result("SN63000001"))
    before = _columns(capture)
    with pytest.raises(ApplicationError):  # wrong password: nothing signed
        services.read_review(user=qm, capture_id=capture.pk, password="wrong-password")
    assert _columns(capture) == before


@pytest.mark.django_db(transaction=True)
def test_retry_and_the_next_run_follow_the_latest_read(user, station, product_type):
    from workers.celery import app

    qm = person("qm2", roles.QUALITY_MANAGER)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("ocr")
        # a failed capture without a read: no state until its read is saved
        failed = failed_capture(user, station, product_type)
        services.capture_retry(user=qm, capture_id=failed.pk)
        assert _columns(failed) == ("", None)
        assert services.capture_claim(capture_id=failed.pk) is not None
        services.read_save(capture_id=failed.pk, result=queued_result("SN64000001"))
        assert _columns(failed)[0] == "needs_review"
        # a capture whose first run was signed, failed afterwards (forced here) and read again:
        # the retry keeps the first run's state, the second run's read replaces it
        signed = stored_capture(qm, station, product_type, accepted_result("SN64000002"))
        services.read_review(user=qm, capture_id=signed.pk, password=PASSWORD)
        assert _columns(signed)[0] == "reviewed"
        Capture.objects.filter(pk=signed.pk).update(status=Capture.Status.FAILED)
        services.capture_retry(user=qm, capture_id=signed.pk)
        assert _columns(signed)[0] == "reviewed"
        assert services.capture_claim(capture_id=signed.pk) is not None
        read = services.read_save(
            capture_id=signed.pk, result=queued_result("SN64000002", confidence=0.3)
        )
        assert read.run == 2
        assert _columns(signed) == ("needs_review", pytest.approx(0.3))
        conn.default_channel.queue_purge("ocr")


def test_the_migration_backfill_matches_the_rule(qm, station, product_type):
    captures = [
        stored_capture(qm, station, product_type, queued_result("SN65000001", confidence=0.3)),
        stored_capture(qm, station, product_type, accepted_result("SN65000002")),
        stored_capture(qm, station, product_type, queued_result("SN65000003")),
        stored_capture(qm, station, product_type, None),
    ]
    services.read_review(user=qm, capture_id=captures[2].pk, password=PASSWORD)
    expected = {c.pk: selectors.capture_review_columns(capture_id=c.pk) for c in captures}
    assert [expected[c.pk][0] for c in captures] == [
        "needs_review",
        "accepted",
        "reviewed",
        "",
    ]
    assert {c.pk: _columns(c) for c in captures} == expected  # what the services wrote
    Capture.objects.update(review_state="", weakest_confidence=None)
    migration = importlib.import_module("ocrapp.migrations.0015_wt_perf_capture_review")
    with connection.cursor() as cur:
        cur.execute(migration.BACKFILL)
    assert {c.pk: _columns(c) for c in captures} == expected
