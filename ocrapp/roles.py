"""Roles and what they may see: the one place that says who can do what.

Roles are Django groups (created by migration 0005) holding the ``Capture`` permissions below;
a user's rights are ``user.has_perm("ocrapp.<code>")``. Object scope: who may see a capture
(and its reads, fields, search hits and history) is :func:`capture_scope`; everything outside
it answers 404, in the API and the UI alike.

- ``operator``: uploads; sees and corrects the reads of the stations they work at
  (``Station.members``).
- ``quality_manager``: sees everything, reviews, signs, retries, withdraws, exports, reads the
  audit trail, acknowledges and closes alarms (``manage_alarms``).
- ``line_client``: a station's service user (its API token): creates captures and sees (and
  exports) only its own station's captures, search hits and history.
- ``auditor``: sees and exports everything, read-only, including the audit trail and the
  webhook log.
- ``admin``: every permission (and the Django admin).

Webhooks (``ocrapp.webhooks``): ``manage_webhooks`` (quality manager, admin) creates and
deactivates endpoints and replays deliveries; ``view_webhooks`` (also the auditor) reads them.

Uploads: a user with ``upload_capture`` may upload to the stations in :func:`station_scope`
(every station with ``view_all_captures``, else their own). Checks: :func:`can` for a
permission (API: 403 in the JSON error shape; pages: the 403 page, see :func:`require`),
:func:`scoped` / :func:`capture_scope` for objects (outside: 404).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

OPERATOR = "operator"
QUALITY_MANAGER = "quality_manager"
LINE_CLIENT = "line_client"
AUDITOR = "auditor"
ADMIN = "admin"
ROLES = (OPERATOR, QUALITY_MANAGER, LINE_CLIENT, AUDITOR, ADMIN)

CAPTURE_PERMISSIONS = (
    "upload_capture",
    "view_all_captures",
    "review_read",
    "retry_capture",
    "withdraw_capture",
    "export_reads",
    "view_audit",
)
# ``Alarm`` permissions (``ocrapp.alarms``): acknowledging and closing alarms. Seeing them follows
# the capture scope (``scoped``): operators and station tokens see their stations' alarms.
ALARM_PERMISSIONS = ("manage_alarms",)

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    OPERATOR: ("upload_capture", "review_read", "retry_capture"),
    QUALITY_MANAGER: (
        "upload_capture",
        "view_all_captures",
        "review_read",
        "retry_capture",
        "withdraw_capture",
        "export_reads",
        "view_audit",
        "manage_webhooks",
        "view_webhooks",
        "manage_alarms",
    ),
    LINE_CLIENT: ("upload_capture", "export_reads"),  # its own station's reads only (scope)
    AUDITOR: ("view_all_captures", "view_audit", "view_webhooks", "export_reads"),
    ADMIN: CAPTURE_PERMISSIONS + ALARM_PERMISSIONS,
}


def can(user: Any, code: str) -> bool:
    """Does ``user`` hold permission ``ocrapp.<code>`` (through a role or directly)?"""
    return bool(user is not None and user.is_authenticated and user.has_perm(f"ocrapp.{code}"))


def station_ids(user: Any) -> set[int]:
    """The stations a user works at or is the service user of."""
    ids = set(user.member_stations.values_list("id", flat=True))
    station = getattr(user, "station", None)
    if station is not None:
        ids.add(station.id)
    return ids


def capture_scope(user: Any, prefix: str = "") -> Q | None:
    """Filter of the captures ``user`` may see (``prefix``: the lookup path to the capture
    from the queried model, e.g. ``"capture__"``); None = every capture. An anonymous user
    sees nothing."""
    if user is None or not user.is_authenticated:
        return Q(pk__in=[])
    if user.is_superuser or can(user, "view_all_captures"):
        return None
    return Q(**{f"{prefix}station_id__in": station_ids(user)})


def scoped(qs: Any, user: Any, prefix: str = "") -> Any:
    """``qs`` restricted to what ``user`` may see (see :func:`capture_scope`)."""
    q = capture_scope(user, prefix)
    return qs if q is None else qs.filter(q)


def require(user: Any, code: str, *, message: str | None = None) -> None:
    """Raise :class:`ocrapp.errors.PermissionDeniedError` (403: JSON error in the API, the
    403 page in the UI) unless ``user`` holds ``ocrapp.<code>``; ``message``: a translated
    message saying what was refused (default: "You do not have permission to do this.")."""
    if not can(user, code):
        from ocrapp.errors import PermissionDeniedError

        raise PermissionDeniedError(code, message)


def station_scope(user: Any) -> Q | None:
    """Filter of the stations ``user`` may upload to (None = every station): every station for
    holders of ``view_all_captures``, else the stations they work at or speak for; nothing
    without ``upload_capture``."""
    if not can(user, "upload_capture"):
        return Q(pk__in=[])
    if user.is_superuser or can(user, "view_all_captures"):
        return None
    return Q(pk__in=station_ids(user))


def may_upload_to(user: Any, station: Any) -> bool:
    """May ``user`` upload a capture for ``station``?"""
    if not can(user, "upload_capture"):
        return False
    if user.is_superuser or can(user, "view_all_captures"):
        return True
    return station.pk in station_ids(user)


def is_service_user(user: Any) -> bool:
    """Is ``user`` a station's service user (the owner of its API token)?"""
    return getattr(user, "station", None) is not None


def sync_groups(group_model: Any = None, permission_model: Any = None) -> None:
    """Create the role groups if missing and give each exactly its permissions (``admin``:
    every permission there is). Idempotent; migrations pass their historical models (after
    ``create_permissions``), the demo command and tests the live ones."""
    if group_model is None or permission_model is None:
        from django.contrib.auth.models import Group, Permission

        group_model, permission_model = Group, Permission
    for role, codes in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        perms = permission_model.objects.filter(
            content_type__app_label="ocrapp", codename__in=codes
        )
        if role == ADMIN:
            perms = permission_model.objects.all()
        group.permissions.set(perms)


def group(role: str) -> Any:
    """The group of ``role`` (created with its permissions if it is missing, e.g. after a
    test database flush)."""
    from django.contrib.auth.models import Group

    found = Group.objects.filter(name=role).first()
    if found is None:
        sync_groups()
        found = Group.objects.get(name=role)
    return found
