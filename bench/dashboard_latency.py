"""Dashboard latency at scale: p50/p95 of each dashboard query (series per line and bucket,
alarms, review backlog, drift per line and per station, the whole API answer) through the same
``ocrapp.dashboard`` functions the page and the API use, with the indexes EXPLAIN shows.

Peers measured in the same run: each series from the hourly rollup (``ReadHourly``, summed per
UTC hour; ``ReadMetric`` for the part hours at the ends of the range) against the same series
counted from ``ReadMetric`` (one narrow row per read, written with the read); and reads per
hour and mean confidence per line computed from the reads themselves (captures joined to reads
and fields, as without either).

    .venv/bin/python bench/dashboard_latency.py --reads 100000          # fills what is missing
    .venv/bin/python bench/dashboard_latency.py --reads 1000000 --runs 50
    .venv/bin/python bench/dashboard_latency.py --reads 100000 --pad-hourly 1000000

The database is an embedded PostgreSQL under ``--var`` (default ``var/bench-dash``, kept so a
later run reuses the filled reads; ``DATABASE_URL`` points it elsewhere); missing reads are
written by ``manage.py fill_reads`` (synthetic bench data, spread over ``--days``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from search_latency import _indexes, _pct, _seq_scans, add_database_args, prewarm, use_database_args  # noqa: E402  (as the search bench)


def _explain(queries) -> str:
    """Index names and sequentially scanned tables of the queries' plans."""
    import json

    from django.db import connection

    names: set[str] = set()
    seq: set[str] = set()
    with connection.cursor() as cur:
        for q in queries:
            cur.execute("EXPLAIN (FORMAT JSON) " + q["sql"])
            plan = cur.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            names |= _indexes(plan)
            seq |= _seq_scans(plan)
    out = ", ".join(sorted(names)) or "-"
    if seq:
        out += " | seq scan: " + ", ".join(sorted(seq))
    return out


def _measure(label: str, args: list, call, rows: list) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ocrapp.apps import collect_after_request

    prewarm()
    times = []
    for a in args:
        t0 = time.perf_counter()
        call(a)
        collect_after_request()  # each query ends as the app's request does (ocrapp.apps)
        times.append((time.perf_counter() - t0) * 1000)
    with CaptureQueriesContext(connection) as ctx:
        call(args[0])
    explained = [q for q in ctx.captured_queries if "ocrapp_readmetric" in q["sql"] or
                 "ocrapp_readhourly" in q["sql"] or "ocrapp_read" in q["sql"]]  # fmt: skip
    rows.append(
        (
            label,
            len(args),
            statistics.median(times),
            _pct(times, 95),
            max(times),
            _explain_all(explained),
        )
    )


def _explain_all(queries) -> str:
    return _explain(
        [q for q in queries if q["sql"].lstrip().upper().startswith(("SELECT", "WITH"))]
    )


def _padded(args, rows: list, year, op, series, qm) -> str:
    """The rollup series again with ``ReadHourly`` padded, inside a transaction rolled back
    afterwards, to the rows ``--pad-hourly`` reads would leave (the fill's stations and
    product types, every hour of ``--days``, each (hour, station, product type) present with
    the Poisson chance that one of its reads falls there): the rollup's share of a larger
    run's cost without filling it (ReadMetric, the backlog and the drift stay at --reads)."""
    from django.db import connection, transaction

    from ocrapp.models import ReadHourly

    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(
                """
                WITH s AS (SELECT id, line FROM ocrapp_station WHERE line LIKE 'SYN-%%'),
                     p AS (SELECT id FROM ocrapp_producttype WHERE name LIKE 'synthetic-%%'),
                     lam AS (SELECT %(n)s::float8 / (%(days)s * 24 * (SELECT count(*) FROM s)
                                                   * (SELECT count(*) FROM p)) AS v)
                INSERT INTO ocrapp_readhourly (hour, station_id, station_line, product_type_id,
                    reads, auto_accepted, mislabel, glare, blur, exposure, confidence_sum,
                    confidence_n)
                SELECT h, s.id, s.line, p.id, greatest(1, round(lam.v)), round(0.85 * lam.v),
                    0, 0, 0, 0, 0.75 * greatest(1, round(lam.v)), greatest(1, round(lam.v))
                FROM generate_series(date_trunc('hour', now() - make_interval(days => %(days)s)),
                                     now(), interval '1 hour') h
                CROSS JOIN s CROSS JOIN p CROSS JOIN lam
                WHERE random() < 1 - exp(-lam.v)
                ON CONFLICT DO NOTHING
                """,
                {"n": args.pad_hourly, "days": args.days},
            )
            cur.execute("ANALYZE ocrapp_readhourly")
        n = ReadHourly.objects.count()
        label = f"ReadHourly padded to {n:,} rows, as {args.pad_hourly:,} reads"
        _measure(f"series, 365 days by day (rollup; {label})", year, series(qm, "rollup"), rows)
        _measure(f"series, an operator's station, 365 days (rollup; {label})", year,
                 series(op, "rollup"), rows)  # fmt: skip
        transaction.set_rollback(True)
    # the rolled-back rows leave dead tuples: gone for the next run
    with connection.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) ocrapp_readhourly")
    return f"Padded rows: {label} (rolled back after).\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=30, help="Queries per kind.")
    ap.add_argument("--days", type=int, default=365, help="fill_reads spreads reads over these.")
    ap.add_argument("--var", default=str(ROOT / "var" / "bench-dash"))
    add_database_args(ap, "bench_dash")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--pad-hourly",
        type=int,
        default=0,
        metavar="N",
        help="Also time the rollup series with ReadHourly padded to N reads' rows (rolled back).",
    )
    args = ap.parse_args()
    use_database_args(args)

    from ocrapp import devstack

    with devstack.Services(Path(args.var), database=args.database) as services:
        os.environ.update(services.env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        run(args)


def run(args) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from ocrapp import dashboard, roles
    from ocrapp.models import Capture, ReadHourly, ReadMetric, Station
    from tests.review_data import grant

    synth = Capture.objects.filter(station_line__startswith="SYN-")
    have = synth.count()
    fill = ""
    if have < args.reads:
        from django.core.management import call_command

        t0 = time.perf_counter()
        call_command("fill_reads", str(args.reads - have), "--days", str(args.days), verbosity=0)
        fill = f"fill_reads wrote {args.reads - have:,} reads in {time.perf_counter() - t0:.0f} s"
        have = args.reads
    User = get_user_model()
    qm, _ = User.objects.get_or_create(username="bench-qm")
    grant(qm, roles.QUALITY_MANAGER)
    qm = User.objects.get(pk=qm.pk)
    op, _ = User.objects.get_or_create(username="bench-operator")
    grant(op, roles.OPERATOR)
    station = Station.objects.filter(line__startswith="SYN-").order_by("pk").first()
    station.members.add(op)
    op = User.objects.get(pk=op.pk)
    lines = sorted(
        set(Station.objects.filter(line__startswith="SYN-").values_list("line", flat=True))
    )
    rng = random.Random(args.seed)
    now = timezone.now()

    def window(days: int, bucket: str, **extra):
        """``args.runs`` filters of ``days`` ending at random hours of the last month."""
        out = []
        for _ in range(args.runs):
            end = now - dt.timedelta(hours=rng.randint(0, 24 * 30))
            params = {
                "from": (end - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M"),
                "to": end.strftime("%Y-%m-%dT%H:%M"),
                "bucket": bucket,
                "tz": "Asia/Seoul",
                **{k: (v(rng) if callable(v) else v) for k, v in extra.items()},
            }
            out.append(dashboard.dashboard_filters_parse(params=params))
        return out

    week = window(7, "hour")
    month = window(30, "day")
    year = window(365, "day")
    one_line = window(30, "day", line=lambda r: r.choice(lines))

    def peer(f):  # reads per hour and mean confidence from captures + reads + fields
        with connection.cursor() as cur:
            cur.execute(
                """
                SELECT date_trunc('hour', c.created_at AT TIME ZONE %s) AS b, c.station_line,
                       count(*), avg((SELECT avg(fl.confidence) FROM ocrapp_field fl
                                      WHERE fl.read_id = r.id))
                FROM ocrapp_read r JOIN ocrapp_capture c ON c.id = r.capture_id
                WHERE c.created_at >= %s AND c.created_at < %s
                GROUP BY 1, 2
                """,
                [f.tz, f.date_from, f.date_to],
            )
            cur.fetchall()

    rows: list = []

    def series(u, source: str = "auto"):
        return lambda f: dashboard._series_rows(user=u, f=f, source=source)

    def pair(label: str, filters, u) -> None:  # the rollup and its peer, every read counted
        _measure(f"{label} (rollup)", filters, series(u, "rollup"), rows)
        _measure(f"{label} (ReadMetric)", filters, series(u, "readmetric"), rows)

    kolkata = [replace(f, tz="Asia/Kolkata") for f in year]
    pair("series, 7 days by hour (per line)", week, qm)
    _measure("peer: the same from captures + reads + fields", week, peer, rows)
    pair("series, 30 days by day", month, qm)
    pair("series, 365 days by day", year, qm)
    pair("series, one line, 30 days (per station)", one_line, qm)
    pair("series, an operator's station, 30 days", month, op)
    pair("series, an operator's station, 365 days", year, op)
    # +05:30: day buckets from the rollup (one split hour a day from ReadMetric), hour buckets
    # from ReadMetric (every hour split)
    pair("series, 365 days by day, Asia/Kolkata", kolkata, qm)
    kolkata_week = [replace(f, tz="Asia/Kolkata") for f in week]
    _measure("series, 7 days by hour, Asia/Kolkata (auto)", kolkata_week, series(qm), rows)
    _measure("rollup_answers (zone check), 365 days", year, dashboard.rollup_answers, rows)
    _measure("alarm_counts, 30 days", month, lambda f: dashboard.alarm_counts(user=qm, f=f), rows)
    _measure("review backlog (now) + per bucket", month,
             lambda f: dashboard.backlog(user=qm, f=f), rows)  # fmt: skip
    _measure("drift per line", month, lambda f: dashboard.drift_report(user=qm, f=f), rows)
    _measure("drift per station", month,
             lambda f: dashboard.drift_report(user=qm, f=f, level="station"), rows)  # fmt: skip
    whole = lambda f: dashboard.dashboard_json(dashboard.dashboard(user=qm, f=f), f)  # noqa: E731
    _measure("whole dashboard (API answer), 7 days by hour", week, whole, rows)
    _measure("whole dashboard (API answer), 365 days by day", year, whole, rows)

    n_metric, n_hourly = ReadMetric.objects.count(), ReadHourly.objects.count()
    padded = ""
    if args.pad_hourly:
        padded = _padded(args, rows, year, op, series, qm)
    print(
        f"\n{have:,} synthetic captures, {n_metric:,} dashboard rows (ReadMetric), "
        f"{n_hourly:,} hourly rollup rows (ReadHourly). {fill}\n{padded}"
    )
    print("| query | n | p50 ms | p95 ms | max ms | indexes (EXPLAIN) |")
    print("|---|---:|---:|---:|---:|---|")
    for label, n, p50, p95, mx, idx in rows:
        print(f"| {label} | {n} | {p50:.1f} | {p95:.1f} | {mx:.1f} | {idx} |")


if __name__ == "__main__":
    main()
