"""Input edges (issue 12 point 4): every odd input answers with the JSON error shape under
/api/ (a clear HTML 400 page elsewhere), never a 500, and leaves no row and no file behind."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from ocrapp import services
from ocrapp.demo import DEMO_PRODUCT_TYPES
from ocrapp.models import Capture
from tests.images import label_png

pytestmark = pytest.mark.django_db


def _media_files() -> set[str]:
    found = set()
    for root, _dirs, files in os.walk(settings.MEDIA_ROOT):
        found.update(os.path.join(root, f) for f in files)
    return found


@pytest.fixture
def nothing_stored():
    before_files = _media_files()
    before_rows = Capture.objects.count()
    yield
    assert Capture.objects.count() == before_rows
    assert _media_files() == before_files


def _json_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.content[:500]
    assert resp["Content-Type"].startswith("application/json"), resp["Content-Type"]
    err = resp.json()["error"]
    assert set(err) == {"code", "message", "details"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


def _image(name: str = "a.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, label_png(["S/N: 1"]), "image/png")


@pytest.fixture
def web(client, user, station):
    client.force_login(user)
    return client


# --- the seven 500s ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["product_type", "station"])
def test_superscript_digit_ref_is_unknown_not_500(
    station_client, product_type, nothing_stored, field
):
    payload = {"image": _image(), "product_type": product_type.name, field: "²"}
    resp = station_client.post("/api/v1/captures", payload, format="multipart")
    _json_error(resp, 400, f"unknown_{field}")


@pytest.mark.parametrize(
    "ref",
    [
        "not-a-uuid",
        "²",
        "1" * 40,
        "%00",
        "{12345678123456781234567812345678}",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
        "１" * 32,
        "%EF%BC%91" * 32,
        "12345678-1234-5678-1234-56781234567%C2%B2",
    ],
)
def test_non_uuid_capture_id_with_wait_is_404(station_client, ref):
    resp = station_client.get(f"/api/v1/captures/{ref}?wait=1")
    assert resp.status_code in (400, 404)
    _json_error(resp, resp.status_code)


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/serials?q=SN%00X",
        "/api/v1/serials/SN%00X/history",
        "/api/v1/review-queue?line=L%00",
        "/api/v1/review-queue?product_type=a%00",
        f"/api/v1/captures/{uuid.uuid4()}?wait=%00",
    ],
)
def test_nul_in_api_query_or_path_is_400(station_client, url):
    _json_error(station_client.get(url), 400, "invalid")


@pytest.mark.parametrize(
    "url", ["/search/?q=SN%00X", "/serials/SN%00X/", "/review/?line=%00", "/captures/?x=%00"]
)
def test_nul_in_page_query_or_path_is_html_400(web, url):
    resp = web.get(url)
    assert resp.status_code == 400
    assert resp["Content-Type"].startswith("text/html")
    assert b"NUL" in resp.content


def test_nul_in_login_form_is_a_form_error(client, user):
    resp = client.post("/login/", {"username": "oper\x00ator", "password": "op-pass-1234"})
    assert resp.status_code in (200, 400)
    assert "_auth_user_id" not in client.session


def test_nul_in_api_form_value_is_400(station_client, product_type, nothing_stored):
    payload = {"image": _image(), "product_type": "name\x00plate", "client_ref": "a\x00"}
    resp = station_client.post("/api/v1/captures", payload, format="multipart")
    _json_error(resp, 400, "invalid")


# --- Django's own 400s, sizes and limits --------------------------------------------------------


def test_5mb_form_field_is_json_413(station_client, product_type, nothing_stored):
    payload = {"image": _image(), "product_type": product_type.name, "client_ref": "x" * 6_000_000}
    resp = station_client.post("/api/v1/captures", payload, format="multipart")
    _json_error(resp, 413, "request_too_large")


def test_2000_form_parts_is_json_400(station_client, product_type, nothing_stored):
    payload = {"image": _image(), "product_type": product_type.name}
    payload.update({f"f{i}": "1" for i in range(2000)})
    resp = station_client.post("/api/v1/captures", payload, format="multipart")
    _json_error(resp, 400, "too_many_fields")


def test_2000_urlencoded_fields_on_a_page_is_html_400(client, user):
    resp = client.post("/login/", {f"f{i}": "1" for i in range(2000)})
    assert resp.status_code == 400
    assert resp["Content-Type"].startswith("text/html")


def test_long_header_is_json_431(station_client):
    resp = station_client.get("/api/v1/serials?q=SN1", HTTP_X_FILLER="a" * 9000)
    _json_error(resp, 431, "header_too_large")


def test_long_query_is_json_414(station_client):
    resp = station_client.get("/api/v1/serials?q=" + "S" * 5000)
    _json_error(resp, 414, "uri_too_long")


def test_long_path_is_json_414(station_client):
    resp = station_client.get("/api/v1/serials/" + "S" * 5000 + "/history")
    _json_error(resp, 414, "uri_too_long")


def test_long_query_on_a_page_is_html_414(web):
    resp = web.get("/search/?q=" + "S" * 5000)
    assert resp.status_code == 414
    assert resp["Content-Type"].startswith("text/html")


def test_content_length_over_cap_is_413_before_reading(station_client, nothing_stored):
    # The test client's FakePayload raises if more than its 10 bytes are read: a 413 proves
    # the body was refused by its Content-Length, unread.
    resp = station_client.generic(
        "POST",
        "/api/v1/captures",
        b"0123456789",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(300 * 1024 * 1024),
    )
    err = _json_error(resp, 413, "request_too_large")
    assert err["details"]["max_bytes"] == settings.MAX_REQUEST_BYTES


def test_bad_content_length_is_400(station_client, nothing_stored):
    resp = station_client.generic(
        "POST", "/api/v1/captures", b"x", content_type="text/plain", CONTENT_LENGTH="-5"
    )
    _json_error(resp, 400, "bad_request")


# --- stations, idempotency ----------------------------------------------------------------------


def test_inactive_station_token_is_refused_without_station(
    station_client, station, product_type, nothing_stored
):
    services.station_update(station_id=station.pk, actor=None, changes={"active": False})
    payload = {"image": _image(), "product_type": product_type.name}
    resp = station_client.post("/api/v1/captures", payload, format="multipart")
    _json_error(resp, 403, "station_inactive")


def test_idempotent_replay_with_other_product_type_is_409(station_client, product_type):
    other = services.product_type_create(name="other-type", **DEMO_PRODUCT_TYPES["nameplate"])
    data = label_png(["S/N: 77"])

    def post(pt, ref="R1"):
        return station_client.post(
            "/api/v1/captures",
            {
                "image": SimpleUploadedFile("a.png", data, "image/png"),
                "product_type": pt,
                "client_ref": ref,
            },
            format="multipart",
            HTTP_IDEMPOTENCY_KEY="key-1",
        )

    first = post(product_type.name)
    assert first.status_code == 202
    again = post(product_type.name)
    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    err = _json_error(post(other.name), 409, "idempotency_key_reused")
    assert err["details"]["differs"] == ["product_type"]
    err = _json_error(post(product_type.name, ref="R2"), 409, "idempotency_key_reused")
    assert err["details"]["differs"] == ["client_ref"]
    assert Capture.objects.count() == 1


# --- admin ------------------------------------------------------------------------------------


@pytest.fixture
def admin_web(django_user_model):
    admin = django_user_model.objects.create_superuser(username="root", password="root-pass-123")
    client = Client()
    client.force_login(admin)
    return client


def _admin_models():
    from django.contrib import admin

    return sorted(f"{m._meta.app_label}/{m._meta.model_name}" for m in admin.site._registry)


@pytest.mark.parametrize("model", _admin_models())
def test_admin_add_pages_do_not_500(admin_web, model):
    resp = admin_web.get(f"/admin/{model}/add/")
    assert resp.status_code in (200, 302, 403), resp.status_code
    resp = admin_web.post(f"/admin/{model}/add/", {})
    assert resp.status_code in (200, 302, 403), resp.status_code


def test_admin_index_has_no_add_link_for_captures(admin_web):
    resp = admin_web.get("/admin/")
    assert resp.status_code == 200
    assert b"/admin/ocrapp/capture/add/" not in resp.content
    assert b"/admin/ocrapp/serialrecord/add/" not in resp.content


# --- more NULs and ids that PostgreSQL would refuse -------------------------------------------


def test_nul_in_a_json_key_is_400(api_client, user, station, product_type):
    api_client.force_authenticate(user)
    resp = api_client.post(
        f"/api/v1/captures/{uuid.uuid4()}/review",
        {"fields": {"serial\x00number": {"value": "X", "reason": "misread"}}},
        format="json",
    )
    err = _json_error(resp, 400, "invalid")
    assert list(err["details"]) == ["fields.serial\\0number"]


def test_nul_in_the_file_name_never_reaches_the_database(station_client, product_type):
    image = SimpleUploadedFile("a\x00b.png", label_png(["S/N: 1"]), "image/png")
    resp = station_client.post(
        "/api/v1/captures", {"image": image, "product_type": product_type.name}, format="multipart"
    )
    assert resp.status_code in (202, 400), resp.content
    if resp.status_code == 202:  # the multipart parser may drop it; never stored with a NUL
        assert "\x00" not in Capture.objects.get(pk=resp.json()["id"]).original_filename


def test_control_characters_leave_the_stored_file_name(user, station, product_type):
    capture, _ = services.capture_create(
        user=user,
        image_bytes=label_png(["S/N: 1"]),
        original_filename="C:\\photos\\lab\x00el\x07.png",
        product_type=product_type,
        station=station,
    )
    assert capture.original_filename == "label.png"


@pytest.mark.parametrize("ref", ["99999999999999999999", "9223372036854775808", "0", "٣"])
def test_ids_out_of_bigint_or_not_ascii_are_unknown(station_client, product_type, ref):
    resp = station_client.post(
        "/api/v1/captures",
        {"image": _image(), "product_type": ref, "station": ref},
        format="multipart",
    )
    _json_error(resp, 400, "unknown_product_type")
    resp = station_client.post(
        "/api/v1/captures",
        {"image": _image(), "product_type": product_type.name, "station": ref},
        format="multipart",
    )
    _json_error(resp, 400, "unknown_station")


def test_field_id_out_of_bigint_is_404(api_client):
    from ocrapp import roles

    qm = services.user_create_with_role(username="qm", role=roles.QUALITY_MANAGER)
    api_client.force_authenticate(qm)
    resp = api_client.post("/api/v1/fields/99999999999999999999/revisions", {}, format="json")
    _json_error(resp, 404, "not_found")


def test_korean_page_for_a_long_url(client):
    resp = client.get("/search/?q=" + "S" * 5000, HTTP_ACCEPT_LANGUAGE="ko")
    assert resp.status_code == 414
    assert "URL이 4096자보다 깁니다." in resp.content.decode()


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_idempotency_keys_make_one_capture(
    user, station, product_type, monkeypatch
):
    """6 threads (6 database connections) upload the same photo under one key at once: one
    capture, one stored file, one enqueue; every thread gets that capture back."""
    import threading

    from django.db import connection

    enqueued = []
    monkeypatch.setattr(services, "_enqueue_read", lambda capture_id: enqueued.append(capture_id))
    data = label_png(["S/N: 4242"])
    files_before = _media_files()
    barrier = threading.Barrier(6)
    results, errors = [], []

    def upload():
        try:
            barrier.wait(10)
            capture, created = services.capture_create(
                user=user,
                image_bytes=data,
                product_type=product_type,
                station=station,
                idempotency_key="same-key",
            )
            results.append((capture.pk, created))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({pk for pk, _created in results}) == 1 and len(results) == 6
    assert sum(created for _pk, created in results) == 1
    assert Capture.objects.count() == 1 and len(enqueued) == 1
    assert len(_media_files() - files_before) == 1


# --- Django's own error handlers under /api/ ---------------------------------------------------


def test_unknown_api_url_is_json_404(station_client):
    err = _json_error(station_client.get("/api/v1/no-such-endpoint"), 404, "not_found")
    assert "API endpoint" in err["message"]


def test_unknown_page_keeps_the_html_404(client):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    assert resp["Content-Type"].startswith("text/html")


def test_unexpected_failure_under_api_is_json_500(rf):
    from ocrapp.limits import server_error

    resp = server_error(rf.get("/api/v1/captures"))
    assert resp.status_code == 500
    assert resp["Content-Type"] == "application/json"
    assert json.loads(resp.content)["error"]["code"] == "server_error"
    page = server_error(rf.get("/captures/"))
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
