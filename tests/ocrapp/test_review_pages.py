"""Review pages: the queue page, line crops, revisions and signatures on the capture page, the
navigation count, the retry button, "was" in search and history (English and Korean)."""

from __future__ import annotations

import io
import re

import pytest
from django.urls import reverse
from PIL import Image, ImageDraw

from ocrapp import crops, roles, services
from ocrapp.models import Field, FieldRevision
from tests.ocrapp.test_review_ui import _text
from tests.review_data import PASSWORD, failed_capture, person, queued_result, stored_capture

pytestmark = pytest.mark.django_db

RAW = "SN2O260042"
FIXED = "SN20260042"


@pytest.fixture
def qm(db):
    return person("ada", roles.QUALITY_MANAGER, first="Ada", last="Kim")


@pytest.fixture
def qm_web(client, qm):
    assert client.login(username="ada", password=PASSWORD)
    return client


def _queued(user, station, product_type, serial, **kw):
    return stored_capture(user, station, product_type, queued_result(serial, **kw))


def test_the_queue_page_shows_crop_shading_suggestions_and_reasons(
    user, station, product_type, qm_web
):
    capture = _queued(
        user,
        station,
        product_type,
        FIXED,
        raw=RAW,
        confidence=0.5,
        alternatives={8: [("O", 0.55), ("0", 0.40)]},
    )
    resp = qm_web.get(reverse("review"))
    assert resp.status_code == 200
    page = resp.content.decode()
    item = re.search(r'<article class="card review-item.*?</article>', page, re.S).group(0)
    assert f'data-capture-id="{capture.pk}"' in item
    assert 'data-primary="serial_number"' in item
    assert 'data-base-revision="0"' in item
    crop_url = reverse("line-crop", kwargs={"capture_id": capture.pk, "order": 0})
    assert f'src="{crop_url}"' in item
    # per-character confidence shading: the O at 0.55 is low, its neighbours high
    serial_row = re.search(
        r'<div class="rf[^"]*" data-field="serial_number".*?</fieldset>', item, re.S
    )
    chars = re.findall(r'<span class="(c-\w+)( in-field)?"[^>]*>(.)</span>', serial_row.group(0))
    assert "".join(ch for _c, _f, ch in chars) == f"S/N: {RAW}"
    assert chars[8] == ("c-low", " in-field", "O") and chars[7][0] == "c-high"
    assert not chars[0][1] and chars[5][1]  # "S/N: " is outside the field's span
    assert f'value="{FIXED}"' in serial_row.group(0)
    assert "Serial number: confidence 50.0% is below the auto-accept threshold 85.0%" in _text(item)
    # the reason picker offers the short list, numbered for the keyboard
    reasons = re.findall(r'data-reason="(\w+)" data-key="(\d)"', serial_row.group(0))
    assert reasons == [
        ("misread", "1"),
        ("glare", "2"),
        ("damaged_label", "3"),
        ("wrong_field", "4"),
    ]
    # the navigation counts the queue
    assert re.search(r'data-review-count="1"', page)

    ko = qm_web.get(reverse("review"), HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "검토 대기열" in ko and "오독" in ko


def test_the_queue_page_needs_the_review_permission(user, station, product_type, client):
    auditor = person("aud", roles.AUDITOR)
    client.force_login(auditor)
    assert client.get(reverse("review")).status_code == 403
    page = client.get(reverse("capture-list")).content.decode()
    assert 'class="nav-review"' not in page


def test_line_crop_is_the_rectified_line(user, station, product_type, qm_web):
    capture = _queued(user, station, product_type, FIXED)
    resp = qm_web.get(reverse("line-crop", kwargs={"capture_id": capture.pk, "order": 0}))
    assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
    img = Image.open(io.BytesIO(resp.content))
    # the line polygon is 560 x 60 px; the crop adds 18 % of the height on each side
    assert img.size == (round(560 + 2 * 0.18 * 60), round(60 * 1.36))
    dark = sum(img.convert("L").histogram()[:100])
    assert dark > 500  # the text of the line is in it
    missing = reverse("line-crop", kwargs={"capture_id": capture.pk, "order": 7})
    assert qm_web.get(missing).status_code == 404


def test_crop_maps_a_tilted_quad_to_an_upright_rectangle():
    # a dark 200 x 40 bar rotated by 20 degrees around (300, 200) on a white photo
    img = Image.new("RGB", (600, 400), (255, 255, 255))
    import math

    a = math.radians(20)
    ux, uy = math.cos(a), math.sin(a)  # along the text
    vx, vy = -math.sin(a), math.cos(a)  # down

    def pt(s, t):
        return (300 + s * ux + t * vx, 200 + s * uy + t * vy)

    quad = [pt(-100, -20), pt(100, -20), pt(100, 20), pt(-100, 20)]
    ImageDraw.Draw(img).polygon(quad, fill=(0, 0, 0))
    out = crops.line_crop(img, [list(p) for p in quad], pad=0.0)
    assert out.size == (200, 40)
    grey = out.convert("L")
    inner = [grey.getpixel((x, y)) for x in range(5, 195, 10) for y in range(5, 35, 5)]
    assert max(inner) < 60  # the whole crop is the bar: it was straightened
    padded = crops.line_crop(img, [list(p) for p in quad])
    assert padded.convert("L").getpixel((padded.width // 2, 1)) > 200  # the margin is paper
    # a curved line (6 points: top and bottom edges of 3 points) is cut strip by strip
    curved = [pt(-100, -20), pt(0, -20), pt(100, -20), pt(100, 20), pt(0, 20), pt(-100, 20)]
    assert crops.line_crop(img, curved, pad=0.0).size == (200, 40)
    with pytest.raises(crops.CropError):
        crops.line_crop(img, [[5, 5], [5, 5], [5, 5], [5, 5]])


def test_capture_page_shows_every_revision_with_its_signature(
    user, station, product_type, qm, qm_web
):
    capture = _queued(user, station, product_type, RAW)
    field = Field.objects.get(read__capture=capture, name="serial_number")
    services.read_review(
        user=qm,
        capture_id=capture.pk,
        edits={"serial_number": services.FieldEdit(value=FIXED, reason="misread")},
        password=PASSWORD,
    )
    rev = field.revisions.get()
    page = qm_web.get(reverse("capture-detail", kwargs={"capture_id": capture.pk})).content.decode()
    table = re.search(r'<section class="card revisions".*?</section>', page, re.S).group(0)
    row = re.search(r'<tr data-field="serial_number".*?</tr>', table, re.S).group(0)
    when = rev.signed_at.strftime("%Y-%m-%d %H:%M")
    assert _text(row).endswith(
        f"{RAW} {FIXED} misread corrected Signed by Ada Kim (ada) at {when} UTC, meaning: corrected"
    )
    part_row = re.search(r'<tr data-field="part_number".*?</tr>', table, re.S).group(0)
    assert "meaning: reviewed" in _text(part_row)
    # the result shows the value in force, the machine read beside it, and the signed state
    assert 'data-review="signed"' in page
    fields_row = re.search(r'<tr class="[^"]*" data-field="serial_number".*?</tr>', page, re.S)
    assert f'<span class="field-value">{FIXED}</span>' in fields_row.group(0)
    assert f"machine read {RAW}" in _text(fields_row.group(0))
    assert re.search(r'class="serial-value">' + FIXED, page)
    # the capture list no longer says "Needs review"
    listing = qm_web.get(reverse("capture-list")).content.decode()
    assert 'data-review="needs_review"' not in listing
    assert re.search(r'data-review-count="0"', listing)

    ko = qm_web.get(
        reverse("capture-detail", kwargs={"capture_id": capture.pk}), HTTP_ACCEPT_LANGUAGE="ko"
    ).content.decode()
    assert "서명" in ko and "수정됨" in ko

    # search: the new value is current, the old one is found as "was"
    search = qm_web.get(reverse("search"), {"q": RAW}).content.decode()
    hit = re.search(rf"<tr>\s*<th[^>]*><a [^>]*>{RAW}</a>.*?</th>", search, re.S).group(0)
    assert 'data-was="1"' in hit
    search = qm_web.get(reverse("search"), {"q": FIXED}).content.decode()
    hit = re.search(rf"<tr>\s*<th[^>]*><a [^>]*>{FIXED}</a>.*?</th>", search, re.S).group(0)
    assert 'data-was="1"' not in hit
    history = qm_web.get(reverse("serial-history", kwargs={"value": RAW})).content.decode()
    assert f"was corrected to {FIXED}" in _text(history)


def test_retry_button_on_a_failed_capture_for_those_who_may(user, station, product_type, client):
    capture = failed_capture(user, station, product_type)
    url = reverse("capture-detail", kwargs={"capture_id": capture.pk})
    client.force_login(person("ada", roles.QUALITY_MANAGER))
    page = client.get(url).content.decode()
    retry_api = reverse("api-capture-retry", kwargs={"capture_id": capture.pk})
    assert f'data-retry-url="{retry_api}"' in page and "review.js" in page
    client.force_login(person("aud", roles.AUDITOR))
    assert "data-retry-url" not in client.get(url).content.decode()
    assert FieldRevision.objects.count() == 0
