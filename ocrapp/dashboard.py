"""The dashboard: per line and station over time, and the drift check. Reads only (selectors).

Everything is aggregated in SQL over :class:`ocrapp.models.ReadMetric` (one narrow row per read,
written with the read), bucketed with ``date_trunc`` in the user's time zone and limited to
what the user may see (``roles.capture_scope``: a station token or an operator sees only their
stations; quality managers and auditors see every line).

Drift (README "Dashboard"): for each line (and station), each image statistic's median over a
recent window is compared with the line's own baseline (the days before that window), in units
of the baseline's spread: ``shift = (median_recent - median_baseline) / scale`` with ``scale =
max(1.4826 * MAD_baseline, floor)`` (MAD: median absolute deviation, 1.4826 makes it a standard
deviation for normal data; the floor keeps a very steady baseline from flagging noise). A
statistic drifts when ``|shift| >= DRIFT_SHIFT`` and both windows hold at least
``DRIFT_MIN_READS`` reads with that statistic. Medians and MADs are robust: a few odd photos
move neither.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connection, transaction
from django.db.models import (
    Aggregate,
    Avg,
    Count,
    DateTimeField,
    FloatField,
    Func,
    Min,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Trunc
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ocrapp import roles, selectors
from ocrapp.errors import ApplicationError
from ocrapp.models import ReadMetric

BUCKETS = ("hour", "day")
GROUPS = ("line", "station")
DEFAULT_DAYS = 7
MAX_BUCKETS = 2_000

# quality warning codes (workers.contract.QUALITY_CODES) behind each share on the dashboard
GLARE_CODES = ("glare", "glare_photo", "glare_text")
BLUR_CODES = ("blur",)
EXPOSURE_CODES = ("underexposed", "overexposed")

# the statistics the drift check compares: (column, SQL expression, floor of the scale, label)
DRIFT_STATS: tuple[tuple[str, str, float, Any], ...] = (
    ("luminance", "{t}luminance", 0.02, gettext_lazy("mean luminance")),
    ("contrast", "{t}contrast", 0.01, gettext_lazy("contrast")),
    # the Laplacian variance varies by factors: compared on a log scale
    ("sharpness", "ln(1 + {t}sharpness)", 0.05, gettext_lazy("sharpness (log Laplacian variance)")),
    ("glare_fraction", "{t}glare_fraction", 0.01, gettext_lazy("glare fraction")),
    ("text_boxes", "{t}text_boxes", 0.5, gettext_lazy("text boxes")),
    ("text_height", "{t}text_height", 0.005, gettext_lazy("text height")),
    ("text_area", "{t}text_area", 0.005, gettext_lazy("text area")),
    ("text_cx", "{t}text_cx", 0.01, gettext_lazy("text position (across)")),
    ("text_cy", "{t}text_cy", 0.01, gettext_lazy("text position (down)")),
    ("confidence", "{t}confidence", 0.01, gettext_lazy("mean confidence")),
)
DRIFT_STAT_NAMES = tuple(s[0] for s in DRIFT_STATS)
DRIFT_COLUMNS = ", ".join(DRIFT_STAT_NAMES)  # each statistic is (an expression of) its column


@contextmanager
def _analytic():
    """A transaction whose sorts and medians get ``DASHBOARD_WORK_MEM_MB`` of memory: at 1M reads
    the drift windows and the backlog hold tens of thousands of rows, which PostgreSQL's
    default ``work_mem`` (4 MB) sorts on disk (bench/NOTES-dash.md)."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"SET LOCAL work_mem = '{int(settings.DASHBOARD_WORK_MEM_MB)}MB'")
        yield


@contextmanager
def _parallel_friendly():
    """PostgreSQL's ``parallel_tuple_cost`` at ``DASHBOARD_PARALLEL_TUPLE_COST`` for one query,
    inside a transaction (the setting is back as it was afterwards). The rollup's group
    estimate is 20x too high (it cannot see how few local days the shifted hours make), which
    prices the parallel plan's Gather out; a parallel scan of the 288k rollup rows at 1M reads
    took 167 ms instead of 267 under load (bench/NOTES-dash.md)."""
    value = str(float(settings.DASHBOARD_PARALLEL_TUPLE_COST))
    # a transaction for set_config(..., true): the caller's (_analytic) or its own, no savepoint
    with transaction.atomic(savepoint=False), connection.cursor() as cur:
        cur.execute("SELECT current_setting('parallel_tuple_cost')")
        (before,) = cur.fetchone()
        cur.execute("SELECT set_config('parallel_tuple_cost', %s, true)", [value])
        try:
            yield
        finally:
            cur.execute("SELECT set_config('parallel_tuple_cost', %s, true)", [before])


# --- the row of a read ----------------------------------------------------------------------


def read_metric_values(
    *,
    quality: Mapping[str, Any],
    field_confidences: list[float],
    needs_review: bool,
    mismatches: list,
    review_reasons: list,
) -> dict[str, Any]:
    """The :class:`ReadMetric` columns of one read (besides its ids and time) from what the
    read stores: ``quality`` (``Read.quality``), its fields' confidences, the review decision
    and the printed-vs-code mismatches."""
    codes = {w.get("code") for w in quality.get("warnings") or () if isinstance(w, Mapping)}
    reasons = {r.get("code") for r in review_reasons or () if isinstance(r, Mapping)}

    def num(key: str) -> float | None:
        value = quality.get(key)
        return None if value is None else float(value)

    return {
        "auto_accepted": not needs_review,
        "mislabel": bool(mismatches) or "mislabel" in reasons,
        "glare": bool(codes & set(GLARE_CODES)),
        "blur": bool(codes & set(BLUR_CODES)),
        "exposure": bool(codes & set(EXPOSURE_CODES)),
        "confidence": (
            sum(field_confidences) / len(field_confidences) if field_confidences else None
        ),
        "luminance": num("exposure") if quality else None,
        "contrast": num("contrast"),
        "sharpness": num("blur") if quality else None,
        "glare_fraction": num("glare_fraction") if quality else None,
        "text_boxes": None if quality.get("text_boxes") is None else int(quality["text_boxes"]),
        "text_height": num("text_height"),
        "text_area": num("text_area"),
        "text_cx": num("text_cx"),
        "text_cy": num("text_cy"),
    }


# --- the hourly rollup (ReadHourly) -----------------------------------------------------------

# the ReadHourly counters of ReadMetric rows (``{where}``: which rows), one row per key, in key
# order (concurrent batches lock the rows they bump in the same order)
_HOURLY_SELECT = """
    SELECT date_trunc('hour', created_at, 'UTC') AS hour, station_id, station_line,
        product_type_id, count(*), count(*) FILTER (WHERE auto_accepted),
        count(*) FILTER (WHERE mislabel), count(*) FILTER (WHERE glare),
        count(*) FILTER (WHERE blur), count(*) FILTER (WHERE exposure),
        COALESCE(sum(confidence), 0), count(confidence)
    FROM ocrapp_readmetric WHERE {where}
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""
_HOURLY_COLS = (
    "hour, station_id, station_line, product_type_id, reads, auto_accepted, mislabel, glare, "
    "blur, exposure, confidence_sum, confidence_n"
)
_HOURLY_SUMMED = (
    "reads", "auto_accepted", "mislabel", "glare", "blur", "exposure", "confidence_sum",
    "confidence_n",
)  # fmt: skip
_HOURLY_UPSERT = (
    f"INSERT INTO ocrapp_readhourly ({_HOURLY_COLS}) {_HOURLY_SELECT} "
    "ON CONFLICT (hour, station_id, station_line, product_type_id) DO UPDATE SET "
    + ", ".join(f"{c} = ocrapp_readhourly.{c} + EXCLUDED.{c}" for c in _HOURLY_SUMMED)
)


def read_hourly_add(*, first_read_id: int, end_read_id: int) -> None:
    """Add the :class:`ReadMetric` rows of reads ``first_read_id`` ... ``end_read_id - 1``
    (just inserted, in the caller's transaction) to :class:`ReadHourly`: one atomic upsert
    (``ON CONFLICT DO UPDATE SET n = n + EXCLUDED.n``), so concurrent saves of reads of the same
    hour and station each add theirs. Call it once per inserted row (range): it adds, it does
    not recount."""
    with connection.cursor() as cur:
        cur.execute(
            _HOURLY_UPSERT.format(where="read_id >= %s AND read_id < %s"),
            [first_read_id, end_read_id],
        )


def read_hourly_rebuild() -> None:
    """Recount :class:`ReadHourly` from every :class:`ReadMetric` row (a repair after
    ``ReadMetric`` rows were moved or changed by hand; tests that move reads in time). Locks
    the rollup for the transaction."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("LOCK TABLE ocrapp_readhourly IN EXCLUSIVE MODE")
        cur.execute("DELETE FROM ocrapp_readhourly")
        cur.execute(_HOURLY_UPSERT.format(where="true"))


# --- filters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardFilters:
    """``date_from`` / ``date_to`` (aware, ``to`` exclusive), ``tz`` (IANA name: the buckets'
    zone), ``line``, ``station`` / ``product_type`` ids, ``bucket`` (hour | day) and ``group``
    (line | station: one series per line, or per station)."""

    date_from: datetime
    date_to: datetime
    tz: str
    line: str = ""
    station: int | None = None
    product_type: int | None = None
    bucket: str = "hour"
    group: str = "line"


def _bad(name: str, message: str) -> ApplicationError:
    return ApplicationError("invalid", message, details={name: [message]})


def dashboard_filters_parse(
    *, params: Mapping[str, str], default_tz: str = "", now: datetime | None = None
) -> DashboardFilters:
    """The dashboard's query string (page and API): ``from`` / ``to`` / ``tz`` / ``line`` /
    ``station`` / ``product_type`` as in search (``selectors.search_filters_parse``), ``bucket``
    (``hour`` default up to 7 days, else ``day``), ``group`` (``line``; ``station`` by default
    when a line or station is chosen). Default range: the last 7 days. Bad values: 400
    ``invalid`` naming the parameter (also a range of more than :data:`MAX_BUCKETS` buckets
    or one that ends before it starts, or dates out of range)."""
    try:
        return _parse(params=params, default_tz=default_tz, now=now)
    except OverflowError:  # e.g. to=0001-01-01: the default from would be before year 1
        raise _bad("from", _("The dates are out of range.")) from None


def _parse(*, params: Mapping[str, str], default_tz: str, now: datetime | None) -> DashboardFilters:
    picked = {k: params.get(k, "") for k in ("from", "to", "tz", "line", "station", "product_type")}
    f = selectors.search_filters_parse(params=picked, default_tz=default_tz)
    now = now or timezone.now()
    date_to = f.date_to or now
    date_from = f.date_from or date_to - dt.timedelta(days=DEFAULT_DAYS)
    if date_from >= date_to:
        raise _bad("from", _("from must be before to."))
    span = date_to - date_from
    bucket = selectors._choice(
        selectors.param_text(params, "bucket", max_length=8), "bucket", BUCKETS
    )
    bucket = bucket or ("hour" if span <= dt.timedelta(days=7) else "day")
    size = dt.timedelta(hours=1) if bucket == "hour" else dt.timedelta(days=1)
    if span / size > MAX_BUCKETS:
        raise _bad(
            "bucket",
            _("The range holds more than %(max)s buckets: choose a shorter range or bucket=day.")
            % {"max": MAX_BUCKETS},
        )
    group = selectors._choice(selectors.param_text(params, "group", max_length=8), "group", GROUPS)
    group = group or ("station" if f.line or f.station else "line")
    return DashboardFilters(
        date_from=date_from,
        date_to=date_to,
        tz=f.tz,
        line=f.line,
        station=f.station,
        product_type=f.product_type,
        bucket=bucket,
        group=group,
    )


def _metrics(*, user: Any, f: DashboardFilters, window: bool = True) -> QuerySet[ReadMetric]:
    qs = roles.scoped(ReadMetric.objects.all(), user)
    if window:
        qs = qs.filter(created_at__gte=f.date_from, created_at__lt=f.date_to)
    return _place_filtered(qs, f, line_field="station_line")


def _place_filtered(qs: QuerySet, f: DashboardFilters, *, line_field: str) -> QuerySet:
    """``qs`` narrowed to the filters' line, station and product type."""
    if f.line:
        qs = qs.filter(**{line_field: f.line})
    if f.station is not None:
        qs = qs.filter(station_id=f.station)
    if f.product_type is not None:
        qs = qs.filter(product_type_id=f.product_type)
    return qs


def _group_key(f: DashboardFilters) -> str:
    return "station_line" if f.group == "line" else "station_id"


def _tz(f: DashboardFilters) -> dt.tzinfo:
    return selectors.time_zone_find(name=f.tz)


def bucket_starts(*, f: DashboardFilters) -> list[datetime]:
    """Every bucket start of the range, in the filter's zone (charts show empty buckets too)."""
    tz = _tz(f)
    start = f.date_from.astimezone(tz)
    if f.bucket == "day":
        start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = start.replace(minute=0, second=0, microsecond=0)
    out = []
    # step in UTC for hours (a DST change repeats or skips a wall-clock hour), by date for days
    if f.bucket == "hour":
        at = start.astimezone(dt.UTC)
        while at < f.date_to:
            out.append(at.astimezone(tz))
            at += dt.timedelta(hours=1)
    else:
        day = start.date()
        while True:
            at = datetime.combine(day, dt.time(), tzinfo=tz)
            if at >= f.date_to:
                break
            out.append(at)
            day += dt.timedelta(days=1)
    return out


# --- the series ---------------------------------------------------------------------------


def alarm_counts(*, user: Any, f: DashboardFilters) -> dict[tuple[datetime, Any], int]:
    """Alarms raised per (bucket start, line or station id), every kind and state
    (``ocrapp.alarms``), in the user's scope."""
    from ocrapp.models import Alarm

    qs = roles.scoped(Alarm.objects.all(), user).filter(
        created_at__gte=f.date_from, created_at__lt=f.date_to
    )
    qs = _place_filtered(qs, f, line_field="line")
    key = "line" if f.group == "line" else "station_id"
    rows = (
        qs.annotate(b=Trunc("created_at", f.bucket, tzinfo=_tz(f)))
        .values("b", key)
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {(r["b"], r[key]): r["n"] for r in rows}


@_analytic()
def _series_rows(*, user: Any, f: DashboardFilters, source: str = "auto") -> list[dict]:
    """Per (bucket start ``b``, line or station): ``reads``, ``accepted``, ``mean_conf``,
    ``n_conf``, ``glare``, ``blur``, ``exposure``. ``source``: ``rollup`` sums
    :class:`ReadHourly` for the whole hours of the range (:class:`ReadMetric` for the minutes
    before the first and after the last whole hour), ``readmetric`` counts every read;
    ``auto``: the rollup where it gives the same answer (:func:`rollup_answers`)."""
    if source == "rollup" or (source == "auto" and rollup_answers(f)):
        return _series_rows_rollup(user=user, f=f)
    return _series_rows_readmetric(user=user, f=f)


def rollup_answers(f: DashboardFilters) -> bool:
    """Does :class:`ReadHourly` answer ``f``'s series? Each UTC hour that lies in one local
    bucket (hour or day) with one offset is summed from the rollup; the others ("split":
    a local midnight or an offset change inside the hour) are counted from
    :class:`ReadMetric`. So the rollup answers while the split hours are at most a quarter of
    the range: every zone whose offset is a whole number of hours (DST changes included),
    and day buckets everywhere (Asia/Kolkata, +05:30: one split hour a day), but not hour
    buckets in Kolkata (every hour is split). Every filter (line, station, product type, the
    user's stations) is a column of the rollup."""
    hours = max(1.0, (f.date_to - f.date_from) / _HOUR)
    return len(_offsets(f)[1]) * 4 <= hours


_HOUR = dt.timedelta(hours=1)
_TICK = dt.timedelta(microseconds=1)


def _bucket_of(local: datetime, bucket: str) -> tuple:
    return (local.date(), local.hour) if bucket == "hour" else (local.date(),)


@functools.lru_cache(maxsize=20_000)
def _day_offsets(
    tz: dt.tzinfo, day: datetime, bucket: str
) -> tuple[tuple[tuple[datetime, dt.timedelta], ...], tuple[datetime, ...]]:
    """Over the UTC day starting at ``day``: the zone's offsets ((from, offset), ...: the
    first, then the first whole hour after each change) and the split hours (starts of the
    UTC hours whose start and end lie in different local ``bucket`` s or offsets). Cached per
    (zone, day, bucket): zoneinfo's answers do not change while we run."""
    offsets: list[tuple[datetime, dt.timedelta]] = []
    split: list[datetime] = []
    at = day
    for _hour in range(24):
        start, end = at.astimezone(tz), (at + _HOUR - _TICK).astimezone(tz)
        off = start.utcoffset()
        if off != end.utcoffset() or _bucket_of(start, bucket) != _bucket_of(end, bucket):
            split.append(at)
        elif not offsets or offsets[-1][1] != off:
            offsets.append((at, off))
        at += _HOUR
    return tuple(offsets), tuple(split)


def _offsets(f: DashboardFilters) -> tuple[list[tuple[datetime, dt.timedelta]], list[datetime]]:
    """The zone's offsets over ``f``'s range, ((from, offset), ...) from the first one's
    start (UTC; only the whole hours that are not split), and the split hours
    (:func:`_day_offsets`)."""
    tz = _tz(f)
    day = f.date_from.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    offsets: list[tuple[datetime, dt.timedelta]] = []
    split: list[datetime] = []
    while day < f.date_to:
        got, cut = _day_offsets(tz, day, f.bucket)
        offsets += [(at, off) for at, off in got if not offsets or off != offsets[-1][1]]
        split += [h for h in cut if f.date_from <= h and h + _HOUR <= f.date_to]
        day += dt.timedelta(days=1)
    return offsets, split


def _read_counts() -> dict[str, Any]:
    """The series' counts over :class:`ReadMetric` rows (the every-read path; the rollup
    path's part and split hours count the same in :func:`_range_counts`' SQL, and the tests
    compare both paths in five zones)."""
    return {
        "reads": Count("pk"),
        "accepted": Count("pk", filter=Q(auto_accepted=True)),
        "n_conf": Count("confidence"),
        "glare": Count("pk", filter=Q(glare=True)),
        "blur": Count("pk", filter=Q(blur=True)),
        "exposure": Count("pk", filter=Q(exposure=True)),
    }


def _per_bucket(qs: QuerySet[ReadMetric], f: DashboardFilters, **aggregates: Any) -> list[dict]:
    """``aggregates`` of ``qs`` per (local bucket ``b`` of ``created_at``, line or station)."""
    return list(
        qs.annotate(b=Trunc("created_at", f.bucket, tzinfo=_tz(f)))
        .values("b", _group_key(f))
        .annotate(**aggregates)
        .order_by()
    )


def _range_counts(
    qs: QuerySet[ReadMetric], f: DashboardFilters, ranges: list[tuple[datetime, datetime]]
) -> list[dict]:
    """The series' counts (:func:`_read_counts`) and ``conf_sum`` of ``qs``'s reads inside
    ``ranges`` (each ``[a, b)``, disjoint) per (local bucket ``b``, line or station): the range
    list joined to ``ReadMetric`` (``unnest`` of two arrays), one index-only scan of
    ``readmetric_created_cover_idx`` per range. The same as ``_per_bucket`` of ``qs`` filtered
    by an OR of the ranges, which at 365 split hours took 100 ms to plan and read its 40k rows
    from the heap (bench/NOTES-dash.md)."""
    if not ranges:
        return []
    query = qs.query  # filters on ReadMetric's own columns (scope, line, station, type, window)
    try:
        where, where_params = query.get_compiler(connection=connection).compile(query.where)
    except EmptyResultSet:
        return []
    except FullResultSet:
        where, where_params = "TRUE", []
    t, gk = ReadMetric._meta.db_table, _group_key(f)
    tz = _tz(f)
    sql = f"""
        SELECT date_trunc(%s, {t}.created_at AT TIME ZONE %s) AS b, {t}.{gk},
               count(*), count(*) FILTER (WHERE {t}.auto_accepted), count({t}.confidence),
               count(*) FILTER (WHERE {t}.glare), count(*) FILTER (WHERE {t}.blur),
               count(*) FILTER (WHERE {t}.exposure), sum({t}.confidence)
        FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS r(a, z)
        JOIN {t} ON {t}.created_at >= r.a AND {t}.created_at < r.z
        WHERE {where}
        GROUP BY 1, 2
    """
    params = [f.bucket, getattr(tz, "key", "UTC"), [a for a, _b in ranges], [b for _a, b in ranges]]
    names = ("reads", "accepted", "n_conf", "glare", "blur", "exposure", "conf_sum")
    with connection.cursor() as cur:
        cur.execute(sql, [*params, *where_params])
        return [
            {"b": b.replace(tzinfo=tz), gk: g, **dict(zip(names, rest, strict=True))}
            for b, g, *rest in cur.fetchall()
        ]


def _series_rows_readmetric(*, user: Any, f: DashboardFilters) -> list[dict]:
    """:func:`_series_rows` from :class:`ReadMetric` (one row per read)."""
    return _per_bucket(_metrics(user=user, f=f), f, **_read_counts(), mean_conf=Avg("confidence"))


def _series_rows_rollup(*, user: Any, f: DashboardFilters) -> list[dict]:
    """:func:`_series_rows` from :class:`ReadHourly` over the whole UTC hours of the range
    that lie in one local bucket (each local hour, or local day, sums its UTC hours), plus
    :class:`ReadMetric` for the part hours at either end and the split hours
    (:func:`_day_offsets`). The same answer as :func:`_series_rows_readmetric` in every
    zone; cheaper where :func:`rollup_answers`."""
    from ocrapp.models import ReadHourly

    first = f.date_from.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    if first < f.date_from:
        first += dt.timedelta(hours=1)
    last = f.date_to.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    parts: list[dict] = []
    offsets, split = _offsets(f)
    if first >= last or not offsets:  # less than one whole hour, or every hour split
        edges = [(f.date_from, f.date_to)]
    else:
        # the split hours (a local midnight or an offset change inside) are counted from
        # ReadMetric with the part hours at either end
        edges = [(f.date_from, first), (last, f.date_to), *((h, h + _HOUR) for h in split)]
        qs = _place_filtered(
            roles.scoped(ReadHourly.objects.all(), user).filter(hour__gte=first, hour__lt=last),
            f,
            line_field="station_line",
        )
        if split:
            qs = qs.exclude(hour__in=split)
        # the local hour (or day) of each UTC hour from the zone's offsets over the range
        # (each summed hour lies in one local bucket with one offset), cheaper than AT TIME
        # ZONE on every row; naive local times made aware as Django's Trunc does, so both
        # paths give the same keys
        shift, params = "%s", [offsets[-1][1]]
        if len(offsets) > 1:
            shift = "CASE " + "WHEN ocrapp_readhourly.hour < %s THEN %s " * (len(offsets) - 1)
            shift += "ELSE %s END"
            params = [v for (_a, o), (nxt, _b) in itertools.pairwise(offsets) for v in (nxt, o)]
            params.append(offsets[-1][1])
        local = RawSQL(
            f"date_trunc(%s, (ocrapp_readhourly.hour AT TIME ZONE 'UTC') + {shift})",
            [f.bucket, *params],
            output_field=DateTimeField(),
        )
        tz = _tz(f)
        rollup = (
            qs.annotate(b=local)
            .values("b", _group_key(f))
            .annotate(
                reads=Sum("reads"),
                accepted=Sum("auto_accepted"),
                conf_sum=Sum("confidence_sum"),
                n_conf=Sum("confidence_n"),
                glare=Sum("glare"),
                blur=Sum("blur"),
                exposure=Sum("exposure"),
            )
            .order_by()
        )
        with _parallel_friendly():
            parts += [{**r, "b": r["b"].replace(tzinfo=tz)} for r in rollup]
    parts += _range_counts(_metrics(user=user, f=f), f, [(a, b) for a, b in edges if a < b])
    gk = _group_key(f)
    merged: dict[tuple, dict] = {}
    for r in parts:
        m = merged.get((r["b"], r[gk]))
        if m is None:
            merged[(r["b"], r[gk])] = {**r, "conf_sum": r["conf_sum"] or 0.0}
            continue
        for name in ("reads", "accepted", "n_conf", "glare", "blur", "exposure"):
            m[name] += r[name]
        m["conf_sum"] += r["conf_sum"] or 0.0
    out = []
    for m in merged.values():
        conf_sum = m.pop("conf_sum")
        m["mean_conf"] = conf_sum / m["n_conf"] if m["n_conf"] else None
        out.append(m)
    return out


class _Epoch(Func):
    """Seconds since 1970 as float8 (``EXTRACT(EPOCH ...)`` is a numeric since PostgreSQL 14)."""

    template = "date_part('epoch', %(expressions)s)"
    output_field = FloatField()


class _Median(Aggregate):
    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


@_analytic()
def backlog(*, user: Any, f: DashboardFilters, now: datetime | None = None) -> dict:
    """The reads waiting for review now (``ReadMetric.waiting``, kept by ``services`` from the
    ``selectors`` review backlog rule: the latest read of a capture that needs review with a
    field not yet signed, not withdrawn), inside ``user``'s scope and the line / station /
    product type filters (not the time range: what waits is waiting now): per line or station
    ``waiting``, ``oldest_s`` and ``median_s`` (seconds since the photo), and per bucket of
    the range how many of that bucket's reads still wait."""
    now = now or timezone.now()
    qs = _metrics(user=user, f=f, window=False).filter(waiting=True)
    key = _group_key(f)
    groups = (
        qs.values(key)
        .annotate(
            # COUNT(*) and date_part (float8, where EXTRACT is numeric): the partial index
            # readmetric_waiting_line_idx answers it alone, without sorting numerics
            n=Count("*"),
            oldest=Min("created_at"),
            median_epoch=_Median(_Epoch("created_at")),
        )
        .order_by()
    )
    per_group = {}
    for r in groups:
        median_at = datetime.fromtimestamp(r["median_epoch"], tz=dt.UTC)
        per_group[r[key]] = {
            "waiting": r["n"],
            "oldest_s": max(0, round((now - r["oldest"]).total_seconds())),
            "median_s": max(0, round((now - median_at).total_seconds())),
        }
    by_bucket = (
        qs.filter(created_at__gte=f.date_from, created_at__lt=f.date_to)
        .annotate(b=Trunc("created_at", f.bucket, tzinfo=_tz(f)))
        .values("b", key)
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {"groups": per_group, "buckets": {(r["b"], r[key]): r["n"] for r in by_bucket}}


@dataclass
class Series:
    """One line's (or station's) values per bucket (``None`` where the bucket has no read)."""

    key: Any
    label: str
    reads: list[int] = field(default_factory=list)
    accept_rate: list[float | None] = field(default_factory=list)
    confidence: list[float | None] = field(default_factory=list)
    glare_share: list[float | None] = field(default_factory=list)
    blur_share: list[float | None] = field(default_factory=list)
    exposure_share: list[float | None] = field(default_factory=list)
    alarms: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    backlog: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _labels(f: DashboardFilters, keys: set) -> dict[Any, str]:
    if f.group == "line":
        return {k: str(k) for k in keys}
    from ocrapp.models import Station

    return {s.pk: str(s) for s in Station.objects.filter(pk__in=[k for k in keys if k])}


def dashboard(*, user: Any, f: DashboardFilters, now: datetime | None = None) -> dict:
    """Everything the dashboard draws for ``user`` and ``f``: ``buckets`` (starts, in the zone),
    ``series`` (one :class:`Series` per line or station, each list aligned with ``buckets``),
    and the ``drift`` report (:func:`drift_report`)."""
    rows = _series_rows(user=user, f=f)
    alarms = alarm_counts(user=user, f=f)
    waiting = backlog(user=user, f=f, now=now)
    starts = bucket_starts(f=f)
    index = {b: i for i, b in enumerate(starts)}
    gk = _group_key(f)
    keys = {r[gk] for r in rows} | set(waiting["groups"]) | {k for _, k in alarms}
    labels = _labels(f, keys)
    series = {
        k: Series(
            key=k,
            label=labels.get(k, str(k)),
            reads=[0] * len(starts),
            accept_rate=[None] * len(starts),
            confidence=[None] * len(starts),
            glare_share=[None] * len(starts),
            blur_share=[None] * len(starts),
            exposure_share=[None] * len(starts),
            alarms=[0] * len(starts),
            waiting=[0] * len(starts),
        )  # fmt: skip
        for k in keys
    }
    sums: dict[Any, dict[str, float]] = {}
    for r in rows:
        i = index.get(r["b"])
        s = series[r[gk]]
        t = sums.setdefault(
            r[gk],
            dict.fromkeys(
                ("reads", "accepted", "conf", "n_conf", "glare", "blur", "exposure"), 0.0
            ),
        )
        n = r["reads"]
        t["reads"] += n
        t["accepted"] += r["accepted"]
        t["conf"] += (r["mean_conf"] or 0.0) * r["n_conf"]
        t["n_conf"] += r["n_conf"]
        for name in ("glare", "blur", "exposure"):
            t[name] += r[name]
        if i is None:
            continue
        s.reads[i] = n
        s.accept_rate[i] = round(r["accepted"] / n, 4)
        s.confidence[i] = None if r["mean_conf"] is None else round(r["mean_conf"], 4)
        s.glare_share[i] = round(r["glare"] / n, 4)
        s.blur_share[i] = round(r["blur"] / n, 4)
        s.exposure_share[i] = round(r["exposure"] / n, 4)
    alarm_total: dict[Any, int] = {}
    for (b, k), n in alarms.items():
        alarm_total[k] = alarm_total.get(k, 0) + n
        if b in index:
            series[k].alarms[index[b]] = n
    for (b, k), n in waiting["buckets"].items():
        if b in index and k in series:
            series[k].waiting[index[b]] = n
    for k, s in series.items():
        t = sums.get(k, {})
        n = int(t.get("reads", 0))
        s.totals = {
            "reads": n,
            "accept_rate": round(t["accepted"] / n, 4) if n else None,
            "confidence": round(t["conf"] / t["n_conf"], 4) if t.get("n_conf") else None,
            "glare_share": round(t["glare"] / n, 4) if n else None,
            "blur_share": round(t["blur"] / n, 4) if n else None,
            "exposure_share": round(t["exposure"] / n, 4) if n else None,
            "alarms": alarm_total.get(k, 0),
        }
        s.backlog = waiting["groups"].get(k, {"waiting": 0, "oldest_s": None, "median_s": None})
    ordered = sorted(series.values(), key=lambda s: s.label)
    return {
        "buckets": starts,
        "series": ordered,
        "drift": drift_report(user=user, f=f),
    }


# --- drift --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatShift:
    stat: str
    label: str
    baseline_median: float | None
    recent_median: float | None
    scale: float | None  # max(1.4826 * MAD, floor) of the baseline
    shift: float | None  # (recent - baseline) / scale; None without enough reads
    baseline_reads: int
    recent_reads: int
    drifting: bool

    def to_dict(self) -> dict:
        return {
            "stat": self.stat,
            "label": str(self.label),
            "baseline_median": _r(self.baseline_median),
            "recent_median": _r(self.recent_median),
            "scale": _r(self.scale),
            "shift": None if self.shift is None else round(self.shift, 2),
            "baseline_reads": self.baseline_reads,
            "recent_reads": self.recent_reads,
            "drifting": self.drifting,
        }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 5)


@dataclass(frozen=True)
class Drift:
    """The drift check of one line (``station`` None) or one station of a line."""

    line: str
    station: int | None
    station_label: str
    baseline_from: datetime
    recent_from: datetime
    recent_to: datetime
    stats: tuple[StatShift, ...]

    @property
    def drifting(self) -> bool:
        return any(s.drifting for s in self.stats)

    @property
    def moved(self) -> list[StatShift]:
        """The drifting statistics, the largest shift first."""
        return sorted((s for s in self.stats if s.drifting), key=lambda s: -abs(s.shift or 0))

    def to_dict(self) -> dict:
        return {
            "line": self.line,
            "station": self.station,
            "station_label": self.station_label,
            "drifting": self.drifting,
            "baseline": {"from": self.baseline_from, "to": self.recent_from},
            "recent": {"from": self.recent_from, "to": self.recent_to},
            "moved": [s.stat for s in self.moved],
            "stats": [s.to_dict() for s in self.stats],
        }


def drift_windows(*, end: datetime) -> tuple[datetime, datetime, datetime]:
    """(baseline start, recent start, end): the recent window is the ``DRIFT_RECENT_HOURS``
    before ``end``, the baseline the ``DRIFT_BASELINE_DAYS`` before that."""
    recent_from = end - dt.timedelta(hours=settings.DRIFT_RECENT_HOURS)
    return recent_from - dt.timedelta(days=settings.DRIFT_BASELINE_DAYS), recent_from, end


def _drift_sql(group_cols: str, where: str) -> str:
    """Medians of the baseline and the recent window and the baseline's MAD of every statistic,
    per group, in one statement (three scans of the window's index range)."""
    meds = ", ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {e}) AS {name}, count({e}) AS n_{name}"
        for name, e in ((n, x.format(t="")) for n, x, _, _ in DRIFT_STATS)
    )
    mads = ", ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY abs({x.format(t='b.')} - m.{name})) AS {name}"
        for name, x, _, _ in DRIFT_STATS
    )
    join = " AND ".join(f"b.{c} = m.{c}" for c in group_cols.split(", "))
    return f"""
        WITH win AS (
            SELECT {group_cols}, created_at, {DRIFT_COLUMNS} FROM ocrapp_readmetric
            WHERE created_at >= %(base_from)s AND created_at < %(end)s {where}
        ),
        base AS (SELECT * FROM win WHERE created_at < %(recent_from)s),
        m AS (SELECT {group_cols}, {meds} FROM base GROUP BY {group_cols}),
        mad AS (
            SELECT {", ".join("b." + c for c in group_cols.split(", "))}, {mads}
            FROM base b JOIN m ON {join} GROUP BY {", ".join("b." + c for c in group_cols.split(", "))}
        ),
        r AS (SELECT {group_cols}, {meds} FROM win WHERE created_at >= %(recent_from)s
              GROUP BY {group_cols})
        SELECT 'm' AS part, row_to_json(m) FROM m
        UNION ALL SELECT 'mad', row_to_json(mad) FROM mad
        UNION ALL SELECT 'r', row_to_json(r) FROM r
    """


def drift_report(
    *, user: Any, f: DashboardFilters, level: str | None = None, end: datetime | None = None
) -> list[Drift]:
    """The drift check of every line (``level`` ``line``) or station (``station``) ``user``
    may see, within the line / station / product type filters, for the windows ending at
    ``end`` (default: the filter's ``to``). Lines with drift first."""
    level = level or f.group
    base_from, recent_from, end = drift_windows(end=end or f.date_to)
    params: dict[str, Any] = {"base_from": base_from, "recent_from": recent_from, "end": end}
    where = ""
    scope = roles.capture_scope(user)
    if scope is not None:
        params["scope"] = sorted(roles.station_ids(user))
        where += " AND station_id = ANY(%(scope)s)"
    if f.line:
        params["line"] = f.line
        where += " AND station_line = %(line)s"
    if f.station is not None:
        params["station"] = f.station
        where += " AND station_id = %(station)s"
    if f.product_type is not None:
        params["product_type"] = f.product_type
        where += " AND product_type_id = %(product_type)s"
    group_cols = "station_line" if level == "line" else "station_line, station_id"
    with _analytic(), connection.cursor() as cur:
        cur.execute(_drift_sql(group_cols, where), params)
        parts = cur.fetchall()
    found: dict[tuple, dict[str, dict]] = {}
    for part, row in parts:
        key = (row["station_line"], row.get("station_id"))
        found.setdefault(key, {})[part] = row
    labels = _labels(DashboardFilters(base_from, end, f.tz, group="station"),
                     {k[1] for k in found})  # fmt: skip
    min_reads, threshold = settings.DRIFT_MIN_READS, settings.DRIFT_SHIFT
    out = []
    for (line, station), got in found.items():
        m, mad, r = got.get("m", {}), got.get("mad", {}), got.get("r", {})
        stats = []
        for name, _expr, floor, label in DRIFT_STATS:
            nb, nr = int(m.get(f"n_{name}") or 0), int(r.get(f"n_{name}") or 0)
            bm, rm, md = m.get(name), r.get(name), mad.get(name)
            scale = shift = None
            if bm is not None and md is not None:
                scale = max(1.4826 * md, floor)
            if scale is not None and rm is not None and nb >= min_reads and nr >= min_reads:
                shift = (rm - bm) / scale
            stats.append(
                StatShift(
                    name,
                    label,
                    bm,
                    rm,
                    scale,
                    shift,
                    nb,
                    nr,
                    shift is not None and abs(shift) >= threshold,
                )  # fmt: skip
            )
        out.append(
            Drift(line, station, labels.get(station, ""), base_from, recent_from, end, tuple(stats))
        )
    out.sort(key=lambda d: (not d.drifting, d.line, d.station_label))
    return out


# --- the JSON form (API and the page's data block) -------------------------------------------


def _iso(value: datetime, tz: dt.tzinfo) -> str:
    return value.astimezone(tz).isoformat()


def filters_json(f: DashboardFilters) -> dict:
    tz = _tz(f)
    return {
        "from": _iso(f.date_from, tz),
        "to": _iso(f.date_to, tz),
        "tz": str(getattr(tz, "key", f.tz) or f.tz),
        "line": f.line,
        "station": f.station,
        "product_type": f.product_type,
        "bucket": f.bucket,
        "group": f.group,
    }


def drift_json(drifts: list[Drift], f: DashboardFilters) -> list[dict]:
    tz = _tz(f)
    out = []
    for d in drifts:
        row = d.to_dict()
        for window in ("baseline", "recent"):
            row[window] = {k: _iso(v, tz) for k, v in row[window].items()}
        out.append(row)
    return out


def dashboard_json(data: dict, f: DashboardFilters) -> dict:
    """:func:`dashboard`'s answer as JSON (times ISO 8601 in the filter's zone)."""
    tz = _tz(f)
    return {
        "filters": filters_json(f),
        "buckets": [_iso(b, tz) for b in data["buckets"]],
        "series": [s.to_dict() for s in data["series"]],
        "drift": drift_json(data["drift"], f),
        "drift_settings": {
            "recent_hours": settings.DRIFT_RECENT_HOURS,
            "baseline_days": settings.DRIFT_BASELINE_DAYS,
            "min_reads": settings.DRIFT_MIN_READS,
            "shift": settings.DRIFT_SHIFT,
        },
    }
