"""Search latency at scale: p50/p95 of exact, look-alike, prefix and similar serial search (with an
adversarial set of short, common fragments), one serial's history and filtered capture list
pages, through the same selectors the pages and the API use, with the indexes EXPLAIN shows.
Each timed call ends as a request of the app does (``ocrapp.apps.collect_after_request``: the
young garbage collection when the response is finished), and is timed with it.

Peer measured in the same run: "similar" as a nearest-neighbour scan of a trigram GiST index
(``skeleton <-> q``, the search before the two-range "similar" of ``selectors._similar_values``),
latency and recall: for misread serials (a substituted, deleted or inserted character, two
substitutions), how often each finds the serial that was misread. The bench creates the peer's
index (``bench_skeleton_gist_idx``) once if the database lacks it (minutes at 1M reads).

    .venv/bin/python bench/search_latency.py --reads 100000          # fills what is missing
    .venv/bin/python bench/search_latency.py --reads 1000000 --runs 200
    .venv/bin/python bench/search_latency.py --fastupdate 10000   # GIN fastupdate on vs off

The database is an embedded PostgreSQL under ``--var`` (kept, so a later run reuses the filled
reads; ``DATABASE_URL`` points it elsewhere); missing reads are written by ``manage.py
fill_reads`` (synthetic bench data), whose speed is printed too.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def _indexes(plan) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.add(plan["Index Name"])
        for v in plan.values():
            found |= _indexes(v)
    elif isinstance(plan, list):
        for v in plan:
            found |= _indexes(v)
    return found


def _explain(queries) -> str:
    import json

    from django.db import connection

    names: set[str] = set()
    seq: set[str] = set()
    with connection.cursor() as cur:
        for q in queries:
            sql = q["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cur.execute("EXPLAIN (FORMAT JSON) " + sql)
            plan = cur.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            names |= _indexes(plan)
            seq |= _seq_scans(plan)
    out = ", ".join(sorted(names)) or "-"
    big = sorted(t for t in seq if t in ("ocrapp_serialrecord", "ocrapp_capture", "ocrapp_field"))
    if big:
        out += " | seq scan: " + ", ".join(big)
    return out


def _seq_scans(plan) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Seq Scan":
            found.add(plan.get("Relation Name", "?"))
        for v in plan.values():
            found |= _seq_scans(v)
    elif isinstance(plan, list):
        for v in plan:
            found |= _seq_scans(v)
    return found


# read the tables and indexes into the OS cache before each measured query kind (--no-prewarm:
# not): this VM's kernel reclaims page cache that was not touched for a minute or two (DAMON),
# so without it the first queries of a kind read the disk; a database server keeps them cached
PREWARM = [True]


def add_database_args(ap: argparse.ArgumentParser, database: str) -> None:
    """``--database`` (default ``database``) and ``--no-prewarm``: the options every latency
    bench shares (read them back with :func:`use_database_args`)."""
    ap.add_argument(
        "--database",
        default=database,
        help="Database name (one filled database can serve every bench).",
    )
    ap.add_argument("--no-prewarm", action="store_true", help="Measure with a cold cache.")


def use_database_args(args: argparse.Namespace) -> None:
    PREWARM[0] = not args.no_prewarm


def prewarm() -> None:
    """``pg_prewarm(..., 'read')`` of every table and index of the app (4 GB at 1M reads: ~8 s)."""
    from django.db import connection

    if not PREWARM[0]:
        return
    with connection.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        cur.execute(
            """SELECT sum(pg_prewarm(c.oid, 'read')) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i')
                 AND c.relname NOT LIKE 'bench_%%'"""
        )


def _measure(label: str, queries: list, call, rows: list) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ocrapp.apps import collect_after_request

    prewarm()
    times = []
    for q in queries:
        t0 = time.perf_counter()
        call(q)
        collect_after_request()  # each query ends as the app's request does (ocrapp.apps)
        times.append((time.perf_counter() - t0) * 1000)
    with CaptureQueriesContext(connection) as ctx:
        call(queries[0])
    rows.append(
        (
            label,
            len(queries),
            statistics.median(times),
            _pct(times, 95),
            max(times),
            _explain(ctx.captured_queries),
        )
    )


def _lookalike(value: str, rng: random.Random) -> str:
    swap = {"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z", "6": "G"}
    chars = list(value)
    spots = [i for i, c in enumerate(chars) if c in swap]
    for i in rng.sample(spots, min(2, len(spots))):
        chars[i] = swap[chars[i]]
    return "".join(chars)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=100, help="Queries per kind.")
    ap.add_argument("--var", default=str(ROOT / "var" / "bench-search"))
    add_database_args(ap, "bench_search")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--recall-runs", type=int, default=40, help="Misread serials per kind.")
    ap.add_argument(
        "--fastupdate",
        type=int,
        default=0,
        metavar="N",
        help="Instead: GIN fastupdate on vs off while fill_reads writes N reads alongside.",
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
        if args.fastupdate:
            fastupdate(args, services.env)
        else:
            run(args)


# peer indexes: the product has no trigram index (bench/NOTES-search.md); the bench makes them
GIN_INDEXES = ("bench_value_trgm_idx", "bench_skeleton_trgm_idx")
PEER_INDEXES = {
    "bench_skeleton_gist_idx": "USING gist (skeleton gist_trgm_ops)",
    "bench_value_trgm_idx": "USING gin (value gin_trgm_ops)",
    "bench_skeleton_trgm_idx": "USING gin (skeleton gin_trgm_ops)",
}


def peer_index(name: str) -> str:
    """Create the peer index ``name`` if it is missing; what it took, for the report."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_class WHERE relname = %s", [name])
        if cur.fetchone():
            return ""
        t0 = time.perf_counter()
        cur.execute(f"CREATE INDEX {name} ON ocrapp_serialrecord {PEER_INDEXES[name]}")
        cur.execute("ANALYZE ocrapp_serialrecord")
    return f"peer index {name} built in {time.perf_counter() - t0:.0f} s. "


def fastupdate(args, env: dict[str, str]) -> None:
    """GIN ``fastupdate`` on vs off under steady inserts: ``fill_reads`` writes ``N`` reads in
    a second process while this one runs the GIN ``%`` queries and exact lookups; prints the
    insert rate and the query latencies of each setting (the setting is left ``on``, the
    default, afterwards)."""
    import subprocess

    from django.db import connection
    from django.db.models import Q

    from ocrapp.models import SerialRecord
    from workers.fieldspec import identifier_key, lookalike_key

    for name in GIN_INDEXES:
        peer_index(name)
    rng = random.Random(args.seed)
    max_id = SerialRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    values = []
    while len(values) < 40:
        row = SerialRecord.objects.filter(id__gte=rng.randint(1, max_id)).order_by("id").first()
        if row is not None:
            values.append(row.value)
    rows = []
    for setting in ("on", "off"):
        with connection.cursor() as cur:
            for name in GIN_INDEXES:
                cur.execute(f"ALTER INDEX {name} SET (fastupdate = {setting})")
                cur.execute("SELECT gin_clean_pending_list(%s::regclass)", [name])
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "fill_reads", str(args.fastupdate)],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        t0 = time.perf_counter()
        gin, exact = [], []
        i = 0
        while proc.poll() is None:
            v = values[i % len(values)]
            i += 1
            norm, skel = identifier_key(v[:-2] + "X" + v[-1:]), lookalike_key(v)
            t1 = time.perf_counter()
            list(
                SerialRecord.objects.filter(
                    Q(value__trigram_similar=norm) | Q(skeleton__trigram_similar=skel)
                ).values_list("value", flat=True)[:50]
            )
            t2 = time.perf_counter()
            SerialRecord.objects.filter(value=identifier_key(v)).exists()
            t3 = time.perf_counter()
            gin.append((t2 - t1) * 1000)
            exact.append((t3 - t2) * 1000)
        secs = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"fill_reads failed ({proc.returncode})")
        with connection.cursor() as cur:
            cur.execute("SELECT gin_clean_pending_list(%s::regclass)", [GIN_INDEXES[0]])
        rows.append((setting, args.fastupdate / secs, gin, exact))
    with connection.cursor() as cur:
        for name in GIN_INDEXES:
            cur.execute(f"ALTER INDEX {name} SET (fastupdate = on)")
    print(f"\nGIN fastupdate, fill_reads writing {args.fastupdate:,} reads alongside\n")
    print("| fastupdate | reads/s | GIN % n | GIN % p50 ms | p95 ms | exact p50 ms | p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for setting, rate, gin, exact in rows:
        print(
            f"| {setting} | {rate:,.0f} | {len(gin)} | {statistics.median(gin):.1f} | "
            f"{_pct(gin, 95):.1f} | {statistics.median(exact):.1f} | {_pct(exact, 95):.1f} |"
        )


def _misread(value: str, kind: str, rng: random.Random) -> str:
    """``value`` with one misread of ``kind``: a character replaced (``sub``, at a random
    spot; ``sub-end``: the last but one, as the latency set), dropped (``del``), added
    (``ins``), or two characters replaced (``sub2``). The replacement is no look-alike of the
    original (that is the look-alike search's case)."""
    pool = "AEFHKMNPRTUVWXY3479"
    chars = list(value)
    spots = [i for i, c in enumerate(chars) if c.isalnum()]

    def other(c: str) -> str:
        return rng.choice([x for x in pool if x != c.upper()])

    if kind == "sub-end":
        chars[-2] = "X"
    elif kind == "sub":
        i = rng.choice(spots)
        chars[i] = other(chars[i])
    elif kind == "sub2":
        for i in rng.sample(spots, 2):
            chars[i] = other(chars[i])
    elif kind == "del":
        del chars[rng.choice(spots)]
    elif kind == "ins":
        chars.insert(rng.randint(0, len(chars)), rng.choice(pool))
    return "".join(chars)


MISREADS = ("sub-end", "sub", "del", "ins", "sub2")


def run(args) -> None:
    from django.contrib.postgres.search import TrigramDistance

    from ocrapp import roles, selectors
    from ocrapp.models import Capture, SerialRecord
    from tests.review_data import grant
    from workers.fieldspec import identifier_key, lookalike_key

    synth = Capture.objects.filter(station_line__startswith="SYN-")
    have = synth.count()
    fill = peer_index("bench_skeleton_gist_idx")
    if have < args.reads:
        from django.core.management import call_command

        t0 = time.perf_counter()
        call_command("fill_reads", str(args.reads - have), verbosity=0)
        secs = time.perf_counter() - t0
        fill += f"fill_reads wrote {args.reads - have:,} reads in {secs:.0f} s"
        have = args.reads
    from django.contrib.auth import get_user_model

    qm, _ = get_user_model().objects.get_or_create(username="bench-qm")
    grant(qm, roles.QUALITY_MANAGER)
    qm = get_user_model().objects.get(pk=qm.pk)  # fresh permission cache

    rng = random.Random(args.seed)
    n_sr = SerialRecord.objects.count()
    sample = []
    serials = SerialRecord.objects.filter(field_name="serial_number")
    max_id = SerialRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    while len(sample) < args.runs:
        row = serials.filter(id__gte=rng.randint(1, max_id)).order_by("id").first()
        if row is not None:
            sample.append(row.display or row.value)
    exact = sample
    look = [_lookalike(v, rng) for v in sample]
    prefix = [v[: rng.randint(3, 7)] for v in sample]
    adversarial = ["000", "0001", "SN", "SN2026", "-10", "123", "A1B", "100", "00-", "35"]
    similar = [
        (adversarial[i % len(adversarial)] if i % 2 else v[:-2] + "X" + v[-1:])
        for i, v in enumerate(sample)
    ]
    lines = sorted(set(synth.values_list("station_line", flat=True)[:1000]))

    def search(q):
        selectors.serial_search_page(q=q, user=qm, limit=50)

    def search_only(*kinds):
        f = selectors.SearchFilters(match=kinds)
        return lambda q: selectors.serial_search_page(q=q, user=qm, filters=f, limit=50)

    def knn_values(q: str) -> list[str]:
        """The peer: up to 50 values by GiST nearest-neighbour order, similarity >= 0.3."""
        skel = lookalike_key(q)
        rows = (
            SerialRecord.objects.filter(skeleton__trigram_similar=skel)
            .annotate(dist=TrigramDistance("skeleton", skel))
            .order_by("dist")
            .values_list("value", "dist")[:208]
        )
        out: list[str] = []
        for value, dist in rows:
            if 1.0 - float(dist) >= selectors.SIMILARITY_THRESHOLD and value not in out:
                out.append(value)
        return out[:50]

    def history(v):
        selectors.serial_history(value=v, user=qm)

    def line_review(i):
        return selectors.SearchFilters(line=lines[i % len(lines)], review="needs_review")

    def capture_list(i):
        selectors.capture_page(user=qm, filters=line_review(i), limit=50)

    # the second page of each line's list: the cursor of its first page (counted there)
    cursors = {
        i: selectors.capture_page(user=qm, filters=line_review(i), limit=50).next_cursor
        for i in range(len(lines))
    }

    def capture_list_next(i):
        f = line_review(i)
        selectors.capture_page(user=qm, filters=f, cursor=cursors[i % len(lines)], limit=50)

    def capture_list_plain(i):
        selectors.capture_page(user=qm, limit=50)

    rows: list = []
    _measure("exact (match=exact)", exact, search_only("exact"), rows)
    _measure("look-alike (match=exact,lookalike)", look, search_only("exact", "lookalike"), rows)
    _measure("prefix (match=prefix, 3-7 chars)", prefix, search_only("prefix"), rows)
    _measure("full search, exact query", exact, search, rows)
    _measure("full search, look-alike query", look, search, rows)
    _measure("full search, prefix query", prefix, search, rows)
    _measure("similar, adversarial (two ranges)", similar, search, rows)
    _measure("similar peer: KNN GiST", similar[: max(10, args.runs // 3)], knn_values, rows)
    _measure("history of one serial", exact, history, rows)
    _measure("capture list page, no filter", list(range(args.runs)), capture_list_plain, rows)
    _measure(
        "capture list, line + needs review, first page",
        list(range(args.runs)),
        capture_list,
        rows,
    )
    _measure(
        "capture list, line + needs review, next page",
        list(range(args.runs)),
        capture_list_next,
        rows,
    )

    print(f"\n{have:,} synthetic reads, {n_sr:,} search index rows. {fill}\n")
    print("| query | n | p50 ms | p95 ms | max ms | indexes (EXPLAIN) |")
    print("|---|---:|---:|---:|---:|---|")
    for label, n, p50, p95, mx, idx in rows:
        print(f"| {label} | {n} | {p50:.1f} | {p95:.1f} | {mx:.1f} | {idx} |")

    # recall of "similar" on misread serials: is the misread serial among the hits?
    recall = []
    for kind in MISREADS:
        ours = peer = 0
        queries = [(v, _misread(v, kind, rng)) for v in sample[: args.recall_runs]]
        for v, q in queries:
            want = identifier_key(v)
            page = selectors.serial_search_page(q=q, user=qm, limit=50)
            ours += any(h.value == want for h in page.items)
            # the peer is the same search with the KNN scan for "similar"
            other = any(h.value == want and h.match != "similar" for h in page.items)
            peer += other or want in knn_values(q)
        recall.append((kind, len(queries), ours, peer))
    print("\n| misread | n | found, two ranges (full search) | found, KNN GiST peer (top 50) |")
    print("|---|---:|---:|---:|")
    for kind, n, ours, peer in recall:
        print(f"| {kind} | {n} | {ours} ({ours / n:.0%}) | {peer} ({peer / n:.0%}) |")


if __name__ == "__main__":
    main()
