"""Data model: product types with field schemas, stations, captures, reads and their results.

Rows are written only through ``ocrapp.services``; reads go through ``ocrapp.selectors``.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import OpClass
from django.db import models
from django.db.models import Q
from django.db.models.functions import Collate, Reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from workers.fieldspec.review import default_auto_accept_threshold


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
    # default: the threshold the calibration's risk-coverage table picks for 0.5 % wrong among
    # auto-accepted fields (workers/models/calibration)
    auto_accept_threshold = models.FloatField(
        _("auto-accept threshold"),
        default=default_auto_accept_threshold,
        help_text=_(
            "Fields at or above this calibrated confidence are accepted without review. The "
            "default is the threshold the calibration picks for 0.5 % wrong among "
            "auto-accepted fields."
        ),
    )
    active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_("Inactive product types take no new captures; their history stays."),
    )
    # Traceability alarms of this product type (``ocrapp.alarms.alarm_config_errors`` checks
    # it on save; missing keys take the defaults of ``ocrapp.alarms.DEFAULT_CONFIG``).
    alarm_config = models.JSONField(
        _("alarm settings"),
        default=dict,
        blank=True,
        help_text=_(
            '{"duplicate_scope": "product_type", "window_days": 0, "sequential": false, '
            '"sequence_pattern": "(\\d+)$", "sequence_tolerance": 0, "expected_required": false}'
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("product type")
        verbose_name_plural = _("product types")

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
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["line", "name"]
        constraints = [
            models.UniqueConstraint(fields=["line", "name"], name="station_line_name_uniq")
        ]
        verbose_name = _("station")
        verbose_name_plural = _("stations")

    def __str__(self) -> str:
        return f"{self.line} / {self.name}"


class ApiToken(models.Model):
    """An API key (``Authorization: Token <key>`` or ``Bearer <key>``), stored as its sha256.

    The key is shown once, when it is issued (``services.api_token_issue``); afterwards only
    ``prefix`` (its first characters) identifies it. A station's token belongs to the station's
    service user (``Station.token_owner``) and names the station. Revoked tokens stay (the
    audit trail refers to them) and no longer authenticate.
    """

    key_hash = models.CharField(_("key sha256"), max_length=64, unique=True, editable=False)
    prefix = models.CharField(_("prefix"), max_length=12, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        verbose_name=_("owner"),
    )
    station = models.ForeignKey(
        Station,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_tokens",
        verbose_name=_("station"),
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or self.user})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


WITHDRAWAL_REASON_MAX = 2000  # characters of Capture.withdrawal_reason (services, admin, API)


# what the capture list filters on besides line and review state (``selectors._capture_filters``)
# and the user's scope (station)
_LIST_FILTER_COLUMNS = ["station", "product_type", "status", "weakest_confidence"]


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
    # The station as it was named when the photo was taken: a later rename of the station does
    # not rewrite this capture's history (history, search and the capture page show these).
    station_line = models.CharField(_("line at capture time"), max_length=100, blank=True)
    station_name = models.CharField(_("station name at capture time"), max_length=100, blank=True)
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
    # Withdrawal (``services.capture_withdraw``): a capture is never deleted; withdrawn, it leaves
    # serial search but keeps its reads, history and image. ``withdrawn_by_name`` keeps the
    # printed name as it was at the time (like ``AuditEvent.actor_name``).
    withdrawn_at = models.DateTimeField(_("withdrawn at"), null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="withdrawn_captures",
        verbose_name=_("withdrawn by"),
    )
    withdrawn_by_name = models.CharField(_("withdrawn by (name)"), max_length=255, blank=True)
    withdrawal_reason = models.TextField(_("reason for withdrawal"), blank=True)
    # Retention (``services.capture_image_purge``, ``manage.py purge_images``): the stored image
    # was deleted at this time; ``image`` keeps the name it had, ``sha256`` and the reads stay.
    image_purged_at = models.DateTimeField(
        _("image deleted by retention at"), null=True, blank=True
    )
    # The latest read's review state and weakest field confidence, kept here so that the capture
    # list filters on them with an index (``services.capture_review_sync``, called by
    # ``read_save``, the review and ``capture_retry`` in their transaction; ``fill_reads``
    # writes them too). ``review_state``: ``selectors.REVIEW_STATES`` ("" = no read);
    # ``weakest_confidence``: None when the latest read has no field (or there is no read).
    review_state = models.CharField(_("review state"), max_length=16, blank=True, default="")
    weakest_confidence = models.FloatField(_("weakest confidence"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["uploaded_by", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="capture_idempotency_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="capture_status_idx"),
            # keyset pages of the capture list (newest first, ties by id) and its filters
            models.Index(fields=["-created_at", "-id"], name="capture_created_id_idx"),
            models.Index(fields=["station", "-created_at"], name="capture_station_created_idx"),
            models.Index(fields=["product_type", "-created_at"], name="capture_pt_created_idx"),
            models.Index(
                fields=["client_ref"], condition=~Q(client_ref=""), name="capture_client_ref_idx"
            ),
            # what search checks of each hit's capture (not withdrawn, in the user's stations)
            # without reading the capture row
            models.Index(
                fields=["id"], include=["withdrawn_at", "station"], name="capture_id_cover_idx"
            ),
            # the withdrawn captures, which search leaves out (an anti-join: selectors)
            models.Index(
                fields=["id"], condition=Q(withdrawn_at__isnull=False), name="capture_withdrawn_idx"
            ),
            # the capture list filtered by line and/or review state, in keyset order; the
            # other list filters as INCLUDE columns, so a page's ids and its capped total are
            # index-only scans that stop after the page (or the cap)
            models.Index(
                fields=["station_line", "-created_at", "-id"],
                include=_LIST_FILTER_COLUMNS + ["review_state"],
                name="capture_line_created_idx",
            ),
            models.Index(
                fields=["review_state", "-created_at", "-id"],
                include=_LIST_FILTER_COLUMNS + ["station_line"],
                name="capture_review_created_idx",
            ),
        ]
        verbose_name = _("capture")
        verbose_name_plural = _("captures")
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

    @property
    def station_label(self) -> str:
        """The station as it was named when the photo was taken ("LINE-1 / station-A")."""
        if not (self.station_line or self.station_name):  # not yet saved
            return str(self.station) if self.station_id else ""
        return f"{self.station_line} / {self.station_name}"

    @property
    def station_renamed(self) -> bool:
        """Whether the station has been renamed since (its current name differs)."""
        return bool(self.station_id) and str(self.station) != self.station_label

    @property
    def withdrawn(self) -> bool:
        return self.withdrawn_at is not None

    @property
    def image_purged(self) -> bool:
        return self.image_purged_at is not None


class Read(models.Model):
    """One processing run of a capture: what produced it and how it went."""

    # PROTECT everywhere below: reads, lines, fields and search rows are never deleted (a
    # capture is withdrawn instead, ``services.capture_withdraw``).
    capture = models.ForeignKey(Capture, on_delete=models.PROTECT, related_name="reads")
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
        verbose_name = _("read")
        verbose_name_plural = _("reads")

    def __str__(self) -> str:
        return f"capture {self.capture_id} run {self.run}"


class ReadMetric(models.Model):
    """What the dashboard counts of one read, one narrow row per read (``ocrapp.dashboard``).

    Written in the same transaction as the read (``services.read_save``; ``manage.py
    fill_reads`` by COPY; migration ``0015_wt_dash_read_metric`` for the reads before it) and
    never updated but for ``waiting``: ``created_at`` / ``station`` / ``station_line`` / ``product_type`` are the
    capture's (when the photo was taken, the line at that time), so the dashboard aggregates
    one table over one index range instead of joining captures, reads and fields. The image
    statistics (``luminance`` ... ``text_cy``) are ``Read.quality``'s (``workers/pipeline/
    quality.py``), None where a read has none; ``confidence`` is the mean field confidence.
    """

    read = models.OneToOneField(
        Read, primary_key=True, on_delete=models.PROTECT, related_name="metric"
    )
    created_at = models.DateTimeField()
    station = models.ForeignKey(Station, on_delete=models.PROTECT, related_name="+")
    station_line = models.CharField(max_length=100)
    product_type = models.ForeignKey(ProductType, on_delete=models.PROTECT, related_name="+")
    auto_accepted = models.BooleanField()
    mislabel = models.BooleanField(default=False)  # a code contradicts the print
    glare = models.BooleanField(default=False)  # quality warnings glare / glare_photo / glare_text
    blur = models.BooleanField(default=False)
    exposure = models.BooleanField(default=False)  # underexposed / overexposed
    confidence = models.FloatField(null=True)
    luminance = models.FloatField(null=True)
    contrast = models.FloatField(null=True)
    sharpness = models.FloatField(null=True)
    glare_fraction = models.FloatField(null=True)
    text_boxes = models.IntegerField(null=True)
    text_height = models.FloatField(null=True)
    text_area = models.FloatField(null=True)
    text_cx = models.FloatField(null=True)
    text_cy = models.FloatField(null=True)
    # in the review backlog now (``selectors`` backlog rule); kept by ``services`` whenever
    # that can change: a new read of the capture, a signed revision, a withdrawal
    waiting = models.BooleanField(default=False)

    class Meta:
        indexes = [
            # every column a dashboard query reads over a time range: the drift windows and the
            # series from ReadMetric are index-only scans (bench/NOTES-dash.md)
            models.Index(
                fields=["created_at"],
                include=[
                    "read",
                    "station",
                    "station_line",
                    "product_type",
                    "auto_accepted",
                    "mislabel",
                    "glare",
                    "blur",
                    "exposure",
                    "confidence",
                    "luminance",
                    "contrast",
                    "sharpness",
                    "glare_fraction",
                    "text_boxes",
                    "text_height",
                    "text_area",
                    "text_cx",
                    "text_cy",
                ],
                name="readmetric_created_cover_idx",
            ),
            models.Index(
                fields=["created_at"], condition=Q(waiting=True), name="readmetric_waiting_idx"
            ),
            # the backlog per line: an index-only scan in group order (at 1M reads the backlog
            # can hold 150k rows; reading them from the table took most of its time)
            models.Index(
                fields=["station_line", "created_at"],
                condition=Q(waiting=True),
                include=["station", "product_type"],
                name="readmetric_waiting_line_idx",
            ),
            models.Index(fields=["station_line", "created_at"], name="readmetric_line_created_idx"),
            models.Index(fields=["station", "created_at"], name="readmetric_station_created_idx"),
        ]
        verbose_name = _("read metric")
        verbose_name_plural = _("read metrics")

    def __str__(self) -> str:
        return f"metric of read {self.read_id}"


class ReadHourly(models.Model):
    """The dashboard's hourly rollup of :class:`ReadMetric`: the summable counters of every
    read taken in one UTC hour at one station (and its line at that time) for one product
    type, so a long series sums a few rows per hour instead of every read (``ocrapp.dashboard``;
    zones whose offset is not a whole number of hours, and the medians of the backlog and the
    drift check, stay on ``ReadMetric``).

    Kept in the same transaction as every ``ReadMetric`` insert by one atomic upsert
    (``dashboard.read_hourly_add``: ``INSERT ... ON CONFLICT (key) DO UPDATE SET reads =
    reads + EXCLUDED.reads ...``; ``services.read_save``, ``manage.py fill_reads``), and by
    migration ``0023_dashboard_hourly`` for the reads before it. Only columns that are never
    updated are summed (``waiting`` is not: the backlog stays on ``ReadMetric``).
    """

    hour = models.DateTimeField()  # the UTC hour's start
    # no index of their own: (station, hour) leads with the station; a product type alone is
    # never selective enough (a few per station)
    station = models.ForeignKey(Station, on_delete=models.PROTECT, related_name="+", db_index=False)
    station_line = models.CharField(max_length=100)
    product_type = models.ForeignKey(
        ProductType, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    reads = models.IntegerField(default=0)
    auto_accepted = models.IntegerField(default=0)
    mislabel = models.IntegerField(default=0)
    glare = models.IntegerField(default=0)
    blur = models.IntegerField(default=0)
    exposure = models.IntegerField(default=0)
    confidence_sum = models.FloatField(default=0.0)  # over the reads with a confidence
    confidence_n = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "station", "station_line", "product_type"],
                name="readhourly_key",
            )
        ]
        indexes = [
            models.Index(fields=["station_line", "hour"], name="readhourly_line_hour_idx"),
            models.Index(fields=["station", "hour"], name="readhourly_station_hour_idx"),
        ]
        verbose_name = _("hourly read counts")
        verbose_name_plural = _("hourly read counts")

    def __str__(self) -> str:
        return f"{self.reads} reads at {self.station_id} in the hour {self.hour:%Y-%m-%d %H}h UTC"


class TextLine(models.Model):
    read = models.ForeignKey(Read, on_delete=models.PROTECT, related_name="lines")
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
        verbose_name = _("text line")
        verbose_name_plural = _("text lines")

    def __str__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:59] + "…"
        return f"line {self.order}: {text} (read {self.read_id})"


class Field(models.Model):
    read = models.ForeignKey(Read, on_delete=models.PROTECT, related_name="fields")
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
    # The value in force: the machine read (``value``) until a signed revision changes it; written
    # by ``read_save`` and ``services.field_revise`` only (the revisions are ``self.revisions``).
    current_value = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["name", "value"], name="field_name_value_idx")]
        verbose_name = _("field")
        verbose_name_plural = _("fields")

    def __str__(self) -> str:
        value = self.value if len(self.value) <= 60 else self.value[:59] + "…"
        return f"{self.name} = {value} (capture {self._capture_id()})"

    def _capture_id(self) -> str:
        read = self._state.fields_cache.get("read")  # no query when the read is loaded
        if read is not None:
            return str(read.capture_id)
        capture_id = Read.objects.filter(pk=self.read_id).values_list("capture_id", flat=True)
        return str(capture_id.first() or "?")


# What a signature on a field revision means (21 CFR 11.50: the meaning of each signature).
# ``reviewed``: the value was checked and stands; ``corrected``: the value was changed;
# ``approved``: the value was approved (e.g. a second person after a correction).
REVISION_MEANINGS = ("reviewed", "corrected", "approved")
# Why a value was corrected; ``other`` carries the reviewer's own words (``reason_text``).
# Rendered to words in ``ocrapp.templatetags.ocrui.REVISION_REASON_MESSAGES``.
REVISION_REASONS = ("misread", "glare", "damaged_label", "wrong_field", "other")
# Audit trail actions of the review (``ocrapp.audit.record``).
FIELD_REVISED_ACTION = "field_revised"
SIGNATURE_FAILED_ACTION = "signature_failed"
CAPTURE_RETRIED_ACTION = "capture_retried"


class FieldRevision(models.Model):
    """One signed revision of a field: corrections never overwrite, they add a revision.

    Append-only (PostgreSQL refuses UPDATE and DELETE, migration ``review_revisions``). The
    field's value in force is the latest revision's ``new_value`` (kept in
    ``Field.current_value``). ``seq`` counts from 1 per field. The signature is ``signer``,
    ``signer_name`` (``audit.printed_name`` at signing), ``signed_at`` and ``meaning``.
    ``valid`` / ``check_reasons`` are what ``workers.fieldspec.validate_field`` said about
    ``new_value``; ``override`` marks a value signed although it failed validation.
    """

    field = models.ForeignKey(Field, on_delete=models.PROTECT, related_name="revisions")
    seq = models.PositiveIntegerField()
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    entered_value = models.TextField(blank=True)  # as the reviewer typed it (before normalising)
    reason_code = models.CharField(max_length=32, blank=True)  # REVISION_REASONS or ""
    reason_text = models.TextField(blank=True)
    meaning = models.CharField(max_length=16)  # REVISION_MEANINGS
    signer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="field_revisions"
    )
    signer_name = models.CharField(max_length=255)
    signed_at = models.DateTimeField(db_index=True)
    valid = models.BooleanField()
    check_reasons = models.JSONField(default=list)  # [{code, message}] of the failed rules
    override = models.BooleanField(default=False)

    class Meta:
        ordering = ["field_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["field", "seq"], name="fieldrevision_field_seq_uniq"),
            models.CheckConstraint(
                condition=Q(meaning__in=REVISION_MEANINGS), name="fieldrevision_meaning_known"
            ),
        ]
        verbose_name = _("field revision")

    def __str__(self) -> str:
        return f"{self.field_id}#{self.seq} {self.meaning}"


class SerialRecord(models.Model):
    """Search index of serial-like values: one row per field value worth tracing.

    ``value`` is the normalised form (upper case, no spaces or dashes); ``skeleton`` also folds
    look-alike characters (O/Q/D->0, I/L->1, S->5, B->8, Z->2, G->6) so that a misread still
    finds its serial; ``display`` is the value as printed (``44-1020`` for ``441020``).

    ``source`` ``text``: the field's value (the print, or a code when only a code carried the
    field, ``Field.source``). A field has one current ``text`` row (``superseded=False``: its
    value in force) and one row per value a revision replaced (``superseded=True``, shown as
    "was"), so an old value stays findable. ``source`` ``code``: a value a code on the label
    carries that differs from the field's printed value (a mislabel), so it is found exactly.
    """

    SOURCES = ("text", "code")

    value = models.CharField(max_length=128)
    skeleton = models.CharField(max_length=128)
    display = models.CharField(max_length=128, blank=True, default="")
    source = models.CharField(max_length=8, default="text")
    field = models.ForeignKey(Field, on_delete=models.PROTECT, related_name="serial_records")
    superseded = models.BooleanField(default=False)
    field_name = models.CharField(max_length=64)
    capture = models.ForeignKey(Capture, on_delete=models.PROTECT, related_name="serial_records")
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
            models.Index(fields=["skeleton"], name="serial_skeleton_idx"),
            # look-alike: ``skeleton COLLATE "C" = q`` (the trigram indexes, in the default
            # collation, cannot serve it, so the planner takes this btree), values in keyset order
            models.Index(
                Collate("skeleton", "C"),
                Collate("value", "C"),
                name="serial_skeleton_c_idx",
                include=["capture"],
            ),
            # prefix ranges and keyset order of search ("C" collation: byte order)
            # (capture_id included: prefix candidates and their capped count are index-only
            # scans, joined to ``capture_id_cover_idx``)
            models.Index(Collate("value", "C"), name="serial_value_c_idx", include=["capture"]),
            # "similar" (selectors._similar_values): the values sharing a suffix of the query's
            # look-alike key are a range of the reversed key. No trigram GIN or GiST index: a
            # ``%`` filter (GIN) or a nearest-neighbour scan (GiST) over 3M rows took about a
            # second, the two btree ranges milliseconds (bench/NOTES-search.md)
            models.Index(
                Collate(Reverse("skeleton"), "C"),
                name="serial_skeleton_rev_idx",
                include=["capture"],
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["field", "source", "value"], name="serial_field_source_value_uniq"
            ),
            models.UniqueConstraint(
                fields=["field"],
                condition=Q(superseded=False, source="text"),
                name="serial_field_current_uniq",
            ),
        ]
        verbose_name = _("serial index entry")
        verbose_name_plural = _("serial index entries")

    def __str__(self) -> str:
        return f"{self.field_name} {self.value} (capture {self.capture_id})"

    @property
    def shown(self) -> str:
        """The value as printed (the normalised value for rows indexed before ``display``)."""
        return self.display or self.value


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


# --- webhooks (ocrapp/webhooks.py; README "Webhooks") -----------------------------------------

WEBHOOK_CREATED_ACTION = "webhook.create"
WEBHOOK_DEACTIVATED_ACTION = "webhook.deactivate"
WEBHOOK_REPLAYED_ACTION = "webhook.replay"


class WebhookEndpoint(models.Model):
    """A receiver of domain events (``ocrapp.events``): the event types it subscribes to and
    the secret its deliveries are signed with (Standard Webhooks).

    ``secret_sealed`` is the ``whsec_...`` secret encrypted with a key derived from
    ``SECRET_KEY`` (``webhooks.seal_secret``); the clear secret is shown once, to the person who
    creates the endpoint, and never again. Endpoints are deactivated, never deleted (their
    deliveries are the log)."""

    url = models.URLField(_("URL"), max_length=500)
    event_types = ArrayField(models.CharField(max_length=32), verbose_name=_("event types"))
    description = models.CharField(_("description"), max_length=200, blank=True)
    active = models.BooleanField(_("active"), default=True)
    secret_sealed = models.TextField(editable=False)
    secret_prefix = models.CharField(_("secret prefix"), max_length=16, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.PROTECT,
        related_name="webhook_endpoints",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    deactivated_at = models.DateTimeField(_("deactivated at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        permissions = [
            ("manage_webhooks", _("Can create, deactivate and replay webhooks")),
            ("view_webhooks", _("Can read webhook endpoints and their delivery log")),
        ]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint: the message (``msg_id``, the JSON ``payload``) and how its
    delivery went. ``pending`` until a receiver answers 2xx (``delivered``) or the attempts give
    up (``failed``). ``attempts`` counts every request sent; ``round_attempts`` those since the
    delivery was created or last replayed (the retry limit applies to them). While pending,
    ``next_attempt_at`` is when the next request is due (or, while one is in flight, until when
    its sender holds it); the reaper re-sends deliveries whose time passed long ago."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries"
    )
    event_type = models.CharField(_("event type"), max_length=32)
    msg_id = models.CharField(_("message id"), max_length=40, unique=True)
    payload = models.JSONField(_("payload"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    round_attempts = models.PositiveIntegerField(default=0)
    replays = models.PositiveIntegerField(_("replays"), default=0)
    last_status_code = models.PositiveIntegerField(_("last status code"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    last_attempt_at = models.DateTimeField(_("last attempt at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["endpoint", "-id"], name="webhookdelivery_endpoint_idx"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhookdelivery_pending_idx",
            ),
        ]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")

    def __str__(self) -> str:
        return f"{self.msg_id} {self.event_type} ({self.status})"


# --- traceability alarms (``ocrapp.alarms``) ------------------------------------------------


class Alarm(models.Model):
    """A traceability alarm raised by a read (``ocrapp.alarms``, in ``read_save``'s
    transaction, or when a correction re-evaluates a serial).

    ``kind``: ``duplicate`` (the serial was read on another capture in the product type's
    duplicate scope and window), ``lookalike`` (another capture's serial differs only by
    look-alike characters), ``out_of_sequence`` (the numeric part is not the successor of the
    line's previous read), ``mismatch`` (a code on the label contradicts the print) or
    ``not_expected`` (the serial is not on the product type's expected list). States: ``open``
    -> ``acknowledged`` (who, when, why) -> ``closed`` (who, when, why; ``closed_by`` None:
    closed by the system after a correction). The line, station and product type are
    snapshots of the capture; every change is in the audit trail.
    """

    class Kind(models.TextChoices):
        DUPLICATE = "duplicate", _("Duplicate serial")
        LOOKALIKE = "lookalike", _("Look-alike serial")
        OUT_OF_SEQUENCE = "out_of_sequence", _("Out of sequence")
        MISMATCH = "mismatch", _("Printed and code disagree")
        NOT_EXPECTED = "not_expected", _("Not on the expected list")

    class State(models.TextChoices):
        OPEN = "open", _("Open")
        ACKNOWLEDGED = "acknowledged", _("Acknowledged")
        CLOSED = "closed", _("Closed")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default="open")
    capture = models.ForeignKey(
        Capture, on_delete=models.PROTECT, related_name="alarms", verbose_name=_("capture")
    )
    read = models.ForeignKey(Read, on_delete=models.PROTECT, related_name="alarms")
    field = models.ForeignKey(
        Field, null=True, blank=True, on_delete=models.PROTECT, related_name="alarms"
    )
    other_capture = models.ForeignKey(
        Capture,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="paired_alarms",
        verbose_name=_("other capture"),
    )
    value = models.CharField(_("serial"), max_length=128, blank=True)  # identifier_key
    display = models.CharField(_("serial as printed"), max_length=128, blank=True)
    other_display = models.CharField(_("other value as printed"), max_length=128, blank=True)
    part_number = models.CharField(_("part number"), max_length=128, blank=True)
    gtin = models.CharField(_("GTIN"), max_length=128, blank=True)
    line = models.CharField(_("line"), max_length=100, blank=True)
    station = models.ForeignKey(Station, on_delete=models.PROTECT, related_name="alarms")
    station_label = models.CharField(_("station"), max_length=210, blank=True)
    product_type = models.ForeignKey(ProductType, on_delete=models.PROTECT, related_name="alarms")
    details = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("raised at"), default=timezone.now)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="acknowledged_alarms",
    )
    acknowledged_by_name = models.CharField(max_length=255, blank=True)
    acknowledge_reason = models.TextField(_("acknowledgement reason"), blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="closed_alarms",
    )
    closed_by_name = models.CharField(max_length=255, blank=True)
    close_reason = models.TextField(_("closing reason"), blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # keyset pages of the alarm list (newest first) and its filters
            models.Index(fields=["-created_at", "-id"], name="alarm_created_id_idx"),
            models.Index(fields=["state", "-created_at"], name="alarm_state_created_idx"),
            models.Index(fields=["capture", "kind"], name="alarm_capture_kind_idx"),
            models.Index(fields=["field", "state"], name="alarm_field_state_idx"),
            models.Index(fields=["other_capture"], name="alarm_other_capture_idx"),
            # the navigation badge: open alarms per station
            models.Index(fields=["station"], condition=Q(state="open"), name="alarm_open_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["open", "acknowledged", "closed"]),
                name="alarm_state_known",
            ),
        ]
        permissions = [("manage_alarms", _("Can acknowledge and close alarms"))]
        verbose_name = _("alarm")
        verbose_name_plural = _("alarms")

    def __str__(self) -> str:
        return f"alarm #{self.pk} {self.kind} {self.display or self.value} ({self.state})"

    @property
    def active(self) -> bool:
        """Not closed yet (open or acknowledged)."""
        return self.state != self.State.CLOSED


class ExpectedSerial(models.Model):
    """One serial of a product type's expected list (optionally of one work order). With the
    product type's ``expected_required`` on, a read whose serial is on no active row of its
    product type raises a ``not_expected`` alarm. Imported from CSV
    (``POST /api/v1/product-types/{id}/expected-serials``); rows are deactivated, not deleted."""

    product_type = models.ForeignKey(
        ProductType, on_delete=models.PROTECT, related_name="expected_serials"
    )
    work_order = models.CharField(_("work order"), max_length=64, blank=True, default="")
    value = models.CharField(_("serial"), max_length=128)  # identifier_key
    display = models.CharField(_("serial as given"), max_length=128, blank=True)
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("imported at"), default=timezone.now)

    class Meta:
        ordering = ["product_type", "work_order", "value"]
        constraints = [
            models.UniqueConstraint(
                fields=["product_type", "work_order", "value"], name="expected_serial_uniq"
            )
        ]
        indexes = [
            models.Index(
                fields=["product_type", "value"],
                condition=Q(active=True),
                name="expected_serial_active_idx",
            )
        ]
        verbose_name = _("expected serial")
        verbose_name_plural = _("expected serials")

    def __str__(self) -> str:
        wo = f" [{self.work_order}]" if self.work_order else ""
        return f"{self.display or self.value}{wo}"
