"""HTML views: login, upload page, capture detail (image + polygons), search, history, i18n.

Captures are created through ``ocrapp.services`` with a hand-built pipeline result (these tests
check rendering, not reading). With the plain ``db`` fixture on_commit callbacks never run, so no
task is enqueued.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.urls import reverse

from ocrapp import services
from ocrapp.models import Capture
from tests.images import label_png
from tests.results import result_dict
from workers.contract import QualityWarning

pytestmark = pytest.mark.django_db

TEXT_GLARE = "Strong glare over the text: retake the photo at a different angle."
PO_PATH = Path(settings.BASE_DIR) / "ocrapp" / "locale" / "ko" / "LC_MESSAGES" / "django.po"


def _done_capture(
    user,
    station,
    product_type,
    *,
    serial="SN20260042",
    part="PN-7731",
    warnings=None,
    invalid_part=False,
) -> Capture:
    capture, created = services.capture_create(
        user=user,
        image_bytes=label_png([f"S/N: {serial}", f"P/N: {part}"]),
        original_filename="label.png",
        product_type=product_type,
        station=station,
    )
    assert created
    assert services.capture_claim(capture_id=capture.pk) is not None
    result = result_dict(serial, part=part)
    if warnings:
        result["quality"]["warnings"] = warnings
        result["quality"]["ok"] = False
    if invalid_part:
        result["fields"][1].update(valid=False, reason="does not match the pattern")
    assert services.read_save(capture_id=capture.pk, result=result, worker="test") is not None
    return capture


@pytest.fixture
def done_capture(user, station, product_type):
    return _done_capture(
        user,
        station,
        product_type,
        warnings=[QualityWarning("glare", TEXT_GLARE).to_dict()],
        invalid_part=True,
    )


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


# --- login and navigation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/captures/",
        f"/captures/{uuid.uuid4()}/",
        f"/captures/{uuid.uuid4()}/image",
        "/search/?q=SN1",
        "/serials/SN20260042/",
    ],
)
def test_pages_require_login(client, url):
    resp = client.get(url)
    assert resp.status_code == 302
    assert resp["Location"].startswith(reverse("login") + "?next=")


def test_login_page_and_login_flow(client, user):
    resp = client.get(reverse("login"))
    assert resp.status_code == 200
    html = resp.content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert 'action="/i18n/setlang/"' in html  # language switch on the login page too

    bad = client.post(reverse("login"), {"username": "operator", "password": "wrong"})
    assert bad.status_code == 200
    assert "didn't match" in bad.content.decode()

    ok = client.post(reverse("login"), {"username": "operator", "password": "op-pass-1234"})
    assert ok.status_code == 302 and ok["Location"] == reverse("upload")
    assert client.get("/").status_code == 200


def test_logout_is_a_post_form(logged_in):
    html = logged_in.get("/").content.decode()
    assert re.search(r'<form class="logout" action="/logout/" method="post">', html)
    resp = logged_in.post(reverse("logout"))
    assert resp.status_code == 302
    assert logged_in.get("/").status_code == 302  # logged out


def test_nav_links_and_admin_only_for_staff(logged_in, user):
    html = logged_in.get("/").content.decode()
    for href in ('href="/"', 'href="/captures/"', 'href="/search/"', 'href="/api/docs"'):
        assert href in html
    assert 'href="/admin/"' not in html
    user.is_staff = True
    user.save()
    assert 'href="/admin/"' in logged_in.get("/").content.decode()


# --- upload page --------------------------------------------------------------------------------


def test_upload_page_lists_stations_product_types_and_inputs(logged_in, station, product_type):
    resp = logged_in.get("/")
    assert resp.status_code == 200
    html = resp.content.decode()
    assert f'<option value="{station.pk}">LINE-1 / station-A</option>' in html
    assert f'<option value="{product_type.pk}">nameplate</option>' in html
    assert re.search(
        r'<input id="camera-input"[^>]*accept="image/\*" capture="environment" multiple', html
    )
    assert re.search(r'<input id="file-input"[^>]*type="file" accept="image/\*" multiple', html)
    assert 'data-create-url="/api/v1/captures"' in html
    assert f'data-card-url="/captures/{uuid.UUID(int=0)}/card"' in html
    assert 'id="recent-captures" data-url="/captures/recent/"' in html
    assert "/static/ocrapp/upload.js" in html and "/static/ocrapp/app.css" in html
    strings = json.loads(
        re.search(
            r'<script id="ui-strings" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    # the script says upload and waiting states only; the server renders every result
    assert strings["DONE"] == "Done" and strings["uploaded"] == "Uploaded. Reading…"
    assert all(isinstance(v, str) for v in strings.values())
    # no third-party hosts: everything is self-hosted
    assert not re.search(r'(src|href)="https?://', html)


def test_upload_page_warns_when_nothing_is_set_up(logged_in):
    html = logged_in.get("/").content.decode()
    assert "No station or product type is set up yet" in html


def test_upload_page_and_list_show_recent_captures(logged_in, done_capture):
    for url in ("/", "/captures/"):
        html = logged_in.get(url).content.decode()
        assert f'href="/captures/{done_capture.pk}/"' in html
        assert "SN20260042" in html
        assert "1 warning" in html


def test_static_assets_are_served(logged_in):
    for name in ("app.css", "upload.js"):
        resp = logged_in.get(f"/static/ocrapp/{name}")
        assert resp.status_code == 200, name
        body = b"".join(resp.streaming_content) if resp.streaming else resp.content
        assert len(body) > 1000, name


def _detail_html(client, capture, **headers) -> str:
    resp = client.get(reverse("capture-detail", kwargs={"capture_id": capture.pk}), **headers)
    assert resp.status_code == 200
    return resp.content.decode()


# --- capture detail -----------------------------------------------------------------------------


def test_capture_detail_renders_image_polygons_fields_and_audit(logged_in, done_capture):
    resp = logged_in.get(reverse("capture-detail", kwargs={"capture_id": done_capture.pk}))
    assert resp.status_code == 200
    html = resp.content.decode()
    capture = Capture.objects.get(pk=done_capture.pk)
    # the photo and an overlay in image pixels
    assert f'src="/captures/{capture.pk}/image"' in html
    assert f'viewBox="0 0 {capture.width} {capture.height}"' in html
    line_polys = re.findall(r'<polygon class="poly-line" data-line="(\d)" points="([^"]+)"', html)
    assert line_polys == [
        ("0", "40,40 600,40 600,100 40,100"),
        ("1", "40,130 520,130 520,190 40,190"),
    ]
    field_polys = re.findall(
        r'<polygon class="poly-field([^"]*)" data-field="(\w+)" points="([^"]+)"', html
    )
    assert field_polys == [
        ("", "serial_number", "40,40 600,40 600,100 40,100"),
        (" is-invalid", "part_number", "40,130 520,130 520,190 40,190"),
    ]
    # fields with confidence and validity; lines with confidence
    assert re.search(
        r'<tr class="is-valid" data-field="serial_number">.*?SN20260042.*?95\.0%.*?valid',
        html,
        re.S,
    )
    assert re.search(
        r'<tr class="is-invalid" data-field="part_number">.*?PN-7731.*?90\.0%.*?invalid.*?'
        r"does not match the pattern",
        html,
        re.S,
    )
    assert "S/N: SN20260042" in html and "97.0%" in html
    # the serial links to its history
    assert 'href="/serials/SN20260042/"' in html
    # quality warning, translated by code
    assert f'<li class="warn" data-code="glare">{TEXT_GLARE}</li>' in html
    # audit: timings, models, device
    assert "Text detection" in html and "50.0" in html and "93.0" in html
    assert "test-det" in html and "CPUExecutionProvider" in html
    assert "LINE-1 / station-A" in html and "nameplate" in html and "label.png" in html
    assert capture.sha256 in html


def test_capture_detail_of_failed_capture_shows_reason(logged_in, user, station, product_type):
    capture, _ = services.capture_create(
        user=user, image_bytes=label_png(["X"]), product_type=product_type, station=station
    )
    services.capture_fail(capture_id=capture.pk, code="bad_image", reason="The file is empty.")
    html = logged_in.get(f"/captures/{capture.pk}/").content.decode()
    assert "The file is not a readable image. Take the photo again." in html
    assert "The file is empty. (bad_image)" in html
    assert "status-failed" in html


def test_capture_detail_of_pending_capture(logged_in, user, station, product_type):
    capture, _ = services.capture_create(
        user=user, image_bytes=label_png(["X"]), product_type=product_type, station=station
    )
    html = logged_in.get(f"/captures/{capture.pk}/").content.decode()
    assert "still being read" in html
    assert "poly-line" not in html


def test_unknown_capture_is_404(logged_in):
    missing = uuid.uuid4()
    resp = logged_in.get(f"/captures/{missing}/")
    assert resp.status_code == 404
    assert "Not found" in resp.content.decode()
    assert logged_in.get(f"/captures/{missing}/image").status_code == 404
    assert logged_in.get("/captures/not-a-uuid/").status_code == 404


def test_capture_image_is_served(logged_in, done_capture):
    resp = logged_in.get(f"/captures/{done_capture.pk}/image")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "image/png"
    assert b"".join(resp.streaming_content).startswith(b"\x89PNG")


# --- fragments for the upload page --------------------------------------------------------------


def _card(client, capture_id, **headers):
    return client.get(reverse("capture-card", kwargs={"capture_id": capture_id}), **headers)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_capture_card_is_the_capture_pages_result_section(logged_in, done_capture, lang):
    resp = _card(logged_in, done_capture.pk, HTTP_ACCEPT_LANGUAGE=lang)
    assert resp.status_code == 200
    assert "no-cache" in resp["Cache-Control"]
    card = resp.content.decode().strip()
    assert card.startswith('<div class="result-body result-grid" data-status="DONE"')
    assert "<html" not in card and "ui-strings" not in card
    page = _detail_html(logged_in, done_capture, HTTP_ACCEPT_LANGUAGE=lang)
    assert card in page  # one rendering, byte for byte
    assert 'data-field="serial_number"' in card and "95.0%" in card
    assert {"en": "Confidence", "ko": "신뢰도"}[lang] in card


def test_capture_card_while_reading_and_after_failure(logged_in, user, station, product_type):
    capture, _ = services.capture_create(
        user=user, image_bytes=label_png(["X"]), product_type=product_type, station=station
    )
    card = _card(logged_in, capture.pk).content.decode()
    assert 'data-status="PENDING"' in card and "still being read" in card
    services.capture_claim(capture_id=capture.pk)
    assert 'data-status="PROCESSING"' in _card(logged_in, capture.pk).content.decode()
    services.capture_fail(capture_id=capture.pk, code="bad_image", reason="The file is empty.")
    card = _card(logged_in, capture.pk).content.decode()
    assert 'data-status="FAILED"' in card
    assert "The file is not a readable image. Take the photo again." in card


def test_capture_card_needs_login_and_a_known_capture(client, logged_in, done_capture):
    missing = _card(logged_in, uuid.uuid4())
    assert missing.status_code == 404
    client.logout()
    resp = _card(client, done_capture.pk)
    assert resp.status_code == 302 and resp["Location"].startswith(reverse("login"))
    resp = client.get(reverse("capture-recent"))
    assert resp.status_code == 302 and resp["Location"].startswith(reverse("login"))


def test_capture_recent_is_the_upload_pages_list(logged_in, user, station, product_type):
    assert "No captures yet." in logged_in.get(reverse("capture-recent")).content.decode()
    capture = _done_capture(user, station, product_type, serial="SN20260777")
    resp = logged_in.get(reverse("capture-recent"))
    assert resp.status_code == 200 and "no-cache" in resp["Cache-Control"]
    items = resp.content.decode().strip()
    assert items.startswith('<ul class="capture-items">')
    assert f'href="/captures/{capture.pk}/"' in items and "SN20260777" in items
    assert items in logged_in.get("/").content.decode()


# --- search and history -------------------------------------------------------------------------


def test_search_finds_exact_prefix_and_lookalike(logged_in, user, station, product_type):
    _done_capture(user, station, product_type, serial="SN20260042")
    _done_capture(user, station, product_type, serial="SN20260042")
    _done_capture(user, station, product_type, serial="SN20260099")

    html = logged_in.get("/search/", {"q": "sn2026-0042"}).content.decode()
    assert re.search(r'href="/serials/SN20260042/">SN20260042</a>.*?match-exact.*?>2<', html, re.S)

    html = logged_in.get("/search/", {"q": "SN202600"}).content.decode()
    assert "match-prefix" in html and "SN20260099" in html and "SN20260042" in html

    html = logged_in.get("/search/", {"q": "SNZO26OO42"}).content.decode()  # O/0 and Z/2 misread
    assert re.search(r"SN20260042</a>.*?match-lookalike", html, re.S)

    html = logged_in.get("/search/", {"q": "QQQQQQQQ"}).content.decode()
    assert "Nothing matches" in html


def test_search_page_without_query(logged_in):
    resp = logged_in.get("/search/")
    assert resp.status_code == 200
    assert 'name="q"' in resp.content.decode()
    assert "result" not in resp.content.decode().split("</form>", 1)[1].lower().split("<h2")[0]


def test_serial_history_timeline(logged_in, user, station, product_type):
    first = _done_capture(user, station, product_type, serial="SN20260042")
    second = _done_capture(user, station, product_type, serial="SN20260042")
    resp = logged_in.get(reverse("serial-history", kwargs={"value": "SN20260042"}))
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "Read 2 times." in html
    links = re.findall(r'href="/captures/([0-9a-f-]+)/"', html)
    assert links == [str(first.pk), str(second.pk)]  # oldest first
    assert "LINE-1 / station-A" in html and "95.0%" in html and "Serial number" in html


def test_serial_history_accepts_unnormalised_value_and_slashes(
    logged_in, user, station, product_type
):
    _done_capture(user, station, product_type, serial="SN20260042", part="PN/7731")
    assert "Read 1 time." in logged_in.get("/serials/sn-2026-0042/").content.decode()
    # part numbers may contain "/": the history route must reverse and resolve them
    url = reverse("serial-history", kwargs={"value": "PN/7731"})
    assert url == "/serials/PN/7731/"
    assert logged_in.get(url).status_code == 200


def test_serial_history_of_unknown_value_is_404(logged_in):
    resp = logged_in.get("/serials/NOPE12345/")
    assert resp.status_code == 404
    assert "has not been read yet" in resp.content.decode()


# --- Korean -------------------------------------------------------------------------------------


def test_korean_by_accept_language(logged_in, station, product_type):
    html = logged_in.get("/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert '<html lang="ko">' in html
    for text in ("업로드", "검색", "스테이션", "제품 유형", "사진 촬영", "로그아웃"):
        assert text in html, text
    strings = json.loads(
        re.search(
            r'<script id="ui-strings" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    assert strings["DONE"] == "완료"


def test_korean_after_set_language(logged_in, done_capture):
    resp = logged_in.post("/i18n/setlang/", {"language": "ko", "next": "/search/"})
    assert resp.status_code == 302 and resp["Location"] == "/search/"
    html = logged_in.get(f"/captures/{done_capture.pk}/").content.decode()
    assert '<html lang="ko">' in html
    assert "텍스트 위에 빛 반사가 강합니다: 다른 각도에서 다시 촬영하세요." in html
    for text in ("일련번호", "신뢰도", "단계별 소요 시간", "텍스트 검출", "완료", "유효", "무효"):
        assert text in html, text
    html = logged_in.get("/search/", {"q": "SN20260042"}).content.decode()
    assert "정확히 일치" in html and "“SN20260042” 검색 결과 1건" in html
    html = logged_in.get("/serials/SN20260042/").content.decode()
    assert "1회 판독되었습니다." in html and "일련번호 이력" in html
    # and back to English
    logged_in.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert "Serial history" in logged_in.get("/serials/SN20260042/").content.decode()


def test_korean_login_page(client):
    html = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "로그인" in html and "사용자 이름" in html and "비밀번호" in html
    assert ">한국어<" in html and ">English<" in html


def test_korean_catalog_is_complete_and_compiled():
    po = polib.pofile(str(PO_PATH))
    assert po.metadata["Plural-Forms"] == "nplurals=1; plural=0;"
    assert po.metadata["Language"] == "ko"
    assert po.metadata["Content-Type"] == "text/plain; charset=UTF-8"
    assert not po.untranslated_entries()
    assert not po.fuzzy_entries()
    mo = polib.mofile(str(PO_PATH.with_suffix(".mo")))
    compiled = {(e.msgid, e.msgstr or e.msgstr_plural.get(0, "")) for e in mo}
    source = {(e.msgid, e.msgstr or e.msgstr_plural.get(0, "")) for e in po.translated_entries()}
    assert source <= compiled, "django.mo is stale: recompile it from django.po"
    # every template string is in the catalog (templates are the bulk of the UI)
    templates = Path(settings.BASE_DIR) / "templates"
    msgids = {e.msgid for e in po}
    pattern = re.compile(r'{%\s*translate\s+"([^"]+)"|{%\s*translate\s+\'([^\']+)\'')
    for path in templates.rglob("*.html"):
        for m in pattern.finditer(path.read_text()):
            assert (m.group(1) or m.group(2)) in msgids, (path.name, m.group(0))


def test_glare_text_warning_is_rendered_from_its_line_param():
    """``glare_text`` says its line from ``params["line"]`` (its English message is not read)."""
    from django.utils import translation

    from ocrapp.templatetags.ocrui import quality_message

    warning = QualityWarning(
        "glare_text", "Glare hides characters of the third line.", {"line": 3, "order": 2}
    )
    with translation.override("en"):
        assert quality_message(warning) == (
            "Glare covers characters on line 3: retake the photo at a different angle."
        )
    with translation.override("ko"):
        assert quality_message(warning) == (
            "3번째 줄의 글자가 빛 반사로 가려졌습니다: 다른 각도에서 다시 촬영하세요."
        )
    without_line = QualityWarning("glare_text", "Glare covers characters on line 3.")
    with translation.override("en"):
        assert quality_message(without_line) == (
            "Glare covers characters of a text line: retake the photo at a different angle."
        )
    with translation.override("ko"):
        assert quality_message(without_line).startswith("텍스트 줄의 글자가")


@pytest.mark.parametrize(
    ("lang", "texts"),
    [
        (
            "en",
            [
                "Glare covers characters on line 2: retake the photo at a different angle.",
                "Glare on the photo: avoid direct light or flash reflections on the label.",
                TEXT_GLARE,
            ],
        ),
        (
            "ko",
            [
                "2번째 줄의 글자가 빛 반사로 가려졌습니다: 다른 각도에서 다시 촬영하세요.",
                "사진에 빛 반사가 있습니다: 라벨에 직사광이나 플래시가 반사되지 않게 하세요.",
                "텍스트 위에 빛 반사가 강합니다: 다른 각도에서 다시 촬영하세요.",
            ],
        ),
    ],
)
def test_glare_warnings_on_the_capture_page_by_code_and_params(
    logged_in, user, station, product_type, lang, texts
):
    warnings = [
        QualityWarning("glare_text", "glare over line 2", {"line": 2, "order": 1}).to_dict(),
        QualityWarning("glare_photo", "Glare somewhere on the photo.").to_dict(),
        QualityWarning("glare", "Strong glare over the text.").to_dict(),
    ]
    capture = _done_capture(user, station, product_type, warnings=warnings)
    html = logged_in.get(f"/captures/{capture.pk}/", HTTP_ACCEPT_LANGUAGE=lang).content.decode()
    shown = re.findall(r'<li class="warn" data-code="(\w+)">([^<]*)</li>', html)
    assert shown == list(zip(["glare_text", "glare_photo", "glare"], texts, strict=True))


def test_bad_result_failure_is_explained(logged_in, user, station, product_type):
    capture, _ = services.capture_create(
        user=user, image_bytes=label_png(["X"]), product_type=product_type, station=station
    )
    assert services.capture_claim(capture_id=capture.pk) is not None
    assert services.read_save(capture_id=capture.pk, result={"image": {}}) is None
    html = logged_in.get(f"/captures/{capture.pk}/").content.decode()
    assert "The reader returned an unusable result. Try again or report it." in html
    assert "result.quality: missing" in html and "(bad_result)" in html
    ko = logged_in.get(f"/captures/{capture.pk}/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "판독기가 사용할 수 없는 결과를 돌려주었습니다." in ko
