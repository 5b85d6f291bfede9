"""Web UI of the verification stage: review banner, corrected values, code checks, codes list and
the capture list's "needs review" badge, in English and Korean.

Reads are stored with ``services.read_save`` from hand-built results (``tests.results``); the
upload page's script draws the same from the API JSON (see ``tests/browser``).
"""

from __future__ import annotations

import html as html_lib
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ocrapp import services
from ocrapp.models import Capture
from tests.images import label_png
from tests.results import (
    REVIEW_CODED_SERIAL,
    REVIEW_GS1,
    REVIEW_SERIAL,
    accepted_result_dict,
    result_dict,
    review_result_dict,
)

pytestmark = pytest.mark.django_db

MISLABEL_EN = (
    "Serial number: printed value and code disagree "
    f"(printed {REVIEW_SERIAL}, DataMatrix says {REVIEW_CODED_SERIAL})"
)


def _capture_with(user, station, product_type, result: dict) -> Capture:
    serial = next((f["value"] for f in result["fields"] if f["name"] == "serial_number"), "X")
    capture, created = services.capture_create(
        user=user,
        image_bytes=label_png([f"S/N: {serial}"]),
        original_filename="label.png",
        product_type=product_type,
        station=station,
    )
    assert created
    assert services.capture_claim(capture_id=capture.pk) is not None
    assert services.read_save(capture_id=capture.pk, result=result, worker="test") is not None
    return capture


@pytest.fixture
def review_capture(user, station, product_type):
    return _capture_with(user, station, product_type, review_result_dict())


@pytest.fixture
def accepted_capture(user, station, product_type):
    return _capture_with(user, station, product_type, accepted_result_dict())


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def _detail(client, capture, **headers) -> str:
    resp = client.get(reverse("capture-detail", kwargs={"capture_id": capture.pk}), **headers)
    assert resp.status_code == 200
    return resp.content.decode()


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment (tags dropped, entities decoded, spaces collapsed)."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _row(html: str, field: str) -> str:
    m = re.search(rf'<tr class="([^"]*)" data-field="{field}">(.*?)</tr>', html, re.S)
    assert m, field
    return m.group(1) + "|" + m.group(2)


def _ui_strings(html: str) -> dict:
    m = re.search(r'<script id="ui-strings" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def test_review_banner_lists_translated_reasons_first(logged_in, review_capture):
    html = _detail(logged_in, review_capture)
    banner = re.search(r'<div class="review review-needed"[^>]*>(.*?)</div>', html, re.S)
    assert banner, "no needs-review banner"
    assert 'data-review="needs_review"' in html
    # the banner comes before the serial and the fields
    assert html.index("review-needed") < html.index("serial-big") < html.index("table")
    reasons = re.findall(
        r'<li data-code="(\w+)" data-field="(\w+)">([^<]*)</li>', banner.group(1), re.S
    )
    assert [(c, f, html_lib.unescape(t)) for c, f, t in reasons] == [
        (
            "invalid",
            "mfg_date",
            "Manufacturing date: the value is not valid (date is in the future)",
        ),
        (
            "low_confidence",
            "model",
            "Model: confidence 60.0% is below the auto-accept threshold 85.0%",
        ),
        ("missing", "imei", "IMEI: not found on the label"),
        ("mislabel", "serial_number", MISLABEL_EN),
    ]
    assert "Auto-accepted" not in html


def test_review_reasons_render_from_their_params(logged_in, user, station, product_type):
    """The numbers and values of a reason come from its params, not from the fields."""
    result = review_result_dict()
    low, mislabel = result["review"]["reasons"][1], result["review"]["reasons"][3]
    low["params"] = {"confidence": 0.5, "threshold": 0.9}
    mislabel["params"] = {"printed": "SN-PRINTED", "coded": "SN-CODED", "code_format": "QRCode"}
    html = _detail(logged_in, _capture_with(user, station, product_type, result))
    assert "Model: confidence 50.0% is below the auto-accept threshold 90.0%" in html
    assert (
        "Serial number: printed value and code disagree (printed SN-PRINTED, QR says SN-CODED)"
        in html
    )


def test_review_reasons_stored_without_params_use_the_fields(
    logged_in, user, station, product_type
):
    """Reasons stored before they had params: the field's confidence, the review threshold and
    the read's mismatch give the same sentences."""
    result = review_result_dict()
    for reason in result["review"]["reasons"]:
        del reason["params"]
    html = _detail(logged_in, _capture_with(user, station, product_type, result))
    banner = re.search(r'<div class="review review-needed"[^>]*>(.*?)</div>', html, re.S)
    texts = [html_lib.unescape(t) for t in re.findall(r"<li [^>]*>([^<]*)</li>", banner.group(1))]
    assert texts == [
        "Manufacturing date: the value is not valid (date is in the future)",
        "Model: confidence 60.0% is below the auto-accept threshold 85.0%",
        "IMEI: not found on the label",
        MISLABEL_EN,
    ]


def test_fields_show_correction_checks_and_code_agreement(logged_in, review_capture):
    html = _detail(logged_in, review_capture)
    # corrected serial: the value, the raw read with the changed character marked
    serial = _row(html, "serial_number")
    assert serial.startswith("is-valid is-mismatch|")
    assert REVIEW_SERIAL in serial
    assert (
        'corrected from <span class="mono raw">SN2<mark class="chg">O</mark>260042</span>' in serial
    )
    assert "read as" not in serial  # said once, as a correction
    # the DataMatrix disagrees: mislabel alarm in the row
    assert re.search(
        rf'<span class="code-check code-mismatch">the DataMatrix code says {REVIEW_CODED_SERIAL}'
        r"</span>",
        serial,
    )
    # the printed part number agrees with the code; the lot only the code carries
    part = _row(html, "part_number")
    assert part.startswith("is-valid|")
    assert '<span class="code-check code-match">matches the DataMatrix code</span>' in part
    lot = _row(html, "lot")
    assert '<span class="code-check code-code">from the DataMatrix code</span>' in lot
    assert "L2026A" in lot and "99.0%" in lot
    # failed rule, translated by its code; confidence as before
    date = _row(html, "mfg_date")
    assert date.startswith("is-invalid|")
    assert re.search(
        r'badge-bad">invalid</span> <small class="check-reasons">date is in the future</small>',
        date,
    )
    assert "conf-low" in date and "18.0%" in date
    model = _row(html, "model")
    assert "conf-mid" in model and "code-check" not in model


def test_codes_section_lists_format_text_and_gs1_elements(logged_in, review_capture):
    html = _detail(logged_in, review_capture)
    codes = re.search(
        r"<h3>Codes</h3>\s*<ul class=\"codes\">(.*?)</ul>\s*</li>\s*</ul>", html, re.S
    )
    assert codes, "no codes section"
    text = _text(codes.group(1))
    assert text.startswith(f"DataMatrix {REVIEW_GS1}")
    for element in (
        "(01) GTIN: 09506000134352",
        f"(21) SERIAL: {REVIEW_CODED_SERIAL}",
        "(10) BATCH/LOT: L2026A",
        "(240) ADDITIONAL ID: PN-7731",
    ):
        assert element in text, element
    # drawn on the photo too, with a legend key
    assert re.search(
        r'<polygon class="poly-code" data-code="0" points="680,40 860,40 860,220 680,220">', html
    )
    assert 'class="key key-code"' in html


def test_auto_accepted_read(logged_in, accepted_capture):
    html = _detail(logged_in, accepted_capture)
    assert re.search(
        r'<div class="review review-ok" data-review="auto_accepted">\s*'
        r'<strong class="review-title">Auto-accepted</strong>',
        html,
    )
    assert "Every field passed its checks at or above the 85.0% auto-accept confidence." in html
    assert "review-needed" not in html and "Needs review" not in html
    assert "<h3>Codes</h3>" not in html  # no codes on this label
    assert "corrected from" not in html and "code-check" not in html


def test_read_stored_before_verification_keeps_its_reason_text(
    logged_in, user, station, product_type
):
    """A read without review data or reason codes (older pipeline): needs review, no reasons
    listed, and the field's own reason text as before."""
    result = result_dict()
    result["fields"][1].update(valid=False, reason="does not match the pattern")
    capture = _capture_with(user, station, product_type, result)
    html = _detail(logged_in, capture)
    assert 'data-review="needs_review"' in html and "review-reasons" not in html
    assert re.search(
        r'badge-bad">invalid</span> <small class="check-reasons">does not match the pattern<',
        _row(html, "part_number"),
    )


def test_failed_and_pending_captures_have_no_review_banner(logged_in, user, station, product_type):
    capture, _ = services.capture_create(
        user=user, image_bytes=label_png(["X"]), product_type=product_type, station=station
    )
    # no review banner (data-review="..."); the nav's data-review-count is not one
    assert "data-review=" not in _detail(logged_in, capture)
    services.capture_fail(capture_id=capture.pk, code="bad_image", reason="empty")
    assert "data-review=" not in _detail(logged_in, capture)


def test_capture_list_badges_reads_that_need_review(logged_in, review_capture, accepted_capture):
    for url in ("/captures/", "/"):
        html = logged_in.get(url).content.decode()
        items = dict(
            re.findall(
                r'<a class="capture-item" href="/captures/([0-9a-f-]+)/">(.*?)</a>', html, re.S
            )
        )
        assert set(items) >= {str(review_capture.pk), str(accepted_capture.pk)}, url
        assert re.search(
            r'<span class="badge badge-review" data-review="needs_review">Needs review</span>',
            items[str(review_capture.pk)],
        ), url
        assert "badge-review" not in items[str(accepted_capture.pk)], url


def test_capture_list_queries_do_not_grow_with_captures(
    logged_in, user, station, product_type, review_capture
):
    with CaptureQueriesContext(connection) as one:
        assert logged_in.get("/captures/").status_code == 200
    for _ in range(3):
        _capture_with(user, station, product_type, review_result_dict())
    with CaptureQueriesContext(connection) as four:
        html = logged_in.get("/captures/").content.decode()
    assert html.count('data-review="needs_review"') == 4
    assert len(four.captured_queries) == len(one.captured_queries)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_upload_card_says_the_review_sentences_of_the_capture_page(logged_in, review_capture, lang):
    """The upload page's live card is the capture page's result section, rendered once by the
    server; the page's script carries no review, field or code sentences of its own."""
    page = _detail(logged_in, review_capture, HTTP_ACCEPT_LANGUAGE=lang)
    resp = logged_in.get(
        reverse("capture-card", kwargs={"capture_id": review_capture.pk}),
        HTTP_ACCEPT_LANGUAGE=lang,
    )
    card = resp.content.decode().strip()
    assert card in page
    mislabel_ko = (
        f"일련번호: 인쇄된 값과 코드 값이 다릅니다 (인쇄: {REVIEW_SERIAL}, "
        f"DataMatrix: {REVIEW_CODED_SERIAL})"
    )
    assert {"en": MISLABEL_EN, "ko": mislabel_ko}[lang] in _text(card)
    strings = _ui_strings(logged_in.get("/", HTTP_ACCEPT_LANGUAGE=lang).content.decode())
    assert not {"review_messages", "field_reasons", "code_checks", "field_labels"} & set(strings)
    assert all(isinstance(v, str) for v in strings.values())


def test_korean_review_rendering(logged_in, review_capture, accepted_capture):
    html = _detail(logged_in, review_capture, HTTP_ACCEPT_LANGUAGE="ko")
    assert '<html lang="ko">' in html
    text = _text(html)
    assert "검토 필요" in text
    assert (
        f"일련번호: 인쇄된 값과 코드 값이 다릅니다 (인쇄: {REVIEW_SERIAL}, "
        f"DataMatrix: {REVIEW_CODED_SERIAL})" in text
    )
    assert "제조일: 값이 유효하지 않습니다 (미래 날짜입니다)" in text
    assert "모델: 신뢰도(60.0%)가 자동 승인 기준(85.0%)보다 낮습니다" in text
    assert (
        '판독값 <span class="mono raw">SN2<mark class="chg">O</mark>260042</span>에서 보정됨'
        in html
    )
    assert f"DataMatrix 코드 값: {REVIEW_CODED_SERIAL}" in text
    assert "DataMatrix 코드와 일치" in text and "DataMatrix 코드에서 읽음" in text
    assert "코드" in text
    html = _detail(logged_in, accepted_capture, HTTP_ACCEPT_LANGUAGE="ko")
    assert "자동 승인됨" in html
    html = logged_in.get("/captures/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert 'data-review="needs_review">검토 필요</span>' in html
