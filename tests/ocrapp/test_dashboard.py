"""Issue 13 (6): the dashboard per line and station over time, and the drift warning.

Reads are stored with the real ``services.capture_create`` + ``read_save`` against the test
run's PostgreSQL; the drift tests measure generated photos (a failing lamp, a moved camera, a
stable line) with the real quality stage (``workers.pipeline.quality.QualityAssessor``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import re
from dataclasses import replace

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone
from PIL import Image, ImageDraw, ImageFont

from ocrapp import dashboard, roles, services
from ocrapp.errors import ApplicationError
from ocrapp.models import Alarm, Capture, Read, ReadMetric
from tests.results import read_result
from tests.review_data import accepted_result, person, queued_result, stored_capture
from workers.contract import QualityWarning
from workers.pipeline.quality import QualityAssessor

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def qm():
    return person("qm", roles.QUALITY_MANAGER)


@pytest.fixture
def line2():
    return services.station_create(line="LINE-2", name="station-B")


def _at(capture: Capture, when: dt.datetime) -> None:
    """Move a capture and its dashboard rows to ``when`` (as if the photo was taken then; the
    hourly rollup recounted from the moved rows)."""
    Capture.objects.filter(pk=capture.pk).update(created_at=when)
    ReadMetric.objects.filter(read__capture=capture).update(created_at=when)
    dashboard.read_hourly_rebuild()
    Alarm.objects.filter(capture=capture).update(created_at=when)  # raised by the read save


def _glare(serial: str) -> dict:
    base = read_result(serial)
    warn = QualityWarning("glare_photo", "glare")
    return replace(base, quality=replace(base.quality, warnings=(warn,))).to_dict()


def _filters(**params) -> dashboard.DashboardFilters:
    return dashboard.dashboard_filters_parse(params=params, now=NOW)


def test_read_save_writes_the_dashboard_row(qm, station, product_type):
    capture = stored_capture(qm, station, product_type, queued_result("SN1", mislabel="SN2"))
    row = ReadMetric.objects.get(read__capture=capture)
    read = Read.objects.get(capture=capture)
    assert row.created_at == capture.created_at and row.station_line == "LINE-1"
    assert row.station_id == station.pk and row.product_type_id == product_type.pk
    assert row.auto_accepted is False and row.mislabel is True
    confs = [f.confidence for f in read.fields.all()]
    assert row.confidence == pytest.approx(sum(confs) / len(confs))
    assert row.luminance == pytest.approx(read.quality["exposure"])
    ok = stored_capture(qm, station, product_type, accepted_result("SN3"))
    ok_row = ReadMetric.objects.get(read__capture=ok)
    assert ok_row.auto_accepted is True and ok_row.mislabel is False and not ok_row.glare


def test_aggregates_per_line_and_bucket_on_known_data(qm, station, line2, product_type):
    h = NOW - dt.timedelta(hours=5)
    placed = [
        (station, accepted_result("SN10"), h),
        (station, accepted_result("SN11"), h + dt.timedelta(minutes=10)),
        (station, _glare("SN12"), h + dt.timedelta(minutes=50)),  # needs review (no decision)
        (station, queued_result("SN13", mislabel="SN99"), h + dt.timedelta(hours=1)),
        (line2, accepted_result("SN20"), h + dt.timedelta(minutes=5)),
        (station, accepted_result("SN14"), NOW - dt.timedelta(days=30)),  # outside the range
    ]
    for st, result, when in placed:
        _at(stored_capture(qm, st, product_type, result), when)
    data = dashboard.dashboard(user=qm, f=_filters(tz="UTC"), now=NOW)
    buckets = data["buckets"]
    assert len(buckets) == 7 * 24 and buckets[-1] == NOW - dt.timedelta(hours=1)
    i = buckets.index(h)
    by = {s.key: s for s in data["series"]}
    assert set(by) == {"LINE-1", "LINE-2"}
    one = by["LINE-1"]
    assert one.reads[i] == 3 and one.reads[i + 1] == 1 and sum(one.reads) == 4
    assert one.accept_rate[i] == pytest.approx(2 / 3, abs=1e-4)
    assert one.accept_rate[i + 1] == 0.0 and one.accept_rate[i - 1] is None
    assert one.glare_share[i] == pytest.approx(1 / 3, abs=1e-4) and one.blur_share[i] == 0.0
    assert one.alarms[i + 1] == 1 and sum(one.alarms) == 1
    # mean field confidence: read_result fields 0.95 and 0.9; queued_result's serial 0.6
    assert one.confidence[i] == pytest.approx(0.925, abs=1e-4)
    assert one.confidence[i + 1] == pytest.approx((0.6 + 0.9) / 2, abs=1e-4)
    assert one.totals["reads"] == 4 and one.totals["alarms"] == 1
    assert one.totals["accept_rate"] == 0.5
    # waiting for review now: the glare read and the mislabel read (the oldest 4 h 10 min old)
    assert one.backlog["waiting"] == 2
    assert one.backlog["oldest_s"] == 5 * 3600 - 50 * 60
    assert one.backlog["median_s"] == pytest.approx((4 * 3600 + 10 * 60 + 4 * 3600) / 2)
    assert one.waiting[i] == 1 and one.waiting[i + 1] == 1
    assert by["LINE-2"].reads[i] == 1 and by["LINE-2"].backlog["waiting"] == 0
    # one line chosen: one series per station
    per_station = dashboard.dashboard(user=qm, f=_filters(tz="UTC", line="LINE-2"), now=NOW)
    assert [s.key for s in per_station["series"]] == [line2.pk]
    assert per_station["series"][0].label == "LINE-2 / station-B"


def test_backlog_follows_signatures_and_withdrawals(qm, station, product_type):
    from ocrapp import selectors
    from tests.review_data import PASSWORD

    a = stored_capture(qm, station, product_type, queued_result("SN70"))
    b = stored_capture(qm, station, product_type, queued_result("SN71"))
    stored_capture(qm, station, product_type, accepted_result("SN72"))
    now = timezone.now() + dt.timedelta(minutes=1)
    f = dashboard.dashboard_filters_parse(params={}, now=now)

    def waiting():
        [s] = dashboard.dashboard(user=qm, f=f, now=now)["series"]
        return s.backlog["waiting"]

    assert waiting() == 2 == selectors.review_queue_count(user=qm)
    services.read_review(user=qm, capture_id=a.pk, password=PASSWORD)  # every field signed
    assert waiting() == 1 == selectors.review_queue_count(user=qm)
    services.capture_withdraw(capture_id=b.pk, actor=qm, reason="wrong label")
    assert waiting() == 0 == selectors.review_queue_count(user=qm)
    assert not ReadMetric.objects.filter(waiting=True).exists()


def test_day_buckets_are_the_users_days(qm, station, product_type):
    # 23:30 UTC on 10 November is already 11 November in Seoul (UTC+9)
    late = NOW.replace(day=10, hour=23, minute=30)
    _at(stored_capture(qm, station, product_type, accepted_result("SN30")), late)
    params = {"from": "2026-11-09", "to": "2026-11-12", "bucket": "day"}
    utc = dashboard.dashboard(user=qm, f=_filters(tz="UTC", **params), now=NOW)
    seoul = dashboard.dashboard(user=qm, f=_filters(tz="Asia/Seoul", **params), now=NOW)
    as_days = lambda d: {  # noqa: E731
        b.date().isoformat(): n for b, n in zip(d["buckets"], d["series"][0].reads, strict=True)
    }
    # ``to`` is an inclusive day: 9 to 12 November
    assert as_days(utc) == {"2026-11-09": 0, "2026-11-10": 1, "2026-11-11": 0, "2026-11-12": 0}
    assert as_days(seoul) == {"2026-11-09": 0, "2026-11-10": 0, "2026-11-11": 1, "2026-11-12": 0}
    assert seoul["buckets"][0].utcoffset() == dt.timedelta(hours=9)
    body = dashboard.dashboard_json(seoul, _filters(tz="Asia/Seoul", **params))
    assert body["buckets"][2] == "2026-11-11T00:00:00+09:00"


def test_bad_filters_are_400_naming_the_parameter():
    for params, name in (
        ({"bucket": "week"}, "bucket"),
        ({"group": "plant"}, "group"),
        ({"from": "2026-11-10", "to": "2026-11-01"}, "from"),
        ({"from": "2020-01-01", "to": "2026-01-01", "bucket": "hour"}, "bucket"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"from": "yesterday"}, "from"),
        ({"to": "0001-01-01"}, "from"),
    ):
        with pytest.raises(ApplicationError) as exc:
            dashboard.dashboard_filters_parse(params=params, now=NOW)
        assert name in exc.value.details, params


def test_scope_operator_token_auditor(qm, station, line2, product_type, user, api_client):
    now = timezone.now()
    stored_capture(qm, station, product_type, accepted_result("SN40"))
    stored_capture(qm, line2, product_type, accepted_result("SN41"))
    f = dashboard.dashboard_filters_parse(params={}, now=now + dt.timedelta(minutes=1))
    keys = lambda u: {s.key for s in dashboard.dashboard(user=u, f=f)["series"]}  # noqa: E731
    assert keys(user) == {"LINE-1"}  # the operator works at LINE-1/station-A only
    assert keys(qm) == {"LINE-1", "LINE-2"}
    assert keys(person("aud", roles.AUDITOR)) == {"LINE-1", "LINE-2"}
    token = services.station_token_issue(station=line2)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    body = api_client.get("/api/v1/dashboard").json()
    assert [s["key"] for s in body["series"]] == ["LINE-2"]
    assert body["series"][0]["totals"]["reads"] == 1


def test_api_dashboard_and_drift_shapes_and_errors(qm, station, product_type, api_client):
    stored_capture(qm, station, product_type, accepted_result("SN50"))
    api_client.force_authenticate(qm)
    body = api_client.get("/api/v1/dashboard", {"tz": "Asia/Seoul", "bucket": "hour"}).json()
    assert body["filters"]["tz"] == "Asia/Seoul" and body["filters"]["bucket"] == "hour"
    assert body["buckets"][0].endswith("+09:00") and len(body["buckets"]) == 7 * 24 + 1
    [series] = body["series"]
    assert series["key"] == "LINE-1" and sum(series["reads"]) == 1
    assert len(series["reads"]) == len(body["buckets"])
    assert body["drift_settings"]["shift"] == 4.0
    bad = api_client.get("/api/v1/dashboard", {"bucket": "minute"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"
    assert "bucket" in bad.json()["error"]["details"]
    assert api_client.get("/api/v1/drift", {"tz": "\x00"}).status_code == 400
    drift = api_client.get("/api/v1/drift").json()
    assert drift["drifting"] == [] and drift["results"][0]["line"] == "LINE-1"
    assert {s["stat"] for s in drift["results"][0]["stats"]} == set(dashboard.DRIFT_STAT_NAMES)
    api_client.force_authenticate(None)
    assert api_client.get("/api/v1/dashboard").status_code in (401, 403)


def test_page_renders_filters_tables_and_the_charts_data(client, qm, station, product_type):
    stored_capture(qm, station, product_type, accepted_result("SN60"))
    client.force_login(qm)
    resp = client.get("/dashboard/", {"tz": "Asia/Seoul", "line": "LINE-1", "group": "line"})
    assert resp.status_code == 200
    html = resp.content.decode()
    m = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', html, re.S)
    data = json.loads(m.group(1))
    assert data["series"][0]["label"] == "LINE-1" and sum(data["series"][0]["reads"]) == 1
    assert html.count('data-chart="') == 8 and 'data-reads="1"' in html
    assert "vendor/chart-4.6.1.umd.min.js" in html and "ocrapp/dashboard.js" in html
    # no inline script besides the JSON data block (CSP script-src 'self')
    scripts = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
    assert scripts == [' id="dashboard-data" type="application/json"']
    assert 'href="/dashboard/"' in html and 'aria-current="page"' in html
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    bad = client.get("/dashboard/", {"bucket": "week"})
    assert bad.status_code == 400 and 'data-filter-error="1"' in bad.content.decode()
    client.cookies["django_language"] = "ko"
    ko = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "대시보드" in ko


def test_fill_reads_fills_the_dashboard_rows():
    call_command("fill_reads", "200", "--batch", "80", "--days", "10")
    done = Read.objects.filter(capture__station_line__startswith="SYN-")
    assert ReadMetric.objects.filter(station_line__startswith="SYN-").count() == done.count() > 0
    assert not ReadMetric.objects.filter(luminance__isnull=True).exists()
    qm = person("qm2", roles.QUALITY_MANAGER)
    f = dashboard.dashboard_filters_parse(
        params={
            "bucket": "day",
            "from": (timezone.now() - dt.timedelta(days=12)).date().isoformat(),
        }
    )
    data = dashboard.dashboard(user=qm, f=f)
    assert sum(s.totals["reads"] for s in data["series"]) == done.count()
    assert sum(s.totals["alarms"] for s in data["series"]) == (done.exclude(mismatches=[]).count())
    # synthetic stations keep steady statistics: no drift
    assert not any(d.drifting for d in data["drift"])


# --- drift, on real generated photos measured by the real quality stage --------------------

FONT = ImageFont.load_default(size=44)


def photo(rng: random.Random, *, lamp: float = 1.0, scale: float = 1.0, shift=(0, 0)):
    """A label photographed on a bench: (RGB uint8 (700, 1000, 3), text quads in pixels).
    ``lamp`` < 1: a failing lamp (darker); ``scale`` / ``shift``: a moved camera (the label
    smaller and elsewhere). Small random jitter in light and position, like real photos."""
    img = Image.new("RGB", (1000, 700), (150, 150, 145))
    label = Image.new("RGB", (600, 300), (236, 236, 230))
    draw = ImageDraw.Draw(label)
    boxes = []
    for k, text in enumerate((f"S/N: SN{rng.randint(10**7, 10**8 - 1)}", "P/N: PN-7731")):
        at = (40, 60 + 100 * k)
        draw.text(at, text, fill=(20, 20, 20), font=FONT)
        boxes.append(draw.textbbox(at, text, font=FONT))
    size = (round(600 * scale), round(300 * scale))
    ox = 200 + shift[0] + rng.randint(-4, 4)
    oy = 200 + shift[1] + rng.randint(-4, 4)
    img.paste(label.resize(size), (ox, oy))
    rgb = np.asarray(img, np.float32) * lamp * rng.uniform(0.98, 1.02)
    rgb = np.clip(
        rgb + np.random.default_rng(rng.randint(0, 10**6)).normal(0, 2, rgb.shape), 0, 255
    )
    quads = [
        np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32) * scale + (ox, oy)
        for x0, y0, x1, y1 in boxes
    ]
    return rgb.astype(np.uint8), quads


def _photo_capture(qm, station, product_type, rng, when, **look):
    rgb, quads = photo(rng, **look)
    quality = QualityAssessor()(rgb, quads, len(quads))
    result = replace(read_result(f"SN{rng.randint(10**7, 10**8 - 1)}"), quality=quality)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    capture, _ = services.capture_create(
        user=qm, image_bytes=buf.getvalue(), original_filename="bench.jpg",
        product_type=product_type, station=station,
    )  # fmt: skip
    assert services.capture_claim(capture_id=capture.pk) is not None
    assert services.read_save(capture_id=capture.pk, result=result.to_dict(), worker="test")
    _at(capture, when)


def test_a_failing_lamp_and_a_moved_camera_raise_drift_a_stable_line_does_not(
    qm, station, line2, product_type, settings
):
    settings.DRIFT_MIN_READS = 8
    lamp_line = station  # LINE-1
    camera_line = line2  # LINE-2
    stable_line = services.station_create(line="LINE-3", name="station-C")
    rng = random.Random(6)
    now = timezone.now()
    for st, recent_look in (
        (lamp_line, {"lamp": 0.55}),
        (camera_line, {"scale": 0.5, "shift": (180, 120)}),
        (stable_line, {}),
    ):
        for k in range(10):  # the baseline: the days before the recent window
            when = now - dt.timedelta(days=2 + k % 5, hours=k)
            _photo_capture(qm, st, product_type, rng, when)
        for k in range(8):  # the last 24 hours
            _photo_capture(
                qm, st, product_type, rng, now - dt.timedelta(hours=1 + k), **recent_look
            )
    f = dashboard.dashboard_filters_parse(params={}, now=now + dt.timedelta(seconds=1))
    report = {d.line: d for d in dashboard.drift_report(user=qm, f=f, level="line")}
    lamp, camera, stable = report["LINE-1"], report["LINE-2"], report["LINE-3"]
    assert lamp.drifting and {"luminance", "contrast"} <= {s.stat for s in lamp.moved}
    lum = next(s for s in lamp.stats if s.stat == "luminance")
    assert lum.drifting and lum.shift < -4 and lum.recent_median < lum.baseline_median
    assert lum.baseline_reads == 10 and lum.recent_reads == 8
    assert camera.drifting
    moved = {s.stat for s in camera.moved}
    assert {"text_area", "text_cx", "text_cy"} <= moved, moved
    height = next(s for s in camera.stats if s.stat == "text_height")
    assert height.shift < 0
    assert not stable.drifting, [s.to_dict() for s in stable.stats if s.drifting]
    assert [d.line for d in dashboard.drift_report(user=qm, f=f)][:2] == ["LINE-1", "LINE-2"]
    # per station, the same verdicts; the API and the page say which statistic moved
    per_station = dashboard.drift_report(user=qm, f=f, level="station")
    assert {d.station for d in per_station if d.drifting} == {lamp_line.pk, camera_line.pk}
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(qm)
    body = api.get("/api/v1/drift").json()
    assert body["drifting"] == ["LINE-1", "LINE-2"]
    first = body["results"][0]
    assert first["line"] == "LINE-1" and "luminance" in first["moved"]
    from django.test import Client

    page = Client()
    page.force_login(qm)
    html = page.get("/dashboard/").content.decode()
    assert html.count('class="msg msg-error drift-warning"') == 2
    assert 'data-drift-line="LINE-1"' in html and 'data-drift-stat="luminance"' in html
    assert 'data-drift-line="LINE-3"' not in html
    # too few recent reads: no verdict (no warning from a handful of photos)
    settings.DRIFT_MIN_READS = 50
    assert not any(d.drifting for d in dashboard.drift_report(user=qm, f=f))
