"""Reads: queries used by the API, the HTML views and exports. Keyword-only, no writes.

Every read of captures (and of their reads, search hits and history) takes the ``user`` who
asks and is limited to what that user may see (``ocrapp.roles.scoped``): a capture outside
the scope is "not found", search hits and history count only the captures in it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.postgres.search import TrigramSimilarity
from django.db.models import Count, Max, Min, Prefetch, Q, QuerySet
from django.db.models.functions import Greatest
from django.utils.translation import gettext as _

from ocrapp import roles, tokens
from ocrapp.errors import NotFoundError
from ocrapp.models import ApiToken, Capture, Field, ProductType, Read, SerialRecord, Station
from workers.fieldspec import identifier_key, lookalike_key

FINAL_STATUSES = (Capture.Status.DONE, Capture.Status.FAILED)
SIMILARITY_THRESHOLD = 0.3


def _capture_queryset() -> QuerySet[Capture]:
    return Capture.objects.select_related(
        "station", "product_type", "uploaded_by"
    ).prefetch_related(
        Prefetch(
            "reads",
            queryset=Read.objects.order_by("-run").prefetch_related(
                "lines", Prefetch("fields", queryset=Field.objects.select_related("line"))
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


def capture_wait(
    *, capture_id: uuid.UUID | str, user, timeout: float, poll: float = 0.2
) -> Capture:
    """Return the capture as soon as it is DONE/FAILED, or after ``timeout`` seconds.

    Polls one indexed primary-key query; the request thread sleeps between polls, so other requests
    are served by the other threads of the web server meanwhile.
    """
    capture_get(capture_id=capture_id, user=user)  # unknown, malformed or not yours: 404 now
    visible = roles.scoped(Capture.objects.filter(pk=capture_id), user)
    deadline = time.monotonic() + max(0.0, timeout)
    while time.monotonic() < deadline:
        status = visible.values_list("status", flat=True).first()
        if status is None or status in FINAL_STATUSES:
            break
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    return capture_get(capture_id=capture_id, user=user)


def capture_list(*, user, limit: int = 50, station: Station | None = None) -> list[Capture]:
    """The newest captures ``user`` may see."""
    qs = roles.scoped(_capture_queryset(), user)
    if station is not None:
        qs = qs.filter(station=station)
    return list(qs[:limit])


def product_type_list() -> QuerySet[ProductType]:
    return ProductType.objects.all()


def product_type_find(*, ref: str | int) -> ProductType:
    ref = str(ref).strip()
    pt = ProductType.objects.filter(
        Q(name__iexact=ref) | Q(pk=int(ref) if ref.isdigit() else None)
    ).first()
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
    if ref.isdigit():
        station = Station.objects.filter(pk=int(ref)).first()
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


def serial_search(*, q: str, user, limit: int = 50) -> list[SerialHit]:
    """Find traced values: exact, then prefix, then similar (trigram) and look-alike matches,
    among the captures ``user`` may see (counts and dates too)."""
    norm = identifier_key(q)
    if not norm:
        return []
    skel = lookalike_key(q)
    qs = (
        roles.scoped(SerialRecord.objects.all(), user, "capture__")
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
        )
        ranked.append((rank, -hit.similarity, value, hit))
    ranked.sort(key=lambda item: item[:3])
    return [item[3] for item in ranked[:limit]]


def serial_history(*, value: str, user) -> list[SerialRecord]:
    """Every read of one traced value that ``user`` may see, oldest first, with capture,
    station and product type."""
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
