"""The Django admin, routed through ``ocrapp.services`` so that every change is audited.

- Product types, stations, users and roles (groups): ``save_model`` / ``delete_model`` /
  ``delete_queryset`` call the services (which write the ``AuditEvent`` inside the admin's
  transaction); ``save_related`` does not save the form's many-to-many values behind them (the
  services set them). An optional "reason for the change" goes into the audit event.
- Captures, reads, fields, text lines and the search index are view-only: no add, change or
  delete (a capture is withdrawn instead: the "withdraw" action asks for the reason).
- The audit trail is a read-only list for ``ocrapp.view_audit``; every audited object's page
  links to its events.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ocrapp import roles
from ocrapp.errors import ApplicationError
from ocrapp.models import (
    WITHDRAWAL_REASON_MAX,
    Alarm,
    ApiToken,
    AuditEvent,
    Capture,
    ExpectedSerial,
    Field,
    ProductType,
    Read,
    SerialRecord,
    Station,
    TextLine,
)
from workers.fieldspec import product_schema_errors

User = get_user_model()
REASON_FIELD = "audit_reason"


def _services():
    """``ocrapp.services``, imported on first use: the admin is autodiscovered while
    ``workers.celery`` is still setting Django up in a worker, and services imports the task."""
    from ocrapp import services

    return services


def _reason_field() -> forms.CharField:
    return forms.CharField(
        label=_("Reason for the change"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Recorded in the audit trail with the change."),
    )


def _adopt(obj: Any, saved: Any) -> None:
    """Make the admin's instance the row the service saved (the admin goes on with ``obj``)."""
    for f in obj._meta.concrete_fields:
        setattr(obj, f.attname, getattr(saved, f.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


def audit_events_url(obj: Any) -> str:
    """The audit trail's list filtered to one object's events."""
    meta = obj._meta
    query = urlencode({"object_type": f"{meta.app_label}.{meta.model_name}", "object_id": obj.pk})
    return f"{reverse('admin:ocrapp_auditevent_changelist')}?{query}"


class AuditLinkMixin:
    """The change page of an object links to its audit events (for ``view_audit``)."""

    change_form_template = "admin/ocrapp/audited_change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None and roles.can(request.user, "view_audit"):
            extra_context["audit_events_url"] = audit_events_url(obj)
        return super().change_view(request, object_id, form_url, extra_context)


class ServiceWritesMixin:
    """Writes go through ``create`` / ``update`` / ``delete`` (services); subclasses say which."""

    def _changes(self, form) -> dict[str, Any]:
        return {k: form.cleaned_data[k] for k in form.changed_data if k != REASON_FIELD}

    def _reason(self, form) -> str:
        return (form.cleaned_data.get(REASON_FIELD) or "").strip()

    def save_model(self, request, obj, form, change):
        if change:
            saved = self.update(request, obj, self._changes(form), self._reason(form))
        else:
            saved = self.create(request, form, self._reason(form))
        _adopt(obj, saved)

    def save_related(self, request, form, formsets, change):
        # The service has set the many-to-many values; only inline formsets are left.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request, obj):
        self.delete(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete(request, obj)

    def create(self, request, form, reason: str) -> Any:
        raise NotImplementedError

    def update(self, request, obj, changes: dict[str, Any], reason: str) -> Any:
        raise NotImplementedError

    def delete(self, request, obj) -> None:
        raise NotImplementedError


class ServiceAdmin(AuditLinkMixin, ServiceWritesMixin, admin.ModelAdmin):
    pass


class ReadOnlyAdmin(AuditLinkMixin, admin.ModelAdmin):
    """Never added, changed or deleted here (reads, fields, lines, search rows, captures)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- product types and stations -------------------------------------------------------------


def calibrated_risk_text(threshold: float | None) -> str:
    """ "expected wrong among auto-accepted: x %, coverage y %" for an auto-accept threshold,
    from the calibration's held-out risk-coverage table; "-" without one."""
    from workers.fieldspec.review import calibrated_operating_point

    if threshold is None:
        return "-"
    op = calibrated_operating_point(float(threshold))
    if op is None:
        return "-"
    return _(
        "expected wrong among auto-accepted: %(wrong)s %%, coverage %(coverage)s %% "
        "(held-out fields, threshold %(threshold)s)"
    ) % {
        "wrong": f"{100 * op['expected_wrong']:.2f}",
        "coverage": f"{100 * op['coverage']:.1f}",
        "threshold": f"{op['threshold']:.3f}",
    }


class ProductTypeForm(forms.ModelForm):
    audit_reason = _reason_field()

    class Meta:
        model = ProductType
        fields = "__all__"

    def clean_field_schema(self):
        schema = self.cleaned_data["field_schema"]
        problems = product_schema_errors(schema)
        if problems:
            raise forms.ValidationError(problems)
        return schema

    def clean_alarm_config(self):
        from ocrapp.alarms import alarm_config_errors

        config = self.cleaned_data.get("alarm_config")
        config = {} if config in (None, "") else config
        problems = alarm_config_errors(config)
        if problems:
            raise forms.ValidationError(problems)
        return config


class KeptWhenUsedAdmin(ServiceAdmin):
    """Product types and stations: deletable only while nothing was captured with them (the
    services refuse it too); afterwards they are deactivated, their history stays."""

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.captures.exists():
            return False  # it has history: deactivate it instead
        return super().has_delete_permission(request, obj)


@admin.register(ProductType)
class ProductTypeAdmin(KeptWhenUsedAdmin):
    form = ProductTypeForm
    list_display = ("name", "auto_accept_threshold", "calibrated_risk", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("name",)
    readonly_fields = ("calibrated_risk",)

    @admin.display(description=_("held-out risk at this threshold"))
    def calibrated_risk(self, obj):
        """The calibration's risk-coverage row for the product's threshold
        (``workers.fieldspec.review.calibrated_operating_point``)."""
        return calibrated_risk_text(obj.auto_accept_threshold if obj is not None else None)

    def create(self, request, form, reason):
        data = {k: v for k, v in form.cleaned_data.items() if k != REASON_FIELD}
        return _services().product_type_create(actor=request.user, reason=reason, **data)

    def update(self, request, obj, changes, reason):
        return _services().product_type_update(
            product_type_id=obj.pk, actor=request.user, changes=changes, reason=reason
        )

    def delete(self, request, obj):
        _services().product_type_delete(product_type_id=obj.pk, actor=request.user)


class StationForm(forms.ModelForm):
    audit_reason = _reason_field()

    class Meta:
        model = Station
        fields = "__all__"


@admin.register(Station)
class StationAdmin(KeptWhenUsedAdmin):
    form = StationForm
    list_display = ("line", "name", "token_owner", "token_prefixes", "active")
    list_filter = ("active", "line")
    filter_horizontal = ("members",)
    actions = ["issue_token"]

    @admin.display(description=_("active tokens"))
    def token_prefixes(self, obj: Station) -> str:
        active = obj.api_tokens.filter(revoked_at__isnull=True).order_by("created_at")
        return format_html_join(", ", "<code>{}…</code>", ((t.prefix,) for t in active)) or "-"

    def has_issue_token_permission(self, request) -> bool:
        return request.user.has_perm("ocrapp.add_apitoken")

    @admin.action(description=_("Issue token for station"), permissions=["issue_token"])
    def issue_token(self, request, queryset):
        """A new token per selected station; its key is shown in this one message only."""
        for station in queryset:
            key = _services().station_token_issue(
                station=station, actor=request.user, reason="issued in the admin"
            )
            self.message_user(
                request,
                _(
                    "API token for station %(station)s: %(key)s (copy it now: it is shown only "
                    "once and cannot be retrieved later)."
                )
                % {"station": station, "key": key},
                messages.WARNING,
            )

    def create(self, request, form, reason):
        data = {k: v for k, v in form.cleaned_data.items() if k != REASON_FIELD}
        return _services().station_create(actor=request.user, reason=reason, **data)

    def update(self, request, obj, changes, reason):
        return _services().station_update(
            station_id=obj.pk, actor=request.user, changes=changes, reason=reason
        )

    def delete(self, request, obj):
        _services().station_delete(station_id=obj.pk, actor=request.user)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens by prefix only (the key is never stored); issued from the Station admin or
    ``manage.py issue_token``, revoked here (never deleted: the audit trail refers to them)."""

    list_display = (
        "prefix_shown",
        "name",
        "user",
        "station",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "station")
    search_fields = ("prefix", "name", "user__username")
    fields = ("prefix_shown", "name", "user", "station", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description=_("token"), ordering="prefix")
    def prefix_shown(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("ocrapp.change_apitoken")

    @admin.action(description=_("Revoke selected tokens"), permissions=["revoke"])
    def revoke(self, request, queryset):
        n = sum(
            _services().api_token_revoke(token=t, actor=request.user, reason="revoked in the admin")
            for t in queryset
        )
        self.message_user(request, _("%(n)s token(s) revoked.") % {"n": n}, messages.SUCCESS)


# --- captures and what was read (view only) -------------------------------------------------


class TextLineInline(admin.TabularInline):
    model = TextLine
    extra = 0
    fields = ("order", "text", "confidence")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class FieldInline(admin.TabularInline):
    model = Field
    extra = 0
    fields = ("name", "value", "raw_value", "confidence", "valid", "reason")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Read)
class ReadAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "capture", "run", "device", "needs_review", "created_at")
    list_select_related = ("capture",)
    inlines = [FieldInline, TextLineInline]


@admin.register(Field)
class FieldAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "name", "value", "confidence", "valid")
    list_filter = ("name", "valid")
    search_fields = ("value", "raw_value")
    list_select_related = ("read",)


class WithdrawForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason for the withdrawal"),
        max_length=WITHDRAWAL_REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_(
            "Required. The capture leaves serial search; its reads, history and image are kept."
        ),
    )


class WithdrawnFilter(admin.SimpleListFilter):
    title = _("withdrawn")
    parameter_name = "withdrawn"

    def lookups(self, request, model_admin):
        return [("yes", _("Withdrawn")), ("no", _("Not withdrawn"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(withdrawn_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(withdrawn_at__isnull=True)
        return queryset


@admin.register(Capture)
class CaptureAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "status",
        "station_line",
        "station_name",
        "product_type",
        "uploaded_by",
        "created_at",
        "withdrawn_at",
    )
    list_filter = ("status", WithdrawnFilter, "product_type", "station")
    search_fields = ("id", "sha256", "client_ref")
    actions = ["withdraw"]

    def has_withdraw_permission(self, request):
        return roles.can(request.user, "withdraw_capture")

    @admin.action(description=_("Withdraw the selected captures (asks for a reason)"))
    def withdraw(self, request, queryset):
        form = WithdrawForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            done = 0
            for capture in queryset:
                try:
                    _services().capture_withdraw(
                        capture_id=capture.pk,
                        actor=request.user,
                        reason=form.cleaned_data["reason"],
                    )
                    done += 1
                except ApplicationError as exc:
                    self.message_user(request, f"{capture.pk}: {exc.message}", messages.ERROR)
            if done:
                self.message_user(
                    request,
                    ngettext(
                        "%(count)d capture was withdrawn.",
                        "%(count)d captures were withdrawn.",
                        done,
                    )
                    % {"count": done},
                    messages.SUCCESS,
                )
            return None
        return TemplateResponse(
            request,
            "admin/ocrapp/capture/withdraw.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Withdraw captures"),
                "opts": self.model._meta,
                "captures": list(queryset),
                "form": form,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )


@admin.register(SerialRecord)
class SerialRecordAdmin(ReadOnlyAdmin):
    list_display = ("value", "field_name", "capture", "station", "created_at")
    search_fields = ("value",)


# --- the audit trail ------------------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "at", "actor_name", "action", "object_type", "object_repr", "reason")
    list_filter = ("object_type", "action", "actor")
    search_fields = ("object_repr", "object_id", "reason", "actor_name")
    date_hierarchy = "at"
    fields = (
        "at",
        "actor_name",
        "actor",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "before_json",
        "after_json",
        "reason",
        "prev_hash",
        "hash",
    )
    readonly_fields = fields
    list_select_related = ("actor",)

    def has_view_permission(self, request, obj=None):
        return roles.can(request.user, "view_audit")

    def has_module_permission(self, request):
        return roles.can(request.user, "view_audit") or super().has_module_permission(request)

    def lookup_allowed(self, lookup, value, request=None):
        # An object's page links here with ?object_type=...&object_id=...
        return lookup in ("object_type", "object_id") or super().lookup_allowed(
            lookup, value, request
        )

    @admin.display(description=_("before"))
    def before_json(self, obj):
        return _pretty(obj.before)

    @admin.display(description=_("after"))
    def after_json(self, obj):
        return _pretty(obj.after)


def _pretty(value: Any):
    if value is None:
        return "—"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre class="audit-json">{}</pre>', text)


# --- users and roles ------------------------------------------------------------------------

_admin_actor: ContextVar[Any] = ContextVar("ocrapp_admin_actor", default=None)


class AuditedUserChangeForm(auth_forms.UserChangeForm):
    audit_reason = _reason_field()


class AuditedUserCreationForm(auth_forms.AdminUserCreationForm):
    pass


class AuditedAdminPasswordChangeForm(auth_forms.AdminPasswordChangeForm):
    """The admin setting another user's password (``UserAdmin.user_change_password``)."""

    def save(self, commit: bool = True):
        actor = _admin_actor.get()
        if actor is None:  # only UserAdmin.user_change_password sets it
            raise RuntimeError("a password change outside the audited admin view")
        usable = self.cleaned_data.get("set_usable_password", True)
        saved = _services().user_password_set(
            user_id=self.user.pk,
            actor=actor,
            password=self.cleaned_data["password1"] if usable else None,
        )
        self.user.password = saved.password
        return self.user


try:
    admin.site.unregister(User)
    admin.site.unregister(Group)
except admin.sites.NotRegistered:  # pragma: no cover - django.contrib.auth registers both
    pass


@admin.register(User)
class UserAdmin(AuditLinkMixin, ServiceWritesMixin, auth_admin.UserAdmin):
    form = AuditedUserChangeForm
    add_form = AuditedUserCreationForm
    change_password_form = AuditedAdminPasswordChangeForm
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        *auth_admin.UserAdmin.fieldsets,
        (_("Audit trail"), {"fields": (REASON_FIELD,)}),
    )

    def create(self, request, form, reason):
        data = form.cleaned_data
        usable = data.get("set_usable_password", True)
        return _services().user_create(
            actor=request.user,
            username=data["username"],
            password=data.get("password1") if usable else None,
            reason=reason,
        )

    def update(self, request, obj, changes, reason):
        return _services().user_update(
            user_id=obj.pk, actor=request.user, changes=changes, reason=reason
        )

    def delete(self, request, obj):
        _services().user_delete(user_id=obj.pk, actor=request.user)

    def user_change_password(self, request, id, form_url=""):
        token = _admin_actor.set(request.user)
        try:
            with transaction.atomic():
                return super().user_change_password(request, id, form_url)
        finally:
            _admin_actor.reset(token)


class AuditedGroupForm(forms.ModelForm):
    audit_reason = _reason_field()

    class Meta:
        model = Group
        fields = "__all__"


@admin.register(Group)
class GroupAdmin(AuditLinkMixin, ServiceWritesMixin, auth_admin.GroupAdmin):
    form = AuditedGroupForm

    def create(self, request, form, reason):
        return _services().group_create(
            actor=request.user,
            name=form.cleaned_data["name"],
            permissions=form.cleaned_data.get("permissions", ()),
            reason=reason,
        )

    def update(self, request, obj, changes, reason):
        return _services().group_update(
            group_id=obj.pk, actor=request.user, changes=changes, reason=reason
        )

    def delete(self, request, obj):
        _services().group_delete(group_id=obj.pk, actor=request.user)


# --- traceability alarms (ocrapp/alarms.py): read-only here; states change on the alarm pages
# and the API (acknowledge / close with a reason), expected lists are imported by the API ----


@admin.register(Alarm)
class AlarmAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "kind", "state", "display", "line", "station_label")
    list_filter = ("kind", "state", "line", "product_type")
    search_fields = ("value", "display", "other_display")
    date_hierarchy = "created_at"
    list_select_related = ("product_type",)
    raw_id_fields = ("capture", "read", "field", "other_capture")


@admin.register(ExpectedSerial)
class ExpectedSerialAdmin(ReadOnlyAdmin):
    list_display = ("value", "display", "product_type", "work_order", "active", "created_at")
    list_filter = ("active", "product_type")
    search_fields = ("value", "work_order")
