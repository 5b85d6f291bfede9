"""Reads: queries used by the API, the HTML views and exports. Keyword-only, no writes."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.postgres.search import TrigramSimilarity
from django.db.models import Count, Max, Min, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Concat, Greatest

from ocrapp.errors import NotFoundError
from ocrapp.models import Capture, Field, ProductType, Read, SerialRecord, Station
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


def capture_get(*, capture_id: uuid.UUID | str) -> Capture:
    try:
        uuid.UUID(str(capture_id))
    except ValueError:
        raise NotFoundError("not_found", f"No capture {capture_id}.") from None
    capture = _capture_queryset().filter(pk=capture_id).first()
    if capture is None:
        raise NotFoundError("not_found", f"No capture {capture_id}.")
    return capture


def capture_latest_read(*, capture: Capture) -> Read | None:
    reads = list(capture.reads.all())  # prefetched, newest run first
    return reads[0] if reads else None


def capture_wait(*, capture_id: uuid.UUID | str, timeout: float, poll: float = 0.2) -> Capture:
    """Return the capture as soon as it is DONE/FAILED, or after ``timeout`` seconds.

    Polls one indexed primary-key query; the request thread sleeps between polls, so other requests
    are served by the other threads of the web server meanwhile.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    while time.monotonic() < deadline:
        status = Capture.objects.filter(pk=capture_id).values_list("status", flat=True).first()
        if status is None or status in FINAL_STATUSES:
            break
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    return capture_get(capture_id=capture_id)


def capture_list(*, limit: int = 50, station: Station | None = None) -> list[Capture]:
    qs = _capture_queryset()
    if station is not None:
        qs = qs.filter(station=station)
    return list(qs[:limit])


def product_type_list() -> QuerySet[ProductType]:
    """Product types that take new captures (inactive ones keep their history only)."""
    return ProductType.objects.filter(active=True)


def product_type_find(*, ref: str | int) -> ProductType:
    ref = str(ref).strip()
    pt = ProductType.objects.filter(
        Q(name__iexact=ref) | Q(pk=int(ref) if ref.isdigit() else None)
    ).first()
    if pt is None:
        raise NotFoundError(
            "unknown_product_type", f"Unknown product type {ref!r}.", status_code=400
        )
    return pt


def station_list() -> QuerySet[Station]:
    return Station.objects.filter(active=True)


def station_find(*, ref: str | int) -> Station:
    ref = str(ref).strip()
    station = None
    if ref.isdigit():
        station = Station.objects.filter(pk=int(ref)).first()
    elif "/" in ref:
        line, name = (part.strip() for part in ref.split("/", 1))
        station = Station.objects.filter(line=line, name=name).first()
    if station is None:
        raise NotFoundError("unknown_station", f"Unknown station {ref!r}.", status_code=400)
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


def serial_search(*, q: str, limit: int = 50) -> list[SerialHit]:
    """Find traced values: exact, then prefix, then similar (trigram) and look-alike matches.
    Withdrawn captures are left out (their reads stay in :func:`serial_history`, marked)."""
    norm = identifier_key(q)
    if not norm:
        return []
    skel = lookalike_key(q)
    qs = (
        SerialRecord.objects.filter(capture__withdrawn_at__isnull=True)
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
            stations=sorted(row["stations"]),
        )
        ranked.append((rank, -hit.similarity, value, hit))
    ranked.sort(key=lambda item: item[:3])
    return [item[3] for item in ranked[:limit]]


def serial_history(*, value: str) -> list[SerialRecord]:
    """Every read of one traced value, oldest first, with capture, station and product type.
    Withdrawn captures stay in the history (``record.capture.withdrawn``); the station to show
    is the capture's ``station_label`` (its name when the photo was taken)."""
    norm = identifier_key(value)
    return list(
        SerialRecord.objects.filter(value=norm)
        .select_related("capture", "station", "product_type", "field", "field__read")
        .order_by("created_at", "id")
    )
