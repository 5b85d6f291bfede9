"""Issue 13 (6, 7): the dashboard's hourly rollup (``ReadHourly``) and the series read from it.

Reads are written by the real writers (``services.read_save`` through ``stored_capture``, and
``manage.py fill_reads`` by COPY) into the test run's PostgreSQL; the series from the rollup is
compared with the series counted from ``ReadMetric`` (one row per read) for the same filters.
"""

from __future__ import annotations

import datetime as dt
import importlib
import threading

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from ocrapp import dashboard, roles, services
from ocrapp.demo import DEMO_PRODUCT_TYPES
from ocrapp.models import ProductType, ReadHourly, ReadMetric, Station
from tests.review_data import accepted_result, person, queued_result, stored_capture

pytestmark = pytest.mark.django_db

# the New York clocks go back on 1 November 2026 at 06:00 UTC (EDT -04:00 -> EST -05:00)
UNTIL = dt.datetime(2026, 11, 3, 12, 0, tzinfo=dt.UTC)
ZONES = ("UTC", "Asia/Seoul", "America/New_York", "Europe/London", "Asia/Kolkata")


def _hour(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _rollup() -> dict[tuple, tuple]:
    return {
        (h.hour, h.station_id, h.station_line, h.product_type_id): (
            h.reads,
            h.auto_accepted,
            h.mislabel,
            h.glare,
            h.blur,
            h.exposure,
            round(h.confidence_sum, 9),
            h.confidence_n,
        )  # fmt: skip
        for h in ReadHourly.objects.all()
    }


def test_read_save_bumps_the_hour_of_its_capture(station, product_type):
    qm = person("qm", roles.QUALITY_MANAGER)
    other = services.product_type_create(name="sticker", **DEMO_PRODUCT_TYPES["nameplate"])
    a = stored_capture(qm, station, product_type, accepted_result("SN1"))
    key = {
        "hour": _hour(a.created_at),
        "station": station,
        "station_line": "LINE-1",
        "product_type": product_type,
    }
    one = ReadHourly.objects.get(**key)
    metric = ReadMetric.objects.get(read__capture=a)
    assert (one.reads, one.auto_accepted, one.mislabel, one.confidence_n) == (1, 1, 0, 1)
    assert one.confidence_sum == pytest.approx(metric.confidence)
    b = stored_capture(qm, station, product_type, queued_result("SN2", mislabel="SN3"))
    if _hour(b.created_at) == key["hour"]:  # (a test run across an hour's end: a second row)
        one.refresh_from_db()
        assert (one.reads, one.auto_accepted, one.mislabel, one.confidence_n) == (2, 1, 1, 2)
        both = ReadMetric.objects.filter(read__capture__in=[a, b])
        assert one.confidence_sum == pytest.approx(sum(m.confidence for m in both))
    stored_capture(qm, station, other, accepted_result("SN4"))
    # every row is the sum of the ReadMetric rows of its key, nothing else
    assert sum(h.reads for h in ReadHourly.objects.all()) == ReadMetric.objects.count() == 3
    assert ReadHourly.objects.filter(product_type=other, reads=1).count() == 1
    before = _rollup()
    dashboard.read_hourly_rebuild()
    assert _rollup() == before


def test_fill_reads_and_the_migration_backfill_give_the_same_rollup():
    call_command("fill_reads", "300", "--batch", "70", "--days", "3", "--until", UNTIL.isoformat())
    assert ReadHourly.objects.count() > 10
    added = _rollup()
    assert sum(v[0] for v in added.values()) == ReadMetric.objects.count() > 250
    ReadHourly.objects.all().delete()
    backfill = importlib.import_module("ocrapp.migrations.0023_dashboard_hourly").BACKFILL
    with connection.cursor() as cur:
        cur.execute(backfill)
    assert _rollup() == added


def _rows(rows: list[dict], key: str) -> dict:
    return {(r["b"], r[key]): r for r in rows}


def test_series_from_the_rollup_equal_the_series_from_every_read():
    # a few hundred synthetic reads over 6 days around the New York DST change, 12 stations on
    # 4 lines, 3 product types, and a few reads saved by the service
    call_command("fill_reads", "500", "--batch", "120", "--days", "6", "--until", UNTIL.isoformat())
    qm = person("qm", roles.QUALITY_MANAGER)
    stations = list(Station.objects.filter(line__startswith="SYN-").order_by("pk"))
    operator = person("op", roles.OPERATOR, stations=stations[:2])
    pt = ProductType.objects.filter(name__startswith="synthetic-").order_by("pk").first()
    stored_capture(qm, stations[0], pt, accepted_result("SN900"))  # now, outside the ranges
    ranges = [
        # from and to at minutes (the part hours at both ends come from ReadMetric)
        ("2026-10-29T07:17", "2026-11-03T11:40", "hour"),
        ("2026-10-28T00:00", "2026-11-04T00:00", "day"),
        ("2026-10-30T13:05", "2026-11-02T21:50", "day"),
        ("2026-10-31T22:10", "2026-10-31T22:50", "hour"),  # less than one whole hour
    ]
    filters = [
        {},
        {"line": "SYN-2"},
        {"station": str(stations[4].pk)},
        {"product_type": str(pt.pk)},
    ]
    compared = 0
    for tz in ZONES:
        for date_from, date_to, bucket in ranges:
            for extra in filters:
                for group in ("line", "station"):
                    params = {"from": date_from, "to": date_to, "tz": tz, "bucket": bucket}
                    f = dashboard.dashboard_filters_parse(
                        params={**params, **extra, "group": group}
                    )
                    for user in (qm, operator):
                        ours = dashboard._series_rows_readmetric(user=user, f=f)
                        with CaptureQueriesContext(connection) as ctx:
                            auto = dashboard._series_rows(user=user, f=f)
                        used = any("ocrapp_readhourly" in q["sql"] for q in ctx.captured_queries)
                        # every zone but Kolkata (+05:30) is a whole number of hours; in
                        # Kolkata one hour a day is split by midnight, and every hour by
                        # the local hours' boundaries (:30 UTC)
                        answers = tz != "Asia/Kolkata" or bucket == "day"
                        whole_hour_inside = date_to != "2026-10-31T22:50"
                        if whole_hour_inside:
                            assert dashboard.rollup_answers(f) is answers
                        assert used is (answers and whole_hour_inside)
                        key = dashboard._group_key(f)
                        want, got = _rows(ours, key), _rows(auto, key)
                        assert got.keys() == want.keys(), (tz, date_from, extra, group)
                        for k, w in want.items():
                            g = got[k]
                            assert {n: g[n] for n in w if n != "mean_conf"} == {
                                n: w[n] for n in w if n != "mean_conf"
                            }, k
                            assert g["mean_conf"] == pytest.approx(w["mean_conf"], rel=1e-12)
                        compared += len(want)
    assert compared > 1000
    # Kolkata's days start at 18:30 UTC: the hour 18:00-19:00 UTC of each day is split (its
    # reads counted one by one), the other 23 come from the rollup
    f = dashboard.dashboard_filters_parse(
        params={"from": "2026-10-28", "to": "2026-11-03", "tz": "Asia/Kolkata", "bucket": "day"}
    )
    _offsets, split = dashboard._offsets(f)
    assert [h.strftime("%H:%M") for h in split] == ["18:00"] * 6
    assert [o.total_seconds() / 3600 for _at, o in _offsets] == [5.5]


def test_rollup_answers_where_few_hours_are_split():
    def f(tz: str, date_from: str, date_to: str, bucket: str = "day") -> dashboard.DashboardFilters:
        return dashboard.dashboard_filters_parse(
            params={"from": date_from, "to": date_to, "tz": tz, "bucket": bucket}
        )

    assert dashboard.rollup_answers(f("America/New_York", "2026-10-01", "2026-11-30"))
    assert dashboard.rollup_answers(f("America/New_York", "2026-10-01", "2026-11-30", "hour"))
    assert dashboard.rollup_answers(f("Asia/Seoul", "2025-12-01", "2026-11-30"))
    assert not dashboard._offsets(f("Asia/Seoul", "2025-12-01", "2026-11-30"))[1]  # none split
    # half- and quarter-hour zones: day buckets from the rollup, hour buckets not
    assert dashboard.rollup_answers(f("Asia/Kolkata", "2026-11-01", "2026-11-02"))
    assert not dashboard.rollup_answers(f("Asia/Kolkata", "2026-11-01", "2026-11-02", "hour"))
    assert dashboard.rollup_answers(f("Asia/Kathmandu", "2026-11-01", "2026-11-02"))
    assert not dashboard.rollup_answers(f("Asia/Kathmandu", "2026-11-01", "2026-11-02", "hour"))
    # Adelaide: +09:30 in winter, +10:30 in summer; Lord Howe's DST moves by 30 minutes
    assert dashboard.rollup_answers(f("Australia/Adelaide", "2026-06-01", "2026-06-02"))
    assert dashboard.rollup_answers(f("Australia/Lord_Howe", "2026-10-01", "2026-10-10"))
    # Lord Howe's DST change (2026-10-04 02:00 local, 15:30 UTC) splits its UTC hour too
    _offs, split = dashboard._offsets(f("Australia/Lord_Howe", "2026-10-01", "2026-10-10"))
    assert "2026-10-03T15:00:00+00:00" in [h.isoformat() for h in split]
    # the offsets the rollup path adds to each UTC hour: New York's changes at whole UTC hours
    year, _split = dashboard._offsets(f("America/New_York", "2025-12-01", "2026-11-30"))
    assert [(at.isoformat(), off.total_seconds() / 3600) for at, off in year] == [
        ("2025-12-01T00:00:00+00:00", -5.0),
        ("2026-03-08T07:00:00+00:00", -4.0),
        ("2026-11-01T06:00:00+00:00", -5.0),
    ]
    assert len(dashboard._offsets(f("Asia/Seoul", "2025-12-01", "2026-11-30"))[0]) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_into_one_hour_each_add_theirs():
    """Two transactions bump the same (hour, station, product type) rows at once: the second
    waits for the first's row locks and then adds to what it committed (no unique violation,
    no lost update)."""
    call_command(
        "fill_reads", "40", "--days", "0", "--lines", "1", "--stations-per-line", "1",
        "--until", UNTIL.isoformat(),
    )  # fmt: skip
    ids = sorted(ReadMetric.objects.values_list("read_id", flat=True))
    mid = ids[len(ids) // 2]
    ReadHourly.objects.all().delete()
    first_added, may_commit, errors = threading.Event(), threading.Event(), []

    def save(first: int, end: int, *, hold: bool) -> None:
        try:
            with transaction.atomic():
                dashboard.read_hourly_add(first_read_id=first, end_read_id=end)
                if hold:
                    first_added.set()
                    assert may_commit.wait(20)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    a = threading.Thread(target=save, args=(ids[0], mid), kwargs={"hold": True})
    b = threading.Thread(target=save, args=(mid, ids[-1] + 1), kwargs={"hold": False})
    a.start()
    assert first_added.wait(20)
    b.start()
    # the second upsert waits on the first's uncommitted rows
    with connection.cursor() as cur:
        for _ in range(400):
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'INSERT INTO ocrapp_readhourly%%'"
            )
            if cur.fetchone()[0]:
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the second upsert never waited for the first")
    may_commit.set()
    a.join(20)
    b.join(20)
    assert not errors, errors
    got = _rollup()
    assert sum(v[0] for v in got.values()) == len(ids) == 40
    assert len({k[0] for k in got}) == 1  # one hour
    dashboard.read_hourly_rebuild()
    assert _rollup() == got


def test_the_rollup_path_counts_split_hours_in_one_query_and_restores_the_planner():
    call_command("fill_reads", "240", "--days", "3", "--until", "2026-11-03T12:00", verbosity=0)
    qm = person("qm", roles.QUALITY_MANAGER)
    f = dashboard.dashboard_filters_parse(
        params={"from": "2026-10-31", "to": "2026-11-03", "tz": "Asia/Kolkata", "bucket": "day"}
    )
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL parallel_tuple_cost = 0.25")
        with CaptureQueriesContext(connection) as ctx:
            rows = dashboard._series_rows(user=qm, f=f, source="rollup")
        cur.execute("SELECT current_setting('parallel_tuple_cost')")
        assert cur.fetchone()[0] == "0.25"  # the rollup's setting ended with its query
    window = ReadMetric.objects.filter(created_at__gte=f.date_from, created_at__lt=f.date_to)
    assert sum(r["reads"] for r in rows) == window.count() > 0
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert any("set_config('parallel_tuple_cost', '0.01'" in s for s in sqls)
    # the split hours (one a day in Kolkata) and the part hours at the ends: one range join
    assert len([s for s in sqls if "unnest(" in s and "ocrapp_readmetric" in s]) == 1
    assert len(dashboard._offsets(f)[1]) == 3
