"""Writes: every change to the database goes through a function here.

Functions are keyword-only and named ``<entity>_<action>``. Views, serializers, admin and tasks call
them; they never write to the ORM themselves.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from ocrapp import audit, roles, tokens
from ocrapp.errors import ApplicationError
from ocrapp.imagecheck import inspect_image
from ocrapp.models import (
    ApiToken,
    Capture,
    Field,
    ProductType,
    Read,
    SerialRecord,
    Station,
    TextLine,
)
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
        raise ApplicationError("invalid", _("auto_accept_threshold must be between 0 and 1."))
    return ProductType.objects.create(
        name=name,
        field_schema=field_schema,
        description=description,
        auto_accept_threshold=auto_accept_threshold,
    )


def station_create(*, line: str, name: str, token_owner=None) -> Station:
    return Station.objects.create(line=line, name=name, token_owner=token_owner)


@transaction.atomic
def station_member_add(*, station: Station, user, actor=None) -> None:
    """Make ``user`` an operator of ``station`` (they see and correct its reads)."""
    if station.members.filter(pk=user.pk).exists():
        return
    station.members.add(user)
    audit.record(
        actor=actor,
        action="station.member_add",
        obj=station,
        after={"member": user.get_username()},
    )


# --- users, roles and API tokens -------------------------------------------------------------


@transaction.atomic
def user_create(
    *,
    username: str,
    role: str,
    actor=None,
    password: str | None = None,
    is_staff: bool = False,
    full_name: str = "",
):
    """Create a user holding one role (``ocrapp.roles.ROLES``); no password = cannot log in
    with one (service users authenticate with their API token)."""
    if role not in roles.ROLES:
        raise ApplicationError("invalid", _("Unknown role %(role)s.") % {"role": role})
    first, _sep, last = full_name.strip().partition(" ")
    user = User.objects.create_user(
        username=username, password=password, is_staff=is_staff, first_name=first, last_name=last
    )
    user.groups.add(roles.group(role))
    audit.record(
        actor=actor,
        action="user.create",
        obj=user,
        after={"username": username, "role": role, "is_staff": is_staff},
    )
    return user


@transaction.atomic
def user_password_set(*, user, password: str, actor=None, reason: str = "") -> None:
    user.set_password(password)
    user.save(update_fields=["password"])
    audit.record(actor=actor, action="user.password_set", obj=user, reason=reason)


@transaction.atomic
def user_password_disable(*, user, actor=None, reason: str = "") -> None:
    """The user can no longer log in with a password."""
    user.set_unusable_password()
    user.save(update_fields=["password"])
    audit.record(actor=actor, action="user.password_disable", obj=user, reason=reason)


@transaction.atomic
def api_token_issue(
    *, user, actor=None, station: Station | None = None, name: str = "", reason: str = ""
) -> tuple[ApiToken, str]:
    """Issue an API token for ``user`` (optionally naming its ``station``). Returns the token
    and its key: the key exists only in this return value (the database keeps its sha256), so
    show it once and never again."""
    key = tokens.new_key()
    token = ApiToken.objects.create(
        key_hash=tokens.hash_key(key),
        prefix=tokens.key_prefix(key),
        user=user,
        station=station,
        name=name[:100],
    )
    audit.record(
        actor=actor,
        action="api_token.issue",
        obj=token,
        after={
            "prefix": token.prefix,
            "user": user.get_username(),
            "station": str(station) if station else None,
            "name": token.name,
        },
        reason=reason,
    )
    return token, key


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor=None, reason: str = "") -> bool:
    """Revoke ``token`` (it no longer authenticates); False if it was already revoked."""
    now = timezone.now()
    if not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
        return False
    token.revoked_at = now
    audit.record(
        actor=actor,
        action="api_token.revoke",
        obj=token,
        before={"revoked_at": None},
        after={"revoked_at": now},
        reason=reason,
    )
    return True


TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def api_token_touch(*, token: ApiToken, now: datetime | None = None) -> bool:
    """Note that ``token`` was used: ``last_used_at`` moves at most once per
    :data:`TOKEN_TOUCH_INTERVAL` (one conditional UPDATE, no write on most requests)."""
    now = now or timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < TOKEN_TOUCH_INTERVAL:
        return False
    updated = ApiToken.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOKEN_TOUCH_INTERVAL),
        pk=token.pk,
    ).update(last_used_at=now)
    if updated:
        token.last_used_at = now
    return bool(updated)


@transaction.atomic
def station_token_issue(
    *, station: Station, rotate: bool = False, actor=None, name: str = "", reason: str = ""
) -> str:
    """Issue a new API token for the station's service user (created, with the
    ``line_client`` role, if the station has none) and return its key (shown once).
    ``rotate``: revoke the station's other tokens first."""
    if station.token_owner is None:
        username = f"station-{station.pk}-{uuid.uuid4().hex[:6]}"
        owner = user_create(username=username, role=roles.LINE_CLIENT, actor=actor)
        station.token_owner = owner
        station.save(update_fields=["token_owner"])
        audit.record(
            actor=actor,
            action="station.token_owner_set",
            obj=station,
            before={"token_owner": None},
            after={"token_owner": username},
        )
    if rotate:
        for old in ApiToken.objects.filter(station=station, revoked_at__isnull=True):
            api_token_revoke(token=old, actor=actor, reason=reason or "rotated")
    _token, key = api_token_issue(
        user=station.token_owner,
        station=station,
        name=name or str(station),
        actor=actor,
        reason=reason,
    )
    return key


# --- captures --------------------------------------------------------------------------------


def _station_for(*, user, station: Station | None) -> Station:
    """The station of an upload: the one named (which ``user`` must be allowed to upload to,
    ``roles.may_upload_to``), else the station whose token ``user`` owns."""
    owned = Station.objects.filter(token_owner=user).first()
    if station is None:
        if owned is None:
            raise ApplicationError(
                "invalid",
                _("station is required."),
                details={"station": [_("This field is required.")]},
            )
        station = owned
    if owned is not None and owned.pk != station.pk:
        raise ApplicationError(
            "station_mismatch",
            _("This token belongs to another station."),
            status_code=403,
        )
    if not roles.may_upload_to(user, station):
        raise ApplicationError(
            "station_mismatch",
            _("You may not upload to station %(station)s.") % {"station": station},
            status_code=403,
        )
    if not station.active:
        raise ApplicationError(
            "station_inactive", _("Station %(station)s is not active.") % {"station": station}
        )
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
    validation fails, and the stored file is removed if the database write fails. ``user``
    needs ``upload_capture`` and may upload only to its own station(s) (``ocrapp.roles``).
    """
    roles.require(user, "upload_capture")
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
            _("The reading queue is unavailable; nothing was stored. Retry shortly."),
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
            _("The image store is unavailable; nothing was stored. Retry shortly."),
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
            _("The file is %(size)s bytes; the limit is %(limit)s bytes.")
            % {"size": size, "limit": settings.MAX_UPLOAD_BYTES},
            details={"max_bytes": settings.MAX_UPLOAD_BYTES},
            status_code=413,
        )


def _capture_for_idempotency_key(*, user, key: str, sha256: str) -> Capture | None:
    existing = Capture.objects.filter(uploaded_by=user, idempotency_key=key).first()
    if existing is not None and existing.sha256 != sha256:
        raise ApplicationError(
            "idempotency_key_reused",
            _("This Idempotency-Key was already used for a different image."),
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
