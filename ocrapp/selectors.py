"""Reads: queries used by the API, the HTML views and exports. Keyword-only, no writes.

Every read of captures (and of their reads, search hits and history) takes the ``user`` who
asks and is limited to what that user may see (``ocrapp.roles.scoped``): a capture outside
the scope is "not found", search hits and history count only the captures in it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.postgres.search import TrigramSimilarity
from django.core import signing
from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    FloatField,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce, Collate, Concat, Greatest, Reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from ocrapp import roles, tokens
from ocrapp.errors import ApplicationError, NotFoundError
from ocrapp.models import (
    FIELD_REVISED_ACTION,
    SIGNATURE_FAILED_ACTION,
    Alarm,
    ApiToken,
    AuditEvent,
    Capture,
    Field,
    FieldRevision,
    ProductType,
    Read,
    SerialRecord,
    Station,
    TextLine,
)
from workers.fieldspec import (
    TRACED_FIELDS,
    FieldCheck,
    SchemaError,
    identifier_key,
    lookalike_key,
    resolve_schema,
    spec_for,
    validate_field,
)
from workers.fieldspec.review import REVIEW_CODES

FINAL_STATUSES = (Capture.Status.DONE, Capture.Status.FAILED)
SIMILARITY_THRESHOLD = 0.3
# "similar" (trigram nearest neighbours) runs for queries of at least this many characters
# (normalised): a shorter fragment (``SN``, ``000``) has 3-4 trigrams and can reach the
# threshold only against values of a few characters; exact, prefix and look-alike still run.
SIMILAR_MIN_LENGTH = 4
# "similar" ranks the values of two bounded ranges of index rows by trigram similarity: those
# sharing the longest prefix of the query's look-alike key that at most this many rows share,
# and those sharing the longest such suffix (``serial_skeleton_rev_idx`` on the reversed key).
# A misread, a typo, a missing or an extra character leaves a prefix or a suffix intact, so
# the value is in one of the ranges; a nearest-neighbour scan of the trigram GiST index, the
# peer, visits most of the index at 3M rows (bench/NOTES-search.md).
SIMILAR_RANGE_ROWS = 2_000


def _capture_rows() -> QuerySet[Capture]:
    return Capture.objects.select_related("station", "product_type", "uploaded_by")


class _Fetched(QuerySet):
    """The rows of one relation of one object, fetched for a whole page by
    :func:`_fetch_reads`: iterating, ``len()``, ``bool()``, indexing, ``count()`` and
    ``exists()`` use them; whatever builds a new query (``filter``, ``order_by``, ``values``,
    ``aggregate``, ...) starts from the relation's own queryset, as Django's prefetch cache
    does. Cheaper than ``prefetch_related``, which clones a queryset per object (and leaves
    each clone to the garbage collector): a third of a list page's time at 1M reads."""

    def __init__(self, rows: list, *, owner: Any, fk: str, query: Any) -> None:
        super().__init__(model=query.model, query=query)  # the shared template, never run
        self._result_cache = rows
        self._prefetch_done = True
        self._owner, self._fk = owner, fk

    def _relation(self) -> QuerySet:
        qs = self.model._default_manager.filter(**{self._fk: self._owner})
        return qs.order_by(*self.query.order_by) if self.query.order_by else qs

    def _chain(self) -> QuerySet:
        return self._relation()._chain()

    def aggregate(self, *args: Any, **kwargs: Any) -> dict:
        return self._relation().aggregate(*args, **kwargs)

    def iterator(self, chunk_size: int | None = None):
        yield from self._result_cache


# each fetched relation: the foreign key back to its owner, and its order (a query never run)
_FETCHED = {
    "reads": ("capture", Read.objects.order_by("-run").query),  # newest run first
    "lines": ("read", TextLine.objects.all().query),  # Meta: by order
    "fields": ("read", Field.objects.all().query),  # Meta: by id
    "revisions": ("field", FieldRevision.objects.order_by("seq").query),
}


def _fetch_reads(captures: list[Capture]) -> list[Capture]:
    """``captures`` with what the pages and the API show of each, in four queries: its reads
    (newest first), their lines, fields (each with its line) and revisions, attached as a
    prefetch would attach them (``capture.reads.all()``, ``read.fields.all()``, ``field.line``,
    ``field.revisions.all()``, and the way back: ``read.capture``, ...)."""

    def attach(owner: Any, name: str, rows: list) -> None:
        fk, query = _FETCHED[name]
        cache = owner.__dict__.setdefault("_prefetched_objects_cache", {})
        cache[name] = _Fetched(rows, owner=owner, fk=fk, query=query)

    def group(rows: list, key: str) -> dict[Any, list]:
        out: dict[Any, list] = {}
        for row in rows:
            out.setdefault(getattr(row, key), []).append(row)
        return out

    reads = list(Read.objects.filter(capture_id__in=[c.pk for c in captures]).order_by("-run"))
    read_ids = [r.pk for r in reads]
    lines = group(list(TextLine.objects.filter(read_id__in=read_ids)), "read_id")
    fields = list(Field.objects.filter(read_id__in=read_ids))
    revisions = group(
        list(FieldRevision.objects.filter(field_id__in=[f.pk for f in fields]).order_by("seq")),
        "field_id",
    )
    fields_of = group(fields, "read_id")
    reads_of = group(reads, "capture_id")
    for capture in captures:
        own = reads_of.get(capture.pk, [])
        attach(capture, "reads", own)
        for read in own:
            Read.capture.field.set_cached_value(read, capture)
            read_lines = lines.get(read.pk, [])
            attach(read, "lines", read_lines)
            by_id = {ln.pk: ln for ln in read_lines}
            for ln in read_lines:
                TextLine.read.field.set_cached_value(ln, read)
            read_fields = fields_of.get(read.pk, [])
            attach(read, "fields", read_fields)
            for f in read_fields:
                Field.read.field.set_cached_value(f, read)
                if f.line_id is None or f.line_id in by_id:
                    Field.line.field.set_cached_value(f, by_id.get(f.line_id))
                revs = revisions.get(f.pk, [])
                for rev in revs:
                    FieldRevision.field.field.set_cached_value(rev, f)
                attach(f, "revisions", revs)
    return captures


def _no_capture(capture_id: object) -> NotFoundError:
    return NotFoundError("not_found", _("No capture %(id)s.") % {"id": capture_id})


def capture_get(*, capture_id: uuid.UUID | str, user) -> Capture:
    """The capture, if ``user`` may see it; else (or when there is none) NotFoundError."""
    try:
        uuid.UUID(str(capture_id))
    except ValueError:
        raise _no_capture(capture_id) from None
    capture = roles.scoped(_capture_rows(), user).filter(pk=capture_id).first()
    if capture is None:
        raise _no_capture(capture_id)
    return _fetch_reads([capture])[0]


def capture_just_created(*, capture: Capture) -> Capture:
    """The capture ``services.capture_create`` just made, ready for the API's output: it has no
    read yet and its creator may see it (the upload checked that), so no scoped re-fetch."""
    prefetch_related_objects([capture], "reads")
    return capture


def capture_get_unscoped(*, capture_id: uuid.UUID | str) -> Capture | None:
    """The capture with its reads prefetched, for system code that has no user (webhook
    payloads: an endpoint is set up by a quality manager or an admin, who see every capture)."""
    capture = _capture_rows().filter(pk=capture_id).first()
    return _fetch_reads([capture])[0] if capture is not None else None


def capture_latest_read(*, capture: Capture) -> Read | None:
    reads = list(capture.reads.all())  # prefetched, newest run first
    return reads[0] if reads else None


def product_type_list() -> QuerySet[ProductType]:
    """Product types that take new captures (inactive ones keep their history only)."""
    return ProductType.objects.filter(active=True)


_MAX_ID = 2**63 - 1  # bigint


def as_id(ref: str | int) -> int | None:
    """``ref`` as a primary key when it is one: ASCII digits only (``"²"`` and ``"٣"`` pass
    ``str.isdigit`` but are no id) within PostgreSQL's bigint; else None."""
    text = str(ref).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    value = int(text)
    return value if 0 < value <= _MAX_ID else None


def product_type_find(*, ref: str | int) -> ProductType:
    ref = str(ref).strip()
    pk = as_id(ref)
    pt = ProductType.objects.filter(Q(name__iexact=ref) | Q(pk=pk) if pk else Q(name__iexact=ref))
    pt = pt.first()
    if pt is None:
        raise NotFoundError(
            "unknown_product_type",
            _("Unknown product type %(ref)s.") % {"ref": repr(ref)},
            status_code=400,
        )
    return pt


def station_list(*, user) -> QuerySet[Station]:
    """The active stations ``user`` may upload to (``roles.station_scope``)."""
    qs = Station.objects.filter(active=True)
    q = roles.station_scope(user)
    return qs if q is None else qs.filter(q)


def station_find(*, ref: str | int) -> Station:
    ref = str(ref).strip()
    station = None
    pk = as_id(ref)
    if pk is not None:
        station = Station.objects.filter(pk=pk).first()
    elif "/" in ref:
        line, name = (part.strip() for part in ref.split("/", 1))
        station = Station.objects.filter(line=line, name=name).first()
    if station is None:
        raise NotFoundError(
            "unknown_station", _("Unknown station %(ref)s.") % {"ref": repr(ref)}, status_code=400
        )
    return station


# --- search and lists: filters, keyset pages, totals (pages and API share them) -------------

SEARCH_MAX_LIMIT = 200
TOTAL_CAP = 1_000  # totals are exact up to this many, estimated (EXPLAIN) beyond it
REVIEW_STATES = ("needs_review", "reviewed", "accepted")
CAPTURE_SORTS = ("newest", "oldest")
# ``alarm`` filter: captures with an active (open or acknowledged) alarm of this kind; ``any``:
# of any kind; ``mislabel``: the former name of ``mismatch`` (a code contradicts the print).
ALARMS = ("any", *Alarm.Kind.values, "mislabel")
MATCH_KINDS = ("exact", "prefix", "lookalike", "similar")
_CURSOR_SALT = "ocrapp.selectors.cursor"


def _bad(name: str, message: str) -> ApplicationError:
    return ApplicationError("invalid", message, details={name: [message]})


def param_text(params: Mapping[str, str], name: str, *, max_length: int = 128) -> str:
    """One query parameter, stripped; 400 for a NUL byte or a value over ``max_length``."""
    raw = params.get(name) or ""
    if "\x00" in raw:
        raise _bad(name, _("%(name)s must not contain NUL characters.") % {"name": name})
    raw = raw.strip()
    if len(raw) > max_length:
        raise _bad(
            name,
            _("%(name)s must be at most %(max)s characters.") % {"name": name, "max": max_length},
        )
    return raw


def time_zone_find(*, name: str) -> zoneinfo.ZoneInfo | dt.tzinfo:
    """The IANA time zone ``name`` (``Asia/Seoul``); "" is the server's ``TIME_ZONE``."""
    if not name:
        return timezone.get_default_timezone()
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise _bad("tz", _("Unknown time zone %(tz)s.") % {"tz": repr(name)}) from None


def _parse_when(raw: str, name: str, tz: dt.tzinfo, *, end: bool) -> datetime | None:
    """``YYYY-MM-DD`` (a whole day: ``to`` includes it) or ``YYYY-MM-DDTHH:MM[:SS]``, in ``tz``."""
    if not raw:
        return None
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            start = datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time())
            return start.replace(tzinfo=tz)
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(
            name,
            _("%(name)s must be a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM).")
            % {"name": name},
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=tz)


def _parse_fraction(raw: str, name: str) -> float | None:
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise _bad(name, _("%(name)s must be a number from 0 to 1.") % {"name": name})
    return value


def _choice(raw: str, name: str, choices: tuple[str, ...]) -> str:
    if raw and raw not in choices:
        raise _bad(
            name,
            _("%(name)s must be one of %(choices)s.")
            % {"name": name, "choices": ", ".join(choices)},
        )
    return raw


@dataclass(frozen=True)
class SearchFilters:
    """The filters of serial search and the capture list (all optional; the URL carries them):
    ``q`` a serial or a part of it, ``date_from`` / ``date_to`` (aware; ``to`` exclusive),
    ``line`` (at capture time), ``station`` / ``product_type`` ids, capture ``status``,
    ``review`` (:data:`REVIEW_STATES`), ``conf_min`` / ``conf_max`` (0..1: the field's
    confidence in search, the latest read's weakest field in the capture list), ``alarm``
    (:data:`ALARMS`), ``field`` (a traced field name, search only), ``client_ref`` and
    ``sort`` (:data:`CAPTURE_SORTS`, capture list only), ``tz`` (the zone the dates were given
    in, shown with them)."""

    q: str = ""
    date_from: datetime | None = None
    date_to: datetime | None = None
    line: str = ""
    station: int | None = None
    product_type: int | None = None
    status: str = ""
    review: str = ""
    conf_min: float | None = None
    conf_max: float | None = None
    alarm: str = ""
    field: str = ""
    client_ref: str = ""
    sort: str = "newest"
    tz: str = ""
    match: tuple[str, ...] = ()  # search kinds to run (MATCH_KINDS); () = all of them

    @property
    def active(self) -> bool:
        """Whether any filter besides ``q``/``sort``/``tz`` is set."""
        return any(
            v not in (None, "")
            for v in (
                self.date_from,
                self.date_to,
                self.line,
                self.station,
                self.product_type,
                self.status,
                self.review,
                self.conf_min,
                self.conf_max,
                self.alarm,
                self.field,
                self.client_ref,
            )
        )


def search_filters_parse(*, params: Mapping[str, str], default_tz: str = "") -> SearchFilters:
    """The filters of a query string (API and pages): ``q``, ``from``, ``to``, ``tz``, ``line``,
    ``station`` (id or ``line/name``), ``product_type`` (id or name), ``status``, ``review``,
    ``conf_min``, ``conf_max``, ``alarm``, ``field``, ``client_ref``, ``sort``. Bad values are
    ``ApplicationError`` ``invalid`` (400) naming the parameter; ``tz`` falls back to
    ``default_tz`` (the browser's zone on pages), then the server's ``TIME_ZONE``."""
    tz_name = param_text(params, "tz", max_length=64) or default_tz
    tz = time_zone_find(name=tz_name)
    station_ref = param_text(params, "station")
    pt_ref = param_text(params, "product_type")
    status = param_text(params, "status").upper()
    field_name = param_text(params, "field", max_length=64)
    return SearchFilters(
        q=param_text(params, "q"),
        date_from=_parse_when(param_text(params, "from", max_length=32), "from", tz, end=False),
        date_to=_parse_when(param_text(params, "to", max_length=32), "to", tz, end=True),
        line=param_text(params, "line", max_length=100),
        station=station_find(ref=station_ref).pk if station_ref else None,
        product_type=product_type_find(ref=pt_ref).pk if pt_ref else None,
        status=_choice(status, "status", tuple(Capture.Status.values)),
        review=_choice(param_text(params, "review"), "review", REVIEW_STATES),
        conf_min=_parse_fraction(param_text(params, "conf_min", max_length=16), "conf_min"),
        conf_max=_parse_fraction(param_text(params, "conf_max", max_length=16), "conf_max"),
        alarm=_choice(param_text(params, "alarm"), "alarm", ALARMS),
        field=_choice(field_name, "field", TRACED_FIELDS),
        client_ref=param_text(params, "client_ref"),
        sort=_choice(param_text(params, "sort"), "sort", CAPTURE_SORTS) or "newest",
        tz=tz_name,
        match=tuple(
            _choice(kind.strip(), "match", MATCH_KINDS)
            for kind in param_text(params, "match", max_length=64).split(",")
            if kind.strip()
        ),
    )


def search_limit_parse(*, params: Mapping[str, str], default: int = 50) -> int:
    raw = param_text(params, "limit", max_length=8)
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= SEARCH_MAX_LIMIT:
        raise _bad(
            "limit",
            _("limit must be a whole number from 1 to %(max)s.") % {"max": SEARCH_MAX_LIMIT},
        )
    return int(raw)


def _cursor_dump(kind: str, key: list) -> str:
    return signing.dumps({"k": kind, "v": key}, salt=_CURSOR_SALT, compress=True)


def _cursor_load(token: str, kind: str) -> list | None:
    """The key of an opaque cursor token of ``kind``; None for no token; 400 for a bad one."""
    if not token:
        return None
    if "\x00" in token or len(token) > 512:
        raise _bad("cursor", _("The cursor is not valid; start again from the first page."))
    try:
        data = signing.loads(token, salt=_CURSOR_SALT)
    except signing.BadSignature:
        data = None
    if not isinstance(data, dict) or data.get("k") != kind or not isinstance(data.get("v"), list):
        raise _bad("cursor", _("The cursor is not valid; start again from the first page."))
    return data["v"]


@dataclass(frozen=True)
class Page:
    """One page of results: ``items``, the opaque ``next_cursor`` ("" on the last page),
    ``total`` and whether it is exact (``total_exact``; else a planner estimate, above
    :data:`TOTAL_CAP`)."""

    items: list
    next_cursor: str
    total: int
    total_exact: bool


def _capped_total(qs: QuerySet) -> tuple[int, bool]:
    """The number of rows of ``qs``: exact up to :data:`TOTAL_CAP`, else the planner's
    estimate (EXPLAIN, at least the cap)."""
    n = qs.order_by()[: TOTAL_CAP + 1].count()
    if n <= TOTAL_CAP:
        return n, True
    sql, sql_params = qs.order_by().query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (FORMAT JSON) " + sql, sql_params)
        plan = cur.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    rows = int(plan[0]["Plan"].get("Plan Rows", 0))
    return max(rows, TOTAL_CAP + 1), False


def _latest_reads(**outer: Any) -> QuerySet[Read]:
    """The latest read of the capture named by ``outer`` (lookups to ``OuterRef``s)."""
    return Read.objects.filter(**outer).filter(_latest_read_q())


def _capture_filters(qs: QuerySet[Capture], f: SearchFilters) -> QuerySet[Capture]:
    if f.date_from is not None:
        qs = qs.filter(created_at__gte=f.date_from)
    if f.date_to is not None:
        qs = qs.filter(created_at__lt=f.date_to)
    if f.line:
        qs = qs.filter(station_line=f.line)
    if f.station is not None:
        qs = qs.filter(station_id=f.station)
    if f.product_type is not None:
        qs = qs.filter(product_type_id=f.product_type)
    if f.status:
        qs = qs.filter(status=f.status)
    if f.client_ref:
        qs = qs.filter(client_ref=f.client_ref)
    # review state and weakest confidence of the latest read: kept on the capture (indexed)
    if f.review:
        qs = qs.filter(review_state=f.review)
    if f.alarm:
        qs = qs.filter(Exists(_active_alarms(f.alarm).filter(capture_id=OuterRef("pk"))))
    if f.conf_min is not None:
        qs = qs.filter(weakest_confidence__gte=f.conf_min)
    if f.conf_max is not None:
        qs = qs.filter(weakest_confidence__lte=f.conf_max)
    if f.q:
        norm, skel = identifier_key(f.q)[:128], lookalike_key(f.q)[:128]
        if norm:
            rows = SerialRecord.objects.filter(capture_id=OuterRef("pk")).filter(
                Q(value__startswith=norm) | Q(skeleton=skel)
            )
            qs = qs.filter(Exists(rows))
    return qs


def capture_page(
    *, user: Any, filters: SearchFilters | None = None, cursor: str = "", limit: int = 50
) -> Page:
    """Captures ``user`` may see, filtered, newest (or oldest, ``sort``) first, one keyset page
    (``(created_at, id)`` after the cursor: rows inserted meanwhile never shift a later page;
    the total is the first page's, carried by the cursor).
    ``filters.q`` keeps captures with a traced value that is, starts with or looks like it."""
    f = filters or SearchFilters()
    qs = _capture_filters(roles.scoped(Capture.objects.all(), user), f)
    newest = f.sort != "oldest"
    key = _cursor_load(cursor, "captures:" + f.sort)
    page_qs = qs
    if key is not None:
        try:
            at, last_id = datetime.fromisoformat(key[0]), uuid.UUID(key[1])
        except (IndexError, TypeError, ValueError):
            raise _bad(
                "cursor", _("The cursor is not valid; start again from the first page.")
            ) from None
        if newest:
            page_qs = qs.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=last_id))
        else:
            page_qs = qs.filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=last_id))
    order = ("-created_at", "-id") if newest else ("created_at", "id")
    ids = list(page_qs.order_by(*order).values_list("id", flat=True)[: limit + 1])
    more = len(ids) > limit
    ids = ids[:limit]
    by_id = {c.pk: c for c in _capture_rows().filter(pk__in=ids)}
    items = _fetch_reads([by_id[i] for i in ids if i in by_id])
    # the total is counted on the first page and carried by the cursor (later pages show the
    # total as of the first one: the count is a third of a filtered page's time at 1M reads)
    carried = key[2:4] if key is not None and len(key) >= 4 else None
    if carried is not None and isinstance(carried[0], int) and isinstance(carried[1], bool):
        total, exact = carried[0], carried[1]
    else:
        total, exact = _capped_total(qs)
    next_cursor = ""
    if more and items:
        last = items[-1]
        next_cursor = _cursor_dump(
            "captures:" + f.sort, [last.created_at.isoformat(), str(last.pk), total, exact]
        )
    return Page(items=items, next_cursor=next_cursor, total=total, total_exact=exact)


def capture_export_qs(*, user: Any, filters: SearchFilters) -> QuerySet[Capture]:
    """The captures of the capture list for ``filters`` in ``user``'s scope, unordered and
    unsliced: what an export reads, in keyset chunks (``ocrapp.exports``)."""
    return _capture_filters(roles.scoped(Capture.objects.all(), user), filters)


def serial_export_qs(*, user: Any, filters: SearchFilters) -> QuerySet[SerialRecord]:
    """The index rows the serial search for ``filters.q`` finds (the kinds of
    ``filters.match``, default all: exact, prefix, look-alike, similar as the search finds
    it), filtered and in ``user``'s scope, unordered: what a search export reads."""
    norm, skel = identifier_key(filters.q)[:128], lookalike_key(filters.q)[:128]
    base = _search_base(user, filters)
    if not norm:
        return base.none()
    run = set(filters.match or MATCH_KINDS)
    q = Q(pk__in=[])
    if "exact" in run:
        q |= Q(value=norm)
    if "prefix" in run:
        q |= Q(value__startswith=norm)
    if "lookalike" in run:
        q |= Q(skeleton=skel)
    if "similar" in run and len(norm) >= SIMILAR_MIN_LENGTH:  # the values the search shows
        similar = [value for _sim, value in _similar_values(base, norm, skel)]
        if similar:
            q |= Q(value__in=similar)
    return base.filter(q)


def capture_list(*, user, limit: int = 50, station: Station | None = None) -> list[Capture]:
    """The newest captures ``user`` may see."""
    qs = roles.scoped(_capture_rows(), user)
    if station is not None:
        qs = qs.filter(station=station)
    return _fetch_reads(list(qs[:limit]))


@dataclass(frozen=True)
class SerialHit:
    value: str  # normalised (the key of its history)
    match: str  # exact | prefix | similar | lookalike
    similarity: float
    reads: int
    first_seen: datetime
    last_seen: datetime
    field_names: list[str]
    stations: list[str]  # "line / name" as they were when the photos were taken
    current_reads: int = 0  # reads whose value in force this is; 0: found only as "was"
    display: str = ""  # as printed (the most recent printed form)
    sources: list[str] = dataclasses.field(default_factory=lambda: ["text"])  # text / code

    @property
    def was_only(self) -> bool:
        """Only superseded values match: a person corrected every read of it to another."""
        return self.current_reads == 0

    @property
    def shown(self) -> str:
        return self.display or self.value

    @property
    def code_only(self) -> bool:
        """Found only as a value a code on the label carries (not the print)."""
        return self.sources == ["code"]


MATCH_RANKS = {"exact": 0, "prefix": 1, "lookalike": 2, "similar": 3}


def _record_filters(qs: QuerySet[SerialRecord], f: SearchFilters) -> QuerySet[SerialRecord]:
    if f.date_from is not None:
        qs = qs.filter(created_at__gte=f.date_from)
    if f.date_to is not None:
        qs = qs.filter(created_at__lt=f.date_to)
    if f.line:
        qs = qs.filter(capture__station_line=f.line)
    if f.station is not None:
        qs = qs.filter(station_id=f.station)
    if f.product_type is not None:
        qs = qs.filter(product_type_id=f.product_type)
    if f.status:
        qs = qs.filter(capture__status=f.status)
    if f.field:
        qs = qs.filter(field_name=f.field)
    if f.client_ref:
        qs = qs.filter(capture__client_ref=f.client_ref)
    if f.conf_min is not None:
        qs = qs.filter(field__confidence__gte=f.conf_min)
    if f.conf_max is not None:
        qs = qs.filter(field__confidence__lte=f.conf_max)
    if f.review:
        qs = qs.filter(capture__review_state=f.review)
    if f.alarm:
        qs = qs.filter(Exists(_active_alarms(f.alarm).filter(capture_id=OuterRef("capture_id"))))
    return qs


def _search_base(user: Any, f: SearchFilters) -> QuerySet[SerialRecord]:
    """The index rows search may show ``user``: not of a withdrawn capture (an anti-join
    with the few withdrawn ones, ``capture_withdrawn_idx``), of the user's stations (the row's
    own ``station``, the capture's), filtered. No row needs a look-up of its capture, so a
    prefix's capped count is an index-only scan (it probed ``capture_id_cover_idx`` once per
    row: 13 ms for a thousand values at 1M reads, bench/NOTES-search.md)."""
    withdrawn = Capture.objects.filter(withdrawn_at__isnull=False).values("id")
    qs = SerialRecord.objects.exclude(capture_id__in=withdrawn)
    return _record_filters(roles.scoped(qs, user), f)


def _c_value(qs: QuerySet[SerialRecord]) -> QuerySet[SerialRecord]:
    """``qs`` with ``vc``: the value in the "C" collation (byte order, as Python sorts it),
    indexed by ``serial_value_c_idx``: a prefix is then an index range (``LIKE 'SN2%'``
    becomes ``>= 'SN2' AND < 'SN3'``) read in the order the keyset pages need."""
    if "vc" in qs.query.annotations:
        return qs
    return qs.annotate(vc=Collate("value", "C"))


def _lookalikes(qs: QuerySet[SerialRecord], skel: str) -> QuerySet[SerialRecord]:
    """Rows of ``qs`` whose skeleton is ``skel``, compared in the "C" collation: the btree
    ``serial_skeleton_c_idx`` (skeleton, then value, both "C") serves it in keyset order. The
    plain ``skeleton = q`` let the planner pick the trigram GiST index (it supports ``=``),
    about ten times slower at 3M rows (bench/NOTES-search.md)."""
    return _c_value(qs).annotate(skc=_skeleton_c()).filter(skc=skel)


def _skeleton_c() -> Collate:
    return Collate("skeleton", "C")


def _skeleton_rev_c() -> Collate:
    return Collate(Reverse("skeleton"), "C")


def _shortest_bounded_prefix(expr: Collate, key: str) -> str | None:
    """The shortest prefix of ``key`` that at most :data:`SIMILAR_RANGE_ROWS` index rows of
    ``expr`` start with (None: even ``key`` itself is that common). The row counts fall as the
    prefix grows, so a binary search over its length, each step an index-only count that stops
    after the bound."""

    def small(n: int) -> bool:
        qs = SerialRecord.objects.annotate(k=expr).filter(k__startswith=key[:n])
        return qs.order_by().values("pk")[: SIMILAR_RANGE_ROWS + 1].count() <= SIMILAR_RANGE_ROWS

    if not small(len(key)):
        return None
    lo, hi = 1, len(key)  # small(hi) holds
    while lo < hi:
        mid = (lo + hi) // 2
        if small(mid):
            hi = mid
        else:
            lo = mid + 1
    return key[:lo]


def _similar_values(base: QuerySet[SerialRecord], norm: str, skel: str) -> list[tuple[float, str]]:
    """(similarity, value) of the "similar" values, best first: among the rows of ``base``
    whose look-alike key shares with ``skel`` its shortest bounded prefix or suffix (at most
    :data:`SIMILAR_RANGE_ROWS` index rows each, :func:`_shortest_bounded_prefix`), those with
    trigram similarity of the keys >= :data:`SIMILARITY_THRESHOLD` that are no prefix or
    look-alike hit. Two index range scans and one aggregate over at most twice the bound."""
    head = _shortest_bounded_prefix(_skeleton_c(), skel)
    tail = _shortest_bounded_prefix(_skeleton_rev_c(), skel[::-1])
    ranges = Q()
    if head is not None:
        ranges |= Q(skc__startswith=head)
    if tail is not None:
        ranges |= Q(rskc__startswith=tail)
    if not ranges:
        return []
    rows = (
        base.annotate(skc=_skeleton_c(), rskc=_skeleton_rev_c())
        .filter(ranges)
        .exclude(value__startswith=norm)
        .exclude(skeleton=skel)
        .values("value")
        .annotate(sim=Max(TrigramSimilarity("skeleton", skel)))
        .filter(sim__gte=SIMILARITY_THRESHOLD)
        .order_by()
    )
    return sorted(
        ((round(float(r["sim"]), 4), r["value"]) for r in rows), key=lambda t: (-t[0], t[1])
    )


def _candidates(
    base: QuerySet[SerialRecord],
    norm: str,
    skel: str,
    after: list | None,
    need: int,
    kinds: tuple[str, ...] = (),
) -> list[tuple[int, float, str]]:
    """Up to ``need`` matching values after the keyset ``after`` (``[rank, -similarity,
    value]``), in rank order: (rank, -similarity, value). Each kind is one indexed query:
    exact (btree), prefix (``varchar_pattern_ops`` range, distinct in index order), look-alike
    (btree on ``skeleton``), similar (:func:`_similar_values`)."""
    rank0, sim0, value0 = (after[0], after[1], after[2]) if after else (-1, 0.0, "")
    out: list[tuple[int, float, str]] = []
    run = set(kinds or MATCH_KINDS)

    def left() -> int:
        return need - len(out)

    if "exact" in run and rank0 < 0 and base.filter(value=norm).exists():
        out.append((0, -1.0, norm))
    if "prefix" in run and left() > 0 and rank0 <= 1:
        qs = _c_value(base).filter(vc__startswith=norm).exclude(value=norm)
        if rank0 == 1:
            qs = qs.filter(vc__gt=value0)
        vals = qs.order_by("vc").values_list("vc", flat=True).distinct()[: left()]
        out += [(1, -1.0, v) for v in vals]
    if "lookalike" in run and left() > 0 and rank0 <= 2:
        qs = _lookalikes(base, skel).exclude(value__startswith=norm)
        if rank0 == 2:
            qs = qs.filter(vc__gt=value0)
        vals = qs.order_by("vc").values_list("vc", flat=True).distinct()[: left()]
        out += [(2, -1.0, v) for v in vals]
    if "similar" in run and left() > 0 and len(norm) >= SIMILAR_MIN_LENGTH:
        # distinct values, none of them an exact, prefix or look-alike hit (_similar_values)
        for sim, value in _similar_values(base, norm, skel):
            if rank0 == 3 and (-sim, value) <= (sim0, value0):
                continue
            out.append((3, -sim, value))
            if left() <= 0:
                break
    out.sort()
    return out[:need]


def serial_search_page(
    *,
    q: str,
    user: Any,
    filters: SearchFilters | None = None,
    cursor: str = "",
    limit: int = 50,
) -> Page:
    """Traced values (serials and every traced field, printed or carried by a code, current or
    "was") matching ``q``: exact, then prefix, then look-alike (``lookalike_key``), then similar
    (trigram), among the captures ``user`` may see, filtered; one keyset page of
    :class:`SerialHit` (counts and dates too). Withdrawn captures are left out (their reads
    stay in :func:`serial_history`, marked). ``total``: see :func:`_serial_total`."""
    f = filters or SearchFilters()
    norm, skel = identifier_key(q)[:128], lookalike_key(q)[:128]
    if not norm:
        return Page(items=[], next_cursor="", total=0, total_exact=True)
    after = _cursor_load(cursor, "serials")
    if after is not None and not (
        len(after) == 3 and after[0] in (0, 1, 2, 3) and isinstance(after[2], str)
    ):
        raise _bad("cursor", _("The cursor is not valid; start again from the first page."))
    base = _search_base(user, f)
    with transaction.atomic(), connection.cursor() as cur:
        # every query below is a bounded index read; the planner's row estimates for ``IN``
        # lists and prefix ranges made it start parallel workers, which cost more (about
        # 15-50 ms at 1M reads) than the work (under 1 ms): bench/NOTES-search.md
        cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cands = _candidates(base, norm, skel, after, limit + 1, f.match)
        page = cands[:limit]
        more = len(cands) > limit
        hits = _serial_hits(base, page, norm, skel)
        total, exact_total = _serial_total(base, norm, skel, after, page, more, f.match)
    next_cursor = ""
    if more and page:
        last = page[-1]
        next_cursor = _cursor_dump("serials", [last[0], last[1], last[2]])
    return Page(items=hits, next_cursor=next_cursor, total=total, total_exact=exact_total)


def _serial_total(
    base: QuerySet[SerialRecord],
    norm: str,
    skel: str,
    after: list | None,
    page: list[tuple[int, float, str]],
    more: bool,
    kinds: tuple[str, ...] = (),
) -> tuple[int, bool]:
    """How many values match: on the first page, the exact, prefix and look-alike values
    (counted up to :data:`TOTAL_CAP` with index-only queries) plus the similar ones on the
    page; exact only when there is no further page. On later pages: at least the values seen."""
    if not more and after is None:
        return len(page), True
    if after is not None:
        return len(page) + int(more), not more
    run = set(kinds or MATCH_KINDS)

    def distinct_values(qs: QuerySet[SerialRecord]) -> int:  # in index order, stops at the cap
        qs = _c_value(qs)
        return qs.order_by("vc").values("vc").distinct()[: TOTAL_CAP + 1].count()

    n = 0
    if "prefix" in run:  # the exact value starts with itself
        n += distinct_values(_c_value(base).filter(vc__startswith=norm))
    elif "exact" in run:
        n += int(base.filter(value=norm).exists())
    if "lookalike" in run:
        n += distinct_values(_lookalikes(base, skel).exclude(value__startswith=norm))
    similar = sum(1 for rank, _s, _v in page if rank == 3)
    return min(n, TOTAL_CAP) + similar, False


def _serial_hits(
    base: QuerySet[SerialRecord], page: list[tuple[int, float, str]], norm: str, skel: str
) -> list[SerialHit]:
    if not page:
        return []
    rows = (
        base.filter(value__in=[v for _r, _s, v in page])
        .values("value")
        .annotate(
            reads=Count("field_id", distinct=True),
            first_seen=Min("created_at"),
            last_seen=Max("created_at"),
            similarity=Max(
                Greatest(TrigramSimilarity("value", norm), TrigramSimilarity("skeleton", skel))
            ),
            field_names=ArrayAgg("field_name", distinct=True),
            sources=ArrayAgg("source", distinct=True),
            current=Count("field_id", filter=Q(superseded=False), distinct=True),
            displays=ArrayAgg("display", order_by=("-created_at", "-id")),
            stations=ArrayAgg(
                Concat("capture__station_line", Value(" / "), "capture__station_name"),
                distinct=True,
            ),
        )
        .order_by()
    )
    by_value = {row["value"]: row for row in rows}
    hits = []
    for rank, neg_sim, value in page:
        row = by_value.get(value)
        if row is None:
            continue
        match = next(k for k, r in MATCH_RANKS.items() if r == rank)
        sim = -neg_sim if rank == 3 else float(row["similarity"])
        hits.append(
            SerialHit(
                value=value,
                match=match,
                similarity=round(sim, 4),
                reads=row["reads"],
                first_seen=row["first_seen"],
                last_seen=row["last_seen"],
                field_names=sorted(row["field_names"]),
                current_reads=row["current"],
                stations=sorted(row["stations"]),
                display=next((d for d in row["displays"] if d), value),
                sources=sorted(row["sources"], reverse=True),
            )
        )
    return hits


def serial_search(
    *, q: str, user, limit: int = 50, filters: SearchFilters | None = None
) -> list[SerialHit]:
    """The first page of :func:`serial_search_page` (its hits only)."""
    return serial_search_page(q=q, user=user, filters=filters, limit=limit).items


def serial_history(*, value: str, user, part: str = "") -> list[SerialRecord]:
    """Every read of one traced value that ``user`` may see, oldest first, with capture,
    station, product type, the read's fields and their revisions; rows with ``superseded``
    are reads a person corrected from this value to another ("was"), rows with ``source``
    ``code`` reads whose label code carries it. ``part``: only captures whose part number is
    that value too (one timeline per part + serial). Withdrawn captures stay in the history
    (``record.capture.withdrawn``); the station to show is the capture's ``station_label``."""
    norm = identifier_key(value)[:128]
    qs = roles.scoped(SerialRecord.objects.filter(value=norm), user, "capture__")
    part_key = identifier_key(part)[:128]
    if part_key:
        qs = qs.filter(
            Exists(
                SerialRecord.objects.filter(
                    capture_id=OuterRef("capture_id"),
                    field_name="part_number",
                    value=part_key,
                    superseded=False,
                )
            )
        )
    return list(
        qs.select_related("capture", "station", "product_type", "field", "field__read")
        .prefetch_related(
            Prefetch("capture__alarms", queryset=Alarm.objects.order_by("created_at", "id")),
            Prefetch(
                "field__read__fields",
                queryset=Field.objects.order_by("id").prefetch_related(
                    Prefetch("revisions", queryset=FieldRevision.objects.order_by("seq"))
                ),
            ),
        )
        .order_by("created_at", "id")
    )


def api_token_find(*, key: str) -> ApiToken | None:
    """The active (not revoked) token whose key is ``key``, with its user; None otherwise."""
    if not key:
        return None
    return (
        ApiToken.objects.select_related("user", "station")
        .filter(key_hash=tokens.hash_key(key), revoked_at__isnull=True)
        .first()
    )


# --- review: the queue, revisions, suggestions ---------------------------------------------


def field_check(*, capture: Capture, name: str, value: str) -> FieldCheck:
    """The pipeline verifier's check of ``value`` as field ``name`` of ``capture``'s product type:
    the same ``workers.fieldspec.validate_field`` with the same resolved spec. Date rules are
    anchored to the day the photo was taken (what the pipeline anchored them to)."""
    try:
        schema = resolve_schema(capture.product_type.field_schema)
    except SchemaError as exc:
        raise ApplicationError(
            "bad_schema",
            _("The product type's field schema is invalid: %(error)s") % {"error": exc},
            status_code=409,
        ) from exc
    today = timezone.localdate(capture.created_at, timezone=dt.UTC)
    return validate_field(value, spec_for(name, schema), today=today)


def review_state_of(*, needs_review: bool, fields: int, unsigned: int) -> str:
    """A read's review state (:data:`REVIEW_STATES`) from its flag and how many fields it has
    and how many of them have no signed revision: ``reviewed`` when every field (at least one)
    is signed, else ``needs_review`` or ``accepted`` as the pipeline decided. The one rule
    behind ``Capture.review_state`` (migration ``0015_wt_perf_capture_review`` backfills it
    with the same rule in SQL)."""
    if fields and not unsigned:
        return "reviewed"
    return "needs_review" if needs_review else "accepted"


def capture_review_columns(*, capture_id: uuid.UUID | str) -> tuple[str, float | None]:
    """``(review_state, weakest_confidence)`` of the capture's latest read, as stored on
    ``Capture`` (``("", None)`` without a read; confidence None without a field)."""
    read = Read.objects.filter(capture_id=capture_id).order_by("-run").first()
    if read is None:
        return "", None
    agg = Field.objects.filter(read=read).aggregate(
        n=Count("id"),
        unsigned=Count("id", filter=Q(revisions__isnull=True)),
        weakest=Min("confidence"),
    )
    state = review_state_of(
        needs_review=read.needs_review, fields=agg["n"], unsigned=agg["unsigned"]
    )
    return state, agg["weakest"]


def _latest_read_q() -> Q:
    """Reads that are the newest run of their capture."""
    newer = Read.objects.filter(capture_id=OuterRef("capture_id"), run__gt=OuterRef("run"))
    return ~Q(Exists(newer))


def _not_withdrawn(qs: QuerySet[Read]) -> QuerySet[Read]:
    """Reads whose capture is not withdrawn: the one place the review queue and the export
    leave withdrawn captures out."""
    return qs.filter(capture__withdrawn_at__isnull=True)


def _unreviewed_q() -> Q:
    """Reads with a field that has no signed revision yet, or without any field."""
    unsigned = Field.objects.filter(read_id=OuterRef("pk"), revisions__isnull=True)
    any_field = Field.objects.filter(read_id=OuterRef("pk"))
    return Q(Exists(unsigned)) | ~Q(Exists(any_field))


def _reviewed_q() -> Q:
    """Reads with at least one field, every one of them signed."""
    unsigned = Field.objects.filter(read_id=OuterRef("pk"), revisions__isnull=True)
    any_field = Field.objects.filter(read_id=OuterRef("pk"))
    return Q(Exists(any_field)) & ~Q(Exists(unsigned))


def _reason_q(code: str) -> Q:
    return Q(review__reasons__contains=[{"code": code}])


@dataclass(frozen=True)
class ReviewFilters:
    """Filters of the review queue (all optional): a line name, a station id, a product type id
    and a review reason code (``workers.fieldspec.review.REVIEW_CODES``)."""

    line: str = ""
    station: int | None = None
    product_type: int | None = None
    reason: str = ""


def _review_backlog_qs() -> QuerySet[Read]:
    """Every read waiting for review, whoever may see it."""
    qs = Read.objects.filter(needs_review=True, capture__status=Capture.Status.DONE)
    return _not_withdrawn(qs.filter(_latest_read_q()).filter(_unreviewed_q()))


def review_backlog_capture_ids() -> QuerySet:
    """Ids of the captures whose latest read waits for review (retention keeps their image)."""
    return _review_backlog_qs().values("capture_id")


def review_backlog_count() -> int:
    """How many reads wait for review across all stations (the metric; no user scope)."""
    return _review_backlog_qs().count()


def _review_queue_qs(*, user: Any, filters: ReviewFilters | None = None) -> QuerySet[Read]:
    qs = roles.scoped(_review_backlog_qs(), user, "capture__")
    f = filters or ReviewFilters()
    if f.line:
        qs = qs.filter(capture__station__line=f.line)
    if f.station is not None:
        qs = qs.filter(capture__station_id=f.station)
    if f.product_type is not None:
        qs = qs.filter(capture__product_type_id=f.product_type)
    if f.reason:
        qs = qs.filter(_reason_q(f.reason))
    return qs


def review_queue(
    *, user: Any, filters: ReviewFilters | None = None, limit: int = 100
) -> list[Read]:
    """The reads a person must still check, riskiest first.

    Each capture's latest read that needs review and has a field without a signed revision (or
    no field at all), inside ``user``'s scope (``roles.scoped``), not withdrawn. Order: mislabel
    alarms (a code contradicts the print) first, then reads with an invalid or missing field,
    then the lowest field confidence, then the oldest. Each read carries ``risk_mislabel``,
    ``risk_invalid`` and ``min_confidence`` annotations and its capture, fields (with their
    revisions) and lines prefetched.
    """
    invalid_field = Field.objects.filter(read_id=OuterRef("pk"), valid=False)
    min_conf = (
        Field.objects.filter(read_id=OuterRef("pk"))
        .order_by()
        .values("read_id")
        .annotate(m=Min("confidence"))
        .values("m")
    )
    qs = (
        _review_queue_qs(user=user, filters=filters)
        .annotate(
            risk_mislabel=Case(
                When(_reason_q("mislabel") | ~Q(mismatches=[]), then=Value(True)),
                default=Value(False),
            ),
            risk_invalid=Case(
                When(
                    _reason_q("invalid") | _reason_q("missing") | Q(Exists(invalid_field)),
                    then=Value(True),
                ),
                default=Value(False),
            ),
            min_confidence=Coalesce(Subquery(min_conf, output_field=FloatField()), Value(0.0)),
        )
        .select_related(
            "capture", "capture__station", "capture__product_type", "capture__uploaded_by"
        )
        .prefetch_related(
            "lines",
            Prefetch(
                "fields",
                queryset=Field.objects.select_related("line").prefetch_related(
                    Prefetch("revisions", queryset=FieldRevision.objects.order_by("seq"))
                ),
            ),
        )
        .order_by("-risk_mislabel", "-risk_invalid", "min_confidence", "created_at", "pk")
    )
    return list(qs[:limit])


def review_queue_count(*, user: Any, filters: ReviewFilters | None = None) -> int:
    """How many reads wait in ``user``'s review queue (0 for a user who cannot review)."""
    if not roles.can(user, "review_read"):
        return 0
    return _review_queue_qs(user=user, filters=filters).count()


def review_filters_parse(*, params: Mapping[str, str]) -> ReviewFilters:
    """The queue filters of a query string (the API and the page share them): ``line``,
    ``station`` (id), ``product_type`` (id or name), ``reason`` (a review reason code)."""
    reason = (params.get("reason") or "").strip()
    if reason and reason not in REVIEW_CODES:
        raise ApplicationError(
            "invalid",
            _("reason must be one of %(codes)s.") % {"codes": ", ".join(REVIEW_CODES)},
            details={"reason": list(REVIEW_CODES)},
        )
    line = (params.get("line") or "").strip()
    pt_ref = (params.get("product_type") or "").strip()
    for name, value in (("line", line), ("product_type", pt_ref)):
        if "\x00" in value:  # PostgreSQL text cannot hold NUL: no row can match, say so
            raise ApplicationError(
                "invalid", _("%(name)s must not contain NUL characters.") % {"name": name}
            )
    station_raw = (params.get("station") or "").strip()
    station_id = as_id(station_raw) if station_raw else None
    if station_raw and station_id is None:
        raise ApplicationError("invalid", _("station must be a station id."))
    return ReviewFilters(
        line=line,
        station=station_id,
        product_type=product_type_find(ref=pt_ref).pk if pt_ref else None,
        reason=reason,
    )


def review_filter_choices(*, user: Any) -> dict[str, list]:
    """Lines, stations and product types the queue can be filtered by (inside ``user``'s
    scope)."""
    stations = Station.objects.all()
    scope = roles.capture_scope(user)
    if scope is not None:
        stations = stations.filter(pk__in=roles.station_ids(user))
    stations = list(stations.order_by("line", "name"))
    return {
        "lines": sorted({s.line for s in stations}),
        "stations": stations,
        "product_types": list(ProductType.objects.order_by("name")),
    }


def _no_field(field_id: object) -> NotFoundError:
    return NotFoundError("not_found", _("No field %(id)s.") % {"id": field_id})


def field_get_scoped(*, field_id: int | str, user: Any) -> Field:
    """A field with its read, capture, product type and revisions, inside ``user``'s scope."""
    pk = as_id(field_id)
    if pk is None:
        raise _no_field(field_id)
    qs = Field.objects.select_related(
        "read", "read__capture", "read__capture__product_type", "read__capture__station", "line"
    ).filter(pk=pk)
    field = roles.scoped(qs, user, "read__capture__").first()
    if field is None:
        raise _no_field(field_id)
    return field


def capture_revisions(*, capture: Capture) -> list[FieldRevision]:
    """Every signed revision of every field of every read of ``capture``, oldest first."""
    return list(
        FieldRevision.objects.filter(field__read__capture=capture)
        .select_related("field", "field__read", "signer")
        .order_by("signed_at", "pk")
    )


def read_revision_count(*, read: Read) -> int:
    """How many revisions the fields of ``read`` have (a reviewer's view of the read is stale
    when this changed since it was shown)."""
    return FieldRevision.objects.filter(field__read=read).count()


def signature_failures(*, user: Any) -> int:
    """Wrong passwords given by ``user`` when signing since their last successful signature
    (counted from the audit trail; a lockout can be built on it)."""
    last_ok = (
        AuditEvent.objects.filter(actor=user, action=FIELD_REVISED_ACTION)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    failures = AuditEvent.objects.filter(actor=user, action=SIGNATURE_FAILED_ACTION)
    if last_ok is not None:
        failures = failures.filter(id__gt=last_ok)
    return failures.count()


def reviewed_reads(*, since: datetime | None = None) -> list[Read]:
    """Reads a person has signed in full (every field has a revision; the latest run of its
    capture, not withdrawn), with a revision signed at or after ``since``; oldest first, with
    capture, product type, lines and fields (with revisions) prefetched. What
    ``manage.py export_reviewed`` writes."""
    qs = Read.objects.filter(_latest_read_q()).filter(_reviewed_q())
    qs = _not_withdrawn(qs)
    if since is not None:
        qs = qs.filter(
            Exists(
                FieldRevision.objects.filter(field__read_id=OuterRef("pk"), signed_at__gte=since)
            )
        )
    return list(
        qs.select_related("capture", "capture__product_type", "capture__station")
        .prefetch_related(
            "lines",
            Prefetch(
                "fields",
                queryset=Field.objects.select_related("line").prefetch_related(
                    Prefetch("revisions", queryset=FieldRevision.objects.order_by("seq"))
                ),
            ),
        )
        .order_by("created_at", "pk")
    )


@dataclass(frozen=True)
class Suggestion:
    """A value the recogniser's alternatives suggest for a field: ``value`` normalised,
    ``valid`` as ``validate_field`` says, ``probability`` of the swapped character."""

    value: str
    valid: bool
    probability: float


def field_span(*, field: Field) -> tuple[int, int] | None:
    """Where the field's raw read sits in its line's text (``start, end``), if it can be found."""
    if not field.line_id or field.line is None:
        return None
    text = field.line.text
    for needle in (field.raw_value, field.value):
        if needle:
            pos = text.find(needle)
            if pos < 0:
                pos = text.upper().find(needle.upper())
            if pos >= 0:
                return pos, pos + len(needle)
    return None


def field_suggestions(*, field: Field, capture: Capture, limit: int = 4) -> list[Suggestion]:
    """Values the recogniser also considered for ``field``: its raw read with one character
    swapped for an alternative of that position (``TextLine.alternatives``), normalised and
    checked like a correction; valid ones first, then by the alternative's probability. The
    value in force is never suggested."""
    span = field_span(field=field)
    if span is None:
        return []
    line = field.line
    alts = line.alternatives or []
    start, end = span
    raw = line.text[start:end]
    seen = {field.current_value}
    out: list[Suggestion] = []
    for i in range(start, min(end, len(alts))):
        for ch, p in (alts[i] or [])[1:]:
            if not ch or ch == line.text[i]:
                continue
            candidate = raw[: i - start] + ch + raw[i - start + 1 :]
            check = field_check(capture=capture, name=field.name, value=candidate)
            if not check.value or check.value in seen:
                continue
            seen.add(check.value)
            out.append(Suggestion(check.value, check.valid, round(float(p), 4)))
    out.sort(key=lambda s: (not s.valid, -s.probability))
    return out[:limit]


# --- traceability alarms (ocrapp/alarms.py raises them) -------------------------------------

ALARM_ACTIVE_STATES = (Alarm.State.OPEN, Alarm.State.ACKNOWLEDGED)


def _active_alarms(kind: str) -> QuerySet[Alarm]:
    """Open or acknowledged alarms of ``kind`` (:data:`ALARMS`: ``any``, a kind, ``mislabel``)."""
    qs = Alarm.objects.filter(state__in=ALARM_ACTIVE_STATES)
    if kind == "mislabel":
        kind = Alarm.Kind.MISMATCH
    return qs if kind == "any" else qs.filter(kind=kind)


@dataclass(frozen=True)
class AlarmFilters:
    """Filters of the alarm list (all optional): ``kind``, ``state`` (or ``active`` = open or
    acknowledged), ``line`` (at capture time), ``station`` / ``product_type`` ids, ``capture``."""

    kind: str = ""
    state: str = ""
    line: str = ""
    station: int | None = None
    product_type: int | None = None
    capture: uuid.UUID | None = None

    @property
    def active(self) -> bool:
        return any(v not in (None, "") for v in dataclasses.astuple(self))


ALARM_STATE_FILTERS = (*Alarm.State.values, "active")


def alarm_filters_parse(*, params: Mapping[str, str]) -> AlarmFilters:
    """The alarm list filters of a query string (API and page); 400 naming a bad parameter."""
    station_ref = param_text(params, "station")
    pt_ref = param_text(params, "product_type")
    capture_ref = param_text(params, "capture", max_length=64)
    capture_id = None
    if capture_ref:
        try:
            capture_id = uuid.UUID(capture_ref)
        except ValueError:
            raise _bad("capture", _("capture must be a capture id.")) from None
    return AlarmFilters(
        kind=_choice(param_text(params, "kind"), "kind", tuple(Alarm.Kind.values)),
        state=_choice(param_text(params, "state"), "state", ALARM_STATE_FILTERS),
        line=param_text(params, "line", max_length=100),
        station=station_find(ref=station_ref).pk if station_ref else None,
        product_type=product_type_find(ref=pt_ref).pk if pt_ref else None,
        capture=capture_id,
    )


def _alarm_qs(*, user: Any, filters: AlarmFilters | None = None) -> QuerySet[Alarm]:
    """Alarms of the captures ``user`` may see (a station token: its station's), filtered."""
    qs = roles.scoped(Alarm.objects.all(), user)
    f = filters or AlarmFilters()
    if f.kind:
        qs = qs.filter(kind=f.kind)
    if f.state == "active":
        qs = qs.filter(state__in=ALARM_ACTIVE_STATES)
    elif f.state:
        qs = qs.filter(state=f.state)
    if f.line:
        qs = qs.filter(line=f.line)
    if f.station is not None:
        qs = qs.filter(station_id=f.station)
    if f.product_type is not None:
        qs = qs.filter(product_type_id=f.product_type)
    if f.capture is not None:
        qs = qs.filter(capture_id=f.capture)
    return qs


def _alarm_related(qs: QuerySet[Alarm]) -> QuerySet[Alarm]:
    return qs.select_related("product_type", "station", "capture", "other_capture")


def alarm_page(
    *, user: Any, filters: AlarmFilters | None = None, cursor: str = "", limit: int = 50
) -> Page:
    """Alarms ``user`` may see, filtered, newest first, one keyset page (``(created_at, id)``
    after the cursor), with the total (exact up to :data:`TOTAL_CAP`)."""
    qs = _alarm_qs(user=user, filters=filters)
    key = _cursor_load(cursor, "alarms")
    page_qs = qs
    if key is not None:
        try:
            at, last_id = datetime.fromisoformat(key[0]), int(key[1])
        except (IndexError, TypeError, ValueError):
            raise _bad(
                "cursor", _("The cursor is not valid; start again from the first page.")
            ) from None
        page_qs = qs.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=last_id))
    rows = list(_alarm_related(page_qs).order_by("-created_at", "-id")[: limit + 1])
    items = rows[:limit]
    next_cursor = ""
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = _cursor_dump("alarms", [last.created_at.isoformat(), last.pk])
    total, exact = _capped_total(qs)
    return Page(items=items, next_cursor=next_cursor, total=total, total_exact=exact)


def alarm_get(*, alarm_id: int | str, user: Any) -> Alarm:
    """One alarm inside ``user``'s scope; else NotFoundError (404)."""
    pk = as_id(alarm_id)
    alarm = _alarm_related(_alarm_qs(user=user)).filter(pk=pk).first() if pk else None
    if alarm is None:
        raise NotFoundError("not_found", _("No alarm %(id)s.") % {"id": alarm_id})
    return alarm


def alarm_open_count(*, user: Any) -> int:
    """Open (not yet acknowledged) alarms in ``user``'s scope: the navigation badge."""
    return _alarm_qs(user=user).filter(state=Alarm.State.OPEN).count()


def capture_alarms(*, capture: Capture) -> list[Alarm]:
    """Every alarm of ``capture`` (already checked to be in scope), oldest first."""
    return list(_alarm_related(Alarm.objects.filter(capture=capture)).order_by("created_at", "id"))
