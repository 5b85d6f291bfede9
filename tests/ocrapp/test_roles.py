"""Roles and scoping at every boundary: each role x capture detail API, capture page (and its
card), image, search API and page, history API and page, capture list, upload to a foreign
station.

Two stations: A (LINE-1/station-A) and B (LINE-2/station-B). The operator works at A, the line
client is A's service user (its real API token), the quality manager, the auditor and the admin
see every station, a user without a role sees nothing. SN20260042 was read once at A and once
at B; SN20269999 only at B. Objects outside a caller's scope answer 404, as unknown ones do;
actions without the permission answer 403 in the JSON error shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from ocrapp import roles, services
from ocrapp.models import Capture, Station
from tests.images import label_png
from tests.results import result_dict

pytestmark = pytest.mark.django_db

ROLES = ["operator", "line_client", "quality_manager", "auditor", "admin", "none"]
SEES_EVERY_STATION = {"quality_manager", "auditor", "admin"}
MAY_UPLOAD = {"operator", "line_client", "quality_manager", "admin"}


@dataclass
class World:
    station_a: Station
    station_b: Station
    capture_a: Capture  # SN20260042 at A
    capture_b: Capture  # SN20260042 at B
    capture_b_only: Capture  # SN20269999 at B
    users: dict
    keys: dict  # role -> API key


def _read(user, station, product_type, serial: str) -> Capture:
    capture, _ = services.capture_create(
        user=user,
        image_bytes=label_png([f"S/N: {serial}"]),
        original_filename="label.png",
        product_type=product_type,
        station=station,
        client_ref=f"ref-{station.name}-{serial}",
    )
    assert services.capture_claim(capture_id=capture.pk) is not None
    assert services.read_save(capture_id=capture.pk, result=result_dict(serial, part="PN-1"))
    return capture


@pytest.fixture
def world(db, django_user_model, product_type) -> World:
    a = services.station_create(line="LINE-1", name="station-A")
    b = services.station_create(line="LINE-2", name="station-B")
    keys = {"line_client": services.station_token_issue(station=a)}
    a.refresh_from_db()
    users = {"line_client": a.token_owner}
    for role in ("operator", "quality_manager", "auditor", "admin"):
        users[role] = services.user_create_with_role(username=f"u-{role}", role=role)
    users["none"] = django_user_model.objects.create_user(username="u-none")
    services.station_member_add(station=a, user=users["operator"])
    for role in ROLES:
        if role != "line_client":
            keys[role] = services.api_token_issue(user=users[role])[1]
    qm = users["quality_manager"]
    return World(
        station_a=a,
        station_b=b,
        capture_a=_read(qm, a, product_type, "SN20260042"),
        capture_b=_read(qm, b, product_type, "SN20260042"),
        capture_b_only=_read(qm, b, product_type, "SN20269999"),
        users=users,
        keys=keys,
    )


def _api(world: World, role: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {world.keys[role]}")
    return client


def _web(world: World, role: str) -> Client:
    client = Client()
    client.force_login(world.users[role])
    return client


def _expected(role: str, station: str) -> int:
    if role == "none":
        return 404
    if station == "A":
        return 200
    return 200 if role in SEES_EVERY_STATION else 404


# --- one capture: API, page, card, image -------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_capture_detail_api(world, role):
    client = _api(world, role)
    for station, capture in (("A", world.capture_a), ("B", world.capture_b)):
        for query in ("", "?wait=1"):
            resp = client.get(f"/api/v1/captures/{capture.pk}{query}")
            assert resp.status_code == _expected(role, station), (station, query, resp.content)
            if resp.status_code == 404:
                body = resp.json()
                assert body["error"]["code"] == "not_found"
                assert capture.client_ref not in resp.content.decode()
            else:
                assert resp.json()["client_ref"] == capture.client_ref


@pytest.mark.parametrize("role", ROLES)
def test_capture_page_and_card(world, role):
    client = _web(world, role)
    for station, capture in (("A", world.capture_a), ("B", world.capture_b)):
        for url in (f"/captures/{capture.pk}/", f"/captures/{capture.pk}/card"):
            resp = client.get(url)
            assert resp.status_code == _expected(role, station), (station, url)
            html = resp.content.decode()
            if resp.status_code == 404:
                assert capture.client_ref not in html and "SN20260042" not in html
            elif url.endswith("card"):
                assert "SN20260042" in html
            else:  # the page names the client reference and the uploader
                assert capture.client_ref in html and "u-quality_manager" in html


@pytest.mark.parametrize("role", ROLES)
def test_capture_image(world, role):
    client = _web(world, role)
    for station, capture in (("A", world.capture_a), ("B", world.capture_b)):
        resp = client.get(f"/captures/{capture.pk}/image")
        assert resp.status_code == _expected(role, station), station
        if resp.status_code == 200:
            assert b"".join(resp.streaming_content).startswith(b"\x89PNG")


# --- lists: capture list, search, history ------------------------------------------------------


def _visible(world: World, role: str) -> set:
    if role == "none":
        return set()
    if role in SEES_EVERY_STATION:
        return {world.capture_a.pk, world.capture_b.pk, world.capture_b_only.pk}
    return {world.capture_a.pk}


@pytest.mark.parametrize("role", ROLES)
def test_capture_list_and_recent_fragment(world, role):
    client = _web(world, role)
    every = {world.capture_a.pk, world.capture_b.pk, world.capture_b_only.pk}
    for url in ("/captures/", "/captures/recent/"):
        html = client.get(url).content.decode()
        shown = {c for c in every if f'href="/captures/{c}/"' in html}
        assert shown == _visible(world, role), url


def _expected_hits(role: str) -> dict[str, int]:
    """value -> number of reads the role may see, for the query SN2026."""
    if role == "none":
        return {}
    if role in SEES_EVERY_STATION:
        return {"SN20260042": 2, "SN20269999": 1}
    return {"SN20260042": 1}


@pytest.mark.parametrize("role", ROLES)
def test_search_api(world, role):
    resp = _api(world, role).get("/api/v1/serials", {"q": "SN2026"})
    assert resp.status_code == 200
    hits = {h["value"]: h["reads"] for h in resp.json()["results"] if h["match"] == "prefix"}
    assert hits == _expected_hits(role)


@pytest.mark.parametrize("role", ROLES)
def test_search_page(world, role):
    html = _web(world, role).get("/search/", {"q": "SN2026"}).content.decode()
    shown = set(re.findall(r'class="mono serial-link" href="/serials/(\w+)/"', html))
    assert shown == set(_expected_hits(role))


def _expected_history(role: str) -> dict[str, set[str]]:
    """value -> the stations of the reads the role may see (absent: 404)."""
    if role == "none":
        return {}
    if role in SEES_EVERY_STATION:
        both = {"LINE-1 / station-A", "LINE-2 / station-B"}
        return {"SN20260042": both, "SN20269999": {"LINE-2 / station-B"}}
    return {"SN20260042": {"LINE-1 / station-A"}}


@pytest.mark.parametrize("role", ROLES)
def test_history_api(world, role):
    client = _api(world, role)
    expected = _expected_history(role)
    for value in ("SN20260042", "SN20269999"):
        resp = client.get(f"/api/v1/serials/{value}/history")
        if value not in expected:
            assert resp.status_code == 404, value
            assert resp.json()["error"]["code"] == "not_found"
            assert "ref-station-B" not in resp.content.decode()
            continue
        assert resp.status_code == 200, value
        history = resp.json()["history"]
        assert {h["station"] for h in history} == expected[value]
        assert all(h["client_ref"].startswith("ref-") for h in history)


@pytest.mark.parametrize("role", ROLES)
def test_history_page(world, role):
    client = _web(world, role)
    expected = _expected_history(role)
    for value in ("SN20260042", "SN20269999"):
        resp = client.get(f"/serials/{value}/")
        html = resp.content.decode()
        if value not in expected:
            assert resp.status_code == 404, value
            assert "station-B" not in html
            continue
        assert resp.status_code == 200, value
        stations = set(
            re.findall(r"LINE-\d / station-[AB]", html.split('<ol class="timeline">', 1)[1])
        )
        assert stations == expected[value]


# --- uploads ------------------------------------------------------------------------------------


def _upload(client, product_type, station=None):
    data = {
        "image": SimpleUploadedFile("a.png", label_png(["S/N: SN1"]), "image/png"),
        "product_type": product_type.name,
    }
    if station is not None:
        data["station"] = f"{station.line}/{station.name}"
    return client.post("/api/v1/captures", data, format="multipart")


@pytest.mark.parametrize("role", ROLES)
def test_upload_to_a_foreign_station(world, role, product_type):
    before = Capture.objects.count()
    resp = _upload(_api(world, role), product_type, world.station_b)
    if role in SEES_EVERY_STATION and role in MAY_UPLOAD:
        assert resp.status_code == 202, resp.content
        assert resp.json()["station"]["id"] == world.station_b.pk
        assert Capture.objects.count() == before + 1
        return
    assert resp.status_code == 403, resp.content
    error = resp.json()["error"]
    assert error["code"] == ("station_mismatch" if role in MAY_UPLOAD else "permission_denied")
    assert error["message"]
    assert Capture.objects.count() == before  # nothing stored


@pytest.mark.parametrize("role", ROLES)
def test_upload_to_own_station(world, role, product_type):
    before = Capture.objects.count()
    station = None if role == "line_client" else world.station_a  # a token knows its station
    resp = _upload(_api(world, role), product_type, station)
    if role in MAY_UPLOAD:
        assert resp.status_code == 202, resp.content
        assert resp.json()["station"]["id"] == world.station_a.pk
        assert resp.json()["uploaded_by"] == world.users[role].username
    else:
        assert resp.status_code == 403
        assert resp.json()["error"]["code"] == "permission_denied"
        assert Capture.objects.count() == before


@pytest.mark.parametrize("role", ROLES)
def test_upload_page_lists_the_stations_the_user_may_upload_to(world, role):
    resp = _web(world, role).get("/")
    if role not in MAY_UPLOAD:
        assert resp.status_code == 302 and resp["Location"] == "/captures/"
        html = _web(world, role).get("/captures/").content.decode()
        nav = html.split('<nav class="mainnav"', 1)[1].split("</nav>", 1)[0]
        assert 'href="/"' not in nav and 'href="/search/"' in nav  # no Upload link
        return
    html = resp.content.decode()
    options = set(re.findall(r'<option value="(\d+)">LINE', html))
    expected = {world.station_a.pk}
    if role in SEES_EVERY_STATION:
        expected.add(world.station_b.pk)
    assert options == {str(pk) for pk in expected}


def test_service_upload_rules_apply_without_the_api(world, product_type):
    """capture_create itself refuses: the rule is in the service, not only in the view."""
    from ocrapp.errors import ApplicationError

    before = Capture.objects.count()
    for role, code in (("auditor", "permission_denied"), ("operator", "station_mismatch")):
        with pytest.raises(ApplicationError) as err:
            services.capture_create(
                user=world.users[role],
                image_bytes=label_png(["X"]),
                product_type=product_type,
                station=world.station_b,
            )
        assert (err.value.code, err.value.status_code) == (code, 403)
    assert Capture.objects.count() == before


def test_role_permissions_are_what_the_roles_module_says(world):
    users = world.users
    assert roles.can(users["operator"], "review_read")
    assert not roles.can(users["operator"], "view_all_captures")
    assert not roles.can(users["auditor"], "upload_capture")
    assert roles.can(users["auditor"], "view_audit")
    assert roles.can(users["line_client"], "upload_capture")
    assert not roles.can(users["line_client"], "review_read")
    assert roles.can(users["admin"], "withdraw_capture")
    assert users["admin"].has_perm("ocrapp.add_apitoken")  # admin holds every permission
    assert not any(roles.can(users["none"], code) for code in roles.CAPTURE_PERMISSIONS)
