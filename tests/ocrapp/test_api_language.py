"""API messages in the caller's language: ``Accept-Language`` or the language chosen with the
language switch (cookie) decide the language of JSON error messages, ours (ApplicationError)
and DRF's own (validation, authentication, permission)."""

from __future__ import annotations

import ast
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from ocrapp import roles, services
from ocrapp.models import Capture
from tests.images import label_png

pytestmark = pytest.mark.django_db

PO_PATH = Path(settings.BASE_DIR) / "ocrapp" / "locale" / "ko" / "LC_MESSAGES" / "django.po"
OCRAPP = Path(settings.BASE_DIR) / "ocrapp"


def _upload(client, data: bytes, name="a.png", **headers):
    return client.post(
        "/api/v1/captures",
        {"image": SimpleUploadedFile(name, data, "image/png"), "product_type": "nameplate"},
        format="multipart",
        **headers,
    )


def _message(resp) -> str:
    return resp.json()["error"]["message"]


def test_korean_accept_language_gets_a_korean_error(station_client, product_type):
    resp = _upload(station_client, b"not an image at all" * 20, HTTP_ACCEPT_LANGUAGE="ko")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unsupported_file"
    assert _message(resp) == (
        "읽을 수 있는 이미지 파일이 아닙니다 (JPEG, PNG, TIFF, WebP 또는 HEIC를 사용하세요)."
    )
    english = _upload(station_client, b"not an image at all" * 20, HTTP_ACCEPT_LANGUAGE="en")
    assert _message(english) == (
        "The file is not an image we can read (use JPEG, PNG, TIFF, WebP or HEIC)."
    )
    assert Capture.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "ko"),
    [
        ("/api/v1/serials", "q(검색어)를 입력해야 합니다."),
        ("/api/v1/serials/NOPE1234/history", "'NOPE1234'의 판독 기록이 없습니다."),
        ("/api/v1/captures/00000000-0000-0000-0000-000000000000", "촬영 기록"),
        ("/api/v1/captures/00000000-0000-0000-0000-000000000000?wait=99", "wait는 0에서 30"),
    ],
)
def test_korean_messages_of_the_read_endpoints(station_client, path, ko):
    resp = station_client.get(path, HTTP_ACCEPT_LANGUAGE="ko-KR,ko;q=0.9,en;q=0.5")
    assert resp.status_code in (400, 404)
    assert ko in _message(resp)


def test_drf_validation_authentication_and_permission_messages_in_korean(
    station_client, product_type
):
    missing = station_client.post(
        "/api/v1/captures",
        {"product_type": "nameplate"},
        format="multipart",
        HTTP_ACCEPT_LANGUAGE="ko",
    )
    assert missing.status_code == 400
    assert _message(missing) == "image: 파일이 제출되지 않았습니다."

    anonymous = APIClient().get("/api/v1/serials?q=SN1", HTTP_ACCEPT_LANGUAGE="ko")
    assert anonymous.status_code == 401
    assert _message(anonymous) == "자격 인증 데이터가 제공되지 않았습니다."

    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token nope")
    resp = bad.get("/api/v1/serials?q=SN1", HTTP_ACCEPT_LANGUAGE="ko")
    assert resp.status_code == 401 and _message(resp) == "유효하지 않거나 폐기된 API 토큰입니다."

    auditor = APIClient()
    auditor.force_authenticate(services.user_create_with_role(username="aud", role=roles.AUDITOR))
    refused = _upload(auditor, label_png(["S/N: 1"]), HTTP_ACCEPT_LANGUAGE="ko")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert _message(refused) == "사진을 업로드할 권한이 없습니다."


def test_the_language_switch_applies_to_the_api(client, user, station, product_type):
    """The upload page's API calls carry the language chosen on the page (its cookie)."""
    client.force_login(user)
    client.post("/i18n/setlang/", {"language": "ko", "next": "/"})
    other = services.station_create(line="LINE-2", name="B")
    resp = client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile("a.png", label_png(["S/N: 1"]), "image/png"),
            "product_type": "nameplate",
            "station": str(other.pk),
        },
        HTTP_ACCEPT_LANGUAGE="en",  # the chosen language wins over the browser's
    )
    assert resp.status_code == 403
    assert _message(resp) == "스테이션 LINE-2 / B에 업로드할 권한이 없습니다."
    assert resp["Content-Language"] == "ko"


def test_review_and_withdrawal_messages_in_korean():
    """The review and withdrawal endpoints answer in the caller's language too (nothing stored)."""
    from ocrapp.models import AuditEvent

    auditor = APIClient()
    auditor.force_authenticate(services.user_create_with_role(username="aud", role=roles.AUDITOR))
    queue = auditor.get("/api/v1/review-queue", HTTP_ACCEPT_LANGUAGE="ko")
    assert queue.status_code == 403 and queue.json()["error"]["code"] == "permission_denied"
    assert _message(queue) == "판독을 검토할 권한이 없습니다."
    qm = APIClient()
    qm.force_authenticate(services.user_create_with_role(username="qm", role=roles.QUALITY_MANAGER))
    before = AuditEvent.objects.count()
    zero = "00000000-0000-0000-0000-000000000000"
    gone = qm.post(f"/api/v1/captures/{zero}/withdraw", {"reason": "x"}, HTTP_ACCEPT_LANGUAGE="ko")
    assert gone.status_code == 404 and _message(gone) == f"촬영 기록 {zero}이(가) 없습니다."
    bad = qm.get("/api/v1/review-queue?reason=glare", HTTP_ACCEPT_LANGUAGE="ko")
    assert bad.status_code == 400 and _message(bad).startswith("reason은 다음 중 하나여야 합니다:")
    assert AuditEvent.objects.count() == before


# --- every API message has its Korean translation ------------------------------------------

ERRORS = {"ApplicationError", "NotFoundError", "PermissionDeniedError"}
MESSAGE_MODULES = (
    "api",
    "authentication",
    "errors",
    "imagecheck",
    "limits",
    "parsers",
    "selectors",
    "services",
)


def _calls(tree: ast.AST, names: set[str]):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in names:
                yield node


def test_application_errors_are_never_raised_with_untranslated_text():
    """A message literal (or f-string) passed to an ApplicationError would reach a Korean
    user in English; messages go through gettext with named parameters."""
    offenders = []
    for path in OCRAPP.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for call in _calls(ast.parse(path.read_text()), ERRORS):
            for arg in call.args[1:2]:
                if isinstance(arg, ast.Constant | ast.JoinedStr):
                    offenders.append(f"{path.name}:{call.lineno}")
    assert offenders == []


def test_every_gettext_message_of_the_api_modules_is_translated():
    po = polib.pofile(str(PO_PATH))
    translated = {e.msgid for e in po.translated_entries()}
    missing = []
    for module in MESSAGE_MODULES:
        tree = ast.parse((OCRAPP / f"{module}.py").read_text())
        for call in _calls(tree, {"_", "gettext", "gettext_lazy"}):
            arg = call.args[0] if call.args else None
            if isinstance(arg, ast.Constant) and arg.value not in translated:
                missing.append(f"{module}.py:{call.lineno}: {arg.value}")
    assert missing == []
