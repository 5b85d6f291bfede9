"""Export at scale: time and peak RSS of the streamed CSV, XLSX and EPCIS exports of N reads
(the capture list, every read in scope), through the same code the download runs
(``ocrapp.exports``: keyset chunks, rows written as they are read).

Peer measured in the same run: a naive, non-streamed CSV export (every capture with its reads,
fields and revisions loaded through the ORM at once, the whole file built in memory, then sent).

    .venv/bin/python bench/export_latency.py --reads 100000     # fills what is missing

Each export runs in its own process (so its peak RSS is its own: ``ru_maxrss``); the database
is an embedded PostgreSQL under ``--var`` (default ``var/bench-export``, kept between runs;
``DATABASE_URL`` points it elsewhere), filled by ``manage.py fill_reads`` (synthetic bench
data). Target (issue 13): 100,000-row CSV in <= 10 s with flat memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from search_latency import add_database_args, prewarm, use_database_args  # noqa: E402

KINDS = ("csv", "xlsx", "epcis", "naive-csv")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def one(kind: str) -> None:
    """Child process: one export to a temporary file; prints one JSON line."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
    django.setup()
    import csv
    import io
    import tempfile

    from django.contrib.auth import get_user_model
    from django.db.models import Prefetch
    from django.utils import timezone

    from ocrapp import exports, selectors
    from ocrapp.models import Field, FieldRevision, Read

    qm = get_user_model().objects.get(username="bench-qm")
    params = {"tz": "UTC"}
    if os.environ.get("BENCH_EXPORT_FROM"):  # --rows: the newest captures only
        params["from"] = os.environ["BENCH_EXPORT_FROM"]
    filters = selectors.search_filters_parse(params=params)
    tz = selectors.time_zone_find(name="UTC")
    info = exports.ExportInfo("captures", [("tz", "UTC")], timezone.now(), "UTC", "bench-qm")
    counter = [0]
    base = _rss_mb()
    t0 = time.perf_counter()
    size = 0
    with tempfile.TemporaryFile() as out:
        groups = exports.capture_groups(user=qm, filters=filters, codes=kind == "epcis")
        if kind == "csv":
            for part in exports.csv_stream(groups, info, tz, counter):
                size += out.write(part)
        elif kind == "epcis":
            for part in exports.epcis_stream(groups, info, tz, counter):
                size += out.write(part)
        elif kind == "xlsx":
            for part in exports.file_chunks(exports.xlsx_file(groups, info, tz, counter)):
                size += out.write(part)
        else:  # the peer: everything in memory, then written
            chosen = selectors.capture_export_qs(user=qm, filters=filters)
            captures = list(  # Django's prefetch of every read, line, field and revision
                selectors._capture_rows()
                .prefetch_related(
                    Prefetch(
                        "reads",
                        queryset=Read.objects.order_by("-run").prefetch_related(
                            "lines",
                            Prefetch(
                                "fields",
                                queryset=Field.objects.select_related("line").prefetch_related(
                                    Prefetch(
                                        "revisions", queryset=FieldRevision.objects.order_by("seq")
                                    )
                                ),
                            ),
                        ),
                    )
                )
                .filter(station_line__startswith="SYN-", pk__in=chosen.values("pk"))
            )
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(exports.COLUMNS)
            for c in captures:
                reads = list(c.reads.all())
                for f in reads[0].fields.all() if reads else []:
                    revs = list(f.revisions.all())
                    w.writerow(
                        [c.pk, c.created_at.isoformat(), c.station_line, c.station_label,
                         c.product_type.name, c.status, "", f.name, f.current_value, f.value,
                         f.raw_value, f.valid, f.confidence, f.source, f.code_value or "",
                         "", len(revs), "", len(reads[0].mismatches), c.client_ref, c.sha256,
                         ""]
                    )  # fmt: skip
                    counter[0] += 1
            data = buf.getvalue().encode("utf-8")
            size = out.write(data)
    secs = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "kind": kind,
                "secs": secs,
                "rows": counter[0],
                "bytes": size,
                "rss_base_mb": base,
                "rss_peak_mb": _rss_mb(),
            }
        )  # fmt: skip
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--var", default=str(ROOT / "var" / "bench-export"))
    add_database_args(ap, "bench_export")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument(
        "--rows", type=int, default=0, help="Export only the newest captures, about N rows."
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.one)
        return
    use_database_args(args)

    from ocrapp import devstack

    with devstack.Services(Path(args.var), database=args.database) as services:
        os.environ.update(services.env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from ocrapp import roles
        from ocrapp.models import Capture
        from tests.review_data import grant

        call_command("migrate", verbosity=0)
        have = Capture.objects.filter(station_line__startswith="SYN-").count()
        fill = ""
        if have < args.reads:
            t0 = time.perf_counter()
            call_command("fill_reads", str(args.reads - have), verbosity=0)
            fill = (
                f"fill_reads wrote {args.reads - have:,} reads in {time.perf_counter() - t0:.0f} s"
            )
        qm, _ = get_user_model().objects.get_or_create(username="bench-qm")
        grant(qm, roles.QUALITY_MANAGER)
        total = Capture.objects.count()
        env = {**os.environ}
        if args.rows:  # the newest captures holding about --rows field rows (3 per read)
            at = Capture.objects.order_by("-created_at").values_list("created_at", flat=True)[
                args.rows // 3
            ]
            env["BENCH_EXPORT_FROM"] = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")
            fill += f" Exported: captures from {env['BENCH_EXPORT_FROM']} UTC on."
        results = []
        for kind in args.kinds.split(","):
            prewarm()  # as the search bench: the tables in the OS cache, as a server has them
            proc = subprocess.run(
                [sys.executable, __file__, "--one", kind],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\n{total:,} captures in the database. {fill}\n")
    print("| export | rows | MB written | time s | rows/s | peak RSS MB | RSS growth MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['kind']} | {r['rows']:,} | {r['bytes'] / 1e6:.1f} | {r['secs']:.1f} | "
            f"{r['rows'] / max(r['secs'], 1e-9):,.0f} | {r['rss_peak_mb']:.0f} | "
            f"{r['rss_peak_mb'] - r['rss_base_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
