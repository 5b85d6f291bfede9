from django import forms
from django.contrib import admin

from ocrapp.models import Capture, Field, ProductType, Read, SerialRecord, Station, TextLine
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
    list_display = ("line", "name", "token_owner", "active")
    list_filter = ("active", "line")


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
