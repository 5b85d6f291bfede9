"""Issue 13 (3): traceability alarms raised by ``read_save`` (duplicate, look-alike, out of
sequence, printed vs code mismatch, not on the expected list), their states, permissions,
scoping, audit events, re-evaluation on correction, the API and the pages.

Reads are stored with the real ``services.capture_create`` + ``read_save`` against the real
PostgreSQL of the test run (``tests.review_data``).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ocrapp import alarms, events, roles, selectors, services
from ocrapp.errors import ApplicationError, PermissionDeniedError
from ocrapp.models import Alarm, AuditEvent, Capture, ExpectedSerial, Field, SerialRecord
from tests.results import read_result
from tests.review_data import PASSWORD, person, queued_result, stored_capture

pytestmark = pytest.mark.django_db

K = Alarm.Kind


@pytest.fixture
def qm():
    return person("qm", roles.QUALITY_MANAGER)


@pytest.fixture
def station_b():
    return services.station_create(line="LINE-2", name="station-B")


def _configure(product_type, **config):
    return services.product_type_update(
        product_type_id=product_type.pk, actor=None, changes={"alarm_config": config}
    )


def _store(qm, station, product_type, serial, *, part="PN-7731", result=None):
    result = result or read_result(serial, part=part).to_dict()
    return stored_capture(qm, station, product_type, result, raw_label=serial)


def _kinds(capture) -> list[str]:
    return sorted(Alarm.objects.filter(capture=capture).values_list("kind", flat=True))


def _at(capture, when: dt.datetime) -> None:
    Capture.objects.filter(pk=capture.pk).update(created_at=when)
    SerialRecord.objects.filter(capture=capture).update(created_at=when)


# --- each kind ------------------------------------------------------------------------------


def test_the_same_serial_read_twice_is_a_duplicate(qm, station, product_type):
    first = _store(qm, station, product_type, "SN10000001")
    assert _kinds(first) == []
    second = _store(qm, station, product_type, "SN-1000-0001")  # the same serial, as printed
    [alarm] = Alarm.objects.filter(capture=second)
    assert alarm.kind == K.DUPLICATE and alarm.state == Alarm.State.OPEN
    assert alarm.other_capture_id == first.pk and alarm.value == "SN10000001"
    assert alarm.display == "SN-1000-0001" and alarm.other_display == "SN10000001"
    assert alarm.part_number == "PN7731" and alarm.line == "LINE-1"
    assert alarm.station_label == "LINE-1 / station-A" and alarm.product_type == product_type
    assert alarm.read.capture_id == second.pk and alarm.field.name == "serial_number"
    assert alarm.details["scope"] == "product_type" and alarm.details["captures"] == 1


def test_look_alike_pair_collides(qm, station, product_type):
    first = _store(qm, station, product_type, "QX7781234S")
    second = _store(qm, station, product_type, "QX77812345")
    [alarm] = Alarm.objects.filter(capture=second)
    assert alarm.kind == K.LOOKALIKE and alarm.other_capture_id == first.pk
    assert (alarm.display, alarm.other_display) == ("QX77812345", "QX7781234S")
    assert _kinds(first) == []
    # a serial that differs by a real character is no collision
    third = _store(qm, station, product_type, "QX77812346")
    assert _kinds(third) == []


def test_duplicate_within_and_outside_the_window(qm, station, product_type):
    _configure(product_type, window_days=7)
    old = _store(qm, station, product_type, "SN20000001")
    _at(old, old.created_at - dt.timedelta(days=10))
    outside = _store(qm, station, product_type, "SN20000001")
    assert _kinds(outside) == []  # 10 days apart, window 7
    inside = _store(qm, station, product_type, "SN20000001")
    [alarm] = Alarm.objects.filter(capture=inside)
    assert alarm.kind == K.DUPLICATE and alarm.other_capture_id == outside.pk
    assert alarm.details["window_days"] == 7
    # window 0 = forever: the old one counts too
    _configure(product_type, window_days=0)
    again = _store(qm, station, product_type, "SN20000001")
    assert Alarm.objects.get(capture=again).details["captures"] == 3


def test_duplicate_scope_part_number_gtin_product_type_everywhere(qm, station, product_type):
    other_pt = services.product_type_create(name="other", field_schema=product_type.field_schema)
    _configure(product_type, duplicate_scope="part_number")
    _store(qm, station, product_type, "SN30000001", part="PN-1")
    other_part = _store(qm, station, product_type, "SN30000001", part="PN-2")
    assert _kinds(other_part) == []  # the unique key is part + serial
    same_part = _store(qm, station, product_type, "SN30000001", part="PN 1")
    assert _kinds(same_part) == [K.DUPLICATE]
    # product_type scope: another product type's serial does not count ...
    _configure(product_type, duplicate_scope="product_type")
    elsewhere = _store(qm, station, other_pt, "SN30000002")
    here = _store(qm, station, product_type, "SN30000002")
    assert _kinds(here) == [] and _kinds(elsewhere) == []
    # ... everywhere: it does
    _configure(product_type, duplicate_scope="everywhere")
    anywhere = _store(qm, station, product_type, "SN30000002")
    alarm = Alarm.objects.get(capture=anywhere)
    assert alarm.details["scope"] == "everywhere"
    # gtin scope without a GTIN on the read falls back to the product type
    _configure(product_type, duplicate_scope="gtin")
    fallback = _store(qm, station, product_type, "SN30000002")
    assert Alarm.objects.get(capture=fallback).details["scope"] == "product_type"


def test_gtin_scope(qm, station, product_type):
    _configure(product_type, duplicate_scope="gtin")

    def with_gtin(serial, gtin):
        from dataclasses import replace

        base = read_result(serial)
        gtin_field = replace(base.fields[1], name="gtin", value=gtin, raw_value=gtin)
        return replace(base, fields=(base.fields[0], gtin_field)).to_dict()

    _store(
        qm, station, product_type, "SN31000001", result=with_gtin("SN31000001", "09506000134352")
    )
    other = _store(
        qm, station, product_type, "SN31000001", result=with_gtin("SN31000001", "09506000134369")
    )
    assert _kinds(other) == []
    same = _store(
        qm, station, product_type, "SN31000001", result=with_gtin("SN31000001", "09506000134352")
    )
    alarm = Alarm.objects.get(capture=same)
    assert alarm.kind == K.DUPLICATE and alarm.gtin == "09506000134352"


def test_out_of_sequence_per_line(qm, station, station_b, product_type):
    _configure(product_type, sequential=True)
    assert _kinds(_store(qm, station, product_type, "SN1000")) == []  # first of the line
    assert _kinds(_store(qm, station, product_type, "SN1001")) == []  # the successor
    assert _kinds(_store(qm, station_b, product_type, "SN7000")) == []  # another line
    gap = _store(qm, station, product_type, "SN1005")
    [alarm] = Alarm.objects.filter(capture=gap)
    assert alarm.kind == K.OUT_OF_SEQUENCE and alarm.other_display == "SN1001"
    assert alarm.details | {} == {
        "line": "LINE-1",
        "previous": "SN1001",
        "previous_number": 1001,
        "number": 1005,
        "expected": 1002,
        "tolerance": 0,
    }
    back = _store(qm, station, product_type, "SN1003")  # backwards
    assert _kinds(back) == [K.OUT_OF_SEQUENCE]
    # a tolerance lets skipped labels pass forwards, never backwards
    _configure(product_type, sequential=True, sequence_tolerance=3)
    assert _kinds(_store(qm, station, product_type, "SN1007")) == []  # 1004..1006 skipped
    assert _kinds(_store(qm, station, product_type, "SN1006")) == [K.OUT_OF_SEQUENCE]
    # the numeric part by rule: the digits between the prefix and a check letter
    _configure(product_type, sequential=True, sequence_pattern=r"^SN(\d+)[A-Z]$")
    assert _kinds(_store(qm, station_b, product_type, "SN7001X")) == []
    assert _kinds(_store(qm, station_b, product_type, "SN7003X")) == [K.OUT_OF_SEQUENCE]


def test_not_on_the_expected_list(qm, station, product_type):
    report = services.expected_serials_import(
        product_type_id=product_type.pk,
        user=qm,
        data=b"serial,work_order\nSN40000001,WO-1\nSN-4000-0002,\n",
        work_order="WO-2",
    )
    assert (report.added, report.work_orders, report.active_total) == (2, ["WO-1", "WO-2"], 2)
    assert _kinds(_store(qm, station, product_type, "SN40000003")) == []  # not required yet
    _configure(product_type, expected_required=True)
    assert _kinds(_store(qm, station, product_type, "SN40000001")) == []
    assert _kinds(_store(qm, station, product_type, "SN40000002")) == []
    missing = _store(qm, station, product_type, "SN40000004")
    assert _kinds(missing) == [K.NOT_EXPECTED]
    # replace: the rows of WO-1 the new file omits are deactivated, so SN40000001 alarms now
    report = services.expected_serials_import(
        product_type_id=product_type.pk, user=qm, data=b"SN40000009\n", work_order="WO-1",
        replace=True,
    )  # fmt: skip
    assert (report.added, report.deactivated) == (1, 1)
    assert _kinds(_store(qm, station, product_type, "SN40000001")) == [K.DUPLICATE, K.NOT_EXPECTED]


def test_a_bad_expected_file_imports_nothing(qm, product_type):
    for data in (b"SN1\n\xff\xfe\n", b"SN1\n--\n", b"", b"SN1\x00\n", ("A" * 200).encode()):
        with pytest.raises(ApplicationError) as exc:
            services.expected_serials_import(product_type_id=product_type.pk, user=qm, data=data)
        assert exc.value.code == "invalid_csv"
    assert not ExpectedSerial.objects.exists()
    assert not AuditEvent.objects.filter(action=alarms.EXPECTED_IMPORTED_ACTION).exists()


def test_printed_vs_code_mismatch_is_an_alarm_and_keeps_the_review_reason(
    qm, station, product_type
):
    capture = _store(
        qm, station, product_type, "SN50000001", result=queued_result("SN50000001", mislabel="SN50000009")
    )  # fmt: skip
    [alarm] = Alarm.objects.filter(capture=capture)
    assert alarm.kind == K.MISMATCH and alarm.field.name == "serial_number"
    assert (alarm.display, alarm.other_display) == ("SN50000001", "SN50000009")
    assert alarm.details["code_format"] == "DataMatrix"
    read = capture.reads.get()
    assert any(r["code"] == "mislabel" for r in read.review["reasons"])
    # the list filter: open alarm kinds (mislabel is mismatch's former name)
    for kind in ("mismatch", "mislabel", "any"):
        f = selectors.SearchFilters(alarm=kind)
        assert [c.pk for c in selectors.capture_page(user=qm, filters=f).items] == [capture.pk]
    f = selectors.SearchFilters(alarm="duplicate")
    assert selectors.capture_page(user=qm, filters=f).items == []
    hits = selectors.serial_search(
        q="SN50000001", user=qm, filters=selectors.SearchFilters(alarm="mismatch")
    )
    assert "SN50000001" in {h.value for h in hits}
    none = selectors.serial_search(
        q="SN50000001", user=qm, filters=selectors.SearchFilters(alarm="duplicate")
    )
    assert none == []
    services.alarm_close(alarm_id=alarm.pk, user=qm, reason="relabelled")
    f = selectors.SearchFilters(alarm="mismatch")
    assert selectors.capture_page(user=qm, filters=f).items == []  # closed: no longer listed


def test_alarm_config_is_validated_with_a_clear_error(product_type):
    bad = [
        {"duplicate_scope": "galaxy"},
        {"window_days": -1},
        {"window_days": True},
        {"sequential": "yes"},
        {"sequence_pattern": "(unclosed"},
        {"sequence_pattern": r"(\d)(\d)"},
        {"colour": "red"},
    ]
    for config in bad:
        with pytest.raises(ApplicationError) as exc:
            _configure(product_type, **config)
        assert exc.value.code == "invalid_alarm_config" and exc.value.details["alarm_config"]
    product_type.refresh_from_db()
    assert product_type.alarm_config == {}
    assert alarms.alarm_config(product_type)["duplicate_scope"] == "product_type"


# --- states, permissions, audit, events -----------------------------------------------------


def test_raise_acknowledge_close_are_audited_and_raising_publishes(
    qm, station, product_type, django_capture_on_commit_callbacks
):
    seen = []

    def listener(event_type, data):
        seen.append((event_type, data))

    events.subscribe(listener)
    try:
        _store(qm, station, product_type, "SN60000001")
        capture = stored_capture(qm, station, product_type, None)  # PENDING
        assert services.capture_claim(capture_id=capture.pk) is not None
        result = read_result("SN60000001").to_dict()
        with django_capture_on_commit_callbacks(execute=True):  # the read's commit only
            services.read_save(capture_id=capture.pk, result=result, worker="test")
    finally:
        events._subscribers.remove(listener)
    alarm = Alarm.objects.get(capture=capture)
    assert [e for e in seen if e[0] == events.ALARM_RAISED] == [
        (
            events.ALARM_RAISED,
            {
                "alarm_id": alarm.pk,
                "kind": "duplicate",
                "capture_id": str(capture.pk),
                "other_capture_id": str(alarm.other_capture_id),
                "value": "SN60000001",
                "station_id": station.pk,
                "product_type_id": product_type.pk,
            },
        )
    ]
    raised = AuditEvent.objects.get(action=alarms.ALARM_RAISED_ACTION, object_id=str(alarm.pk))
    assert raised.object_type == "ocrapp.alarm" and raised.actor is None
    assert raised.after["kind"] == "duplicate" and raised.after["capture"] == str(capture.pk)

    with pytest.raises(ApplicationError) as exc:
        services.alarm_acknowledge(alarm_id=alarm.pk, user=qm, reason="  ")
    assert exc.value.code == "reason_required"
    services.alarm_acknowledge(alarm_id=alarm.pk, user=qm, reason="checked the part: a re-photo")
    alarm.refresh_from_db()
    assert alarm.state == "acknowledged" and alarm.acknowledged_by == qm
    assert alarm.acknowledge_reason == "checked the part: a re-photo"
    with pytest.raises(ApplicationError) as exc:
        services.alarm_acknowledge(alarm_id=alarm.pk, user=qm, reason="again")
    assert exc.value.code == "alarm_not_open" and exc.value.status_code == 409
    services.alarm_close(alarm_id=alarm.pk, user=qm, reason="same unit photographed twice")
    alarm.refresh_from_db()
    assert alarm.state == "closed" and alarm.closed_by == qm and alarm.closed_by_name == "qm"
    with pytest.raises(ApplicationError) as exc:
        services.alarm_close(alarm_id=alarm.pk, user=qm, reason="again")
    assert exc.value.code == "alarm_closed"
    trail = AuditEvent.objects.filter(object_type="ocrapp.alarm", object_id=str(alarm.pk))
    assert [(e.action, e.actor_id, e.reason) for e in trail.order_by("id")] == [
        (alarms.ALARM_RAISED_ACTION, None, ""),
        (alarms.ALARM_ACKNOWLEDGED_ACTION, qm.pk, "checked the part: a re-photo"),
        (alarms.ALARM_CLOSED_ACTION, qm.pk, "same unit photographed twice"),
    ]
    from django.core.management import call_command

    call_command("audit_verify")  # the chain holds with the alarm rows


def test_only_quality_managers_change_alarm_states(qm, user, station, product_type):
    auditor = person("aud", roles.AUDITOR)
    _store(qm, station, product_type, "SN61000001")
    alarm = Alarm.objects.get(capture=_store(qm, station, product_type, "SN61000001"))
    for who in (user, auditor):  # the station's operator sees it, the auditor reads only
        assert selectors.alarm_get(alarm_id=alarm.pk, user=who).pk == alarm.pk
        with pytest.raises(PermissionDeniedError):
            services.alarm_acknowledge(alarm_id=alarm.pk, user=who, reason="no")
        with pytest.raises(PermissionDeniedError):
            services.alarm_close(alarm_id=alarm.pk, user=who, reason="no")
    alarm.refresh_from_db()
    assert alarm.state == "open"
    assert not AuditEvent.objects.filter(action=alarms.ALARM_ACKNOWLEDGED_ACTION).exists()


def test_scoping_a_station_sees_only_its_alarms(
    qm, user, station, station_b, product_type, station_client
):
    _store(qm, station, product_type, "SN62000001")
    mine = Alarm.objects.get(capture=_store(qm, station, product_type, "SN62000001"))
    _store(qm, station_b, product_type, "SN62000002")
    theirs = Alarm.objects.get(capture=_store(qm, station_b, product_type, "SN62000002"))
    body = station_client.get("/api/v1/alarms").json()
    assert [a["id"] for a in body["results"]] == [mine.pk] and body["total"] == 1
    assert station_client.get(f"/api/v1/alarms/{theirs.pk}").status_code == 404
    assert station_client.get(f"/api/v1/alarms/{mine.pk}").json()["kind"] == "duplicate"
    # the operator of station A likewise; the quality manager sees both
    assert selectors.alarm_open_count(user=user) == 1
    assert selectors.alarm_open_count(user=qm) == 2
    with pytest.raises(ApplicationError):
        selectors.alarm_get(alarm_id=theirs.pk, user=user)
    # an operator may not change states at all (403 before the scope is looked at)
    with pytest.raises(ApplicationError) as exc:
        services.alarm_close(alarm_id=theirs.pk, user=user, reason="x")
    assert exc.value.status_code == 403  # no permission first


# --- correction re-evaluates ----------------------------------------------------------------


def _serial_field(capture) -> Field:
    return Field.objects.get(read__capture=capture, name="serial_number")


def test_a_corrected_duplicate_closes_its_alarm_and_a_new_one_opens(qm, station, product_type):
    first = _store(qm, station, product_type, "SN70000001")
    third = _store(qm, station, product_type, "SN70000003")
    second = _store(qm, station, product_type, "SN70000001")  # misread: it is SN70000002
    alarm = Alarm.objects.get(capture=second)
    assert alarm.kind == K.DUPLICATE and alarm.other_capture_id == first.pk
    services.field_revise(
        user=qm, field_id=_serial_field(second).pk, value="SN70000002", reason="misread",
        meaning="corrected", password=PASSWORD,
    )  # fmt: skip
    alarm.refresh_from_db()
    assert alarm.state == "closed" and alarm.closed_by is None
    assert alarm.closed_by_name == "system" and "SN70000002" in alarm.close_reason
    assert Alarm.objects.filter(capture=second).exclude(state="closed").count() == 0
    closed = AuditEvent.objects.get(action=alarms.ALARM_CLOSED_ACTION, object_id=str(alarm.pk))
    assert closed.actor is None and "SN70000002" in closed.reason
    # corrected again, to a serial another capture carries: a new duplicate opens
    services.field_revise(
        user=qm, field_id=_serial_field(second).pk, value="SN70000003", reason="misread",
        meaning="corrected", password=PASSWORD,
    )  # fmt: skip
    [new] = Alarm.objects.filter(capture=second, state="open")
    assert new.kind == K.DUPLICATE and new.other_capture_id == third.pk
    assert new.value == "SN70000003" and new.pk != alarm.pk
    raised = AuditEvent.objects.get(action=alarms.ALARM_RAISED_ACTION, object_id=str(new.pk))
    assert raised.actor == qm  # raised by the correction


def test_correcting_the_other_capture_closes_the_pair(qm, station, product_type):
    first = _store(qm, station, product_type, "SN71000001")
    second = _store(qm, station, product_type, "SN71000001")
    alarm = Alarm.objects.get(capture=second)
    services.field_revise(
        user=qm, field_id=_serial_field(first).pk, value="SN71000000", reason="misread",
        meaning="corrected", password=PASSWORD,
    )  # fmt: skip
    alarm.refresh_from_db()
    assert alarm.state == "closed" and "other capture" in alarm.close_reason
    assert not Alarm.objects.filter(capture=first).exists()


def test_an_unchanged_signature_keeps_the_alarm(qm, station, product_type):
    _store(qm, station, product_type, "SN72000001")
    second = _store(qm, station, product_type, "SN72000001")
    services.read_review(user=qm, capture_id=second.pk, password=PASSWORD)
    assert Alarm.objects.get(capture=second).state == "open"


# --- API --------------------------------------------------------------------------------------


def test_api_list_detail_acknowledge_close(qm, station, product_type, api_client):
    _store(qm, station, product_type, "SN80000001")
    second = _store(qm, station, product_type, "SN80000001")
    third = _store(qm, station, product_type, "SN80000001")
    api_client.force_authenticate(qm)
    body = api_client.get("/api/v1/alarms", {"limit": 1}).json()
    assert body["total"] == 2 and body["total_exact"] is True
    [newest] = body["results"]
    assert newest["capture_id"] == str(third.pk) and newest["kind"] == "duplicate"
    assert newest["acknowledged"] is None and newest["closed"] is None
    page2 = api_client.get(body["next"]).json()
    assert [a["capture_id"] for a in page2["results"]] == [str(second.pk)]
    assert page2["next"] is None
    alarm_id = newest["id"]
    resp = api_client.post(f"/api/v1/alarms/{alarm_id}/acknowledge", {"reason": ""}, format="json")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "reason_required"
    resp = api_client.post(
        f"/api/v1/alarms/{alarm_id}/acknowledge", {"reason": "looking"}, format="json"
    )
    assert resp.status_code == 200 and resp.json()["state"] == "acknowledged"
    assert resp.json()["acknowledged"]["reason"] == "looking"
    resp = api_client.post(f"/api/v1/alarms/{alarm_id}/acknowledge", {"reason": "x"}, format="json")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "alarm_not_open"
    resp = api_client.post(
        f"/api/v1/alarms/{alarm_id}/close", {"reason": "re-photo"}, format="json"
    )
    assert resp.json()["closed"] == {
        "at": resp.json()["closed"]["at"],
        "by": "qm",
        "reason": "re-photo",
        "by_system": False,
    }
    assert api_client.get("/api/v1/alarms", {"state": "closed"}).json()["total"] == 1
    assert api_client.get("/api/v1/alarms", {"state": "open"}).json()["total"] == 1
    assert api_client.get("/api/v1/alarms", {"kind": "lookalike"}).json()["total"] == 0
    listed = api_client.get("/api/v1/alarms", {"capture": str(second.pk)}).json()
    assert [a["capture_id"] for a in listed["results"]] == [str(second.pk)]
    for params, name in (
        ({"kind": "meteor"}, "kind"),
        ({"state": "maybe"}, "state"),
        ({"capture": "nope"}, "capture"),
        ({"cursor": "forged"}, "cursor"),
    ):
        resp = api_client.get("/api/v1/alarms", params)
        assert resp.status_code == 400 and name in resp.json()["error"]["details"], params
    assert api_client.get("/api/v1/alarms", {"line": "L\x00"}).status_code == 400  # request limits
    assert api_client.get("/api/v1/alarms/999999").status_code == 404
    assert api_client.get("/api/v1/alarms/abc").status_code == 404
    assert api_client.post("/api/v1/alarms/999999/close", {"reason": "x"}).status_code == 404


def test_api_station_token_may_not_acknowledge(qm, station, product_type, station_client):
    _store(qm, station, product_type, "SN81000001")
    alarm = Alarm.objects.get(capture=_store(qm, station, product_type, "SN81000001"))
    resp = station_client.post(f"/api/v1/alarms/{alarm.pk}/acknowledge", {"reason": "ok"})
    assert resp.status_code == 403 and resp.json()["error"]["code"]
    alarm.refresh_from_db()
    assert alarm.state == "open"


def test_api_expected_serials_import(qm, user, station, product_type, api_client):
    url = f"/api/v1/product-types/{product_type.pk}/expected-serials"
    api_client.force_authenticate(user)  # an operator may not
    upload = SimpleUploadedFile("list.csv", b"SN1\n", content_type="text/csv")
    assert api_client.post(url, {"file": upload}).status_code == 403
    api_client.force_authenticate(qm)
    upload = SimpleUploadedFile("list.csv", b"serial\nSN90000001\nSN90000002\n")
    resp = api_client.post(url, {"file": upload, "work_order": "WO-9"})
    assert resp.status_code == 200, resp.content
    assert resp.json() | {} == {
        "added": 2,
        "reactivated": 0,
        "unchanged": 0,
        "deactivated": 0,
        "work_orders": ["WO-9"],
        "active_total": 2,
    }
    bad = SimpleUploadedFile("list.csv", b"SN90000003\n" + b"X" * 300 + b"\n")
    resp = api_client.post(url, {"file": bad})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_csv"
    assert "line 2" in resp.json()["error"]["details"]["rows"][0]
    assert ExpectedSerial.objects.count() == 2
    upload = SimpleUploadedFile("list.csv", b"SN1\n")
    resp = api_client.post("/api/v1/product-types/999999/expected-serials", {"file": upload})
    assert resp.status_code == 404
    _configure(product_type, expected_required=True)
    assert _kinds(_store(qm, station, product_type, "SN90000002")) == []
    assert _kinds(_store(qm, station, product_type, "SN90000004")) == [K.NOT_EXPECTED]


# --- pages ------------------------------------------------------------------------------------


def test_pages_show_alarms_and_the_nav_badge(qm, user, station, station_b, product_type, client):
    first = _store(qm, station, product_type, "SN95000001")
    second = _store(qm, station, product_type, "SN95000001")
    _store(qm, station_b, product_type, "SN95000002")
    _store(qm, station_b, product_type, "SN95000002")
    alarm = Alarm.objects.get(capture=second)
    client.force_login(user)  # operator of station A
    html = client.get("/alarms/").content.decode()
    assert f'data-alarm-id="{alarm.pk}"' in html and html.count("data-alarm-id=") == 1
    assert 'data-alarm-count="1"' in html
    assert "data-alarm-acknowledge" not in html  # operators see, quality managers act
    assert client.post(f"/alarms/{alarm.pk}/acknowledge", {"reason": "x"}).status_code == 403
    detail = client.get(f"/captures/{second.pk}/").content.decode()
    assert 'data-alarm-kind="duplicate"' in detail
    history = client.get("/serials/SN95000001/").content.decode()
    assert 'data-alarm="duplicate"' in history
    assert client.get(f"/captures/{first.pk}/").content.decode().count("data-alarm-kind") == 0

    client.force_login(qm)
    html = client.get("/alarms/", {"kind": "duplicate", "line": "LINE-1"}).content.decode()
    assert html.count("data-alarm-id=") == 1 and 'data-alarm-count="2"' in html
    assert f'data-alarm-acknowledge="{alarm.pk}"' in html
    resp = client.post(
        f"/alarms/{alarm.pk}/acknowledge", {"reason": "", "next": f"/captures/{second.pk}/"}
    )
    assert resp.status_code == 302
    alarm.refresh_from_db()
    assert alarm.state == "open"  # no reason, nothing changed (the message says why)
    resp = client.post(
        f"/alarms/{alarm.pk}/acknowledge",
        {"reason": "re-photo of one unit", "next": "https://evil.example/"},
    )
    assert resp.status_code == 302 and resp["Location"] == "/alarms/"
    alarm.refresh_from_db()
    assert alarm.state == "acknowledged" and alarm.acknowledged_by == qm
    assert 'data-alarm-count="1"' in client.get("/alarms/").content.decode()
    assert client.get("/alarms/", {"kind": "meteor"}).status_code == 200  # the error shown


def test_korean_alarm_page(qm, station, product_type, client):
    _store(qm, station, product_type, "SN96000001")
    _store(qm, station, product_type, "SN96000001")
    client.force_login(qm)
    html = client.get("/alarms/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "경보" in html and "중복 일련번호" in html
