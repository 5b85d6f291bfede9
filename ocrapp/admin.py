from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

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
from workers.fieldspec import product_schema_errors


class ProductTypeForm(forms.ModelForm):
    class Meta:
        model = ProductType
        fields = "__all__"

    def clean_field_schema(self):
        schema = self.cleaned_data["field_schema"]
        problems = product_schema_errors(schema)
        if problems:
            raise forms.ValidationError(problems)
        return schema


@admin.register(ProductType)
class ProductTypeAdmin(admin.ModelAdmin):
    form = ProductTypeForm
    list_display = ("name", "auto_accept_threshold", "created_at")
    search_fields = ("name",)


@admin.register(Station)
class StationAdmin(admin.ModelAdmin):
    list_display = ("line", "name", "token_owner", "token_prefixes", "active")
    list_filter = ("active", "line")
    actions = ["issue_token"]

    @admin.display(description=gettext_lazy("active tokens"))
    def token_prefixes(self, obj: Station) -> str:
        active = obj.api_tokens.filter(revoked_at__isnull=True).order_by("created_at")
        return format_html_join(", ", "<code>{}…</code>", ((t.prefix,) for t in active)) or "-"

    def has_issue_token_permission(self, request) -> bool:
        return request.user.has_perm("ocrapp.add_apitoken")

    @admin.action(description=gettext_lazy("Issue token for station"), permissions=["issue_token"])
    def issue_token(self, request, queryset):
        """A new token per selected station; its key is shown in this one message only."""
        from ocrapp import services  # not at import: the worker's django.setup() loads admin

        for station in queryset:
            key = services.station_token_issue(
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

    @admin.display(description=gettext_lazy("token"), ordering="prefix")
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

    @admin.action(description=gettext_lazy("Revoke selected tokens"), permissions=["revoke"])
    def revoke(self, request, queryset):
        from ocrapp import services

        n = sum(
            services.api_token_revoke(token=t, actor=request.user, reason="revoked in the admin")
            for t in queryset
        )
        self.message_user(request, _("%(n)s token(s) revoked.") % {"n": n}, messages.SUCCESS)


class TextLineInline(admin.TabularInline):
    model = TextLine
    extra = 0
    fields = ("order", "text", "confidence")
    readonly_fields = fields
    can_delete = False


class FieldInline(admin.TabularInline):
    model = Field
    extra = 0
    fields = ("name", "value", "raw_value", "confidence", "valid", "reason")
    readonly_fields = fields
    can_delete = False


@admin.register(Read)
class ReadAdmin(admin.ModelAdmin):
    list_display = ("capture", "run", "device", "created_at")
    readonly_fields = [f.name for f in Read._meta.fields]
    inlines = [FieldInline, TextLineInline]


@admin.register(Capture)
class CaptureAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "station", "product_type", "uploaded_by", "created_at")
    list_filter = ("status", "product_type", "station")
    search_fields = ("id", "sha256", "client_ref")
    readonly_fields = [f.name for f in Capture._meta.fields]


@admin.register(SerialRecord)
class SerialRecordAdmin(admin.ModelAdmin):
    list_display = ("value", "field_name", "capture", "station", "created_at")
    search_fields = ("value",)
    readonly_fields = [f.name for f in SerialRecord._meta.fields]
