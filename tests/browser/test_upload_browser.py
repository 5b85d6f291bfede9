"""Browser: log in, upload a label photo with the file input, see the serial on the result card
and the review decision, and check that the card says what the capture page says (the card is
the page's result section, fetched from the server when the read is done).

Real everything: headless Debian Chromium driven by Playwright, pytest-django's live server, the
REST API, a real Celery worker (``celery_worker_proc``) running the real OCR pipeline against the
same test database. Skips when Chromium is missing unless ``REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.urls import reverse

from tests.images import label_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", "/tmp"))
READ_TIMEOUT_MS = 120_000  # the worker loads its models on the first task
REVIEW_TITLES_EN = {"needs_review": "Needs review", "auto_accepted": "Auto-accepted"}


def _missing(reason: str):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _missing(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


def _login(page, live_server) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "op-pass-1234")
    page.click("button[type=submit].btn-primary")
    page.wait_for_url(f"{live_server.url}/")


def _upload(page, name: str, data: bytes, mime: str = "image/png"):
    before = page.locator("#results .result").count()
    page.set_input_files("#file-input", files=[{"name": name, "mimeType": mime, "buffer": data}])
    card = page.locator("#results .result").first
    page.wait_for_function(
        "n => document.querySelectorAll('#results .result').length > n", arg=before
    )
    return card


def _assert_fits_phone(page) -> None:
    """Nothing sticks out sideways at 390 px (no horizontal scrolling on a phone)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} is {width}px wide"


def _texts(locator) -> list[str]:
    return [" ".join(t.split()) for t in locator.all_inner_texts()]


def _read_summary(scope) -> dict:
    """What a result says about a read (review, field checks, codes), as visible text."""
    rows = {}
    for i in range(scope.locator("table.fields tbody tr").count()):
        tr = scope.locator("table.fields tbody tr").nth(i)
        rows[tr.get_attribute("data-field")] = (
            tr.get_attribute("class"),
            " ".join(tr.inner_text().split()),
        )
    return {
        "review": scope.locator(".review").get_attribute("data-review"),
        "title": scope.locator(".review-title").inner_text(),
        "reasons": _texts(scope.locator(".review-reasons li")),
        "rows": rows,
        "marks": _texts(scope.locator("mark.chg")),
        "codes": _texts(scope.locator("ul.codes > li")),
        "code_polygons": scope.locator("polygon.poly-code").count(),
    }


def _wait_finished(page, card, timeout: int = READ_TIMEOUT_MS) -> None:
    page.wait_for_function(
        "el => el.dataset.status === 'DONE' || el.dataset.status === 'FAILED'",
        arg=card.element_handle(),
        timeout=timeout,
    )


def test_upload_shows_serial_on_result_card(
    celery_worker_proc, page, live_server, user, station, product_type
):
    _login(page, live_server)
    page.select_option("#station", str(station.pk))
    page.select_option("#product_type", str(product_type.pk))
    photo = label_png(["S/N: SN20260042", "P/N: PN-7731"], size=(900, 320), font_size=48)

    card = _upload(page, "label.png", photo)
    card.locator(".result-name").wait_for()
    assert card.locator(".result-name").inner_text() == "label.png"
    # upload accepted, then the read finishes
    _wait_finished(page, card)
    assert card.get_attribute("data-status") == "DONE", (
        card.inner_text(),
        celery_worker_proc.log()[-3000:],
    )
    assert card.locator(".serial-value").inner_text() == "SN20260042"
    assert card.locator(".result-status").inner_text() == "Done"
    # the review decision heads the card: one of its two states
    review = card.locator(".result-data > .review")
    assert review.count() == 1
    state = review.get_attribute("data-review")
    assert state in REVIEW_TITLES_EN, state
    assert review.locator(".review-title").inner_text() == REVIEW_TITLES_EN[state]
    card_reasons = _texts(review.locator(".review-reasons li"))
    if state == "needs_review":
        assert "review-needed" in review.get_attribute("class")
    # the photo with polygons drawn in image pixels over it
    img = card.locator(".shot-frame img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    assert card.locator("svg.overlay").get_attribute("viewBox") == "0 0 900 320"
    assert card.locator("polygon.poly-line").count() >= 1
    assert card.locator('polygon.poly-field[data-field="serial_number"]').count() == 1
    # overlay and image share one box, so polygons land on the text
    img_box, svg_box = img.bounding_box(), card.locator("svg.overlay").bounding_box()
    assert abs(img_box["width"] - svg_box["width"]) < 1.5
    assert abs(img_box["height"] - svg_box["height"]) < 1.5
    assert card.locator('tr[data-field="serial_number"] .badge-ok').count() == 1
    assert "SN20260042" in card.locator("ol.lines").inner_text().replace(" ", "")

    card.screenshot(path=str(SCREENSHOT_DIR / "result_card_390x844.png"))
    page.screenshot(path=str(SCREENSHOT_DIR / "upload_page_390x844.png"), full_page=True)
    _assert_fits_phone(page)
    page.set_viewport_size({"width": 1280, "height": 800})
    card.screenshot(path=str(SCREENSHOT_DIR / "result_card_1280x800.png"))
    page.screenshot(path=str(SCREENSHOT_DIR / "upload_page_1280x800.png"))

    # the card links to the server-rendered capture page, which shows the same read
    card.locator(".result-foot a").click()
    page.wait_for_url("**/captures/*/")
    assert page.locator(".serial-value").inner_text() == "SN20260042"
    # ... and the same review decision, in the same words
    detail_review = page.locator(".result-detail .review")
    assert detail_review.get_attribute("data-review") == state
    assert _texts(detail_review.locator(".review-reasons li")) == card_reasons
    assert page.locator("polygon.poly-line").count() >= 1
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOT_DIR / "capture_detail_390x844.png"), full_page=True)
    _assert_fits_phone(page)

    # search -> serial history, both readable on the phone
    page.goto(f"{live_server.url}/search/?q=SN2026")
    link = page.locator("a.serial-link", has_text="SN20260042")
    assert link.count() == 1
    _assert_fits_phone(page)
    page.screenshot(path=str(SCREENSHOT_DIR / "search_390x844.png"), full_page=True)
    link.click()
    page.wait_for_url("**/serials/SN20260042/")
    assert page.locator("ol.timeline li.history-item").count() == 1
    _assert_fits_phone(page)
    page.screenshot(path=str(SCREENSHOT_DIR / "serial_history_390x844.png"), full_page=True)

    # Korean: switch language, upload again, the script's strings are Korean too
    page.goto(f"{live_server.url}/")
    page.click('.lang-switch button[value="ko"]')
    page.wait_for_selector('html[lang="ko"]')
    assert page.locator("label[for=camera-input]").inner_text().strip().endswith("사진 촬영")
    card = _upload(page, "label-ko.png", photo)
    _wait_finished(page, card)
    assert card.get_attribute("data-status") == "DONE", card.inner_text()
    assert card.locator(".result-status").inner_text() == "완료"
    assert card.locator(".serial-value").inner_text() == "SN20260042"
    assert "신뢰도" in card.inner_text()
    assert card.locator(".review .review-title").inner_text() in ("검토 필요", "자동 승인됨")
    card.screenshot(path=str(SCREENSHOT_DIR / "result_card_ko_390x844.png"))
    assert page.errors == []


def _result_text(scope) -> dict:
    """The visible text of a result section: each field row, the review, the lines, all of it."""
    rows = scope.locator("table.fields tbody tr")
    return {
        "rows": {
            rows.nth(i).get_attribute("data-field"): " ".join(rows.nth(i).inner_text().split())
            for i in range(rows.count())
        },
        "confidences": _texts(scope.locator("table.fields .conf, ol.lines .conf")),
        "review": _texts(scope.locator(".review")),
        "reasons": _texts(scope.locator(".review-reasons li")),
        "lines": _texts(scope.locator("ol.lines li")),
        "all": " ".join(scope.inner_text().split()),
    }


def test_live_card_and_capture_page_show_the_same_read(
    celery_worker_proc, page, live_server, user, station, product_type
):
    """A real read: the card on the upload page and the capture page show the same fields,
    values, confidences and review reasons (one server rendering), and "Recent captures" lists
    the new capture as soon as it is read, without a reload."""
    _login(page, live_server)
    recent = page.locator("#recent-captures")
    assert "No captures yet." in recent.inner_text()
    page.evaluate("window.notReloaded = true")
    page.select_option("#station", str(station.pk))
    page.select_option("#product_type", str(product_type.pk))
    photo = label_png(["S/N: SN20260042", "P/N: PN-7731"], size=(900, 320), font_size=48)

    card = _upload(page, "same.png", photo)
    _wait_finished(page, card)
    assert card.get_attribute("data-status") == "DONE", (
        card.inner_text(),
        celery_worker_proc.log()[-3000:],
    )
    capture_id = card.get_attribute("data-capture-id")
    # the list shows the capture, read, on the same page
    item = recent.locator(f'a.capture-item[href="/captures/{capture_id}/"]')
    item.locator(".status-done").wait_for(timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    assert "SN20260042" in item.inner_text()
    assert "No captures yet." not in recent.inner_text()

    on_card = _result_text(card.locator(".result-body"))
    assert "serial_number" in on_card["rows"] and "SN20260042" in on_card["rows"]["serial_number"]
    assert on_card["confidences"] and all(c.endswith("%") for c in on_card["confidences"])
    card.locator(".result-foot a").click()
    page.wait_for_url(f"**/captures/{capture_id}/")
    on_page = _result_text(page.locator(".result-detail .result-body"))
    assert on_card == on_page
    assert page.errors == []


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_result_card_says_what_the_capture_page_says(
    page, live_server, user, station, product_type, monkeypatch, lang
):
    """The live card and the capture page of one verified read (corrected
    serial, DataMatrix mislabel, code-only lot, invalid date, low confidence) say the same.

    The read is stored with ``services.read_save``; the API's own JSON of it answers the upload
    (intercepted), so no worker is involved."""
    from rest_framework.test import APIClient

    from ocrapp import services
    from tests.results import review_result_dict

    monkeypatch.setattr(services, "_enqueue_read", lambda **kwargs: None)
    capture, _ = services.capture_create(
        user=user,
        image_bytes=label_png(["S/N: SN2O260042", "P/N: PN-7731"]),
        original_filename="label.png",
        product_type=product_type,
        station=station,
    )
    assert services.capture_claim(capture_id=capture.pk) is not None
    assert services.read_save(capture_id=capture.pk, result=review_result_dict()) is not None
    api = APIClient()
    api.force_authenticate(user)
    url = reverse("api-capture-detail", kwargs={"capture_id": capture.pk})
    # The detail view is async (?wait=); Playwright's sync API runs an event loop in this
    # thread, where Django cannot run it: ask from another thread.
    with ThreadPoolExecutor(1) as pool:
        body = pool.submit(lambda: api.get(url).content).result()

    _login(page, live_server)
    if lang == "ko":
        page.click('.lang-switch button[value="ko"]')
        page.wait_for_selector('html[lang="ko"]')
    page.select_option("#station", str(station.pk))
    page.select_option("#product_type", str(product_type.pk))
    page.route(
        "**/api/v1/captures",
        lambda route: route.fulfill(status=202, content_type="application/json", body=body),
    )
    card = _upload(page, "label.png", label_png(["S/N: SN2O260042"]))
    _wait_finished(page, card, timeout=15_000)
    assert card.get_attribute("data-status") == "DONE", card.inner_text()
    on_card = _read_summary(card)
    _assert_fits_phone(page)
    card.screenshot(path=str(SCREENSHOT_DIR / f"result_card_review_{lang}_390x844.png"))

    card.locator(".result-foot a").click()
    page.wait_for_url(f"**/captures/{capture.pk}/")
    on_page = _read_summary(page.locator(".result-detail"))
    _assert_fits_phone(page)
    page.screenshot(path=str(SCREENSHOT_DIR / f"capture_review_{lang}_390x844.png"), full_page=True)

    assert on_card == on_page
    assert on_card["review"] == "needs_review"
    assert [r.split(":")[0] for r in on_card["reasons"]] == [
        {"en": "Manufacturing date", "ko": "제조일"}[lang],
        {"en": "Model", "ko": "모델"}[lang],
        "IMEI",
        {"en": "Serial number", "ko": "일련번호"}[lang],
    ]
    mislabel = {
        "en": "Serial number: printed value and code disagree "
        "(printed SN20260042, DataMatrix says SN20260099)",
        "ko": "일련번호: 인쇄된 값과 코드 값이 다릅니다 (인쇄: SN20260042, DataMatrix: SN20260099)",
    }[lang]
    assert on_card["reasons"][-1] == mislabel
    assert on_card["rows"]["serial_number"][0] == "is-valid is-mismatch"
    assert on_card["marks"] == ["O"]
    assert on_card["code_polygons"] == 1
    assert "(21) SERIAL: SN20260099" in on_card["codes"][0]
    assert page.errors == []


def test_upload_error_message_from_api(page, live_server, user, station, product_type):
    """An upload the API refuses shows the API's error message; nothing waits for a worker."""
    _login(page, live_server)
    card = _upload(page, "broken.png", b"this is not a png at all")
    _wait_finished(page, card, timeout=15_000)
    assert card.get_attribute("data-status") == "FAILED"
    message = card.locator(".result-message").inner_text()
    assert "not an image we can read" in message
    assert page.errors == []


def test_upload_error_message_in_korean(page, live_server, user, station, product_type):
    """On the Korean upload page the API's refusal is in Korean too (the page's language
    choice travels with its API calls)."""
    _login(page, live_server)
    page.click('.lang-switch button[value="ko"]')
    page.wait_for_selector('html[lang="ko"]')
    card = _upload(page, "broken.png", b"this is not a png at all")
    _wait_finished(page, card, timeout=15_000)
    assert card.get_attribute("data-status") == "FAILED"
    assert card.locator(".result-status").inner_text() == "실패"
    message = card.locator(".result-message").inner_text()
    assert (
        message
        == "읽을 수 있는 이미지 파일이 아닙니다 (JPEG, PNG, TIFF, WebP 또는 HEIC를 사용하세요)."
    )
    assert page.errors == []
