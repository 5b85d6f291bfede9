"""Writes: every change to the database goes through a function here.

Functions are keyword-only and named ``<entity>_<action>``. Views, serializers, admin and tasks call
them; they never write to the ORM themselves.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.authtoken.models import Token

from ocrapp.errors import ApplicationError
from ocrapp.imagecheck import inspect_image
from ocrapp.models import Capture, Field, ProductType, Read, SerialRecord, Station, TextLine
from workers.fieldspec import TRACED_FIELDS, identifier_key, lookalike_key, product_schema_errors
from workers.tasks import read_capture  # celery only; the task body imports the pipeline

log = logging.getLogger(__name__)
User = get_user_model()


# --- product types and stations -------------------------------------------------------------


def product_type_create(
    *,
    name: str,
    field_schema: dict,
    description: str = "",
    auto_accept_threshold: float = 0.85,
) -> ProductType:
    problems = product_schema_errors(field_schema)
    if problems:
        raise ApplicationError("invalid_schema", " ".join(problems), details={"schema": problems})
    if not 0.0 <= auto_accept_threshold <= 1.0:
        raise ApplicationError("invalid", "auto_accept_threshold must be between 0 and 1.")
    return ProductType.objects.create(
        name=name,
        field_schema=field_schema,
        description=description,
        auto_accept_threshold=auto_accept_threshold,
    )


def station_create(*, line: str, name: str, token_owner=None) -> Station:
    return Station.objects.create(line=line, name=name, token_owner=token_owner)


@transaction.atomic
def station_token_issue(*, station: Station, rotate: bool = False) -> str:
    """Give the station a service user (if it has none) and return that user's API token."""
    if station.token_owner is None:
        username = f"station-{station.pk}-{uuid.uuid4().hex[:6]}"
        station.token_owner = User.objects.create_user(username=username, password=None)
        station.save(update_fields=["token_owner"])
    if rotate:
        Token.objects.filter(user=station.token_owner).delete()
    token, _ = Token.objects.get_or_create(user=station.token_owner)
    return token.key


# --- captures --------------------------------------------------------------------------------


def _station_for(*, user, station: Station | None) -> Station:
    owned = Station.objects.filter(token_owner=user).first()
    if station is None:
        if owned is None:
            raise ApplicationError(
                "invalid", "station is required.", details={"station": ["This field is required."]}
            )
        return owned
    if owned is not None and owned.pk != station.pk:
        raise ApplicationError(
            "station_mismatch",
            "This token belongs to another station.",
            status_code=403,
        )
    if not station.active:
        raise ApplicationError("station_inactive", f"Station {station} is not active.")
    return station


def capture_create(
    *,
    user,
    image_bytes: bytes,
    original_filename: str = "",
    product_type: ProductType,
    station: Station | None = None,
    client_ref: str = "",
    idempotency_key: str | None = None,
) -> tuple[Capture, bool]:
    """Validate and store an uploaded photo, create its Capture and enqueue the read on commit.

    Returns ``(capture, created)``; with an ``idempotency_key`` already used by this user for the
    same image, the existing capture is returned with ``created=False``. Nothing is stored when
    validation fails, and the stored file is removed if the database write fails.
    """
    station = _station_for(user=user, station=station)
    upload_check_size(size=len(image_bytes))
    sha256 = hashlib.sha256(image_bytes).hexdigest()
    if idempotency_key:
        existing = _capture_for_idempotency_key(user=user, key=idempotency_key, sha256=sha256)
        if existing is not None:
            return existing, False
    info = inspect_image(
        image_bytes, max_pixels=settings.MAX_IMAGE_PIXELS, max_side=settings.MAX_IMAGE_SIDE
    )
    capture = Capture(
        sha256=sha256,
        size_bytes=len(image_bytes),
        width=info.width,
        height=info.height,
        image_format=info.format,
        original_filename=os.path.basename(original_filename)[:255],
        station=station,
        product_type=product_type,
        uploaded_by=user,
        client_ref=client_ref[:128],
        idempotency_key=idempotency_key or None,
    )
    stored_name = _image_store(capture=capture, data=image_bytes, extension=info.extension)
    try:
        with transaction.atomic():
            capture.save(force_insert=True)
            transaction.on_commit(lambda: _enqueue_read(capture_id=capture.pk), robust=False)
    except IntegrityError:
        _image_discard(name=stored_name)
        if idempotency_key:  # a concurrent request with the same key won the race
            existing = _capture_for_idempotency_key(user=user, key=idempotency_key, sha256=sha256)
            if existing is not None:
                return existing, False
        raise
    except QueueUnavailable:
        _image_discard(name=stored_name)
        Capture.objects.filter(pk=capture.pk).delete()
        raise ApplicationError(
            "queue_unavailable",
            "The reading queue is unavailable; nothing was stored. Retry shortly.",
            status_code=503,
        ) from None
    except BaseException:
        _image_discard(name=stored_name)
        raise
    return capture, True


def _image_store(*, capture: Capture, data: bytes, extension: str) -> str:
    """Write the original through the storage API (local files or S3); returns its storage name."""
    try:
        capture.image.save(f"{uuid.uuid4().hex}{extension}", ContentFile(data), save=False)
    except Exception as exc:  # disk full, S3 unreachable or refusing: the upload is not taken
        log.error("could not store an uploaded image: %s: %s", type(exc).__name__, exc)
        raise ApplicationError(
            "storage_unavailable",
            "The image store is unavailable; nothing was stored. Retry shortly.",
            status_code=503,
        ) from exc
    return capture.image.name


def _image_discard(*, name: str) -> None:
    """Delete a stored original whose capture was not saved; never hides the original error."""
    try:
        Capture._meta.get_field("image").storage.delete(name)
    except Exception as exc:
        log.error("could not delete orphaned image %s: %s: %s", name, type(exc).__name__, exc)


def upload_check_size(*, size: int) -> None:
    """Refuse an upload over MAX_UPLOAD_BYTES (413); callers with a stream check before reading."""
    if size > settings.MAX_UPLOAD_BYTES:
        raise ApplicationError(
            "file_too_large",
            f"The file is {size} bytes; the limit is {settings.MAX_UPLOAD_BYTES} bytes.",
            details={"max_bytes": settings.MAX_UPLOAD_BYTES},
            status_code=413,
        )


def _capture_for_idempotency_key(*, user, key: str, sha256: str) -> Capture | None:
    existing = Capture.objects.filter(uploaded_by=user, idempotency_key=key).first()
    if existing is not None and existing.sha256 != sha256:
        raise ApplicationError(
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different image.",
            details={"capture_id": str(existing.pk)},
            status_code=409,
        )
    return existing


class QueueUnavailable(Exception):
    pass


def _enqueue_read(*, capture_id: uuid.UUID) -> None:
    try:
        read_capture.delay(str(capture_id))
    except Exception as exc:  # kombu raises OperationalError and friends
        log.error("could not enqueue capture %s: %s", capture_id, exc)
        raise QueueUnavailable(str(exc)) from exc


class ImageMissing(FileNotFoundError):
    """The stored original of a capture is gone (deleted file, missing S3 object)."""


class ImageStoreError(OSError):
    """The image store failed for another reason (network, 5xx); an OSError, so worth a retry."""


def capture_image_bytes(*, capture_id: uuid.UUID | str) -> bytes:
    """The stored original of a capture, read through Django's storage API (local files or S3).

    Raises ``ImageMissing`` when the file or object is gone and ``ImageStoreError`` when the store
    cannot be read right now; the worker turns the first into ``image_missing`` and retries the
    second.
    """
    capture = Capture.objects.only("image").filter(pk=capture_id).first()
    if capture is None or not capture.image:
        raise ImageMissing(f"Capture {capture_id} has no stored image.")
    name = capture.image.name
    try:
        with capture.image.open("rb") as fh:
            return fh.read()
    except Exception as exc:
        if _is_missing_object(exc):
            raise ImageMissing(f"The stored image {name} is missing.") from exc
        if isinstance(exc, OSError):
            raise
        if _is_store_error(exc):
            raise ImageStoreError(f"Could not read the stored image {name}: {exc}") from exc
        raise


def _is_missing_object(exc: Exception) -> bool:
    """FileNotFoundError (local, and S3Storage.open on a 404) or a botocore 404 while reading."""
    if isinstance(exc, FileNotFoundError):
        return True
    response = getattr(exc, "response", None)  # botocore ClientError, without importing botocore
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"NoSuchKey", "NotFound", "404"} or status == 404


def _is_store_error(exc: Exception) -> bool:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # local storage only: django-storages[s3] not installed
        return False
    return isinstance(exc, BotoCoreError | ClientError)


@dataclass(frozen=True)
class ClaimedCapture:
    capture_id: uuid.UUID
    image_name: str  # storage name; read it with capture_image_bytes, never as a filesystem path
    field_schema: dict
    product_type: str
    attempts: int
    auto_accept: float = 0.85


def capture_claim(*, capture_id: uuid.UUID | str) -> ClaimedCapture | None:
    """Move a capture to PROCESSING; None when it is already finished (or gone).

    PROCESSING is claimable again so that a message redelivered after a worker died is processed;
    ``read_save`` makes sure only one result is ever stored.
    """
    now = timezone.now()
    updated = Capture.objects.filter(
        pk=capture_id, status__in=[Capture.Status.PENDING, Capture.Status.PROCESSING]
    ).update(status=Capture.Status.PROCESSING, attempts=F("attempts") + 1, started_at=now)
    if not updated:
        return None
    capture = Capture.objects.select_related("product_type").get(pk=capture_id)
    return ClaimedCapture(
        capture_id=capture.pk,
        image_name=capture.image.name,
        field_schema=capture.product_type.field_schema,
        product_type=capture.product_type.name,
        attempts=capture.attempts,
        auto_accept=capture.product_type.auto_accept_threshold,
    )


def capture_fail(*, capture_id: uuid.UUID | str, code: str, reason: str) -> bool:
    """Mark a capture FAILED unless it already finished; returns whether it changed."""
    return bool(
        Capture.objects.filter(
            pk=capture_id, status__in=[Capture.Status.PENDING, Capture.Status.PROCESSING]
        ).update(
            status=Capture.Status.FAILED,
            failure_code=code[:64],
            failure_reason=reason,
            finished_at=timezone.now(),
        )
    )


def read_save(
    *, capture_id: uuid.UUID | str, result: dict[str, Any], worker: str = ""
) -> Read | None:
    """Store one pipeline result (``ReadResult.to_dict()``) and mark the capture DONE, atomically.

    Idempotent: if the capture is already DONE or FAILED nothing is written and None is returned.
    """
    with transaction.atomic():
        capture = Capture.objects.select_for_update().filter(pk=capture_id).first()
        if capture is None or capture.status not in (
            Capture.Status.PENDING,
            Capture.Status.PROCESSING,
        ):
            return None
        run = capture.reads.count() + 1
        read = Read.objects.create(
            capture=capture,
            run=run,
            models_used=result.get("models", []),
            pipeline_config=result.get("config", {}),
            timings_ms=result.get("timings_ms", {}),
            quality=result.get("quality", {}),
            image_info=result.get("image", {}),
            device=result.get("device", "")[:32],
            providers=result.get("providers", []),
            worker=worker[:255],
            codes=result.get("codes", []),
            mismatches=result.get("mismatches", []),
            needs_review=bool(result.get("needs_review", True)),
            review=result.get("review") or {},
        )
        lines = TextLine.objects.bulk_create(
            [
                TextLine(
                    read=read,
                    order=i,
                    text=line.get("text", ""),
                    confidence=float(line.get("confidence", 0.0)),
                    char_confidences=line.get("char_confidences", []),
                    alternatives=line.get("alternatives", []),
                    polygon=line.get("polygon", []),
                )
                for i, line in enumerate(result.get("lines", []))
            ]
        )
        fields = Field.objects.bulk_create(
            [
                Field(
                    read=read,
                    name=f["name"],
                    raw_value=f.get("raw_value", ""),
                    value=f.get("value", ""),
                    confidence=float(f.get("confidence", 0.0)),
                    line=_line_at(lines, f.get("line_index")),
                    box=f.get("box"),
                    valid=bool(f.get("valid", False)),
                    reason=f.get("reason", ""),
                    reasons=f.get("reasons", []),
                    corrected=bool(f.get("corrected", False)),
                    correction=f.get("correction"),
                    source=(f.get("source") or "text")[:16],
                    code_value=f.get("code_value"),
                    code_match=f.get("code_match"),
                    iso_date=f.get("iso_date") or None,
                    confidence_parts=f.get("confidence_parts", {}),
                )
                for f in result.get("fields", [])
            ]
        )
        SerialRecord.objects.bulk_create(
            [
                SerialRecord(
                    value=identifier_key(field.value)[:128],
                    skeleton=lookalike_key(field.value)[:128],
                    field=field,
                    field_name=field.name,
                    capture=capture,
                    product_type_id=capture.product_type_id,
                    station_id=capture.station_id,
                    created_at=capture.created_at,
                )
                for field in fields
                if field.name in TRACED_FIELDS and identifier_key(field.value)
            ]
        )
        capture.status = Capture.Status.DONE
        capture.failure_code = ""
        capture.failure_reason = ""
        capture.finished_at = timezone.now()
        capture.save(
            update_fields=["status", "failure_code", "failure_reason", "finished_at", "updated_at"]
        )
        return read


def _line_at(lines: list[TextLine], index: Any) -> TextLine | None:
    if isinstance(index, int) and 0 <= index < len(lines):
        return lines[index]
    return None
