"""Browser: a quality manager sees the open-alarm badge, opens the alarms page, acknowledges
a duplicate-serial alarm with a reason and then closes it; the capture page shows it.

Real everything but the reader: headless Debian Chromium driven by Playwright, pytest-django's
live server, PostgreSQL; the reads are stored with ``read_save`` from contract results. Skips
when Chromium is missing unless ``REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import pytest

from ocrapp import roles
from ocrapp.models import Alarm, AuditEvent
from tests.browser.test_upload_browser import (  # noqa: F401  (fixtures)
    SCREENSHOT_DIR,
    browser,
)
from tests.results import read_result
from tests.review_data import PASSWORD, person, stored_capture

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
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    yield page
    context.close()


def test_acknowledge_and_close_an_alarm(desk, live_server, user, station, product_type):
    page = desk
    person("ada", roles.QUALITY_MANAGER, first="Ada", last="Kim")
    stored_capture(user, station, product_type, read_result("SN8800001").to_dict())
    second = stored_capture(user, station, product_type, read_result("SN8800001").to_dict())
    alarm = Alarm.objects.get(capture=second)
    assert alarm.kind == "duplicate"

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].btn-primary")
    page.wait_for_url(f"{live_server.url}/")
    assert page.locator(".mainnav .nav-alarm-count").inner_text() == "1"
    page.click(".mainnav .nav-alarms")
    page.wait_for_url("**/alarms/")
    item = page.locator(f'.alarm-item[data-alarm-id="{alarm.pk}"]')
    assert item.get_attribute("data-state") == "open"
    assert "Duplicate serial" in item.inner_text()

    # the reason is required: the browser itself refuses an empty one
    item.locator(f'[data-alarm-acknowledge="{alarm.pk}"]').click()
    assert page.url.endswith("/alarms/")
    alarm.refresh_from_db()
    assert alarm.state == "open"

    item.locator('input[name="reason"]').fill("the same unit was photographed twice")
    item.locator(f'[data-alarm-acknowledge="{alarm.pk}"]').click()
    page.wait_for_selector(f'.alarm-item[data-alarm-id="{alarm.pk}"][data-state="acknowledged"]')
    assert "Alarm acknowledged." in page.locator(".messages").inner_text()
    assert page.locator(".mainnav .nav-alarm-count").inner_text() == "0"
    item = page.locator(f'.alarm-item[data-alarm-id="{alarm.pk}"]')
    assert "the same unit was photographed twice" in item.locator(".alarm-ack-reason").inner_text()
    assert "Ada Kim (ada)" in item.locator(".alarm-ack").inner_text()
    page.screenshot(path=str(SCREENSHOT_DIR / "alarms_1280.png"), full_page=True)
    alarm.refresh_from_db()
    assert alarm.state == "acknowledged" and alarm.acknowledged_by.username == "ada"

    # close it from the capture page
    page.goto(f"{live_server.url}/captures/{second.pk}/")
    item = page.locator(f'.alarm-item[data-alarm-id="{alarm.pk}"]')
    assert item.get_attribute("data-state") == "acknowledged"
    item.locator('input[name="reason"]').fill("one unit: no duplicate in the field")
    item.locator(f'[data-alarm-close="{alarm.pk}"]').click()
    page.wait_for_selector(f'.alarm-item[data-alarm-id="{alarm.pk}"][data-state="closed"]')
    assert page.url.endswith(f"/captures/{second.pk}/")
    assert page.locator(f'[data-alarm-close="{alarm.pk}"]').count() == 0
    alarm.refresh_from_db()
    assert alarm.state == "closed" and alarm.close_reason == "one unit: no duplicate in the field"
    actions = list(
        AuditEvent.objects.filter(object_type="ocrapp.alarm", object_id=str(alarm.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["alarm_raised", "alarm_acknowledged", "alarm_closed"]
    assert page.errors == []
