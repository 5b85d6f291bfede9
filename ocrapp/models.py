"""Data model: product types with field schemas, stations, captures, reads and their results.

Rows are written only through ``ocrapp.services``; reads go through ``ocrapp.selectors``.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


def default_field_schema() -> dict:
    return {
        "fields": [
            {
                "name": "serial_number",
                "label": "Serial number",
                "required": True,
                "pattern": r"^[A-Z0-9][A-Z0-9-]{4,31}$",
            },
        ]
    }


class ProductType(models.Model):
    """A kind of product and the fields its label carries (schema validated in services)."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    field_schema = models.JSONField(
        _("field schema"),
        default=default_field_schema,
        help_text=_(
            '{"fields": [{"name": "serial_number", "required": true, "pattern": "^...$"}]}'
        ),
    )
    auto_accept_threshold = models.FloatField(_("auto-accept threshold"), default=0.85)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("product type")

    def __str__(self) -> str:
        return self.name


class Station(models.Model):
    """A line station (camera, tablet or line software). Its API token belongs to ``token_owner``."""

    line = models.CharField(_("line"), max_length=100)
    name = models.CharField(_("name"), max_length=100)
    token_owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="station",
        help_text=_("Service user whose API token identifies this station."),
    )
    active = models.BooleanField(_("active"), default=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="member_stations",
        verbose_name=_("operators"),
        help_text=_("Operators who work at this station (they see and correct its reads)."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["line", "name"]
        constraints = [
            models.UniqueConstraint(fields=["line", "name"], name="station_line_name_uniq")
        ]
        verbose_name = _("station")

    def __str__(self) -> str:
        return f"{self.line} / {self.name}"


class Capture(models.Model):
    """One uploaded photo and the state of its processing."""

    class Status(models.TextChoices):
        PENDING = "PENDING", _("Pending")
        PROCESSING = "PROCESSING", _("Processing")
        DONE = "DONE", _("Done")
        FAILED = "FAILED", _("Failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.FileField(upload_to="captures/%Y/%m/", max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    image_format = models.CharField(max_length=16)
    station = models.ForeignKey(Station, on_delete=models.PROTECT, related_name="captures")
    product_type = models.ForeignKey(ProductType, on_delete=models.PROTECT, related_name="captures")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="captures"
    )
    client_ref = models.CharField(max_length=128, blank=True)
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_reason = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)  # claims: runs of the reader started
    # Lifecycle lease (services.capture_claim / capture_reap): when the read was last sent to the
    # queue, until when the run holding it is presumed alive (renewed while it reads), which
    # message holds it (the Celery task id), and how often the reaper had to send it again.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=64, blank=True)
    requeues = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["uploaded_by", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="capture_idempotency_uniq",
            )
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="capture_status_idx")]
        verbose_name = _("capture")
        # What the roles grant (``ocrapp.roles``); checked with ``user.has_perm("ocrapp.<code>")``.
        permissions = [
            ("upload_capture", _("Can upload captures")),
            ("view_all_captures", _("Can see captures of every station")),
            ("review_read", _("Can review, correct and sign reads")),
            ("retry_capture", _("Can re-read a failed capture")),
            ("withdraw_capture", _("Can withdraw a capture")),
            ("export_reads", _("Can export reads")),
            ("view_audit", _("Can read the audit trail")),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class Read(models.Model):
    """One processing run of a capture: what produced it and how it went."""

    capture = models.ForeignKey(Capture, on_delete=models.CASCADE, related_name="reads")
    run = models.PositiveIntegerField(default=1)
    models_used = models.JSONField(default=list)  # [{stage, name, version, sha256}]
    pipeline_config = models.JSONField(default=dict)
    timings_ms = models.JSONField(default=dict)
    quality = models.JSONField(default=dict)
    image_info = models.JSONField(default=dict)
    device = models.CharField(max_length=32, blank=True)
    providers = models.JSONField(default=list)
    worker = models.CharField(max_length=255, blank=True)
    codes = models.JSONField(default=list)  # decoded symbols (format, text, GS1 elements, polygon)
    mismatches = models.JSONField(default=list)  # printed field vs code disagreements
    needs_review = models.BooleanField(default=True)
    review = models.JSONField(default=dict)  # {needs_review, auto_accept, reasons: [...]}
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["capture", "run"], name="read_capture_run_uniq")
        ]
        indexes = [
            models.Index(
                fields=["created_at"], condition=Q(needs_review=True), name="read_needs_review_idx"
            )
        ]


class TextLine(models.Model):
    read = models.ForeignKey(Read, on_delete=models.CASCADE, related_name="lines")
    order = models.PositiveIntegerField()
    text = models.TextField()
    confidence = models.FloatField()
    char_confidences = models.JSONField(default=list)
    alternatives = models.JSONField(default=list)
    polygon = models.JSONField()  # [[x, y], ...] in original image pixels

    class Meta:
        ordering = ["order"]
        constraints = [
            models.UniqueConstraint(fields=["read", "order"], name="textline_read_order_uniq")
        ]


class Field(models.Model):
    read = models.ForeignKey(Read, on_delete=models.CASCADE, related_name="fields")
    name = models.CharField(max_length=64)
    raw_value = models.TextField(blank=True)
    value = models.TextField(blank=True)  # normalised
    confidence = models.FloatField(default=0.0)
    line = models.ForeignKey(TextLine, null=True, blank=True, on_delete=models.SET_NULL)
    box = models.JSONField(null=True, blank=True)
    valid = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    reasons = models.JSONField(default=list)  # [{code, message}] of the failed rules
    corrected = models.BooleanField(default=False)
    correction = models.JSONField(null=True, blank=True)  # {from, to, probability, changes}
    source = models.CharField(max_length=16, default="text")  # text | code | text+code
    code_value = models.TextField(null=True, blank=True)
    code_match = models.BooleanField(null=True)
    iso_date = models.DateField(null=True, blank=True)
    confidence_parts = models.JSONField(default=dict)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["name", "value"], name="field_name_value_idx")]


class SerialRecord(models.Model):
    """Search index of serial-like values: one row per field value worth tracing.

    ``value`` is the normalised form (upper case, no spaces or dashes); ``skeleton`` also folds
    look-alike characters (O->0, I/L->1, S->5, B->8, Z->2) so that a misread still finds its serial.
    """

    value = models.CharField(max_length=128)
    skeleton = models.CharField(max_length=128)
    field = models.OneToOneField(Field, on_delete=models.CASCADE, related_name="serial_record")
    field_name = models.CharField(max_length=64)
    capture = models.ForeignKey(Capture, on_delete=models.CASCADE, related_name="serial_records")
    product_type = models.ForeignKey(ProductType, on_delete=models.PROTECT)
    station = models.ForeignKey(Station, on_delete=models.PROTECT)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["value"], name="serial_value_idx"),
            models.Index(
                OpClass("value", name="varchar_pattern_ops"), name="serial_value_prefix_idx"
            ),
            GinIndex(OpClass("value", name="gin_trgm_ops"), name="serial_value_trgm_idx"),
            GinIndex(OpClass("skeleton", name="gin_trgm_ops"), name="serial_skeleton_trgm_idx"),
        ]


class AuditEvent(models.Model):
    """One change, append-only (21 CFR Part 11 / EU GMP Annex 11 audit trail).

    Written only by ``ocrapp.audit.record``. PostgreSQL refuses UPDATE and DELETE on this table
    (trigger from migration 0004; TRUNCATE stays possible for the table's owner, which the test
    runner's flush needs: production runs the app as a role without TRUNCATE, see README). ``hash`` = sha256 of ``prev_hash`` and the row's
    canonical content (``ocrapp.audit.row_digest``), so a row altered or removed behind the
    trigger's back breaks the chain at that row (``manage.py audit_verify`` names it).
    ``actor_name`` keeps the printed name as it was when the change was made.
    """

    at = models.DateTimeField(_("time"), db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="audit_events",
        verbose_name=_("actor"),
    )
    actor_name = models.CharField(_("actor name"), max_length=255, blank=True)
    action = models.CharField(_("action"), max_length=64)
    object_type = models.CharField(_("object type"), max_length=64)
    object_id = models.CharField(_("object id"), max_length=64)
    object_repr = models.CharField(_("object"), max_length=255, blank=True)
    before = models.JSONField(_("before"), null=True, blank=True)
    after = models.JSONField(_("after"), null=True, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")

    def __str__(self) -> str:
        return f"#{self.pk} {self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_repr}"
