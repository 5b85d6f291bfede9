"""Reads: queries used by the API, the HTML views and exports. Keyword-only, no writes.

Every read of captures (and of their reads, search hits and history) takes the ``user`` who
asks and is limited to what that user may see (``ocrapp.roles.scoped``): a capture outside
the scope is "not found", search hits and history count only the captures in it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.postgres.search import TrigramSimilarity
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
)
from django.db.models.functions import Coalesce, Concat, Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from ocrapp import roles, tokens
from ocrapp.errors import ApplicationError, NotFoundError
from ocrapp.models import (
    FIELD_REVISED_ACTION,
    SIGNATURE_FAILED_ACTION,
    ApiToken,
    AuditEvent,
    Capture,
    Field,
    FieldRevision,
    ProductType,
    Read,
    SerialRecord,
    Station,
)
from workers.fieldspec import (
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


def _capture_queryset() -> QuerySet[Capture]:
    return Capture.objects.select_related(
        "station", "product_type", "uploaded_by"
    ).prefetch_related(
        Prefetch(
            "reads",
            queryset=Read.objects.order_by("-run").prefetch_related(
                "lines",
                Prefetch(
                    "fields",
                    queryset=Field.objects.select_related("line").prefetch_related(
                        Prefetch("revisions", queryset=FieldRevision.objects.order_by("seq"))
                    ),
                ),
            ),
        )
    )


def _no_capture(capture_id: object) -> NotFoundError:
    return NotFoundError("not_found", _("No capture %(id)s.") % {"id": capture_id})


def capture_get(*, capture_id: uuid.UUID | str, user) -> Capture:
    """The capture, if ``user`` may see it; else (or when there is none) NotFoundError."""
    try:
        uuid.UUID(str(capture_id))
    except ValueError:
        raise _no_capture(capture_id) from None
    capture = roles.scoped(_capture_queryset(), user).filter(pk=capture_id).first()
    if capture is None:
        raise _no_capture(capture_id)
    return capture


def capture_latest_read(*, capture: Capture) -> Read | None:
    reads = list(capture.reads.all())  # prefetched, newest run first
    return reads[0] if reads else None


def capture_list(*, user, limit: int = 50, station: Station | None = None) -> list[Capture]:
    """The newest captures ``user`` may see."""
    qs = roles.scoped(_capture_queryset(), user)
    if station is not None:
        qs = qs.filter(station=station)
    return list(qs[:limit])


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


@dataclass(frozen=True)
class SerialHit:
    value: str
    match: str  # exact | prefix | similar | lookalike
    similarity: float
    reads: int
    first_seen: datetime
    last_seen: datetime
    field_names: list[str]
    stations: list[str]  # "line / name" as they were when the photos were taken
    current_reads: int = 0  # reads whose value in force this is; 0: found only as "was"

    @property
    def was_only(self) -> bool:
        """Only superseded values match: a person corrected every read of it to another."""
        return self.current_reads == 0


def serial_search(*, q: str, user, limit: int = 50) -> list[SerialHit]:
    """Find traced values: exact, then prefix, then similar (trigram) and look-alike matches,
    among the captures ``user`` may see (counts and dates too). Withdrawn captures are left
    out (their reads stay in :func:`serial_history`, marked)."""
    norm = identifier_key(q)
    if not norm:
        return []
    skel = lookalike_key(q)
    qs = (
        roles.scoped(
            SerialRecord.objects.filter(capture__withdrawn_at__isnull=True), user, "capture__"
        )
        .filter(
            Q(value=norm)
            | Q(value__startswith=norm)
            | Q(skeleton=skel)
            | Q(value__trigram_similar=norm)
            | Q(skeleton__trigram_similar=skel)
        )
        .annotate(
            sim=Greatest(TrigramSimilarity("value", norm), TrigramSimilarity("skeleton", skel))
        )
        .values("value")
        .annotate(
            reads=Count("id"),
            first_seen=Min("created_at"),
            last_seen=Max("created_at"),
            similarity=Max("sim"),
            skeleton=Max("skeleton"),
            field_names=ArrayAgg("field_name", distinct=True),
            current=Count("id", filter=Q(superseded=False)),
            stations=ArrayAgg(
                Concat("capture__station_line", Value(" / "), "capture__station_name"),
                distinct=True,
            ),
        )
    )
    ranked: list[tuple[int, float, str, SerialHit]] = []
    for row in qs:
        value = row["value"]
        if value == norm:
            match, rank = "exact", 0
        elif value.startswith(norm):
            match, rank = "prefix", 1
        elif row["skeleton"] == skel:
            match, rank = "lookalike", 2
        elif row["similarity"] >= SIMILARITY_THRESHOLD:
            match, rank = "similar", 3
        else:
            continue
        hit = SerialHit(
            value=value,
            match=match,
            similarity=round(float(row["similarity"]), 4),
            reads=row["reads"],
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            field_names=sorted(row["field_names"]),
            current_reads=row["current"],
            stations=sorted(row["stations"]),
        )
        ranked.append((rank, -hit.similarity, value, hit))
    ranked.sort(key=lambda item: item[:3])
    return [item[3] for item in ranked[:limit]]


def serial_history(*, value: str, user) -> list[SerialRecord]:
    """Every read of one traced value that ``user`` may see, oldest first, with capture,
    station and product type; rows with ``superseded`` are reads a person corrected from this
    value to another ("was"). Withdrawn captures stay in the history
    (``record.capture.withdrawn``); the station to show is the capture's ``station_label``."""
    norm = identifier_key(value)
    return list(
        roles.scoped(SerialRecord.objects.filter(value=norm), user, "capture__")
        .select_related("capture", "station", "product_type", "field", "field__read")
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
