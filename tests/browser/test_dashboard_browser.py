"""Browser: the dashboard's charts draw (Chart.js from our static files, data from the JSON
block) under the enforced Content-Security-Policy, without a CSP violation or a script error.
Headless Chromium (Playwright); skips when Chromium is missing unless ``REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import pytest

from tests.browser.test_csp_browser import watched  # noqa: F401  (fixture)
from tests.browser.test_upload_browser import _login, browser  # noqa: F401  (fixture)
from tests.review_data import accepted_result, queued_result, stored_capture

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_dashboard_charts_draw_under_the_policy(watched, live_server, user, station, product_type):  # noqa: F811
    page = watched
    stored_capture(user, station, product_type, accepted_result("SN20261001"))
    stored_capture(user, station, product_type, queued_result("SN20261002"))
    _login(page, live_server)
    resp = page.goto(f"{live_server.url}/dashboard/")
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    page.wait_for_function(
        "document.querySelectorAll('canvas[data-chart][data-drawn=\"1\"]').length === 8",
        timeout=20_000,
    )
    # Chart.js really drew: each canvas has a chart instance with the line's data
    reads = page.evaluate(
        "Chart.getChart(document.querySelector('canvas[data-chart=reads]'))"
        ".data.datasets[0].data.reduce((a, b) => a + (b || 0), 0)"
    )
    assert reads == 2
    box = page.locator("canvas[data-chart=reads]").bounding_box()
    assert box["width"] > 100 and box["height"] > 100
    assert page.problems == []
