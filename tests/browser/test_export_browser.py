"""Browser: a quality manager filters the capture list, downloads "Export CSV" and "Export
XLSX", and the files hold the filtered reads (headless Chromium, Playwright, the live server,
the real PostgreSQL; reads stored with the real services). Skips without Chromium unless
``REQUIRE_BROWSER=1``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from openpyxl import load_workbook

from ocrapp import roles, services
from tests.browser.test_upload_browser import browser  # noqa: F401  (fixture)
from tests.results import read_result
from tests.review_data import PASSWORD, person, stored_capture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def desk(browser, live_server):  # noqa: F811
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-US", accept_downloads=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


def test_download_csv_and_xlsx_exports_of_the_filtered_list(
    desk, live_server, station, product_type
):
    qm = person("quality", roles.QUALITY_MANAGER)
    other = services.station_create(line="LINE-9", name="station-Z")
    stored_capture(qm, station, product_type, read_result("SN-WEB-0001").to_dict())
    stored_capture(qm, other, product_type, read_result("SN-WEB-0002").to_dict())
    page = desk
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "quality")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].btn-primary")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/captures/?station={station.pk}")
    with page.expect_download() as info:
        page.click("a[data-export-format=csv]")
    download = info.value
    assert download.suggested_filename.startswith("serialread-captures-")
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    assert f"station={station.pk}" in text and "SN-WEB-0001" in text
    assert "SN-WEB-0002" not in text  # the other station is filtered out
    with page.expect_download() as info:
        page.click("a[data-export-format=xlsx]")
    wb = load_workbook(io.BytesIO(Path(info.value.path()).read_bytes()), read_only=True)
    values = [row for row in wb["Reads"].iter_rows(values_only=True)]
    assert any("SN-WEB-0001" in row for row in values)
    assert not any("SN-WEB-0002" in row for row in values)
    assert page.errors == []
