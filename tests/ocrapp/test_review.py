"""Review queue, corrections as signed revisions, electronic signature, retry (services + API).

Real PostgreSQL, real services; reads stored with ``read_save`` from contract-built results.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from ocrapp import roles, selectors, services, signature
from ocrapp.models import AuditEvent, Capture, Field, FieldRevision, SerialRecord, Station
from tests.review_data import (
    PASSWORD,
    accepted_result,
    failed_capture,
    person,
    queued_result,
    stored_capture,
)

pytestmark = pytest.mark.django_db

RAW = "SN2O260042"  # what the recogniser read (O for 0)
FIXED = "SN20260042"


@pytest.fixture
def qm(db):
    return person("ada", roles.QUALITY_MANAGER, first="Ada", last="Kim")


@pytest.fixture
def qm_client(qm):
    client = APIClient()
    assert client.login(username="ada", password=PASSWORD)  # a password check: stamps the session
    return client


def _queued(user, station, product_type, serial, **kw):
    return stored_capture(user, station, product_type, queued_result(serial, **kw))


def _serial_field(capture) -> Field:
    return Field.objects.get(read__capture=capture, name="serial_number")


def _nothing_signed() -> None:
    assert FieldRevision.objects.count() == 0
    assert not AuditEvent.objects.filter(action="field_revised").exists()


def _review(client, capture, **body):
    return client.post(f"/api/v1/captures/{capture.pk}/review", body, format="json")


# --- the queue ---------------------------------------------------------------------------------


def test_queue_orders_mislabel_then_invalid_then_lowest_confidence(
    user, station, product_type, qm, qm_client
):
    low = _queued(user, station, product_type, "SN1000001", confidence=0.40)
    lower = _queued(user, station, product_type, "SN1000002", confidence=0.20)
    invalid = _queued(user, station, product_type, "SN1000003", confidence=0.80, invalid_part=True)
    mislabel = _queued(user, station, product_type, "SN1000004", confidence=0.84, mislabel="SN9")
    stored_capture(user, station, product_type, accepted_result("SN1000005"))  # not queued

    order = [r.capture_id for r in selectors.review_queue(user=qm)]
    assert order == [mislabel.pk, invalid.pk, lower.pk, low.pk]

    resp = qm_client.get("/api/v1/review-queue")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["count"] == 4
    assert [r["capture_id"] for r in body["results"]] == [str(c) for c in order]
    first = body["results"][0]
    assert (
        first["mislabel"] is True and {"code": "mislabel"}.items() <= first["reasons"][-1].items()
    )
    assert body["results"][1]["invalid"] is True and body["results"][1]["mislabel"] is False
    assert body["results"][2]["min_confidence"] == pytest.approx(0.2)


def test_queue_filters_by_line_station_product_type_and_reason(
    user, station, product_type, qm, qm_client
):
    other_line = services.station_create(line="LINE-2", name="station-B")
    other_line.members.add(user)  # the uploader works at both stations (the QM reviews)
    sticker = services.product_type_create(
        name="sticker", field_schema={"fields": [{"name": "serial_number", "required": True}]}
    )
    a = _queued(user, station, product_type, "SN2000001")
    b = _queued(user, other_line, product_type, "SN2000002", mislabel="SN8")
    c = _queued(user, station, sticker, "SN2000003")

    def ids(**params):
        resp = qm_client.get("/api/v1/review-queue", params)
        assert resp.status_code == 200, resp.content
        assert resp.json()["count"] == len(resp.json()["results"])
        return {r["capture_id"] for r in resp.json()["results"]}

    assert ids() == {str(a.pk), str(b.pk), str(c.pk)}
    assert ids(line="LINE-2") == {str(b.pk)}
    assert ids(station=station.pk) == {str(a.pk), str(c.pk)}
    assert ids(product_type="sticker") == {str(c.pk)}
    assert ids(product_type=str(product_type.pk), station=station.pk) == {str(a.pk)}
    assert ids(reason="mislabel") == {str(b.pk)}
    assert ids(reason="low_confidence") == {str(a.pk), str(b.pk), str(c.pk)}
    bad = qm_client.get("/api/v1/review-queue", {"reason": "glare"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"


def test_queue_is_scoped_and_needs_the_review_permission(user, station, product_type, qm):
    other = services.station_create(line="LINE-2", name="station-B")
    other.members.add(user)  # the uploader works at both; op2 below only at ``station``
    mine = _queued(user, station, product_type, "SN3000001")
    _queued(user, other, product_type, "SN3000002")
    operator = person("op2", roles.OPERATOR, stations=[station])
    assert [r.capture_id for r in selectors.review_queue(user=operator)] == [mine.pk]
    assert selectors.review_queue_count(user=operator) == 1
    assert selectors.review_queue_count(user=qm) == 2

    auditor = person("aud", roles.AUDITOR)
    client = APIClient()
    client.force_authenticate(auditor)
    resp = client.get("/api/v1/review-queue")
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"
    assert selectors.review_queue_count(user=auditor) == 0

    # an operator cannot review a capture of another station: not found, nothing stored
    client = APIClient()
    assert client.login(username="op2", password=PASSWORD)
    theirs = Capture.objects.get(station=other)
    assert _review(client, theirs).status_code == 404
    _nothing_signed()


# --- accepting and correcting --------------------------------------------------------------------


def test_accepting_a_read_signs_every_field_and_clears_it_from_the_queue(
    user, station, product_type, qm, qm_client
):
    capture = _queued(user, station, product_type, FIXED)
    assert selectors.review_queue_count(user=qm) == 1

    resp = _review(qm_client, capture, base_revision=0)
    assert resp.status_code == 200, resp.content
    revisions = list(FieldRevision.objects.order_by("field__name"))
    assert [(r.field.name, r.meaning, r.seq) for r in revisions] == [
        ("part_number", "reviewed", 1),
        ("serial_number", "reviewed", 1),
    ]
    serial = revisions[1]
    assert serial.old_value == serial.new_value == FIXED
    assert serial.signer == qm and serial.signer_name == "Ada Kim (ada)"
    assert serial.valid is True and serial.check_reasons == []
    assert selectors.review_queue_count(user=qm) == 0
    body = resp.json()
    assert body["capture"]["reviewed"] is True
    assert {r["meaning"] for r in body["revisions"]} == {"reviewed"}
    events = AuditEvent.objects.filter(action="field_revised")
    assert events.count() == 2
    assert {e.actor_id for e in events} == {qm.pk}
    assert events.get(object_id=str(serial.field_id)).after["meaning"] == "reviewed"


def test_a_correction_is_a_new_revision_the_search_follows_and_the_old_value_is_was(
    user, station, product_type, qm, qm_client
):
    capture = _queued(user, station, product_type, RAW)
    field = _serial_field(capture)
    assert SerialRecord.objects.get(field=field).value == RAW

    resp = _review(
        qm_client, capture, fields={"serial_number": {"value": "sn2026 0042", "reason": "misread"}}
    )
    assert resp.status_code == 200, resp.content

    field.refresh_from_db()
    assert field.value == RAW  # the machine read is kept
    assert field.current_value == FIXED  # normalised like the pipeline (upper, no spaces)
    rev = field.revisions.get()
    assert (rev.old_value, rev.new_value, rev.entered_value) == (RAW, FIXED, "sn2026 0042")
    assert (rev.meaning, rev.reason_code, rev.reason_text) == ("corrected", "misread", "")
    part = Field.objects.get(read__capture=capture, name="part_number").revisions.get()
    assert part.meaning == "reviewed"
    audit_row = AuditEvent.objects.get(action="field_revised", object_id=str(field.pk))
    assert audit_row.before["value"] == RAW and audit_row.after["value"] == FIXED
    assert audit_row.reason == "misread"

    # the index follows the value in force; the old value stays findable as "was"
    rows = {r.value: r.superseded for r in SerialRecord.objects.filter(field=field)}
    assert rows == {FIXED: False, RAW: True}
    new_hit = selectors.serial_search(q=FIXED, user=qm)[0]
    assert (new_hit.value, new_hit.match, new_hit.was_only) == (FIXED, "exact", False)
    old_hit = next(h for h in selectors.serial_search(q=RAW, user=qm) if h.value == RAW)
    assert old_hit.match == "exact" and old_hit.was_only
    history = qm_client.get(f"/api/v1/serials/{RAW}/history").json()["history"]
    assert [(h["superseded"], h["current_value"]) for h in history] == [(True, FIXED)]
    assert qm_client.get(f"/api/v1/captures/{capture.pk}").json()["fields"]["serial_number"] == (
        FIXED
    )

    # a second correction back: the first row is current again, nothing is deleted
    resp = qm_client.post(
        f"/api/v1/fields/{field.pk}/revisions",
        {"value": RAW, "reason": "the label really says O", "base_seq": 1},
        format="json",
    )
    assert resp.status_code == 201, resp.content
    assert [r.seq for r in field.revisions.all()] == [1, 2]
    second = field.revisions.get(seq=2)
    assert (second.reason_code, second.reason_text) == ("other", "the label really says O")
    rows = {r.value: r.superseded for r in SerialRecord.objects.filter(field=field)}
    assert rows == {FIXED: True, RAW: False}

    listed = qm_client.get(f"/api/v1/captures/{capture.pk}/revisions").json()["revisions"]
    serial_revs = [r for r in listed if r["field"] == "serial_number"]
    assert [(r["seq"], r["old_value"], r["new_value"]) for r in serial_revs] == [
        (1, RAW, FIXED),
        (2, FIXED, RAW),
    ]
    assert serial_revs[0]["signer_name"] == "Ada Kim (ada)"


def test_an_invalid_correction_is_refused_with_its_reasons_unless_overridden(
    user, station, product_type, qm, qm_client
):
    capture = _queued(user, station, product_type, FIXED)
    field = _serial_field(capture)
    index_before = list(SerialRecord.objects.values_list("value", "superseded"))

    resp = _review(
        qm_client, capture, fields={"serial_number": {"value": "SN#1", "reason": "misread"}}
    )
    assert resp.status_code == 400, resp.content
    err = resp.json()["error"]
    assert err["code"] == "invalid_value"
    assert [r["code"] for r in err["details"]["fields"]["serial_number"]["reasons"]] == ["pattern"]
    _nothing_signed()
    field.refresh_from_db()
    assert field.current_value == FIXED
    assert list(SerialRecord.objects.values_list("value", "superseded")) == index_before
    assert selectors.review_queue_count(user=qm) == 1

    # the same code as the pipeline's verifier decides: a value it accepts passes
    assert selectors.field_check(capture=capture, name="serial_number", value="SN#1").valid is False
    assert selectors.field_check(capture=capture, name="serial_number", value="SN-1/2").valid

    # an override needs a reason...
    resp = _review(
        qm_client, capture, fields={"serial_number": {"value": "SN#1", "override": True}}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "reason_required"
    _nothing_signed()
    # ... and with one the value is signed, marked invalid and overridden
    resp = _review(
        qm_client,
        capture,
        fields={"serial_number": {"value": "SN#1", "override": True, "reason": "damaged_label"}},
    )
    assert resp.status_code == 200, resp.content
    rev = field.revisions.get()
    assert (rev.new_value, rev.valid, rev.override) == ("SN#1", False, True)
    assert rev.check_reasons[0]["code"] == "pattern"


def test_a_correction_needs_a_reason_and_unknown_fields_are_refused(
    user, station, product_type, qm_client
):
    capture = _queued(user, station, product_type, RAW)
    resp = _review(qm_client, capture, fields={"serial_number": {"value": FIXED}})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "reason_required"
    resp = _review(qm_client, capture, fields={"imei": {"value": "1", "reason": "misread"}})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unknown_field"
    resp = _review(qm_client, capture, meaning="liked")
    assert resp.status_code == 400
    _nothing_signed()


def test_a_stale_view_is_refused(user, station, product_type, qm, qm_client):
    capture = _queued(user, station, product_type, RAW)
    assert _review(qm_client, capture, base_revision=0).status_code == 200
    # another reviewer saw the read before that signature
    resp = _review(
        qm_client,
        capture,
        base_revision=0,
        fields={"serial_number": {"value": FIXED, "reason": "misread"}},
    )
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "stale_read"
    assert FieldRevision.objects.count() == 2
    # approving what is there, having seen it, is a new signature
    resp = _review(qm_client, capture, base_revision=2, meaning="approved")
    assert resp.status_code == 200
    assert sorted(FieldRevision.objects.values_list("meaning", flat=True)) == [
        "approved",
        "approved",
        "reviewed",
        "reviewed",
    ]


def test_revisions_are_append_only_in_the_database(user, station, product_type, qm_client):
    capture = _queued(user, station, product_type, FIXED)
    assert _review(qm_client, capture).status_code == 200
    rev = FieldRevision.objects.first()
    for sql in (
        "UPDATE ocrapp_fieldrevision SET new_value = 'X' WHERE id = %s",
        "DELETE FROM ocrapp_fieldrevision WHERE id = %s",
    ):
        with pytest.raises(Exception, match="append-only"), transaction.atomic():
            with connection.cursor() as cur:
                cur.execute(sql, [rev.pk])
    with pytest.raises(IntegrityError), transaction.atomic():
        FieldRevision.objects.create(
            field=rev.field, seq=rev.seq, meaning="reviewed", signer=rev.signer,
            signer_name="x", signed_at=timezone.now(), valid=True,
        )  # fmt: skip


def test_suggestions_come_from_the_recogniser_alternatives_valid_first(user, station, product_type):
    # "S/N: SN2O260042": position 8 is the O; the recogniser also saw 0 and Q there
    capture = _queued(
        user,
        station,
        product_type,
        FIXED,
        raw=RAW,
        alternatives={8: [("O", 0.55), ("0", 0.40), ("#", 0.05)]},
    )
    field = Field.objects.select_related("line").get(pk=_serial_field(capture).pk)
    assert selectors.field_span(field=field) == (5, 15)
    got = selectors.field_suggestions(field=field, capture=capture)
    # "SN20260042" is the value in force already: not suggested; "SN2#260042" fails the pattern
    assert [(s.value, s.valid) for s in got] == [("SN2#260042", False)]
    field.current_value = RAW
    got = selectors.field_suggestions(field=field, capture=capture)
    assert [(s.value, s.valid) for s in got] == [(FIXED, True), ("SN2#260042", False)]


# --- the electronic signature ---------------------------------------------------------------------


def test_no_password_while_the_session_checked_it_recently(
    user, station, product_type, qm, qm_client
):
    capture = _queued(user, station, product_type, FIXED)
    assert _review(qm_client, capture).status_code == 200  # logged in a moment ago
    assert FieldRevision.objects.filter(signer=qm).count() == 2


@override_settings(SIGNATURE_REAUTH_MINUTES=15)
def test_password_due_after_the_reauth_minutes(user, station, product_type, qm, qm_client):
    capture = _queued(user, station, product_type, FIXED)
    session = qm_client.session
    session[signature.SESSION_KEY] = (timezone.now() - timedelta(minutes=16)).isoformat()
    session.save()

    resp = _review(qm_client, capture)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "password_required"
    _nothing_signed()

    resp = _review(qm_client, capture, password="wrong-password")
    assert resp.status_code == 403
    assert resp.json()["error"] == {
        "code": "signature_failed",
        "message": "The password is wrong; nothing was signed.",
        "details": {"failures": 1},
    }
    resp = _review(qm_client, capture, password="wrong-again")
    assert resp.json()["error"]["details"] == {"failures": 2}
    _nothing_signed()
    failed = AuditEvent.objects.filter(action="signature_failed", actor=qm)
    assert failed.count() == 2 and failed.first().object_id == str(capture.pk)

    resp = _review(qm_client, capture, password=PASSWORD)
    assert resp.status_code == 200, resp.content
    assert selectors.signature_failures(user=qm) == 0  # counted since the last good signature
    # the password was checked just now: the next signature in this session needs none
    other = _queued(user, station, product_type, "SN4000001")
    assert _review(qm_client, other).status_code == 200


@override_settings(SIGNATURE_REAUTH_MINUTES=0)
def test_reauth_minutes_zero_asks_at_every_signature(user, station, product_type, qm_client):
    capture = _queued(user, station, product_type, FIXED)
    assert _review(qm_client, capture).status_code == 403
    assert _review(qm_client, capture, password=PASSWORD).status_code == 200
    other = _queued(user, station, product_type, "SN4000002")
    assert _review(qm_client, other).status_code == 403


def test_token_authentication_always_needs_the_password(user, station, product_type, qm):
    capture = _queued(user, station, product_type, FIXED)
    client = APIClient()
    _token, key = services.api_token_issue(user=qm, name="qm script")
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    resp = _review(client, capture)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "password_required"
    resp = client.post(
        f"/api/v1/fields/{_serial_field(capture).pk}/revisions", {"password": "nope"}, format="json"
    )
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "signature_failed"
    _nothing_signed()
    assert _review(client, capture, password=PASSWORD).status_code == 200
    assert _review(client, capture, meaning="approved").status_code == 403  # again: a token


def test_signing_needs_the_review_permission(user, station, product_type):
    capture = _queued(user, station, product_type, FIXED)
    # in scope (works at the station), but holds no role: no review_read
    plain = get_user_model().objects.create_user(username="plain", password=PASSWORD)
    station.members.add(plain)
    assert roles.capture_scope(plain) is not None and not roles.can(plain, "review_read")
    assert selectors.capture_get(capture_id=capture.pk, user=plain) == capture
    client = APIClient()
    assert client.login(username="plain", password=PASSWORD)
    resp = _review(client, capture)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"
    _nothing_signed()


# --- retry ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_retry_puts_a_failed_capture_back_on_the_ocr_queue(user, station, product_type):
    from workers.celery import app

    qm = person("ada", roles.QUALITY_MANAGER, first="Ada", last="Kim")
    client = APIClient()
    client.force_authenticate(qm)
    capture = failed_capture(user, station, product_type)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_purge("ocr")
        resp = client.post(f"/api/v1/captures/{capture.pk}/retry")
        assert resp.status_code == 202, resp.content
        assert resp.json()["status"] == "PENDING" and resp.json()["failure"] is None
        message = channel.basic_get("ocr", no_ack=True)
        assert message is not None and message.decode()[0] == [str(capture.pk)]
    capture.refresh_from_db()
    assert (capture.status, capture.failure_code) == ("PENDING", "")
    event = AuditEvent.objects.get(action="capture_retried")
    assert event.before["failure_code"] == "timeout" and event.actor == qm
    # the worker's next claim and save add the next run
    assert services.capture_claim(capture_id=capture.pk) is not None
    read = services.read_save(capture_id=capture.pk, result=accepted_result("SN5000001"))
    assert read.run == 1 and capture.reads.count() == 1

    # a capture that is not failed is refused; so is a user without the right or scope
    resp = client.post(f"/api/v1/captures/{capture.pk}/retry")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "not_failed"
    again = failed_capture(user, station, product_type)
    auditor = person("aud", roles.AUDITOR)
    client.force_authenticate(auditor)
    assert client.post(f"/api/v1/captures/{again.pk}/retry").status_code == 403
    operator = person("op9", roles.OPERATOR, stations=[Station.objects.create(line="L9", name="x")])
    client.force_authenticate(operator)
    assert client.post(f"/api/v1/captures/{again.pk}/retry").status_code == 404
    again.refresh_from_db()
    assert again.status == "FAILED"
    assert AuditEvent.objects.filter(action="capture_retried").count() == 1


def test_a_withdrawn_capture_is_neither_signed_nor_read_again(
    user, station, product_type, qm, qm_client
):
    """Withdrawal closes a capture: it leaves the queue, and a signature or a retry of it is
    refused (409 withdrawn) with nothing stored; its page offers no Read again."""
    queued = _queued(user, station, product_type, RAW)
    failed = failed_capture(user, station, product_type)
    for capture in (queued, failed):
        services.capture_withdraw(capture_id=capture.pk, actor=qm, reason="wrong part")
    assert selectors.review_queue_count(user=qm) == 0
    events = AuditEvent.objects.count()
    resp = _review(
        qm_client, queued, fields={"serial_number": {"value": FIXED, "reason": "misread"}}
    )
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "withdrawn"
    field = _serial_field(queued)
    resp = qm_client.post(
        f"/api/v1/fields/{field.pk}/revisions",
        {"value": FIXED, "reason": "misread"},
        format="json",
    )
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "withdrawn"
    retry = qm_client.post(f"/api/v1/captures/{failed.pk}/retry")
    assert retry.status_code == 409 and retry.json()["error"]["code"] == "withdrawn"
    _nothing_signed()
    field.refresh_from_db()
    assert field.current_value == RAW
    assert Capture.objects.get(pk=failed.pk).status == Capture.Status.FAILED
    assert AuditEvent.objects.count() == events
    page = qm_client.get(f"/captures/{failed.pk}/").content.decode()
    assert "This capture was withdrawn." in page and 'id="retry-button"' not in page
