"""Browser: the Content-Security-Policy (enforced by default, ``ocrapp.security``) blocks
nothing the pages really load: the app's pages, the photo with its overlay, the admin and the
Swagger UI at /api/docs. Headless Chromium (Playwright) on pytest-django's live server; skips
when Chromium is missing unless ``REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import pytest

from tests.browser.test_upload_browser import _login, browser  # noqa: F401  (fixture)
from tests.review_data import accepted_result, stored_capture

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def watched(browser, live_server):  # noqa: F811
    """A page that records CSP violations (the DOM event and Chromium's console message)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if "Content Security Policy" in m.text or "CSP violation" in m.text
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems = problems
    yield page
    context.close()


def test_pages_load_under_the_policy(watched, live_server, user, station, product_type):
    page = watched
    capture = stored_capture(user, station, product_type, accepted_result("SN20260042"))
    page.goto(f"{live_server.url}/login/")
    _login(page, live_server)
    for path in ("/", "/captures/", f"/captures/{capture.pk}/", "/search/?q=SN2026"):
        resp = page.goto(f"{live_server.url}{path}")
        assert "default-src 'self'" in resp.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
    # the photo fits the frame without an inline style: at most 70% of the viewport high,
    # the overlay exactly over it
    page.goto(f"{live_server.url}/captures/{capture.pk}/")
    img = page.locator(".shot-frame img").bounding_box()
    svg = page.locator(".shot-frame svg.overlay").bounding_box()
    assert 0 < img["height"] <= 0.7 * 800 + 1 and img["width"] <= 1280
    assert abs(img["width"] - svg["width"]) <= 1 and abs(img["height"] - svg["height"]) <= 1
    assert page.problems == []


def test_swagger_ui_and_admin_load_under_the_policy(watched, live_server, django_user_model):
    page = watched
    page.goto(f"{live_server.url}/api/docs")
    page.locator(".swagger-ui .info .title").wait_for(timeout=30_000)
    assert "Serial reader API" in page.locator(".swagger-ui .info .title").inner_text()
    page.locator(".opblock").first.wait_for()

    django_user_model.objects.create_superuser(username="boss", password="b0ss-pass-5678")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "b0ss-pass-5678")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    page.goto(f"{live_server.url}/admin/ocrapp/station/add/")
    page.wait_for_load_state("networkidle")
    assert page.problems == []
