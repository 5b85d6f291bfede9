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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max, ProtectedError, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from ocrapp import alarms, audit, dashboard, events, roles, selectors, tokens, waiting
from ocrapp.alarms import alarm_acknowledge, alarm_close, expected_serials_import  # noqa: F401
from ocrapp.errors import ApplicationError, NotFoundError
from ocrapp.imagecheck import inspect_image
from ocrapp.models import (
    CAPTURE_RETRIED_ACTION,
    FIELD_REVISED_ACTION,
    REVISION_MEANINGS,
    REVISION_REASONS,
    SIGNATURE_FAILED_ACTION,
    WITHDRAWAL_REASON_MAX,
    ApiToken,
    Capture,
    Field,
    FieldRevision,
    ProductType,
    Read,
    ReadMetric,
    SerialRecord,
    Station,
    TextLine,
)
from workers.contract import ContractError, Polygon, ReadResult, parse_read_result
from workers.fieldspec import TRACED_FIELDS, identifier_key, lookalike_key, product_schema_errors
from workers.fieldspec.review import default_auto_accept_threshold
from workers.tasks import read_capture  # celery only; the task body imports the pipeline

log = logging.getLogger(__name__)
User = get_user_model()


# --- audit helpers --------------------------------------------------------------------------
#
# Every change below writes one ``AuditEvent`` through ``audit.record`` inside the transaction of
# the change. ``before``/``after`` hold the changed fields and the object's identifying fields
# (``_IDENTITY``); many-to-many values are sorted lists of names; passwords are never recorded.

_PRODUCT_TYPE_FIELDS = (
    "name",
    "description",
    "field_schema",
    "auto_accept_threshold",
    "active",
    "alarm_config",
)
_STATION_FIELDS = ("line", "name", "active", "token_owner", "members")
_USER_FIELDS = (
    "username",
    "first_name",
    "last_name",
    "email",
    "is_active",
    "is_staff",
    "is_superuser",
    "groups",
    "user_permissions",
)
_GROUP_FIELDS = ("name", "permissions")
_IDENTITY = {
    "producttype": ("name",),
    "station": ("line", "name"),
    "user": ("username",),
    "group": ("name",),
}


def _perm_names(perms) -> list[str]:
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in perms)


def _state(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The audited form of ``obj``'s fields ``names``: foreign keys and many-to-many values by
    name (usernames, group names, ``app.codename``), never by a bare id."""
    out: dict[str, Any] = {}
    for name in names:
        if name == "token_owner":
            out[name] = obj.token_owner.get_username() if obj.token_owner_id else None
        elif name == "members":
            out[name] = sorted(u.get_username() for u in obj.members.all()) if obj.pk else []
        elif name == "groups":
            out[name] = sorted(g.name for g in obj.groups.all()) if obj.pk else []
        elif name in ("user_permissions", "permissions"):
            perms = getattr(obj, name).select_related("content_type") if obj.pk else []
            out[name] = _perm_names(perms)
        else:
            out[name] = getattr(obj, name)
    return out


def _diff(
    kind: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Changed fields of ``before``/``after`` plus the identifying ones; None when nothing
    changed (no event is written for an edit that changes nothing)."""
    changed = [k for k in after if before.get(k) != after.get(k)]
    if not changed:
        return None
    keys = [*_IDENTITY.get(kind, ()), *(k for k in changed if k not in _IDENTITY.get(kind, ()))]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def _check_changes(model, changes: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ApplicationError(
            "invalid",
            _("%(kind)s: cannot change %(fields)s.")
            % {"kind": model._meta.verbose_name, "fields": ", ".join(unknown)},
            details={"fields": unknown},
        )


def _locked(model, pk: Any):
    obj = model.objects.select_for_update().filter(pk=pk).first()
    if obj is None:
        raise NotFoundError(
            "not_found", _("No %(kind)s %(id)s.") % {"kind": model._meta.verbose_name, "id": pk}
        )
    return obj


def _save_unique(obj: Any) -> None:
    """Save, turning a unique-constraint violation into a readable 409."""
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        raise ApplicationError(
            "already_exists",
            _("Another %(kind)s already has this name.") % {"kind": obj._meta.verbose_name},
            status_code=409,
        ) from None


def _ids(values: Iterable[Any]) -> list[Any]:
    return [getattr(v, "pk", v) for v in values]


# --- product types and stations -------------------------------------------------------------


def _product_type_check(
    *, field_schema: dict, auto_accept_threshold: float, alarm_config: Any = None
) -> None:
    problems = product_schema_errors(field_schema)
    if problems:
        raise ApplicationError("invalid_schema", " ".join(problems), details={"schema": problems})
    if not 0.0 <= auto_accept_threshold <= 1.0:
        raise ApplicationError("invalid", _("auto_accept_threshold must be between 0 and 1."))
    alarm_problems = alarms.alarm_config_errors({} if alarm_config is None else alarm_config)
    if alarm_problems:
        raise ApplicationError(
            "invalid_alarm_config",
            " ".join(alarm_problems),
            details={"alarm_config": alarm_problems},
        )


@transaction.atomic
def product_type_create(
    *,
    name: str,
    field_schema: dict,
    description: str = "",
    auto_accept_threshold: float | None = None,
    active: bool = True,
    alarm_config: dict | None = None,
    actor: Any = None,
    reason: str = "",
) -> ProductType:
    alarm_config = {} if alarm_config is None else alarm_config
    if auto_accept_threshold is None:  # the calibrated default (workers.fieldspec.review)
        auto_accept_threshold = default_auto_accept_threshold()
    _product_type_check(
        field_schema=field_schema,
        auto_accept_threshold=auto_accept_threshold,
        alarm_config=alarm_config,
    )
    product_type = ProductType(
        name=name,
        field_schema=field_schema,
        description=description,
        auto_accept_threshold=auto_accept_threshold,
        active=active,
        alarm_config=alarm_config,
    )
    _save_unique(product_type)
    audit.record(
        actor=actor,
        action="create",
        obj=product_type,
        after=_state(product_type, _PRODUCT_TYPE_FIELDS),
        reason=reason,
    )
    return product_type


@transaction.atomic
def product_type_update(
    *, product_type_id: int, actor: Any, changes: Mapping[str, Any], reason: str = ""
) -> ProductType:
    """Change a product type's name, description, field schema, auto-accept threshold or
    ``active`` (deactivate instead of delete); one audit event with the changed fields."""
    _check_changes(ProductType, changes, _PRODUCT_TYPE_FIELDS)
    product_type = _locked(ProductType, product_type_id)
    before = _state(product_type, _PRODUCT_TYPE_FIELDS)
    for name, value in changes.items():
        setattr(product_type, name, value)
    _product_type_check(
        field_schema=product_type.field_schema,
        auto_accept_threshold=product_type.auto_accept_threshold,
        alarm_config=product_type.alarm_config,
    )
    diff = _diff("producttype", before, _state(product_type, _PRODUCT_TYPE_FIELDS))
    if diff is None:
        return product_type
    _save_unique(product_type)
    audit.record(
        actor=actor, action="update", obj=product_type, before=diff[0], after=diff[1], reason=reason
    )
    return product_type


def _delete_unused(*, obj: Any, fields: tuple[str, ...], in_use: str, actor: Any, reason: str):
    """Delete a product type or station that never took a capture, audited; one with captures
    is kept and ``in_use`` (the message) is raised as 409 ``in_use``: deactivate it instead."""
    if obj.captures.exists():
        raise ApplicationError("in_use", in_use, status_code=409)
    audit.record(actor=actor, action="delete", obj=obj, before=_state(obj, fields), reason=reason)
    obj.delete()


@transaction.atomic
def product_type_delete(*, product_type_id: int, actor: Any, reason: str = "") -> None:
    """Delete a product type that was never used; one with captures is deactivated instead
    (409 ``in_use``)."""
    product_type = _locked(ProductType, product_type_id)
    _delete_unused(
        obj=product_type,
        fields=_PRODUCT_TYPE_FIELDS,
        in_use=_("Product type %(name)s has captures: deactivate it instead of deleting it.")
        % {"name": product_type},
        actor=actor,
        reason=reason,
    )


@transaction.atomic
def station_create(
    *,
    line: str,
    name: str,
    token_owner=None,
    active: bool = True,
    members: Iterable[Any] = (),
    actor: Any = None,
    reason: str = "",
) -> Station:
    station = Station(line=line, name=name, token_owner=token_owner, active=active)
    _save_unique(station)
    if members:
        station.members.set(_ids(members))
    audit.record(
        actor=actor,
        action="create",
        obj=station,
        after=_state(station, _STATION_FIELDS),
        reason=reason,
    )
    return station


@transaction.atomic
def station_update(
    *, station_id: int, actor: Any, changes: Mapping[str, Any], reason: str = ""
) -> Station:
    """Rename, (de)activate a station, change its operators (``members``) or its token owner.
    Captures keep the line and name they were taken under (``Capture.station_line``/``name``),
    so a rename does not rewrite history."""
    _check_changes(Station, changes, _STATION_FIELDS)
    station = _locked(Station, station_id)
    before = _state(station, _STATION_FIELDS)
    for name, value in changes.items():
        if name != "members":
            setattr(station, name, value)
    _save_unique(station)
    if "members" in changes:
        station.members.set(_ids(changes["members"]))
    diff = _diff("station", before, _state(station, _STATION_FIELDS))
    if diff is not None:
        audit.record(
            actor=actor, action="update", obj=station, before=diff[0], after=diff[1], reason=reason
        )
    return station


@transaction.atomic
def station_delete(*, station_id: int, actor: Any, reason: str = "") -> None:
    """Delete a station that never took a capture; one with captures is deactivated instead
    (409 ``in_use``)."""
    station = _locked(Station, station_id)
    _delete_unused(
        obj=station,
        fields=_STATION_FIELDS,
        in_use=_("Station %(name)s has captures: deactivate it instead of deleting it.")
        % {"name": station},
        actor=actor,
        reason=reason,
    )


# --- users and roles (groups) ---------------------------------------------------------------


def _password_state(user) -> str:
    return "usable" if user.has_usable_password() else "unusable"


def _user_apply(user, changes: Mapping[str, Any]) -> None:
    """Set plain fields now; many-to-many after the user has a primary key."""
    for name, value in changes.items():
        if name not in ("groups", "user_permissions"):
            setattr(user, name, value)


def _user_apply_m2m(user, changes: Mapping[str, Any]) -> None:
    if "groups" in changes:
        user.groups.set(_ids(changes["groups"]))
    if "user_permissions" in changes:
        user.user_permissions.set(_ids(changes["user_permissions"]))


@transaction.atomic
def user_create(
    *,
    actor: Any,
    username: str,
    password: str | None,
    fields: Mapping[str, Any] | None = None,
    reason: str = "",
) -> Any:
    """Create a user (``password`` None: no password login); ``fields``: names, e-mail,
    ``is_active``/``is_staff``/``is_superuser``, ``groups`` (roles), ``user_permissions``."""
    fields = dict(fields or {})
    _check_changes(User, fields, _USER_FIELDS)
    user = User(username=username)
    _user_apply(user, fields)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    _save_unique(user)
    _user_apply_m2m(user, fields)
    after = _state(user, _USER_FIELDS)
    after["password"] = _password_state(user)
    audit.record(actor=actor, action="create", obj=user, after=after, reason=reason)
    return user


@transaction.atomic
def user_update(*, user_id: int, actor: Any, changes: Mapping[str, Any], reason: str = "") -> Any:
    """Edit a user: names, e-mail, activation, staff/superuser, roles (``groups``) and
    permissions; one audit event with the changed fields. Passwords: :func:`user_password_set`."""
    _check_changes(User, changes, _USER_FIELDS)
    user = _locked(User, user_id)
    before = _state(user, _USER_FIELDS)
    _user_apply(user, changes)
    _save_unique(user)
    _user_apply_m2m(user, changes)
    diff = _diff("user", before, _state(user, _USER_FIELDS))
    if diff is not None:
        audit.record(
            actor=actor, action="update", obj=user, before=diff[0], after=diff[1], reason=reason
        )
    return user


@transaction.atomic
def user_password_set(*, user_id: int, actor: Any, password: str | None, reason: str = "") -> Any:
    """Set a user's password (None: disable password login); the audit event says that it
    changed, never what it is."""
    user = _locked(User, user_id)
    before = {"username": user.get_username(), "password": _password_state(user)}
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save(update_fields=["password"])
    after = {"username": user.get_username(), "password": "changed" if password else "unusable"}
    audit.record(
        actor=actor, action="password_change", obj=user, before=before, after=after, reason=reason
    )
    return user


@transaction.atomic
def user_delete(*, user_id: int, actor: Any, reason: str = "") -> None:
    """Delete a user who never did anything recorded (uploads, audit events and withdrawals
    protect a user: deactivate them instead)."""
    user = _locked(User, user_id)
    audit.record(
        actor=actor, action="delete", obj=user, before=_state(user, _USER_FIELDS), reason=reason
    )
    try:
        with transaction.atomic():
            user.delete()
    except ProtectedError:
        raise ApplicationError(
            "in_use",
            _("User %(name)s has recorded actions: deactivate them instead.")
            % {"name": user.get_username()},
            status_code=409,
        ) from None


@transaction.atomic
def group_create(
    *, actor: Any, name: str, permissions: Iterable[Any] = (), reason: str = ""
) -> Group:
    group = Group(name=name)
    _save_unique(group)
    group.permissions.set(_ids(permissions))
    audit.record(
        actor=actor, action="create", obj=group, after=_state(group, _GROUP_FIELDS), reason=reason
    )
    return group


@transaction.atomic
def group_update(
    *, group_id: int, actor: Any, changes: Mapping[str, Any], reason: str = ""
) -> Group:
    """Rename a role (group) or change what it may do (its permissions)."""
    _check_changes(Group, changes, _GROUP_FIELDS)
    group = _locked(Group, group_id)
    before = _state(group, _GROUP_FIELDS)
    if "name" in changes:
        group.name = changes["name"]
        _save_unique(group)
    if "permissions" in changes:
        group.permissions.set(_ids(changes["permissions"]))
    diff = _diff("group", before, _state(group, _GROUP_FIELDS))
    if diff is not None:
        audit.record(
            actor=actor, action="update", obj=group, before=diff[0], after=diff[1], reason=reason
        )
    return group


@transaction.atomic
def group_delete(*, group_id: int, actor: Any, reason: str = "") -> None:
    group = _locked(Group, group_id)
    before = _state(group, _GROUP_FIELDS)
    before["members"] = sorted(u.get_username() for u in group.user_set.all())
    audit.record(actor=actor, action="delete", obj=group, before=before, reason=reason)
    group.delete()


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


def user_create_with_role(
    *,
    username: str,
    role: str,
    actor=None,
    password: str | None = None,
    is_staff: bool = False,
    full_name: str = "",
    reason: str = "",
):
    """Create a user holding one role (``ocrapp.roles.ROLES``) through :func:`user_create`; no
    password = cannot log in with one (service users authenticate with their API token)."""
    if role not in roles.ROLES:
        raise ApplicationError("invalid", _("Unknown role %(role)s.") % {"role": role})
    first, _sep, last = full_name.strip().partition(" ")
    return user_create(
        actor=actor,
        username=username,
        password=password,
        fields={
            "is_staff": is_staff,
            "first_name": first,
            "last_name": last,
            "groups": [roles.group(role)],
        },
        reason=reason,
    )


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
        owner = user_create_with_role(
            username=username,
            role=roles.LINE_CLIENT,
            actor=actor,
            reason=reason or f"service user of station {station}",
        )
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
    if not station.active:  # also the token's own station when the upload names none
        raise ApplicationError(
            "station_inactive",
            _("Station %(station)s is not active.") % {"station": station},
            status_code=403,
        )
    return station


def _capture_audit_state(capture: Capture) -> dict[str, Any]:
    return {
        "station": capture.station_label,
        "station_id": capture.station_id,
        "product_type": capture.product_type.name,
        "uploaded_by": capture.uploaded_by.get_username(),
        "sha256": capture.sha256,
        "size_bytes": capture.size_bytes,
        "original_filename": capture.original_filename,
        "client_ref": capture.client_ref,
        "status": capture.status,
    }


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
    if not product_type.active:
        raise ApplicationError(
            "product_type_inactive",
            _("Product type %(name)s is not active.") % {"name": product_type},
        )
    upload_check_size(size=len(image_bytes))
    sha256 = hashlib.sha256(image_bytes).hexdigest()
    client_ref = client_ref[:128]
    request = _IdempotentRequest(
        sha256=sha256, product_type_id=product_type.pk, station_id=station.pk, client_ref=client_ref
    )
    if idempotency_key:
        existing = _capture_for_idempotency_key(user=user, key=idempotency_key, request=request)
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
        original_filename=_clean_filename(original_filename),
        station=station,
        station_line=station.line,
        station_name=station.name,
        product_type=product_type,
        uploaded_by=user,
        client_ref=client_ref,
        idempotency_key=idempotency_key or None,
        enqueued_at=timezone.now(),  # published on commit; the reaper resends it if it is lost
    )
    stored_name = _image_store(capture=capture, data=image_bytes, extension=info.extension)
    try:
        with transaction.atomic():
            capture.save(force_insert=True)
            audit.record(
                actor=user, action="create", obj=capture, after=_capture_audit_state(capture)
            )
            transaction.on_commit(lambda: _enqueue_read(capture_id=capture.pk), robust=False)
    except IntegrityError:
        _image_discard(name=stored_name)
        if idempotency_key:  # a concurrent request with the same key won the race
            existing = _capture_for_idempotency_key(user=user, key=idempotency_key, request=request)
            if existing is not None:
                return existing, False
        raise
    except QueueUnavailable:
        _image_discard(name=stored_name)
        with transaction.atomic():  # never accepted: the client is told nothing was stored
            audit.record(
                actor=user,
                action="discard",
                obj=capture,
                before={"status": capture.status},
                reason="queue_unavailable",
            )
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


def _clean_filename(name: str) -> str:
    """The upload's own file name as stored: its last path part, without control characters
    (a NUL cannot be stored in PostgreSQL text), at most 255 characters."""
    base = os.path.basename((name or "").replace("\\", "/"))
    return "".join(ch for ch in base if ch >= " " and ch != "\x7f")[:255]


@dataclass(frozen=True)
class _IdempotentRequest:
    """What a replay under the same Idempotency-Key must repeat to get the first capture."""

    sha256: str
    product_type_id: int
    station_id: int
    client_ref: str


def _capture_for_idempotency_key(*, user, key: str, request: _IdempotentRequest) -> Capture | None:
    """The capture this user made with ``key``; 409 when the replay differs from it (another
    image, product type, station or client_ref): a key names one request, never two."""
    existing = Capture.objects.filter(uploaded_by=user, idempotency_key=key).first()
    if existing is None:
        return None
    differs = [
        name
        for name, first, again in (
            ("image", existing.sha256, request.sha256),
            ("product_type", existing.product_type_id, request.product_type_id),
            ("station", existing.station_id, request.station_id),
            ("client_ref", existing.client_ref, request.client_ref),
        )
        if first != again
    ]
    if differs == ["image"]:
        raise ApplicationError(
            "idempotency_key_reused",
            _("This Idempotency-Key was already used for a different image."),
            details={"capture_id": str(existing.pk), "differs": differs},
            status_code=409,
        )
    if differs:
        raise ApplicationError(
            "idempotency_key_reused",
            _("This Idempotency-Key was already used for a different request (%(fields)s differ).")
            % {"fields": ", ".join(differs)},
            details={"capture_id": str(existing.pk), "differs": differs},
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
    capture = Capture.objects.only("image", "image_purged_at").filter(pk=capture_id).first()
    if capture is None or not capture.image:
        raise ImageMissing(f"Capture {capture_id} has no stored image.")
    if capture.image_purged_at is not None:
        raise ImageMissing(f"The image of capture {capture_id} was deleted by retention.")
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


def capture_thumbnail_name(*, capture: Capture) -> str:
    """The storage name of the capture's thumbnail (beside its image, ``<image>.thumb.jpg``)."""
    stem, _ext = os.path.splitext(capture.image.name)
    return f"{stem}.thumb.jpg"


def capture_thumbnail_open(*, capture: Capture):
    """The capture's thumbnail (JPEG, ``crops.THUMBNAIL_SIZE``) as an open storage file: made
    once from the stored photo with Pillow and stored beside it through the storage API
    (local or S3), then served as it is. ``ImageMissing`` when the photo is gone."""
    from ocrapp import crops

    storage = Capture._meta.get_field("image").storage
    name = capture_thumbnail_name(capture=capture)
    if not storage.exists(name):
        data = capture_image_bytes(capture_id=capture.pk)
        try:
            jpeg = crops.thumbnail_jpeg(data)
        except (OSError, ValueError) as exc:
            raise ImageMissing(f"The stored image of {capture.pk} cannot be decoded.") from exc
        name = storage.save(name, ContentFile(jpeg))
    return storage.open(name, "rb")


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
    waiting.notify_final(capture.pk)
    log.error("capture %s quarantined: %s", capture.pk, capture.failure_reason)


def capture_fail(*, capture_id: uuid.UUID | str, code: str, reason: str) -> bool:
    """Mark a capture FAILED unless it already finished; returns whether it changed. Audited
    as the system (actor None)."""
    with transaction.atomic():
        capture = (
            Capture.objects.select_for_update()
            .filter(pk=capture_id, status__in=[Capture.Status.PENDING, Capture.Status.PROCESSING])
            .first()
        )
        if capture is None:
            return False
        before = {"status": capture.status}
        capture.status = Capture.Status.FAILED
        capture.failure_code = code[:64]
        capture.failure_reason = reason
        capture.finished_at = timezone.now()
        capture.save(
            update_fields=["status", "failure_code", "failure_reason", "finished_at", "updated_at"]
        )
        waiting.notify_final(capture.pk)
        audit.record(
            actor=None,
            action="fail",
            obj=capture,
            before=before,
            after={"status": capture.status, "failure_code": capture.failure_code},
            reason=reason,
        )
        return True


@transaction.atomic
def capture_withdraw(*, capture_id: uuid.UUID | str, actor: Any, reason: str) -> Capture:
    """Withdraw a capture (it is never deleted): it leaves serial search but keeps its reads,
    history and image, and says on its page who withdrew it, when and why.

    Needs ``withdraw_capture`` (403 ``permission_denied``) and a capture ``actor`` may see
    (404); ``reason`` is required (400 ``reason_required``); a capture is withdrawn once
    (409 ``already_withdrawn``). Nothing is stored when any of these fails."""
    roles.require(actor, "withdraw_capture", message=_("You may not withdraw captures."))
    visible = selectors.capture_get(capture_id=capture_id, user=actor)  # else 404
    capture = Capture.objects.select_for_update(of=("self",)).get(pk=visible.pk)
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(
            "reason_required",
            _("A reason is required to withdraw a capture."),
            details={"reason": [_("This field is required.")]},
        )
    if len(reason) > WITHDRAWAL_REASON_MAX:
        limit = {"max": WITHDRAWAL_REASON_MAX}
        raise ApplicationError(
            "invalid",
            _("The reason must be at most %(max)s characters.") % limit,
            details={"reason": [_("At most %(max)s characters.") % limit]},
        )
    if capture.withdrawn_at is not None:
        raise ApplicationError(
            "already_withdrawn",
            _("Capture %(id)s was already withdrawn on %(date)s.")
            % {"id": capture.pk, "date": f"{capture.withdrawn_at:%Y-%m-%d}"},
            status_code=409,
        )
    capture.withdrawn_at = timezone.now()
    capture.withdrawn_by = actor
    capture.withdrawn_by_name = audit.printed_name(actor)
    capture.withdrawal_reason = reason
    capture.save(
        update_fields=[
            "withdrawn_at",
            "withdrawn_by",
            "withdrawn_by_name",
            "withdrawal_reason",
            "updated_at",
        ]
    )
    read_metric_waiting_refresh(capture_id=capture.pk)
    audit.record(
        actor=actor,
        action="withdraw",
        obj=capture,
        before={"withdrawn": False},
        after={"withdrawn": True, "withdrawn_at": capture.withdrawn_at},
        reason=reason,
    )
    return capture


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


def capture_review_sync(*, capture_id: uuid.UUID | str) -> None:
    """Write the latest read's review state and weakest confidence onto the capture
    (``Capture.review_state`` / ``weakest_confidence``, what the capture list filters on), in
    the caller's transaction: ``read_save``, the review (``_sign``) and ``capture_retry``."""
    state, weakest = selectors.capture_review_columns(capture_id=capture_id)
    Capture.objects.filter(pk=capture_id).update(review_state=state, weakest_confidence=weakest)


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
                    current_value=f.value,
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
        records = SerialRecord.objects.bulk_create(serial_rows(fields=fields, capture=capture))
        ReadMetric.objects.create(
            read=read,
            created_at=capture.created_at,
            station_id=capture.station_id,
            station_line=capture.station_line or capture.station.line,
            product_type_id=capture.product_type_id,
            **dashboard.read_metric_values(
                quality=read.quality,
                field_confidences=[f.confidence for f in fields],
                needs_review=read.needs_review,
                mismatches=read.mismatches,
                review_reasons=read.review.get("reasons") or [],
            ),
        )
        # its hour's counters in the dashboard rollup (one atomic upsert, same transaction)
        dashboard.read_hourly_add(first_read_id=read.pk, end_read_id=read.pk + 1)
        capture.status = Capture.Status.DONE
        capture.failure_code = ""
        capture.failure_reason = ""
        capture.finished_at = timezone.now()
        # a new read has no signed field yet (an empty one counts as waiting, as before)
        capture.review_state = selectors.review_state_of(
            needs_review=read.needs_review, fields=len(fields), unsigned=len(fields)
        )
        capture.weakest_confidence = min((f.confidence for f in fields), default=None)
        capture.save(
            update_fields=[
                "status",
                "failure_code",
                "failure_reason",
                "finished_at",
                "updated_at",
                "review_state",
                "weakest_confidence",
            ]
        )
        read_metric_waiting_refresh(capture_id=capture.pk)
        waiting.notify_final(capture.pk)
        audit.record(
            actor=None,
            action="create",
            obj=read,
            after=read_audit_state(
                read=read, fields=fields, lines=len(lines), records=len(records)
            ),
        )
        # Traceability alarms over the search rows just written (ocrapp/alarms.py). After
        # audit.record on purpose: its transaction-scoped chain lock makes concurrent saves
        # (and corrections) take turns here, so each one sees the serials committed before it.
        alarms.read_alarms_raise(capture=capture, read=read, fields=fields)
        # announced after the commit (ocrapp.events): webhooks "read.done", "read.needs_review"
        announced = {"capture_id": str(capture.pk), "read_id": read.pk, "run": run}
        events.publish(events.READ_DONE, announced)
        if read.needs_review:
            events.publish(events.READ_NEEDS_REVIEW, announced)
        return read


def read_metric_waiting_refresh(*, capture_id: uuid.UUID | str) -> None:
    """Set ``ReadMetric.waiting`` of the capture's reads from the review backlog rule
    (``selectors._review_backlog_qs``: the one definition), in the caller's transaction; called
    wherever the answer can change (a new read, a signed revision, a withdrawal)."""
    ids = list(
        selectors._review_backlog_qs().filter(capture_id=capture_id).values_list("pk", flat=True)
    )
    metrics = ReadMetric.objects.filter(read__capture_id=capture_id)
    metrics.filter(read_id__in=ids, waiting=False).update(waiting=True)
    metrics.exclude(read_id__in=ids).filter(waiting=True).update(waiting=False)


def serial_rows(*, fields: Iterable[Field], capture: Capture) -> list[SerialRecord]:
    """The search index rows of a new read's fields (unsaved): one ``text`` row per traced
    field value (``display``: as printed), and a ``code`` row where a code on the label carries
    another value than the print (so a value only the code carries is found as exact)."""
    rows: list[SerialRecord] = []

    def row(field: Field, shown: str, source: str) -> SerialRecord:
        return SerialRecord(
            value=identifier_key(shown)[:128],
            skeleton=lookalike_key(shown)[:128],
            display=shown.strip()[:128],
            source=source,
            field=field,
            field_name=field.name,
            capture=capture,
            product_type_id=capture.product_type_id,
            station_id=capture.station_id,
            created_at=capture.created_at,
        )

    for field in fields:
        if field.name not in TRACED_FIELDS:
            continue
        key = identifier_key(field.value)
        if key:
            rows.append(row(field, field.value, "text"))
        code_key = identifier_key(field.code_value or "")
        if code_key and code_key != key:
            rows.append(row(field, field.code_value or "", "code"))
    return rows


def read_audit_state(*, read: Read, fields: list[Field], lines: int, records: int) -> dict:
    """What the audit trail records of a saved read: its capture and run, the review decision
    and every field's value by field id, so that ``manage.py audit_verify`` can tell a value
    changed behind the application's back (``audit.verify_field_values``)."""
    return {
        "capture": str(read.capture_id),
        "run": read.run,
        "capture_status": Capture.Status.DONE,
        "needs_review": read.needs_review,
        "lines": lines,
        "serial_records": records,
        "fields": {str(f.pk): _field_audit_state(f) for f in fields},
    }


def _field_audit_state(field: Field) -> dict[str, str]:
    """A field as a read's audit event records it: the machine read, and the value in force
    when a correction already changed it (only a baseline of a reviewed read has one)."""
    state = {"name": field.name, "value": field.value}
    if field.current_value != field.value:
        state["current_value"] = field.current_value
    return state


def _read_refuse(*, capture_id: uuid.UUID | str, problem: str) -> None:
    """Fail the capture of a result that does not fit the contract (``bad_result``)."""
    log.error("capture %s: the pipeline result does not fit the contract: %s", capture_id, problem)
    capture_fail(
        capture_id=capture_id,
        code="bad_result",
        reason=f"The reader's result does not fit the result contract ({problem}).",
    )
    return None


_YEARLESS_ISO = re.compile(r"--(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")


def _storable_iso_dates(read_result: ReadResult) -> list[date | None]:
    """Each field's ``iso_date`` as a date; :class:`ContractError` for a field the database
    cannot hold (a name longer than the column, a date that is not ISO 8601). A date printed
    without a year (``--11-16``, ``fieldspec.grammar``) has no calendar date: None (the field
    row keeps the printed value; re-validating it gives the month and day again)."""
    max_name = Field._meta.get_field("name").max_length
    out: list[date | None] = []
    for i, f in enumerate(read_result.fields):
        if len(f.name) > max_name:
            raise ContractError(f"result.fields[{i}].name: longer than {max_name} characters")
        if f.iso_date and _YEARLESS_ISO.fullmatch(f.iso_date):
            out.append(None)
            continue
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


# --- review: signed revisions of fields, electronic signature, retry --------------------------

MAX_REASON_LENGTH = 500


@dataclass(frozen=True)
class FieldEdit:
    """What a reviewer asks for one field: ``value`` the corrected value (None: the value in
    force stands), ``reason`` a :data:`~ocrapp.models.REVISION_REASONS` code or the reviewer's
    own words, ``override`` to sign a value that fails validation (needs a reason)."""

    value: str | None = None
    reason: str = ""
    override: bool = False


@dataclass(frozen=True)
class _Planned:
    field: Field
    new_value: str
    entered_value: str
    meaning: str
    reason_code: str
    reason_text: str
    check: Any  # workers.fieldspec.FieldCheck of new_value
    override: bool


def _revision_reason(reason: str) -> tuple[str, str]:
    """(code, text) of a reason given as a code or in the reviewer's own words."""
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise ApplicationError(
            "invalid",
            _("A reason is at most %(max)s characters.") % {"max": MAX_REASON_LENGTH},
            details={},
        )
    if not reason:
        return "", ""
    if reason in REVISION_REASONS and reason != "other":
        return reason, ""
    return "other", reason


def _check_meaning(meaning: str) -> str:
    if meaning not in REVISION_MEANINGS:
        raise ApplicationError(
            "invalid",
            _("meaning must be one of %(meanings)s.") % {"meanings": ", ".join(REVISION_MEANINGS)},
            details={"meaning": list(REVISION_MEANINGS)},
        )
    return meaning


def _plan(*, capture: Capture, field: Field, edit: FieldEdit, meaning: str) -> _Planned:
    """One field's revision as asked, validated with the pipeline verifier's code."""
    code, text = _revision_reason(edit.reason)
    if edit.value is None:
        entered = field.current_value
        check = selectors.field_check(capture=capture, name=field.name, value=entered)
        new_value, changed = field.current_value, False
    else:
        entered = str(edit.value)
        check = selectors.field_check(capture=capture, name=field.name, value=entered)
        new_value = check.value
        changed = new_value != field.current_value
    if changed and not code:
        raise ApplicationError(
            "reason_required",
            _("%(field)s: a correction needs a reason.") % {"field": field.name},
            details={"fields": {field.name: ["reason_required"]}},
        )
    if edit.override and not code:
        raise ApplicationError(
            "reason_required",
            _("%(field)s: signing an invalid value needs a reason.") % {"field": field.name},
            details={"fields": {field.name: ["reason_required"]}},
        )
    if changed:
        meaning = "corrected"
    elif meaning == "corrected":
        meaning = "reviewed"  # nothing changed: the signature says the value was checked
    return _Planned(
        field=field,
        new_value=new_value,
        entered_value=entered,
        meaning=meaning,
        reason_code=code,
        reason_text=text,
        check=check,
        override=bool(edit.override and not check.valid),
    )


def _refuse_invalid(plans: list[_Planned]) -> None:
    """400 ``invalid_value`` listing every value that fails validation without an override."""
    bad = {
        p.field.name: {
            "value": p.new_value,
            "reasons": [r.to_dict() for r in p.check.reasons],
        }
        for p in plans
        if not p.check.valid and not p.override
    }
    if bad:
        raise ApplicationError(
            "invalid_value",
            _(
                "Some values fail their checks: %(problems)s. Correct them, or sign them anyway "
                "with override and a reason."
            )
            % {
                "problems": "; ".join(
                    f"{name}: {', '.join(r['code'] for r in v['reasons'])}"
                    for name, v in bad.items()
                )
            },
            details={"fields": bad},
        )


def signature_check(*, user, password: str | None, password_due: bool, obj: Any) -> bool:
    """The identity check of an electronic signature (21 CFR 11.200).

    ``password_due``: whether the signer must give their password now (always with token
    authentication; in a browser session when the last password check is older than
    ``SIGNATURE_REAUTH_MINUTES``, see :mod:`ocrapp.signature`). A password given when not due is
    checked too. A missing password raises 403 ``password_required``; a wrong one records a
    ``signature_failed`` row in the audit trail (committed on its own: the attempt is kept,
    nothing of the change is stored) and raises 403 ``signature_failed`` with the number of
    failures since the signer's last good signature. Wrong passwords count toward the login
    lockout (``ocrapp.lockout``): while the signer is locked out every signature is refused,
    403 ``account_locked``. Returns whether a password was checked.
    """
    from django.contrib.auth import authenticate

    if not password:
        if password_due:
            raise ApplicationError(
                "password_required",
                _("Enter your password to sign."),
                details={"password": ["required"]},
                status_code=403,
            )
        return False
    from ocrapp import lockout

    def refuse_locked(lock: lockout.Lock) -> None:
        raise ApplicationError(
            "account_locked",
            _("%(lockout)s Nothing was signed.") % {"lockout": lockout.message(lock)},
            details={"retry_after": lock.seconds_left, "until": lock.until.isoformat()},
            status_code=403,
        )

    lock = lockout.locked(username=user.get_username())
    if lock is not None:  # too many wrong passwords (login or signature): refused while locked
        refuse_locked(lock)
    who = authenticate(username=user.get_username(), password=password)
    if who is None or who.pk != user.pk:
        with transaction.atomic():
            audit.record(
                actor=user, action=SIGNATURE_FAILED_ACTION, obj=obj, reason="wrong_password"
            )
        lock = lockout.locked(username=user.get_username())
        if lock is not None:  # this failure locked the account
            refuse_locked(lock)
        failures = selectors.signature_failures(user=user)
        log.warning("signature refused for %s: wrong password (%d)", user, failures)
        raise ApplicationError(
            "signature_failed",
            _("The password is wrong; nothing was signed."),
            details={"failures": failures},
            status_code=403,
        )
    return True


def _serial_index_follow(*, field: Field, capture: Capture) -> None:
    """Make the search index follow the field's value in force: the value's row is current,
    every other row of the field is superseded (kept, found as "was")."""
    if field.name not in TRACED_FIELDS:
        return
    key = identifier_key(field.current_value)[:128]
    text_rows = SerialRecord.objects.filter(field=field, source="text")
    text_rows.filter(superseded=False).exclude(value=key).update(superseded=True)
    if not key:
        return
    updated = text_rows.filter(value=key).update(superseded=False)
    if not updated:
        SerialRecord.objects.create(
            value=key,
            skeleton=lookalike_key(field.current_value)[:128],
            display=field.current_value.strip()[:128],
            source="text",
            field=field,
            field_name=field.name,
            capture=capture,
            product_type_id=capture.product_type_id,
            station_id=capture.station_id,
            created_at=capture.created_at,
        )


def _revise(*, plan: _Planned, capture: Capture, user, signed_at) -> FieldRevision:
    """Write one revision, the field's value in force, the search index and the audit row (in
    the caller's transaction, the field row locked)."""
    field = plan.field
    seq = (field.revisions.aggregate(m=Max("seq"))["m"] or 0) + 1
    old = field.current_value
    revision = FieldRevision.objects.create(
        field=field,
        seq=seq,
        old_value=old,
        new_value=plan.new_value,
        entered_value=plan.entered_value,
        reason_code=plan.reason_code,
        reason_text=plan.reason_text,
        meaning=plan.meaning,
        signer=user,
        signer_name=audit.printed_name(user),
        signed_at=signed_at,
        valid=plan.check.valid,
        check_reasons=[r.to_dict() for r in plan.check.reasons],
        override=plan.override,
    )
    if plan.new_value != old:
        field.current_value = plan.new_value
        field.save(update_fields=["current_value"])
        _serial_index_follow(field=field, capture=capture)
        corrected_serial = True
    else:
        corrected_serial = False
    read_metric_waiting_refresh(capture_id=capture.pk)
    audit.record(
        actor=user,
        action=FIELD_REVISED_ACTION,
        object_type="ocrapp.field",
        object_id=str(field.pk),
        object_repr=f"capture {capture.pk} run {field.read.run} {field.name}",
        before={"value": old, "seq": seq - 1},
        after={
            "value": plan.new_value,
            "entered": plan.entered_value,
            "seq": seq,
            "revision": revision.pk,
            "meaning": plan.meaning,
            "signer": revision.signer_name,
            "signed_at": signed_at.isoformat(),
            "valid": plan.check.valid,
            "check_reasons": [r.code for r in plan.check.reasons],
            "override": plan.override,
            "reason_code": plan.reason_code,
        },
        reason=plan.reason_text or plan.reason_code,
    )
    if plan.new_value != old:  # a correction (webhooks "field.corrected", after the commit)
        events.publish(
            events.FIELD_CORRECTED,
            {
                "capture_id": str(capture.pk),
                "field_id": field.pk,
                "field": field.name,
                "run": field.read.run,
                "old_value": old,
                "new_value": plan.new_value,
                "revision_id": revision.pk,
                "seq": seq,
                "meaning": plan.meaning,
                "reason_code": plan.reason_code,
                "signer": revision.signer_name,
                "signed_at": signed_at.isoformat(),
            },
        )
    if corrected_serial:  # after the revision's audit row: close / raise alarms it changes
        alarms.field_alarms_reevaluate(field_row=field, capture=capture, actor=user)
    return revision


def _refuse_withdrawn(capture: Capture) -> None:
    """A withdrawn capture is closed: no new revision or read (409 ``withdrawn``); what it had
    stays as it was when it was withdrawn."""
    if capture.withdrawn_at is not None:
        raise ApplicationError(
            "withdrawn",
            _("Capture %(id)s was withdrawn; it can no longer be signed or read again.")
            % {"id": capture.pk},
            status_code=409,
        )


def _review_capture(*, user, capture_id) -> tuple[Capture, Read]:
    roles.require(user, "review_read")
    capture = selectors.capture_get(capture_id=capture_id, user=user)
    _refuse_withdrawn(capture)
    read = selectors.capture_latest_read(capture=capture)
    if capture.status != Capture.Status.DONE or read is None:
        raise ApplicationError(
            "not_reviewable",
            _("Only a capture that was read can be reviewed."),
            status_code=409,
        )
    return capture, read


def _sign(
    *,
    user,
    capture: Capture,
    read: Read,
    plans: list[_Planned],
    password: str | None,
    password_due: bool,
    base_revision: int | None,
    base_seq: int | None = None,
) -> tuple[list[FieldRevision], bool]:
    """Check the values and the signature, then write every revision in one transaction."""
    _refuse_invalid(plans)
    checked = signature_check(user=user, password=password, password_due=password_due, obj=capture)
    with transaction.atomic():
        now = Capture.objects.select_for_update().get(pk=capture.pk)  # one review at a time
        _refuse_withdrawn(now)  # withdrawn meanwhile
        if base_revision is not None:
            now_count = selectors.read_revision_count(read=read)
            if now_count != base_revision:
                raise ApplicationError(
                    "stale_read",
                    _("Someone else signed this read meanwhile; reload it and check again."),
                    details={"revisions": now_count},
                    status_code=409,
                )
        fields = {f.pk: f for f in Field.objects.filter(pk__in=[p.field.pk for p in plans])}
        signed_at = timezone.now()
        revisions = []
        for plan in plans:
            locked = fields[plan.field.pk]
            if locked.current_value != plan.field.current_value or (
                base_seq is not None and locked.revisions.count() != base_seq
            ):
                raise ApplicationError(
                    "stale_read",
                    _("This value changed meanwhile; reload it and check again."),
                    status_code=409,
                )
            locked.read = read
            revisions.append(
                _revise(
                    plan=replace(plan, field=locked),
                    capture=capture,
                    user=user,
                    signed_at=signed_at,
                )
            )
        capture_review_sync(capture_id=capture.pk)
    return revisions, checked


def read_review(
    *,
    user,
    capture_id: uuid.UUID | str,
    edits: Mapping[str, FieldEdit] | None = None,
    meaning: str = "reviewed",
    password: str | None = None,
    password_due: bool = True,
    base_revision: int | None = None,
) -> tuple[list[FieldRevision], bool]:
    """Sign the latest read of a capture: one revision for every field of the read.

    ``edits`` (by field name) correct some fields (meaning ``corrected``, a reason needed); the
    others keep their value in force with ``meaning`` (``reviewed`` or ``approved``). Every
    value is checked with the pipeline verifier's ``validate_field``: one that fails is refused
    (400 ``invalid_value`` with the reasons) unless its edit says ``override`` with a reason.
    ``base_revision``: how many revisions of the read the reviewer saw; 409 ``stale_read``
    if that changed. The signature is checked by :func:`signature_check`. Returns the
    revisions and whether a password was checked. Nothing is stored when anything is refused.
    """
    capture, read = _review_capture(user=user, capture_id=capture_id)
    meaning = _check_meaning(meaning)
    fields = list(read.fields.all())
    if not fields:
        raise ApplicationError(
            "nothing_to_review",
            _("This read has no fields to sign; retake the photo or withdraw the capture."),
            status_code=409,
        )
    by_name: dict[str, list[Field]] = {}
    for f in fields:
        by_name.setdefault(f.name, []).append(f)
    edits = dict(edits or {})
    unknown = sorted(set(edits) - set(by_name))
    if unknown:
        raise ApplicationError(
            "unknown_field",
            _("The read has no field %(fields)s.") % {"fields": ", ".join(unknown)},
            details={"fields": {name: ["unknown"] for name in unknown}},
        )
    ambiguous = sorted(name for name in edits if len(by_name[name]) > 1)
    if ambiguous:
        raise ApplicationError(
            "ambiguous_field",
            _(
                "The read has several fields %(fields)s; correct them one by one "
                "(POST /api/v1/fields/{id}/revisions)."
            )
            % {"fields": ", ".join(ambiguous)},
        )
    plans = [
        _plan(capture=capture, field=f, edit=edits.get(f.name, FieldEdit()), meaning=meaning)
        for f in fields
    ]
    return _sign(
        user=user,
        capture=capture,
        read=read,
        plans=plans,
        password=password,
        password_due=password_due,
        base_revision=base_revision,
    )


def field_revise(
    *,
    user,
    field_id: int | str,
    value: str | None,
    reason: str = "",
    meaning: str = "reviewed",
    override: bool = False,
    password: str | None = None,
    password_due: bool = True,
    base_seq: int | None = None,
) -> tuple[FieldRevision, bool]:
    """Sign one field of a capture's latest read (see :func:`read_review`); ``base_seq``: the
    number of revisions of the field the reviewer saw (409 ``stale_read`` if it changed)."""
    roles.require(user, "review_read")
    field = selectors.field_get_scoped(field_id=field_id, user=user)
    capture, read = _review_capture(user=user, capture_id=field.read.capture_id)
    if field.read_id != read.pk:
        raise ApplicationError(
            "not_latest_read",
            _("Only the capture's latest read can be revised."),
            status_code=409,
        )
    plan = _plan(
        capture=capture,
        field=field,
        edit=FieldEdit(value=value, reason=reason, override=override),
        meaning=_check_meaning(meaning),
    )
    revisions, checked = _sign(
        user=user,
        capture=capture,
        read=read,
        plans=[plan],
        password=password,
        password_due=password_due,
        base_revision=None,
        base_seq=base_seq,
    )
    return revisions[0], checked


def capture_retry(*, user, capture_id: uuid.UUID | str) -> Capture:
    """Read a FAILED capture again: back to PENDING (the failure stays in the audit trail, the
    reads it had are kept; ``read_save`` numbers the new one as the next run) and enqueued on
    commit. If the queue is unreachable the capture is put back as it was (503)."""
    roles.require(user, "retry_capture")
    capture = selectors.capture_get(capture_id=capture_id, user=user)
    before: dict[str, Any] = {}
    try:
        with transaction.atomic():
            locked = Capture.objects.select_for_update().get(pk=capture.pk)
            _refuse_withdrawn(locked)
            if locked.image_purged_at is not None:
                raise ApplicationError(
                    "image_purged",
                    _(
                        "The image of this capture was deleted by retention; it cannot be read again."
                    ),
                    status_code=409,
                )
            if locked.status != Capture.Status.FAILED:
                raise ApplicationError(
                    "not_failed",
                    _("Only a failed capture can be read again (this one is %(status)s).")
                    % {"status": locked.status},
                    status_code=409,
                )
            before = {
                "status": locked.status,
                "failure_code": locked.failure_code,
                "failure_reason": locked.failure_reason,
                "attempts": locked.attempts,
                "finished_at": locked.finished_at,
                "reads": locked.reads.count(),
            }
            Capture.objects.filter(pk=locked.pk).update(
                status=Capture.Status.PENDING,
                failure_code="",
                failure_reason="",
                started_at=None,
                finished_at=None,
                updated_at=timezone.now(),
                # a new read: the redelivery cap (OCR_MAX_ATTEMPTS) starts again, no lease held
                attempts=0,
                enqueued_at=timezone.now(),
                lease_expires_at=None,
                claim_token="",
            )
            capture_review_sync(capture_id=locked.pk)  # the latest read stays until the next
            audit.record(
                actor=user,
                action=CAPTURE_RETRIED_ACTION,
                obj=locked,
                before=before,
                after={"status": Capture.Status.PENDING, "next_run": before["reads"] + 1},
                reason=before["failure_code"],
            )
            transaction.on_commit(lambda: _enqueue_read(capture_id=capture.pk), robust=False)
    except QueueUnavailable:
        # committed, but no message: put the capture back as it was, so it can be retried
        with transaction.atomic():
            Capture.objects.filter(pk=capture.pk, status=Capture.Status.PENDING).update(
                status=Capture.Status.FAILED,
                failure_code=before["failure_code"],
                failure_reason=before["failure_reason"],
                finished_at=before["finished_at"],
            )
            waiting.notify_final(capture.pk)
            audit.record(
                actor=user,
                action="capture_retry_undone",
                obj=capture,
                before={"status": Capture.Status.PENDING},
                after={"status": Capture.Status.FAILED},
                reason="queue_unavailable",
            )
        raise ApplicationError(
            "queue_unavailable",
            _("The reading queue is unavailable; the capture stays failed. Retry shortly."),
            status_code=503,
        ) from None
    return selectors.capture_get(capture_id=capture.pk, user=user)


# --- retention: delete old images, keep the records (manage.py purge_images) ---------------------

IMAGE_PURGED_ACTION = "image_purged"
RETENTION_RUN_ACTION = "retention_run"


@dataclass(frozen=True)
class PurgeReport:
    """What one retention run did (or, with ``dry_run``, would do)."""

    cutoff: datetime
    dry_run: bool
    purged: int = 0  # images deleted (dry run: that would be deleted)
    kept_unfinished: int = 0  # older captures still PENDING/PROCESSING: left alone
    kept_for_review: int = 0  # older captures whose read waits for review: left alone
    errors: int = 0  # images the store would not delete (retried at the next run)


def _purge_candidates(*, cutoff: datetime):
    """Finished captures older than ``cutoff`` that still have their image and no read waiting
    for review."""
    return (
        Capture.objects.filter(
            created_at__lt=cutoff,
            image_purged_at__isnull=True,
            status__in=[Capture.Status.DONE, Capture.Status.FAILED],
        )
        .exclude(pk__in=selectors.review_backlog_capture_ids())
        .order_by("pk")
    )


def capture_image_purge(*, capture_id: uuid.UUID | str, cutoff: datetime, days: int) -> bool:
    """Delete one capture's stored image (through the storage API: local file or S3 object) and
    mark the capture ``image_purged_at``, with an ``image_purged`` audit row, in one
    transaction. The capture, its reads, fields, search rows and ``sha256`` stay.

    The image is deleted before the mark commits: interrupted in between, the capture is
    still unmarked and the next run deletes again (deleting a missing file or object is not an
    error) and marks it. False when the capture is no longer a candidate (already purged,
    newer, unfinished) or is locked by someone else right now. A store error propagates and
    nothing is marked."""
    with transaction.atomic():
        capture = (
            _purge_candidates(cutoff=cutoff)
            .select_for_update(skip_locked=True, of=("self",))
            .filter(pk=capture_id)
            .first()
        )
        if capture is None:
            return False
        name = capture.image.name
        if name:
            capture.image.storage.delete(name)
        now = timezone.now()
        Capture.objects.filter(pk=capture.pk).update(image_purged_at=now, updated_at=now)
        audit.record(
            actor=None,
            action=IMAGE_PURGED_ACTION,
            obj=capture,
            before={"image": name},
            after={"image": None, "image_purged_at": now, "sha256": capture.sha256},
            reason=f"retention: images older than {days} days",
        )
    return True


def images_purge(*, older_than_days: int, dry_run: bool = False, batch: int = 200) -> PurgeReport:
    """Retention: delete the images of finished captures older than ``older_than_days`` days
    (``capture_image_purge`` one by one, so a run can be interrupted anywhere and run again),
    then write one ``retention_run`` audit row with the counts (not for a dry run). Captures
    still being read, and those whose read waits for review, keep their image."""
    if older_than_days < 0:
        raise ApplicationError("invalid", _("The number of days must be zero or more."))
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = Capture.objects.filter(created_at__lt=cutoff, image_purged_at__isnull=True)
    kept_unfinished = old.exclude(status__in=[Capture.Status.DONE, Capture.Status.FAILED]).count()
    kept_for_review = (
        old.filter(status__in=[Capture.Status.DONE, Capture.Status.FAILED])
        .filter(pk__in=selectors.review_backlog_capture_ids())
        .count()
    )
    if dry_run:
        return PurgeReport(
            cutoff=cutoff,
            dry_run=True,
            purged=_purge_candidates(cutoff=cutoff).count(),
            kept_unfinished=kept_unfinished,
            kept_for_review=kept_for_review,
        )
    purged = errors = 0
    last = None
    while True:
        qs = _purge_candidates(cutoff=cutoff)
        if last is not None:
            qs = qs.filter(pk__gt=last)
        ids = list(qs.values_list("pk", flat=True)[:batch])
        if not ids:
            break
        for capture_id in ids:
            last = capture_id
            try:
                if capture_image_purge(capture_id=capture_id, cutoff=cutoff, days=older_than_days):
                    purged += 1
            except Exception as exc:  # the store refused: nothing marked, next run tries again
                errors += 1
                log.error(
                    "retention: image of capture %s not deleted (%s: %s)",
                    capture_id,
                    type(exc).__name__,
                    exc,
                )
    report = PurgeReport(
        cutoff=cutoff,
        dry_run=False,
        purged=purged,
        kept_unfinished=kept_unfinished,
        kept_for_review=kept_for_review,
        errors=errors,
    )
    with transaction.atomic():
        audit.record(
            actor=None,
            action=RETENTION_RUN_ACTION,
            object_type="retention",
            object_id=cutoff.isoformat(timespec="seconds"),
            object_repr=f"images older than {older_than_days} days",
            after={
                "older_than_days": older_than_days,
                "cutoff": cutoff,
                "purged": purged,
                "kept_unfinished": kept_unfinished,
                "kept_for_review": kept_for_review,
                "errors": errors,
            },
        )
    log.info(
        "retention: %d image(s) deleted, %d error(s), cutoff %s",
        purged,
        errors,
        cutoff.isoformat(timespec="seconds"),
        extra={"purged": purged, "errors": errors},
    )
    return report


# --- exports (issue 13, point 5): one audit row per export -------------------------------------

EXPORT_ACTION = "export"


def export_record(
    *,
    user: Any,
    fmt: str,
    scope: str,
    params: list[tuple[str, str]],
    rows: int,
    complete: bool,
) -> None:
    """Write the audit row of one export (``ocrapp.exports``): who, the format, what was
    exported (captures or a serial search), the filters as given, how many rows (CSV/XLSX) or
    events (EPCIS) were written and whether the download finished (a client that goes away
    mid-stream leaves ``complete: false`` with the rows sent so far)."""
    audit.record(
        actor=user,
        action=EXPORT_ACTION,
        object_type="export",
        object_id=fmt,
        object_repr=f"{scope} export ({fmt})",
        after={
            "format": fmt,
            "scope": scope,
            "filters": {k: v for k, v in params},
            "rows": rows,
            "complete": complete,
        },
    )
