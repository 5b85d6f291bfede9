"""Writes: every change to the database goes through a function here.

Functions are keyword-only and named ``<entity>_<action>``. Views, serializers, admin and tasks call
them; they never write to the ORM themselves.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.authtoken.models import Token

from ocrapp import audit
from ocrapp.errors import ApplicationError
from ocrapp.imagecheck import inspect_image
from ocrapp.models import Capture, Field, ProductType, Read, SerialRecord, Station, TextLine
from workers.contract import ContractError, Polygon, ReadResult, parse_read_result
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
        enqueued_at=timezone.now(),  # published on commit; the reaper resends it if it is lost
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


def capture_enqueue(*, capture_id: uuid.UUID | str, fresh: bool = False) -> None:
    """Send a capture (again) to the reader: PENDING, sent now, published once the current
    transaction commits. For any flow that asks for a new read (a retry of a FAILED or
    quarantined capture): ``fresh=True`` also clears the attempt count, so the redelivery cap
    (``OCR_MAX_ATTEMPTS``) starts again. If the queue is down the capture stays PENDING and the
    reaper sends it once the queue is back; nothing is lost and nothing is raised here.
    """
    changes: dict[str, Any] = {
        "status": Capture.Status.PENDING,
        "enqueued_at": timezone.now(),
        "lease_expires_at": None,
        "claim_token": "",
    }
    if fresh:
        changes["attempts"] = 0
    Capture.objects.filter(pk=capture_id).update(**changes)

    def publish() -> None:
        try:
            _enqueue_read(capture_id=capture_id)
        except QueueUnavailable:
            log.warning("capture %s stays PENDING until the reaper can send it", capture_id)

    transaction.on_commit(publish)


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
    token: str = ""  # the message (Celery task id) holding the lease


def _lease_until(now):
    return now + timedelta(seconds=settings.OCR_LEASE_SECONDS)


def capture_claim(*, capture_id: uuid.UUID | str, token: str = "") -> ClaimedCapture | None:
    """Move a capture to PROCESSING under a lease held by ``token`` (the message's task id).

    Returns None, and the message is done with, when the capture is finished or gone, when
    another run holds a lease that has not expired (a duplicate message), or when it was
    already claimed ``OCR_MAX_ATTEMPTS`` times: then the reader crashed or was stopped on it
    every time and it is quarantined (FAILED, ``quarantined``) instead of being read again.
    A PROCESSING capture is claimable again by the message that holds it (redelivered after
    its worker died) or once its lease expired; ``read_save`` makes sure only one result is
    ever stored. Database errors propagate: the task retries them (``workers.tasks``).
    """
    with transaction.atomic():
        capture = (
            Capture.objects.select_for_update(of=("self",))
            .select_related("product_type")
            .filter(pk=capture_id)
            .first()
        )
        now = timezone.now()  # after the row lock: a wait for it does not shorten the lease
        if capture is None or capture.status not in (
            Capture.Status.PENDING,
            Capture.Status.PROCESSING,
        ):
            log.info("capture %s already finished or gone; nothing to do", capture_id)
            return None
        if (
            capture.status == Capture.Status.PROCESSING
            and capture.claim_token != token
            and capture.lease_expires_at is not None
            and capture.lease_expires_at > now
        ):
            log.info(
                "capture %s is being read by another run (lease until %s); message dropped",
                capture_id,
                capture.lease_expires_at.isoformat(),
            )
            return None
        if capture.attempts >= settings.OCR_MAX_ATTEMPTS:
            _capture_quarantine(capture=capture, now=now)
            return None
        capture.status = Capture.Status.PROCESSING
        capture.attempts += 1
        capture.started_at = now
        capture.lease_expires_at = _lease_until(now)
        capture.claim_token = token[:64]
        capture.save(
            update_fields=[
                "status",
                "attempts",
                "started_at",
                "lease_expires_at",
                "claim_token",
                "updated_at",
            ]
        )
    return ClaimedCapture(
        capture_id=capture.pk,
        image_name=capture.image.name,
        field_schema=capture.product_type.field_schema,
        product_type=capture.product_type.name,
        attempts=capture.attempts,
        auto_accept=capture.product_type.auto_accept_threshold,
        token=capture.claim_token,
    )


def capture_lease_renew(*, capture_id: uuid.UUID | str, token: str) -> bool:
    """Extend the lease of the run holding ``token``; False when it no longer holds it."""
    return bool(
        Capture.objects.filter(
            pk=capture_id, status=Capture.Status.PROCESSING, claim_token=token[:64]
        ).update(lease_expires_at=_lease_until(timezone.now()))
    )


def capture_release(*, capture_id: uuid.UUID | str, token: str, retry_in: float = 0.0) -> bool:
    """Give a claimed capture back to the queue (PENDING) before a retry of its task.

    ``retry_in``: seconds until the retry is due; the reaper counts the wait from then.
    The attempt stays counted, so transient errors cannot retry past ``OCR_MAX_ATTEMPTS``.
    """
    due = timezone.now() + timedelta(seconds=max(0.0, retry_in))
    return bool(
        Capture.objects.filter(
            pk=capture_id, status=Capture.Status.PROCESSING, claim_token=token[:64]
        ).update(
            status=Capture.Status.PENDING,
            lease_expires_at=None,
            claim_token="",
            enqueued_at=due,
        )
    )


def _quarantine_reason(attempts: int) -> str:
    return (
        f"The reader started on this image {attempts} times and never finished (its worker "
        f"crashed, was killed or lost the database each time; limit {settings.OCR_MAX_ATTEMPTS}"
        "); it was set aside instead of being read again."
    )


def _capture_quarantine(*, capture: Capture, now) -> None:
    """FAILED with code ``quarantined`` (inside the caller's transaction, row locked)."""
    before = {"status": capture.status, "attempts": capture.attempts}
    capture.status = Capture.Status.FAILED
    capture.failure_code = "quarantined"
    capture.failure_reason = _quarantine_reason(capture.attempts)
    capture.finished_at = now
    capture.lease_expires_at = None
    capture.claim_token = ""
    capture.save(
        update_fields=[
            "status",
            "failure_code",
            "failure_reason",
            "finished_at",
            "lease_expires_at",
            "claim_token",
            "updated_at",
        ]
    )
    audit.record(
        actor=None,
        action="capture.quarantine",
        obj=capture,
        before=before,
        after={"status": capture.status, "failure_code": capture.failure_code},
        reason=capture.failure_reason,
    )
    log.error("capture %s quarantined: %s", capture.pk, capture.failure_reason)


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


@dataclass(frozen=True)
class ReapReport:
    """What one pass of :func:`capture_reap` did (capture ids as text)."""

    resent_pending: tuple[str, ...] = ()  # PENDING whose message was lost or is stuck
    resent_expired: tuple[str, ...] = ()  # PROCESSING whose run stopped renewing its lease
    quarantined: tuple[str, ...] = ()
    not_sent: tuple[str, ...] = ()  # the queue refused the resend: tried again next pass

    def __bool__(self) -> bool:
        return bool(self.resent_pending or self.resent_expired or self.quarantined or self.not_sent)


def _pending_due(capture: Capture, now) -> bool:
    """A PENDING capture is resent ``OCR_REAP_PENDING_AFTER`` s after it was last sent, then
    after twice as long at each resend (at most 16x): a long queue is not flooded."""
    sent = capture.enqueued_at or capture.created_at
    wait = settings.OCR_REAP_PENDING_AFTER * 2 ** min(capture.requeues, 4)
    return sent + timedelta(seconds=wait) <= now


def capture_reap(*, now=None, limit: int = 200) -> ReapReport:
    """Find captures whose message was lost and send them again; quarantine the exhausted ones.

    Backstop for everything the broker can lose: a Redis restart, a worker main process killed
    with a message in hand, an enqueue that never happened after a commit, a task whose error
    handling could not reach the database or the broker. PENDING captures waiting longer than
    ``OCR_REAP_PENDING_AFTER`` s (see ``_pending_due``) and PROCESSING ones whose lease expired
    are put back to PENDING and published again (``requeues`` + 1, an audit row each); one
    that already had ``OCR_MAX_ATTEMPTS`` claims is quarantined instead. Rows are locked with
    SKIP LOCKED, so several reapers (or a claim in progress) never act twice on one capture.
    A resent message is harmless if the first one turns up after all: the claim skips it.
    """
    now = now or timezone.now()
    oldest_sent = now - timedelta(seconds=settings.OCR_REAP_PENDING_AFTER)
    queued: set[str] | None = None
    candidates = list(
        Capture.objects.filter(
            Q(status=Capture.Status.PENDING)
            & (
                Q(enqueued_at__lte=oldest_sent)
                | Q(enqueued_at__isnull=True, created_at__lte=oldest_sent)
            )
            | Q(status=Capture.Status.PROCESSING)
            & (Q(lease_expires_at__lte=now) | Q(lease_expires_at__isnull=True))
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    pending: list[str] = []
    expired: list[str] = []
    quarantined: list[str] = []
    not_sent: list[str] = []
    if candidates:
        queued = _queued_capture_ids()
    for pk in candidates:
        try:
            outcome = _capture_reap_one(capture_id=pk, now=now, queued=queued)
        except QueueUnavailable:
            not_sent.append(str(pk))
            continue
        if outcome == "pending":
            pending.append(str(pk))
        elif outcome == "expired":
            expired.append(str(pk))
        elif outcome == "quarantined":
            quarantined.append(str(pk))
    return ReapReport(tuple(pending), tuple(expired), tuple(quarantined), tuple(not_sent))


_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
QUEUE_INSPECT_MAX = 5000


def _queued_capture_ids() -> set[str] | None:
    """Capture ids whose message is waiting in the broker's "ocr" list, so that a capture that
    is only slow (a long queue behind a restarted worker) is not sent twice. None when the
    broker cannot be inspected (not Redis, unreachable, a very long queue): then the reaper
    goes by time alone, which is safe, only less frugal (a duplicate message is skipped)."""
    from workers.tasks import OCR_QUEUE

    try:
        with read_capture.app.connection_for_read() as conn:
            client = getattr(conn.default_channel, "client", None)
            if client is None or not hasattr(client, "lrange"):
                return None
            if client.llen(OCR_QUEUE) > QUEUE_INSPECT_MAX:
                return None
            raw = client.lrange(OCR_QUEUE, 0, -1)
    except Exception as exc:  # the broker is down: time alone decides (and the resend fails)
        log.warning("reaper: cannot look into the queue (%s: %s)", type(exc).__name__, exc)
        return None
    ids: set[str] = set()
    for item in raw:
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        ids.update(_UUID_RE.findall(text))  # argsrepr holds the capture id (and the task ids)
    return ids


def _capture_reap_one(*, capture_id: uuid.UUID, now, queued: set[str] | None) -> str | None:
    with transaction.atomic():
        capture = Capture.objects.select_for_update(skip_locked=True).filter(pk=capture_id).first()
        if capture is None:
            return None
        if capture.status == Capture.Status.PENDING:
            if not _pending_due(capture, now):
                return None
            if queued is not None and str(capture.pk) in queued:
                return None  # still waiting in the queue: slow, not lost
            outcome, why = "pending", "its queue message was lost or is stuck"
        elif capture.status == Capture.Status.PROCESSING:
            if capture.lease_expires_at is not None and capture.lease_expires_at > now:
                return None
            if capture.attempts >= settings.OCR_MAX_ATTEMPTS:
                _capture_quarantine(capture=capture, now=now)
                return "quarantined"
            outcome, why = "expired", "the run reading it stopped (its lease expired)"
        else:
            return None
        before = {"status": capture.status, "attempts": capture.attempts}
        capture.status = Capture.Status.PENDING
        capture.lease_expires_at = None
        capture.claim_token = ""
        capture.enqueued_at = now
        capture.requeues += 1
        capture.save(
            update_fields=[
                "status",
                "lease_expires_at",
                "claim_token",
                "enqueued_at",
                "requeues",
                "updated_at",
            ]
        )
        audit.record(
            actor=None,
            action="capture.requeue",
            obj=capture,
            before=before,
            after={"status": capture.status, "requeues": capture.requeues},
            reason=f"Sent to the reader again: {why}.",
        )
        # Published inside the transaction: if the broker refuses, nothing above is kept and the
        # next pass tries again; a message consumed before the commit waits on the row lock.
        _enqueue_read(capture_id=capture.pk)
    log.warning("capture %s sent to the reader again (%s)", capture_id, why)
    return outcome


def read_save(
    *, capture_id: uuid.UUID | str, result: Mapping[str, Any], worker: str = ""
) -> Read | None:
    """Store one pipeline result and mark the capture DONE, atomically.

    ``result`` is the JSON form of a :class:`workers.contract.ReadResult` (``ReadResultDict``);
    it is checked with :func:`workers.contract.parse_read_result` before anything is written.
    A payload of another shape fails the capture with ``bad_result`` (nothing of it is stored)
    and returns None. Idempotent: if the capture is already DONE or FAILED nothing is written
    and None is returned.
    """
    try:
        read_result = parse_read_result(result)
        iso_dates = _storable_iso_dates(read_result)
    except ContractError as exc:
        return _read_refuse(capture_id=capture_id, problem=str(exc))
    except (TypeError, ValueError, AttributeError) as exc:
        # parse_read_result checks the keys it lists; a malformed value below them (a quality
        # number, a review reason, a code) fails while building the dataclasses.
        return _read_refuse(capture_id=capture_id, problem=f"result: {exc}")
    with transaction.atomic():
        capture = Capture.objects.select_for_update().filter(pk=capture_id).first()
        if capture is None or capture.status not in (
            Capture.Status.PENDING,
            Capture.Status.PROCESSING,
        ):
            return None
        run = capture.reads.count() + 1
        review = read_result.review
        read = Read.objects.create(
            capture=capture,
            run=run,
            models_used=[m.to_dict() for m in read_result.models],
            pipeline_config=dict(read_result.config),
            timings_ms=dict(read_result.timings_ms),
            quality=read_result.quality.to_dict(),
            image_info=read_result.image.to_dict(),
            device=read_result.device[:32],
            providers=list(read_result.providers),
            worker=worker[:255],
            codes=[dict(c) for c in read_result.codes],
            mismatches=[dict(m) for m in read_result.mismatches],
            needs_review=read_result.needs_review,
            review=review.to_dict() if review is not None else {},
        )
        lines = TextLine.objects.bulk_create(
            [
                TextLine(
                    read=read,
                    order=i,
                    text=line.text,
                    confidence=line.confidence,
                    char_confidences=list(line.char_confidences),
                    alternatives=[[[ch, p] for ch, p in alts] for alts in line.alternatives],
                    polygon=_points(line.polygon) or [],
                )
                for i, line in enumerate(read_result.lines)
            ]
        )
        fields = Field.objects.bulk_create(
            [
                Field(
                    read=read,
                    name=f.name,
                    raw_value=f.raw_value,
                    value=f.value,
                    confidence=f.confidence,
                    line=_line_at(lines, f.line_index),
                    box=_points(f.box),
                    valid=f.valid,
                    reason=f.reason,
                    reasons=[{"code": code, "message": message} for code, message in f.reasons],
                    corrected=f.corrected,
                    correction=f.correction,
                    source=f.source[:16],
                    code_value=f.code_value,
                    code_match=f.code_match,
                    iso_date=iso_date,
                    confidence_parts=dict(f.confidence_parts),
                )
                for f, iso_date in zip(read_result.fields, iso_dates, strict=True)
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


def _read_refuse(*, capture_id: uuid.UUID | str, problem: str) -> None:
    """Fail the capture of a result that does not fit the contract (``bad_result``)."""
    log.error("capture %s: the pipeline result does not fit the contract: %s", capture_id, problem)
    capture_fail(
        capture_id=capture_id,
        code="bad_result",
        reason=f"The reader's result does not fit the result contract ({problem}).",
    )
    return None


def _storable_iso_dates(read_result: ReadResult) -> list[date | None]:
    """Each field's ``iso_date`` as a date; :class:`ContractError` for a field the database
    cannot hold (a name longer than the column, a date that is not ISO 8601)."""
    max_name = Field._meta.get_field("name").max_length
    out: list[date | None] = []
    for i, f in enumerate(read_result.fields):
        if len(f.name) > max_name:
            raise ContractError(f"result.fields[{i}].name: longer than {max_name} characters")
        try:
            out.append(date.fromisoformat(f.iso_date) if f.iso_date else None)
        except ValueError:
            raise ContractError(f"result.fields[{i}].iso_date: not an ISO 8601 date") from None
    return out


def _points(polygon: Polygon | None) -> list[list[float]] | None:
    return [[x, y] for x, y in polygon] if polygon else None


def _line_at(lines: list[TextLine], index: int | None) -> TextLine | None:
    if index is not None and 0 <= index < len(lines):
        return lines[index]
    return None
