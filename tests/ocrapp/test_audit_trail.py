"""The audit trail everywhere: every change writes exactly one AuditEvent (admin, services, the
worker's writes), nothing that was read can be deleted, a capture is withdrawn instead, a
station rename keeps history, and ``audit_verify`` finds data changed behind the app's back."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from ocrapp import audit, roles, selectors, services
from ocrapp.errors import ApplicationError
from ocrapp.models import AuditEvent, Capture, Field, ProductType, Read, SerialRecord, Station
from tests.images import label_png
from tests.results import result_dict

pytestmark = pytest.mark.django_db


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def role_groups(db):
    """The role groups of migration 0005 (a transactional test elsewhere may have flushed them)."""
    for role, codes in roles.ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        perms = Permission.objects.filter(content_type__app_label="ocrapp", codename__in=codes)
        group.permissions.set(Permission.objects.all() if role == roles.ADMIN else perms)
    return {g.name: g for g in Group.objects.all()}


def _person(django_user_model, username, role=None, *, staff=False, groups=None):
    person = django_user_model.objects.create_user(
        username=username, password="pw-long-enough-1", is_staff=staff
    )
    if role:
        person.groups.add(groups[role])
    return person


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="root-pass-123")


@pytest.fixture
def admin_web(client, admin_user):
    client.force_login(admin_user)
    return client


def _done(user, station, product_type, serial="SN20260042"):
    capture, _ = services.capture_create(
        user=user,
        image_bytes=label_png([f"S/N: {serial}"]),
        product_type=product_type,
        station=station,
    )
    assert services.capture_claim(capture_id=capture.pk) is not None
    read = services.read_save(capture_id=capture.pk, result=result_dict(serial), worker="test")
    assert read is not None
    return capture


def _events(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("id"))


def _one(obj, action):
    """The single event about ``obj`` with ``action`` (fails on none or several)."""
    object_type, object_id, _ = audit.object_key(obj)
    events = _events(object_type=object_type, object_id=object_id, action=action)
    assert len(events) == 1, [(e.action, e.before, e.after) for e in events]
    return events[0]


class _NewEvents:
    def __enter__(self):
        self.start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        return self

    def __exit__(self, *exc):
        self.events = list(AuditEvent.objects.filter(id__gt=self.start).order_by("id"))


# --- every change writes exactly one event -----------------------------------------------------


def test_product_type_schema_edit_through_the_admin_form(admin_web, admin_user, product_type):
    schema = dict(product_type.field_schema)
    schema["fields"] = [
        {**f, "required": True} if f["name"] == "lot" else f for f in schema["fields"]
    ]
    url = reverse("admin:ocrapp_producttype_change", args=[product_type.pk])
    with _NewEvents() as new:
        resp = admin_web.post(
            url,
            {
                "name": product_type.name,
                "description": product_type.description,
                "field_schema": json.dumps(schema),
                "auto_accept_threshold": "0.9",
                "active": "on",
                "audit_reason": "lot required for customer X",
            },
        )
    assert resp.status_code == 302, re.findall(r"errorlist.*", resp.content.decode())
    assert len(new.events) == 1
    event = new.events[0]
    assert (event.action, event.object_type, event.object_id) == (
        "update",
        "ocrapp.producttype",
        str(product_type.pk),
    )
    assert event.actor == admin_user and event.actor_name == "root"
    assert event.reason == "lot required for customer X"
    assert set(event.before) == {"name", "field_schema", "auto_accept_threshold"}
    assert event.before["field_schema"] == product_type.field_schema
    assert event.after["field_schema"] == schema
    assert (event.before["auto_accept_threshold"], event.after["auto_accept_threshold"]) == (
        product_type.auto_accept_threshold,
        0.9,
    )
    assert event.before["name"] == event.after["name"] == "nameplate"  # identifies the object
    product_type.refresh_from_db()
    assert product_type.field_schema == schema and product_type.auto_accept_threshold == 0.9


def test_an_invalid_schema_in_the_admin_stores_nothing(admin_web, product_type):
    url = reverse("admin:ocrapp_producttype_change", args=[product_type.pk])
    before = product_type.field_schema
    resp = admin_web.post(
        url,
        {
            "name": product_type.name,
            "field_schema": json.dumps({"fields": [{"name": "Serial", "pattern": "([A-Z"}]}),
            "auto_accept_threshold": "0.85",
            "active": "on",
        },
    )
    assert resp.status_code == 200  # the form again, with the error
    assert not AuditEvent.objects.filter(action="update").exists()
    product_type.refresh_from_db()
    assert product_type.field_schema == before


def test_saving_an_unchanged_form_writes_no_event(admin_web, station):
    url = reverse("admin:ocrapp_station_change", args=[station.pk])
    with _NewEvents() as new:
        resp = admin_web.post(url, {"line": station.line, "name": station.name, "active": "on"})
    assert resp.status_code == 302
    assert new.events == []


def test_station_rename_through_the_admin(admin_web, admin_user, station):
    url = reverse("admin:ocrapp_station_change", args=[station.pk])
    with _NewEvents() as new:
        resp = admin_web.post(url, {"line": "LINE-1", "name": "station-Z", "active": "on"})
    assert resp.status_code == 302
    assert len(new.events) == 1
    event = new.events[0]
    assert event.action == "update" and event.actor == admin_user
    assert event.before == {"line": "LINE-1", "name": "station-A"}
    assert event.after == {"line": "LINE-1", "name": "station-Z"}
    assert event.object_repr == "LINE-1 / station-Z"


def test_station_operators_and_deactivation_are_audited(
    admin_web, station, django_user_model, role_groups
):
    op = _person(django_user_model, "op-kim", roles.OPERATOR, groups=role_groups)
    url = reverse("admin:ocrapp_station_change", args=[station.pk])
    with _NewEvents() as new:
        resp = admin_web.post(url, {"line": "LINE-1", "name": "station-A", "members": [op.pk]})
    assert resp.status_code == 302
    [event] = new.events
    assert event.before == {"line": "LINE-1", "name": "station-A", "active": True, "members": []}
    assert event.after == {
        "line": "LINE-1",
        "name": "station-A",
        "active": False,
        "members": ["op-kim"],
    }
    station.refresh_from_db()
    assert not station.active and list(station.members.all()) == [op]


def test_user_role_change_through_the_admin(admin_web, admin_user, role_groups, django_user_model):
    person = _person(django_user_model, "lee", roles.OPERATOR, groups=role_groups)
    url = reverse("admin:auth_user_change", args=[person.pk])
    form = {
        "username": "lee",
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "groups": [role_groups[roles.QUALITY_MANAGER].pk],
        "audit_reason": "promoted to QA",
    }
    with _NewEvents() as new:
        resp = admin_web.post(url, form)
    assert resp.status_code == 302, resp.content.decode()[:3000]
    [event] = new.events
    assert (event.action, event.object_type, event.object_id) == (
        "update",
        "auth.user",
        str(person.pk),
    )
    assert event.before == {"username": "lee", "groups": ["operator"]}
    assert event.after == {"username": "lee", "groups": ["quality_manager"]}
    assert event.reason == "promoted to QA" and event.actor == admin_user
    assert roles.can(django_user_model.objects.get(pk=person.pk), "withdraw_capture")


def test_user_deactivation_and_creation_through_the_admin(admin_web, django_user_model):
    with _NewEvents() as new:
        resp = admin_web.post(
            reverse("admin:auth_user_add"),
            {
                "username": "park",
                "usable_password": "true",
                "password1": "S3cure-pass-77",
                "password2": "S3cure-pass-77",
            },
        )
    assert resp.status_code == 302, resp.content.decode()[:3000]
    park = django_user_model.objects.get(username="park")
    [created] = new.events
    assert created.action == "create" and created.object_id == str(park.pk)
    assert created.after["password"] == "usable" and created.after["is_active"] is True
    assert park.password not in json.dumps(created.after)  # never the hash
    assert park.check_password("S3cure-pass-77")
    with _NewEvents() as new:
        admin_web.post(
            reverse("admin:auth_user_change", args=[park.pk]),
            {"username": "park", "first_name": "", "last_name": "", "email": ""},
        )
    [deactivated] = new.events
    assert deactivated.before == {"username": "park", "is_active": True}
    assert deactivated.after == {"username": "park", "is_active": False}


def test_password_change_by_the_admin_is_audited_without_the_password(
    admin_web, admin_user, django_user_model
):
    person = django_user_model.objects.create_user(username="cho", password="old-pass-1234")
    url = reverse("admin:auth_user_password_change", args=[person.pk])
    with _NewEvents() as new:
        resp = admin_web.post(
            url,
            {"usable_password": "true", "password1": "N3w-pass-5678", "password2": "N3w-pass-5678"},
        )
    assert resp.status_code == 302, resp.content.decode()[:3000]
    [event] = new.events
    assert event.action == "password_change" and event.actor == admin_user
    assert event.before == {"username": "cho", "password": "usable"}
    assert event.after == {"username": "cho", "password": "changed"}
    person.refresh_from_db()
    assert person.check_password("N3w-pass-5678")
    assert "N3w-pass" not in json.dumps(event.after) and person.password not in event.after


def test_own_password_change_in_the_admin_is_audited(client, django_user_model):
    staff = django_user_model.objects.create_user(
        username="yoon", password="old-pass-1234", is_staff=True
    )
    client.force_login(staff)
    with _NewEvents() as new:
        resp = client.post(
            reverse("admin:password_change"),
            {
                "old_password": "old-pass-1234",
                "new_password1": "N3w-pass-5678",
                "new_password2": "N3w-pass-5678",
            },
        )
    assert resp.status_code == 302, resp.content.decode()[:3000]
    [event] = new.events
    assert (event.action, event.actor, event.object_id) == ("password_change", staff, str(staff.pk))
    staff.refresh_from_db()
    assert staff.check_password("N3w-pass-5678")
    assert client.get(reverse("admin:index")).status_code == 200  # still signed in


def test_role_permissions_change_through_the_group_admin(admin_web, role_groups):
    auditor = role_groups[roles.AUDITOR]
    # auditors may export since 0015_wt_export_roles: add one they do not hold
    extra = Permission.objects.get(content_type__app_label="ocrapp", codename="withdraw_capture")
    perms = [*auditor.permissions.values_list("pk", flat=True), extra.pk]
    with _NewEvents() as new:
        resp = admin_web.post(
            reverse("admin:auth_group_change", args=[auditor.pk]),
            {"name": "auditor", "permissions": perms},
        )
    assert resp.status_code == 302, re.findall(r"errorlist.*", resp.content.decode())
    [event] = new.events
    assert event.object_type == "auth.group"
    added = set(event.after["permissions"]) - set(event.before["permissions"])
    assert added == {"ocrapp.withdraw_capture"}


def test_read_save_by_the_worker_writes_one_system_event(user, station, product_type):
    capture, _ = services.capture_create(
        user=user, image_bytes=label_png(["S/N: X"]), product_type=product_type, station=station
    )
    services.capture_claim(capture_id=capture.pk)
    with _NewEvents() as new:
        read = services.read_save(capture_id=capture.pk, result=result_dict("SN77"), worker="w1")
    [event] = new.events
    assert (event.action, event.object_type, event.object_id) == (
        "create",
        "ocrapp.read",
        str(read.pk),
    )
    assert event.actor is None and event.actor_name == "system"
    assert event.object_repr == f"capture {capture.pk} run 1"
    fields = {str(f.pk): {"name": f.name, "value": f.value} for f in read.fields.all()}
    assert event.after["fields"] == fields
    assert {v["value"] for v in fields.values()} == {"SN77", "PN-7731"}
    assert event.after["capture"] == str(capture.pk) and event.after["capture_status"] == "DONE"
    # a redelivered result writes nothing, not even an event
    with _NewEvents() as again:
        assert services.read_save(capture_id=capture.pk, result=result_dict("SN77")) is None
    assert again.events == []


def test_capture_create_and_fail_are_audited(user, station, product_type):
    with _NewEvents() as new:
        capture, _ = services.capture_create(
            user=user, image_bytes=label_png(["S/N: X"]), product_type=product_type, station=station
        )
    [created] = new.events
    assert created.action == "create" and created.actor == user
    assert created.after["station"] == "LINE-1 / station-A"
    assert created.after["sha256"] == capture.sha256
    with _NewEvents() as new:
        assert services.capture_fail(capture_id=capture.pk, code="timeout", reason="too slow")
        assert not services.capture_fail(capture_id=capture.pk, code="timeout", reason="again")
    [failed] = new.events
    assert failed.action == "fail" and failed.actor is None
    assert failed.before == {"status": "PENDING"}
    assert failed.after == {"status": "FAILED", "failure_code": "timeout"}


# --- nothing that was read can be deleted ------------------------------------------------------


def test_admin_refuses_to_delete_reads_fields_serials_and_captures(
    admin_web, user, station, product_type
):
    capture = _done(user, station, product_type)
    read = Read.objects.get(capture=capture)
    field = Field.objects.filter(read=read).first()
    record = SerialRecord.objects.get(capture=capture, field_name="serial_number")
    for model, obj in (
        ("read", read),
        ("field", field),
        ("serialrecord", record),
        ("capture", capture),
    ):
        change = admin_web.get(reverse(f"admin:ocrapp_{model}_change", args=[obj.pk]))
        assert change.status_code == 200, model
        assert "deletelink" not in change.content.decode(), model
        delete_url = reverse(f"admin:ocrapp_{model}_delete", args=[obj.pk])
        assert admin_web.get(delete_url).status_code == 403, model
        assert admin_web.post(delete_url, {"post": "yes"}).status_code == 403, model
        changelist = admin_web.get(reverse(f"admin:ocrapp_{model}_changelist"))
        assert 'value="delete_selected"' not in changelist.content.decode(), model
        # the bulk action is refused too when posted by hand
        admin_web.post(
            reverse(f"admin:ocrapp_{model}_changelist"),
            {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
        )
    assert Read.objects.filter(pk=read.pk).exists()
    assert Field.objects.filter(pk=field.pk).exists()
    assert SerialRecord.objects.filter(pk=record.pk).exists()
    assert Capture.objects.filter(pk=capture.pk).exists()
    assert not AuditEvent.objects.filter(action="delete").exists()


def test_api_has_no_delete(station_client, user, station, product_type):
    capture = _done(user, station, product_type)
    for url in (f"/api/v1/captures/{capture.pk}", "/api/v1/serials/SN20260042/history"):
        resp = station_client.delete(url)
        assert resp.status_code == 405, url
    assert Capture.objects.filter(pk=capture.pk).exists()
    assert Read.objects.filter(capture=capture).count() == 1
    assert SerialRecord.objects.filter(capture=capture).count() == 2  # serial and part number


def test_stations_and_product_types_with_captures_cannot_be_deleted(
    admin_web, admin_user, user, station, product_type
):
    _done(user, station, product_type)
    for model, obj in (("station", station), ("producttype", product_type)):
        assert (
            admin_web.get(reverse(f"admin:ocrapp_{model}_delete", args=[obj.pk])).status_code == 403
        )
    with pytest.raises(ApplicationError) as err:
        services.station_delete(station_id=station.pk, actor=admin_user)
    assert err.value.code == "in_use" and err.value.status_code == 409
    with pytest.raises(ApplicationError):
        services.product_type_delete(product_type_id=product_type.pk, actor=admin_user)
    assert Station.objects.filter(pk=station.pk).exists()
    assert ProductType.objects.filter(pk=product_type.pk).exists()
    assert not AuditEvent.objects.filter(action="delete").exists()


def test_an_unused_station_is_deleted_with_an_event(admin_web, admin_user):
    spare = services.station_create(line="LINE-9", name="spare")
    resp = admin_web.post(reverse("admin:ocrapp_station_delete", args=[spare.pk]), {"post": "yes"})
    assert resp.status_code == 302
    assert not Station.objects.filter(pk=spare.pk).exists()
    event = _events(object_type="ocrapp.station", object_id=str(spare.pk), action="delete")[0]
    assert event.actor == admin_user and event.before["name"] == "spare"


def test_an_inactive_product_type_takes_no_captures(admin_user, user, station, product_type):
    services.product_type_update(
        product_type_id=product_type.pk, actor=admin_user, changes={"active": False}
    )
    product_type.refresh_from_db()
    with pytest.raises(ApplicationError) as err:
        services.capture_create(
            user=user, image_bytes=label_png(["X"]), product_type=product_type, station=station
        )
    assert err.value.code == "product_type_inactive"
    assert not Capture.objects.exists()
    assert list(selectors.product_type_list()) == []


# --- withdrawal ------------------------------------------------------------------------------


def _api_as(api_client, person):
    api_client.force_authenticate(person)
    return api_client


def test_withdraw_through_the_api(
    api_client, client, django_user_model, role_groups, user, station, product_type
):
    qm = _person(django_user_model, "qm", roles.QUALITY_MANAGER, groups=role_groups)
    kept = _done(user, station, product_type, "SN20260042")
    capture = _done(user, station, product_type, "SN20260042")
    assert selectors.serial_search(q="SN20260042", user=qm)[0].reads == 2
    resp = _api_as(api_client, qm).post(
        f"/api/v1/captures/{capture.pk}/withdraw",
        {"reason": "wrong part photographed"},
        format="json",
    )
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["withdrawn"]["reason"] == "wrong part photographed"
    assert body["withdrawn"]["by"] == "qm"
    event = _one(capture, "withdraw")
    assert event.actor == qm and event.reason == "wrong part photographed"
    assert event.before == {"withdrawn": False} and event.after["withdrawn"] is True
    # it leaves search ...
    [hit] = selectors.serial_search(q="SN20260042", user=qm)
    assert hit.reads == 1
    # ... but keeps its reads, history and image
    assert Read.objects.filter(capture=capture).count() == 1
    history = selectors.serial_history(value="SN20260042", user=qm)
    assert [r.capture_id for r in history] == [kept.pk, capture.pk]
    assert [r.capture.withdrawn for r in history] == [False, True]
    api_hist = api_client.get("/api/v1/serials/SN20260042/history").json()["history"]
    assert [h["withdrawn"] for h in api_hist] == [False, True]
    client.force_login(qm)
    assert client.get(f"/captures/{capture.pk}/image").status_code == 200
    page = client.get(f"/captures/{capture.pk}/").content.decode()
    assert "This capture was withdrawn." in page and "wrong part photographed" in page
    html = client.get("/serials/SN20260042/").content.decode()
    assert html.count("is-withdrawn") == 1
    # the only capture of a serial withdrawn: the serial is not found, its history stays
    only = _done(user, station, product_type, "SN55500011")
    services.capture_withdraw(capture_id=only.pk, actor=qm, reason="test label")
    assert selectors.serial_search(q="SN55500011", user=qm) == []
    assert len(selectors.serial_history(value="SN55500011", user=qm)) == 1
    # the operator who took it (scoped to their station) sees the same
    assert selectors.serial_search(q="SN55500011", user=user) == []
    assert len(selectors.serial_history(value="SN55500011", user=user)) == 1


def test_withdraw_refused_without_permission_reason_or_twice(
    api_client, django_user_model, role_groups, user, station, product_type
):
    capture = _done(user, station, product_type)
    operator = _person(django_user_model, "op", roles.OPERATOR, groups=role_groups)
    url = f"/api/v1/captures/{capture.pk}/withdraw"
    with _NewEvents() as new:
        denied = _api_as(api_client, operator).post(url, {"reason": "no"}, format="json")
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "permission_denied"
        qm = _person(django_user_model, "qm", roles.QUALITY_MANAGER, groups=role_groups)
        blank = _api_as(api_client, qm).post(url, {"reason": "  "}, format="json")
        assert blank.status_code == 400 and blank.json()["error"]["code"] == "reason_required"
        missing = api_client.post(
            "/api/v1/captures/00000000-0000-0000-0000-000000000000/withdraw",
            {"reason": "x"},
            format="json",
        )
        assert missing.status_code == 404
    assert new.events == []  # nothing stored
    capture.refresh_from_db()
    assert capture.withdrawn_at is None and capture.withdrawal_reason == ""
    assert api_client.post(url, {"reason": "duplicate"}, format="json").status_code == 200
    again = api_client.post(url, {"reason": "again"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_withdrawn"
    assert len(_events(action="withdraw")) == 1


def test_withdraw_admin_action_asks_for_the_reason(
    admin_web, admin_user, user, station, product_type
):
    capture = _done(user, station, product_type)
    url = reverse("admin:ocrapp_capture_changelist")
    form = admin_web.post(url, {"action": "withdraw", "_selected_action": [str(capture.pk)]})
    assert form.status_code == 200
    html = form.content.decode()
    assert 'name="reason"' in html and str(capture.pk) in html
    assert not _events(action="withdraw")  # asking writes nothing
    no_reason = admin_web.post(
        url, {"action": "withdraw", "_selected_action": [str(capture.pk)], "apply": "yes"}
    )
    assert no_reason.status_code == 200 and not _events(action="withdraw")
    done = admin_web.post(
        url,
        {
            "action": "withdraw",
            "_selected_action": [str(capture.pk)],
            "apply": "yes",
            "reason": "duplicate upload",
        },
    )
    assert done.status_code == 302
    event = _one(capture, "withdraw")
    assert event.actor == admin_user and event.reason == "duplicate upload"
    capture.refresh_from_db()
    assert capture.withdrawn and capture.withdrawn_by == admin_user


# --- a rename keeps history ------------------------------------------------------------------


def test_station_rename_keeps_history(
    client, station_client, admin_user, user, station, product_type
):
    capture = _done(user, station, product_type)
    services.station_update(
        station_id=station.pk, actor=admin_user, changes={"line": "LINE-7", "name": "renamed"}
    )
    later = _done(user, Station.objects.get(pk=station.pk), product_type)
    capture.refresh_from_db()
    assert (capture.station_line, capture.station_name) == ("LINE-1", "station-A")
    history = selectors.serial_history(value="SN20260042", user=user)
    assert [r.capture.station_label for r in history] == ["LINE-1 / station-A", "LINE-7 / renamed"]
    [hit] = selectors.serial_search(q="SN20260042", user=user)
    assert hit.stations == ["LINE-1 / station-A", "LINE-7 / renamed"]
    api = station_client.get(f"/api/v1/captures/{capture.pk}").json()
    assert api["station"] == {"id": station.pk, "line": "LINE-1", "name": "station-A"}
    api_hist = station_client.get("/api/v1/serials/SN20260042/history").json()["history"]
    assert [h["station"] for h in api_hist] == ["LINE-1 / station-A", "LINE-7 / renamed"]
    client.force_login(user)
    page = client.get(f"/captures/{capture.pk}/").content.decode()
    assert "LINE-1 / station-A" in page and "LINE-7 / renamed" in page  # then and now
    assert "LINE-1 / station-A" not in client.get(f"/captures/{later.pk}/").content.decode()
    rows = re.findall(
        r'<li class="history-item[^>]*>(.*?)</li>',
        client.get("/serials/SN20260042/").content.decode(),
        re.S,
    )
    assert "LINE-1 / station-A" in rows[0] and "LINE-7 / renamed" in rows[1]


# --- integrity: data changed behind the application's back -------------------------------------


def _verify() -> str:
    with pytest.raises(CommandError) as err:
        call_command("audit_verify")
    return str(err.value)


def test_audit_verify_passes_on_untouched_data(user, station, product_type, capsys):
    _done(user, station, product_type)
    call_command("audit_verify")
    assert "audit trail intact" in capsys.readouterr().out


def test_audit_verify_names_a_field_edited_with_raw_sql(user, station, product_type):
    capture = _done(user, station, product_type)
    field = Field.objects.get(read__capture=capture, name="part_number")
    with connection.cursor() as cur:
        cur.execute("UPDATE ocrapp_field SET value = 'PN-9999' WHERE id = %s", [field.pk])
    message = _verify()
    assert f"field #{field.pk} (part_number of capture {capture.pk} run 1)" in message
    assert "machine read is 'PN-9999' but the audit trail last recorded 'PN-7731'" in message
    assert "1 field values problem" in message and "hash chain intact" in message
    assert Field.objects.get(pk=field.pk).value == "PN-9999"
    # the value in force (what the API, search and export show) forged too: one field, both named
    with connection.cursor() as cur:
        cur.execute("UPDATE ocrapp_field SET current_value = 'PN-9999' WHERE id = %s", [field.pk])
    message = _verify()
    assert "value in force is 'PN-9999' but the audit trail last recorded 'PN-7731'" in message
    assert "machine read is 'PN-9999'" in message and "1 field values problem" in message
    # the API shows the forged value: exactly what the check is there to catch
    assert (
        selectors.capture_get(capture_id=capture.pk, user=user)
        .reads.all()[0]
        .fields.get(pk=field.pk)
        .current_value
        == "PN-9999"
    )


def test_audit_verify_names_a_traced_field_and_its_index_row(user, station, product_type):
    capture = _done(user, station, product_type)
    field = Field.objects.get(read__capture=capture, name="serial_number")
    record = SerialRecord.objects.get(field=field)
    with connection.cursor() as cur:  # the value in force: the one the index follows
        cur.execute(
            "UPDATE ocrapp_field SET current_value = 'SN99990000' WHERE id = %s", [field.pk]
        )
    message = _verify()
    assert f"search index row #{record.pk} of field #{field.pk}" in message
    assert "value 'SN20260042' should be 'SN99990000'" in message
    assert f"field #{field.pk} (serial_number" in message


def test_audit_verify_names_a_search_row_edited_with_raw_sql(user, station, product_type):
    capture = _done(user, station, product_type)
    record = SerialRecord.objects.get(capture=capture, field_name="serial_number")
    with connection.cursor() as cur:
        cur.execute("UPDATE ocrapp_serialrecord SET value = 'SN0000' WHERE id = %s", [record.pk])
    message = _verify()
    assert f"search index row #{record.pk} of field #{record.field_id}" in message
    assert "value 'SN0000' should be 'SN20260042'" in message
    assert "field values problem" in message and "0 field values problem" in message


def test_audit_verify_names_a_missing_index_row_and_limits_its_list(user, station, product_type):
    captures = [_done(user, station, product_type, f"SN2026{i:04d}") for i in range(3)]
    with connection.cursor() as cur:
        cur.execute("DELETE FROM ocrapp_serialrecord")
    with pytest.raises(CommandError) as err:
        call_command("audit_verify", "--limit", "2")
    message = str(err.value)
    assert message.count("has no search index row") == 2  # of 6: serials and part numbers
    assert "… and 4 more search index problems" in message
    assert f"of capture {captures[0].pk}" in message


def test_a_correction_recorded_on_the_field_is_the_value_to_match(user, station, product_type):
    """The convention for corrections (other services): an ``ocrapp.field`` event with
    ``after["value"]`` recorded after the read's own event wins."""
    capture = _done(user, station, product_type)
    field = Field.objects.get(read__capture=capture, name="part_number")
    with connection.cursor() as cur:  # a correction changes the value in force, not the read
        cur.execute("UPDATE ocrapp_field SET current_value = 'PN-7732' WHERE id = %s", [field.pk])
        # the correction re-keys the search index too (part numbers are traced)
        cur.execute(
            "UPDATE ocrapp_serialrecord SET value = 'PN7732', skeleton = 'PN7732'"
            " WHERE field_id = %s",
            [field.pk],
        )
    audit.record(
        actor=user,
        action="correct",
        obj=field,
        before={"value": "PN-7731"},
        after={"value": "PN-7732"},
    )
    call_command("audit_verify")


def test_audit_verify_follows_signed_corrections_and_their_was_rows(user, station, product_type):
    """Real corrections (review's revisions): the value in force moves, the machine read stays,
    the index keeps the old value as a superseded ("was") row; the trail still matches, a
    correction back reuses the old row, and a forged value in force is still caught."""
    from tests.review_data import PASSWORD, person

    qm = person("rev", roles.QUALITY_MANAGER)
    capture = _done(user, station, product_type)
    field = Field.objects.get(read__capture=capture, name="serial_number")
    for value in ("SN20260043", "SN20260042"):
        services.read_review(
            user=qm,
            capture_id=capture.pk,
            edits={"serial_number": services.FieldEdit(value=value, reason="misread")},
            password=PASSWORD,
        )
        call_command("audit_verify")
    field.refresh_from_db()
    assert (field.value, field.current_value) == ("SN20260042", "SN20260042")
    rows = dict(SerialRecord.objects.filter(field=field).values_list("value", "superseded"))
    assert rows == {"SN20260042": False, "SN20260043": True}
    services.read_review(
        user=qm,
        capture_id=capture.pk,
        edits={"serial_number": services.FieldEdit(value="SN20260044", reason="misread")},
        password=PASSWORD,
    )
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE ocrapp_field SET current_value = 'SN20260042' WHERE id = %s", [field.pk]
        )
        # and the index made to agree with the forgery (two statements: one would depend on
        # the order PostgreSQL visits the rows in, as the current row is unique per field)
        cur.execute(
            "UPDATE ocrapp_serialrecord SET superseded = true WHERE field_id = %s", [field.pk]
        )
        cur.execute(
            "UPDATE ocrapp_serialrecord SET superseded = false "
            "WHERE field_id = %s AND value = 'SN20260042'",
            [field.pk],
        )
    message = _verify()
    assert "value in force is 'SN20260042' but the audit trail last recorded 'SN20260044'" in (
        message
    )
    assert "0 search index problem" in message and "1 field values problem" in message


def test_audit_baseline_of_a_corrected_legacy_read_records_its_value_in_force(
    user, station, product_type
):
    from tests.review_data import PASSWORD, person

    qm = person("rev", roles.QUALITY_MANAGER)
    capture = _done(user, station, product_type)
    services.read_review(
        user=qm,
        capture_id=capture.pk,
        edits={"part_number": services.FieldEdit(value="PN-7732", reason="misread")},
        password=PASSWORD,
    )
    with connection.cursor() as cur:  # a database from before the trail recorded values
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("TRUNCATE ocrapp_auditevent")
    call_command("audit_baseline")
    [event] = _events(action="baseline")
    part = Field.objects.get(read__capture=capture, name="part_number")
    assert event.after["fields"][str(part.pk)] == {
        "name": "part_number",
        "value": "PN-7731",
        "current_value": "PN-7732",
    }
    call_command("audit_verify")


def test_audit_baseline_records_legacy_reads_once(user, station, product_type):
    capture = _done(user, station, product_type)
    with connection.cursor() as cur:  # a database from before the trail recorded values
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("TRUNCATE ocrapp_auditevent")
    assert "was never recorded by the audit trail" in _verify()
    call_command("audit_baseline")
    call_command("audit_baseline")  # idempotent
    [event] = _events(action="baseline")
    assert event.object_repr == f"capture {capture.pk} run 1" and event.actor is None
    call_command("audit_verify")


# --- names, admin pages ----------------------------------------------------------------------


def test_objects_have_meaningful_names(user, station, product_type):
    capture = _done(user, station, product_type)
    read = Read.objects.get(capture=capture)
    field = Field.objects.get(read=read, name="serial_number")
    assert str(read) == f"capture {capture.pk} run 1"
    assert str(field) == f"serial_number = SN20260042 (capture {capture.pk})"
    assert (
        str(SerialRecord.objects.get(field=field))
        == f"serial_number SN20260042 (capture {capture.pk})"
    )
    assert str(read.lines.first()) == f"line 0: S/N: SN20260042 (read {read.pk})"


def test_audit_admin_is_read_only_for_view_audit(
    client, django_user_model, role_groups, admin_web, station
):
    auditor = _person(django_user_model, "aud", roles.AUDITOR, staff=True, groups=role_groups)
    operator = _person(django_user_model, "opr", roles.OPERATOR, staff=True, groups=role_groups)
    admin_web.post(
        reverse("admin:ocrapp_station_change", args=[station.pk]),
        {"line": "LINE-1", "name": "renamed", "active": "on"},
    )
    event = _one(station, "update")
    listing = reverse("admin:ocrapp_auditevent_changelist")
    client.force_login(operator)
    assert client.get(listing).status_code == 403
    client.force_login(auditor)
    page = client.get(listing, {"object_type": "ocrapp.station", "object_id": station.pk})
    assert page.status_code == 200
    assert "LINE-1 / renamed" in page.content.decode()
    other = client.get(listing, {"object_type": "ocrapp.station", "object_id": station.pk + 1})
    assert "LINE-1 / renamed" not in other.content.decode()
    for query in ({"action": "update"}, {"actor__id__exact": event.actor_id}):
        assert client.get(listing, query).status_code == 200
    detail = client.get(reverse("admin:ocrapp_auditevent_change", args=[event.pk]))
    assert detail.status_code == 200 and "station-A" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()  # view only
    assert (
        client.post(
            reverse("admin:ocrapp_auditevent_delete", args=[event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_each_object_page_links_to_its_events(admin_web, station, admin_user, django_user_model):
    services.station_update(station_id=station.pk, actor=admin_user, changes={"name": "B"})
    html = admin_web.get(reverse("admin:ocrapp_station_change", args=[station.pk])).content.decode()
    link = f"/admin/ocrapp/auditevent/?object_type=ocrapp.station&amp;object_id={station.pk}"
    assert link in html
    listed = admin_web.get(link.replace("&amp;", "&")).content.decode()
    assert "LINE-1 / B" in listed
    user_page = admin_web.get(
        reverse("admin:auth_user_change", args=[admin_user.pk])
    ).content.decode()
    assert f"object_type=auth.user&amp;object_id={admin_user.pk}" in user_page


def test_admin_names_models_in_korean(admin_web):
    html = admin_web.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "일련번호 판독기" in html  # the app
    for name in (
        "스테이션",
        "제품 유형",
        "촬영",
        "판독",
        "필드",
        "일련번호 색인 항목",
        "감사 이벤트",
    ):
        assert f">{name}<" in html, name
    assert "스테이션s" not in html and ">Reads<" not in html


def test_seed_demo_creates_its_logins_through_the_audited_service(django_user_model):
    """One login per role (the roles design: no superuser, no known password), each made by
    ``services.user_create`` with one event that names its role and never its password."""
    from ocrapp.demo import DEMO_USERS

    call_command("seed_demo", stdout=io.StringIO())
    assert not django_user_model.objects.filter(is_superuser=True).exists()
    for demo in DEMO_USERS:
        person = django_user_model.objects.get(username=demo.username)
        event = _one(person, "create")
        assert event.after["groups"] == [demo.role] and event.after["is_superuser"] is False
        assert event.after["password"] == "usable" and event.reason == "demo data (seed_demo)"
        assert event.actor is None  # the command, not a person
