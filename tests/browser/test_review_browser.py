"""Browser: work a review queue of three reads with the keyboard, then read the revisions and
signatures on the capture pages.

Real everything but the reader: headless Debian Chromium driven by Playwright, pytest-django's
live server, the REST API, PostgreSQL. The reads are stored with ``read_save`` from contract
results (the pipeline itself is exercised by ``test_upload_browser``). Skips when Chromium is
missing unless ``REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from ocrapp import roles
from ocrapp.models import Field, FieldRevision
from tests.browser.test_upload_browser import (  # noqa: F401  (fixtures)
    SCREENSHOT_DIR,
    _assert_fits_phone,
    browser,
)
from tests.review_data import PASSWORD, person, queued_result, stored_capture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def desk(browser, live_server):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


def _visible_capture(page) -> str:
    return page.locator(".review-item:not([hidden])").get_attribute("data-capture-id")


def _wait_focus_on_read(page) -> None:
    page.wait_for_function(
        "() => document.activeElement && document.activeElement.classList.contains('review-item')"
    )


def _nav_count(page) -> str:
    return page.locator(".mainnav .nav-count").inner_text()


def test_work_a_queue_of_three_reads_with_the_keyboard(
    desk, live_server, user, station, product_type
):
    page = desk
    person("ada", roles.QUALITY_MANAGER, first="Ada", last="Kim")
    first = stored_capture(user, station, product_type, queued_result("SN4000001", confidence=0.3))
    second = stored_capture(
        user, station, product_type, queued_result("SN4000002", confidence=0.5),
        raw_label="SN4000009",
    )  # fmt: skip
    third = stored_capture(user, station, product_type, queued_result("SN4000003", confidence=0.7))

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].btn-primary")
    page.wait_for_url(f"{live_server.url}/")
    assert _nav_count(page) == "3"
    page.click(".mainnav .nav-review")
    page.wait_for_url("**/review/")
    _wait_focus_on_read(page)
    assert _visible_capture(page) == str(first.pk)  # lowest confidence first
    # each field beside the crop of its line (cut on the server) and its shaded characters
    crop = page.locator('.review-item:not([hidden]) .rf[data-field="serial_number"] img.rf-crop')
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=crop.element_handle())
    assert crop.evaluate("img => img.naturalWidth / img.naturalHeight") > 5
    page.screenshot(path=str(SCREENSHOT_DIR / "review_queue_1280.png"), full_page=True)

    # j / k move between reads without signing
    page.keyboard.press("j")
    assert _visible_capture(page) == str(second.pk)
    page.keyboard.press("k")
    assert _visible_capture(page) == str(first.pk)

    # a right read: two keystrokes (Enter accepts, Enter signs; no password is due)
    page.keyboard.press("Enter")
    assert page.locator("#sign-dialog").evaluate("d => d.open")
    assert page.locator("#sign-password-row").is_hidden()
    assert page.locator("#sign-meaning").inner_text() == "reviewed"
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.mainnav .nav-count').textContent === '2'"
    )
    _wait_focus_on_read(page)
    assert _visible_capture(page) == str(second.pk)
    assert FieldRevision.objects.filter(field__read__capture=first).count() == 2

    # a misread: typing corrects the flagged field, Enter asks for the reason, 1 = misread
    page.keyboard.type("sn4000009")
    serial_input = page.locator(
        '.review-item:not([hidden]) .rf[data-field="serial_number"] input.rf-input'
    )
    assert serial_input.input_value() == "sn4000009"
    page.keyboard.press("Enter")
    assert page.locator("#sign-dialog").evaluate("d => !d.open")
    assert page.locator(
        '.review-item:not([hidden]) .rf[data-field="serial_number"] .rf-reason'
    ).is_visible()
    page.keyboard.press("1")
    assert page.locator("#sign-meaning").inner_text() == "corrected"
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.mainnav .nav-count').textContent === '1'"
    )
    assert _visible_capture(page) == str(third.pk)
    # the last one is skipped (j at the end stays on it): nothing signed
    _wait_focus_on_read(page)
    page.keyboard.press("j")
    assert _visible_capture(page) == str(third.pk)
    assert not FieldRevision.objects.filter(field__read__capture=third).exists()
    serial = Field.objects.get(read__capture=second, name="serial_number")
    assert (serial.value, serial.current_value) == ("SN4000002", "SN4000009")
    assert page.errors == []

    # the capture pages show every revision with its signature
    page.goto(live_server.url + reverse("capture-detail", kwargs={"capture_id": second.pk}))
    row = page.locator('#revisions tr[data-field="serial_number"]')
    assert row.locator(".old-value").inner_text() == "SN4000002"
    assert row.locator(".new-value").inner_text() == "SN4000009"
    assert row.locator(".rev-reason").inner_text() == "misread"
    assert row.locator(".rev-meaning").inner_text() == "corrected"
    signature = row.locator(".rev-signature").inner_text()
    assert re.fullmatch(
        r"Signed by Ada Kim \(ada\) at \d{4}-\d\d-\d\d \d\d:\d\d UTC, meaning: corrected", signature
    ), signature
    assert page.locator(".serial-value").inner_text() == "SN4000009"
    assert page.locator(".result-detail .review").get_attribute("data-review") == "signed"
    page.screenshot(path=str(SCREENSHOT_DIR / "capture_revisions_1280.png"), full_page=True)

    page.goto(live_server.url + reverse("capture-detail", kwargs={"capture_id": first.pk}))
    meanings = page.locator("#revisions .rev-meaning").all_inner_texts()
    assert meanings == ["reviewed", "reviewed"]
    assert "meaning: reviewed" in page.locator("#revisions .rev-signature").first.inner_text()

    # on a tablet the queue fits and its controls are touch-sized
    page.set_viewport_size({"width": 820, "height": 1180})
    page.goto(live_server.url + reverse("review"))
    _wait_focus_on_read(page)
    for selector in (".act-sign", ".act-next", ".act-prev", ".rf-input"):
        box = page.locator(f".review-item:not([hidden]) {selector}").first.bounding_box()
        assert box["height"] >= 44, (selector, box)
    page.screenshot(path=str(SCREENSHOT_DIR / "review_queue_820.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    _assert_fits_phone(page)
    assert page.errors == []
