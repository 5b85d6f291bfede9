"""REST API v1 (DRF). One view per operation; serializers validate and shape, never save."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import FileResponse, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from ocrapp import (
    crops,
    events,
    exports,
    logctx,
    roles,
    selectors,
    services,
    signature,
    waiting,
    webhooks,
)
from ocrapp.errors import ApplicationError, NotFoundError
from ocrapp.models import Capture
from ocrapp.parsers import FormParser, MultiPartParser
from ocrapp.security import public_url

log = logging.getLogger(__name__)

# --- serializers -----------------------------------------------------------------------------


class CaptureCreateInput(serializers.Serializer):
    image = serializers.FileField(allow_empty_file=True, help_text="JPEG, PNG, TIFF or WebP photo.")
    station = serializers.CharField(
        required=False,
        help_text="Station id or 'line/name'. Optional when the token belongs to a station.",
    )
    product_type = serializers.CharField(help_text="Product type id or name.")
    client_ref = serializers.CharField(required=False, allow_blank=True, max_length=128, default="")


class TextLineOutput(serializers.Serializer):
    order = serializers.IntegerField()
    text = serializers.CharField()
    confidence = serializers.FloatField()
    char_confidences = serializers.ListField(child=serializers.FloatField())
    polygon = serializers.JSONField()


class FieldOutput(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField()
    raw_value = serializers.CharField()
    confidence = serializers.FloatField()
    valid = serializers.BooleanField()
    reason = serializers.CharField()
    reasons = serializers.JSONField(help_text="Failed schema rules: [{code, message}].")
    corrected = serializers.BooleanField(
        help_text="value was corrected to fit the format/check digit (raw_value is the read)."
    )
    correction = serializers.JSONField(help_text="{from, to, probability, changes} or null.")
    source = serializers.CharField(help_text="text, code or text+code.")
    code_value = serializers.CharField(allow_null=True, help_text="What a code on the label says.")
    code_match = serializers.BooleanField(
        allow_null=True, help_text="Whether the code agrees with the print (null: no code)."
    )
    iso_date = serializers.DateField(allow_null=True)
    confidence_parts = serializers.JSONField()
    line = serializers.SerializerMethodField()
    box = serializers.JSONField()
    id = serializers.IntegerField(help_text="For POST /api/v1/fields/{id}/revisions.")
    current_value = serializers.CharField(
        help_text="The value in force: value until a signed revision corrects it."
    )

    def get_line(self, obj) -> int | None:
        return obj.line.order if obj.line_id else None


class ReadOutput(serializers.Serializer):
    run = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    device = serializers.CharField()
    providers = serializers.JSONField()
    models = serializers.JSONField(source="models_used")
    pipeline_config = serializers.JSONField()
    timings_ms = serializers.JSONField()
    quality = serializers.JSONField()
    lines = TextLineOutput(many=True)
    fields = FieldOutput(many=True)
    codes = serializers.JSONField(help_text="Decoded DataMatrix/QR/1-D codes with GS1 elements.")
    mismatches = serializers.JSONField(help_text="Printed fields a code contradicts (mislabel).")
    needs_review = serializers.BooleanField()
    review = serializers.JSONField(help_text="{needs_review, auto_accept, reasons}.")


class CaptureOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField(
        help_text="The photo, for the session or the token that may see the capture."
    )
    thumbnail_url = serializers.SerializerMethodField()
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    image_format = serializers.CharField()
    station = serializers.SerializerMethodField()
    product_type = serializers.CharField(source="product_type.name")
    uploaded_by = serializers.CharField(source="uploaded_by.username")
    client_ref = serializers.CharField()
    failure = serializers.SerializerMethodField()
    attempts = serializers.IntegerField(
        help_text="Runs of the reader started on this capture (a crash or restart adds one)."
    )
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True, help_text="Null until the read ends.")
    fields = serializers.SerializerMethodField(method_name="get_field_values")
    needs_review = serializers.SerializerMethodField()
    reviewed = serializers.SerializerMethodField()
    read = serializers.SerializerMethodField()
    withdrawn = serializers.SerializerMethodField()
    image_purged = serializers.SerializerMethodField()

    def _url(self, name: str, obj: Capture) -> str:
        return public_url(reverse(name, kwargs={"capture_id": obj.pk}))

    def get_url(self, obj: Capture) -> str:
        return self._url("api-capture-detail", obj)

    def get_image_url(self, obj: Capture) -> str | None:
        """None once retention deleted the image (``image_purged``)."""
        if obj.image_purged_at is not None:
            return None
        return self._url("api-capture-image", obj)

    def get_thumbnail_url(self, obj: Capture) -> str | None:
        if obj.image_purged_at is not None:
            return None
        return self._url("api-capture-image", obj) + "?size=thumb"

    def get_image_purged(self, obj: Capture) -> dict | None:
        """{at, message} once ``purge_images`` deleted the image (the reads and sha256 stay)."""
        if obj.image_purged_at is None:
            return None
        return {"at": obj.image_purged_at, "message": _("Image deleted by retention.")}

    def get_station(self, obj: Capture) -> dict:
        """The station as it was named when the photo was taken; ``id``: the station now."""
        return {"id": obj.station_id, "line": obj.station_line, "name": obj.station_name}

    def get_withdrawn(self, obj: Capture) -> dict | None:
        """{at, by, reason} once the capture was withdrawn (it then leaves serial search)."""
        if obj.withdrawn_at is None:
            return None
        return {
            "at": obj.withdrawn_at,
            "by": obj.withdrawn_by_name,
            "reason": obj.withdrawal_reason,
        }

    def get_failure(self, obj: Capture) -> dict | None:
        if obj.status != Capture.Status.FAILED:
            return None
        return {"code": obj.failure_code, "reason": obj.failure_reason}

    def get_field_values(self, obj: Capture) -> dict:
        """Convenience map: field name -> value in force (the machine read's normalised value
        until a signed revision corrects it; empty when not found)."""
        read = selectors.capture_latest_read(capture=obj)
        return {f.name: f.current_value for f in read.fields.all()} if read else {}

    def get_needs_review(self, obj: Capture) -> bool | None:
        """Whether a person must check this read (null until it is read)."""
        read = selectors.capture_latest_read(capture=obj)
        return read.needs_review if read else None

    def get_reviewed(self, obj: Capture) -> bool:
        """Whether a person has signed every field of the latest read (see /revisions)."""
        read = selectors.capture_latest_read(capture=obj)
        rows = list(read.fields.all()) if read else []
        return bool(rows) and all(len(f.revisions.all()) for f in rows)

    def get_read(self, obj: Capture) -> dict | None:
        read = selectors.capture_latest_read(capture=obj)
        return ReadOutput(read).data if read else None


class SerialHitOutput(serializers.Serializer):
    value = serializers.CharField(help_text="Normalised (no separators): the history's key.")
    display = serializers.CharField(help_text="As printed (the latest printed form).")
    match = serializers.CharField(help_text="exact, prefix, lookalike or similar.")
    similarity = serializers.FloatField()
    reads = serializers.IntegerField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    field_names = serializers.ListField(child=serializers.CharField())
    current_reads = serializers.IntegerField(
        help_text="Reads whose value in force this is (0: only found as a corrected-away 'was')."
    )
    sources = serializers.ListField(
        child=serializers.CharField(),
        help_text="text (a field's value) and/or code (only a code on the label carries it).",
    )
    stations = serializers.ListField(
        child=serializers.CharField(), help_text="Stations (line / name) at capture time."
    )
    history_url = serializers.SerializerMethodField()

    def get_history_url(self, obj) -> str:
        return public_url(reverse("api-serial-history", kwargs={"value": obj.value}))


class HistoryFieldOutput(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField(source="current_value", help_text="The value in force.")
    machine_value = serializers.CharField(source="value")
    confidence = serializers.FloatField()
    valid = serializers.BooleanField()
    source = serializers.CharField()
    revisions = serializers.SerializerMethodField()

    def get_revisions(self, obj) -> list:
        return [
            {
                "seq": r.seq,
                "old_value": r.old_value,
                "new_value": r.new_value,
                "meaning": r.meaning,
                "reason_code": r.reason_code,
                "signer_name": r.signer_name,
                "signed_at": serializers.DateTimeField().to_representation(r.signed_at),
            }
            for r in obj.revisions.all()
        ]


class SerialHistoryItemOutput(serializers.Serializer):
    capture_id = serializers.UUIDField(source="capture.pk")
    captured_at = serializers.DateTimeField(source="created_at")
    field = serializers.CharField(source="field_name")
    display = serializers.CharField(source="shown", help_text="This value as printed.")
    source = serializers.CharField(help_text="text: the field's value; code: a label code's.")
    raw_value = serializers.CharField(source="field.raw_value")
    confidence = serializers.FloatField(source="field.confidence")
    valid = serializers.BooleanField(source="field.valid")
    line = serializers.CharField(source="capture.station_line")
    station = serializers.CharField(source="capture.station_label")
    product_type = serializers.CharField(source="product_type.name")
    capture_status = serializers.CharField(source="capture.status")
    client_ref = serializers.CharField(source="capture.client_ref")
    superseded = serializers.BooleanField(
        help_text="A person corrected this read from this value to current_value ('was')."
    )
    current_value = serializers.CharField(source="field.current_value")
    withdrawn = serializers.BooleanField(source="capture.withdrawn")
    needs_review = serializers.BooleanField(source="field.read.needs_review")
    alarms = serializers.SerializerMethodField(
        help_text="The capture's alarms: [{id, kind, state, display, other_display, url}]."
    )
    fields = HistoryFieldOutput(many=True, source="field.read.fields.all")
    capture_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    def _abs(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_capture_url(self, obj) -> str:
        return self._abs(reverse("api-capture-detail", kwargs={"capture_id": obj.capture_id}))

    def get_alarms(self, obj) -> list[dict]:
        return [
            {
                "id": a.pk,
                "kind": a.kind,
                "state": a.state,
                "display": a.display,
                "other_display": a.other_display,
                "url": self._abs(reverse("api-alarm-detail", kwargs={"alarm_id": a.pk})),
            }
            for a in obj.capture.alarms.all()  # prefetched by serial_history
        ]

    def get_thumbnail_url(self, obj) -> str:
        path = reverse("api-capture-image", kwargs={"capture_id": obj.capture_id})
        return self._abs(path + "?size=thumb")


def _page_body(page: selectors.Page, results: list, request) -> dict:
    """The page envelope of list endpoints: results, the opaque next cursor and its URL, the
    total and whether it is exact (else estimated)."""
    next_url = None
    if page.next_cursor:
        params = request.query_params.copy()
        params["cursor"] = page.next_cursor
        next_url = request.build_absolute_uri(request.path + "?" + params.urlencode())
    return {
        "total": page.total,
        "total_exact": page.total_exact,
        "next_cursor": page.next_cursor or None,
        "next": next_url,
        "results": results,
    }


_FILTER_PARAMS = [
    OpenApiParameter("from", OpenApiTypes.STR, description="YYYY-MM-DD or YYYY-MM-DDTHH:MM."),
    OpenApiParameter("to", OpenApiTypes.STR, description="Inclusive day, or a time (exclusive)."),
    OpenApiParameter("tz", OpenApiTypes.STR, description="IANA zone of from/to and the answer."),
    OpenApiParameter("line", OpenApiTypes.STR, description="Line at capture time."),
    OpenApiParameter("station", OpenApiTypes.STR, description="Station id or line/name."),
    OpenApiParameter("product_type", OpenApiTypes.STR, description="Id or name."),
    OpenApiParameter("status", OpenApiTypes.STR, description="PENDING, PROCESSING, DONE, FAILED."),
    OpenApiParameter("review", OpenApiTypes.STR, description="needs_review, reviewed, accepted."),
    OpenApiParameter("conf_min", OpenApiTypes.NUMBER, description="0..1"),
    OpenApiParameter("conf_max", OpenApiTypes.NUMBER, description="0..1"),
    OpenApiParameter(
        "alarm",
        OpenApiTypes.STR,
        description="Captures with an open or acknowledged alarm: any, duplicate, lookalike, "
        "out_of_sequence, mismatch, not_expected (mislabel = mismatch).",
    ),
    OpenApiParameter("client_ref", OpenApiTypes.STR),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="next_cursor of the page before."),
    OpenApiParameter("limit", OpenApiTypes.INT, description="1-200 (default 50)."),
]


# --- permissions -----------------------------------------------------------------------------


class CanUpload(BasePermission):
    """``upload_capture`` (``ocrapp.roles``); checked before the upload is parsed."""

    message = gettext_lazy("You do not have permission to upload captures.")

    def has_permission(self, request, view) -> bool:
        if request.method != "POST":  # GET /captures lists (scoped), POST uploads
            return True
        return roles.can(request.user, "upload_capture")


# --- views -----------------------------------------------------------------------------------


class CaptureCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    throttle_scope = "upload"  # API_RATE_UPLOAD (every other view: API_RATE_READ)
    permission_classes = [IsAuthenticated, CanUpload]

    @extend_schema(
        operation_id="captures_create",
        request={"multipart/form-data": CaptureCreateInput},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Retry-safe key: the same key and image return the first capture.",
            )
        ],
        responses={202: CaptureOutput},
    )
    def post(self, request):
        data = CaptureCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["image"]
        services.upload_check_size(size=upload.size)  # before reading the file into memory
        product_type = selectors.product_type_find(ref=data.validated_data["product_type"])
        station_ref = data.validated_data.get("station")
        station = selectors.station_find(ref=station_ref) if station_ref else None
        key = request.headers.get("Idempotency-Key", "").strip() or None
        if key is not None and len(key) > 128:
            raise ApplicationError("invalid", _("Idempotency-Key must be at most 128 characters."))
        capture, created = services.capture_create(
            user=request.user,
            image_bytes=upload.read(),
            original_filename=upload.name or "",
            product_type=product_type,
            station=station,
            client_ref=data.validated_data.get("client_ref", ""),
            idempotency_key=key,
        )
        logctx.bind(capture_id=capture.pk)  # for the rest of this request's log lines
        log.info("capture %s %s", capture.pk, "accepted" if created else "replayed (idempotent)")
        if created:
            capture = selectors.capture_just_created(capture=capture)
        else:  # a replay: the capture as it is now (it may have been read since)
            capture = selectors.capture_get(capture_id=capture.pk, user=request.user)
        body = CaptureOutput(capture, context={"request": request}).data
        response = Response(body, status=status.HTTP_202_ACCEPTED)
        response["Location"] = body["url"]
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class CaptureDetailApi(APIView):
    @extend_schema(
        operation_id="captures_retrieve",
        parameters=[
            OpenApiParameter(
                "wait",
                OpenApiTypes.INT,
                description="Seconds (0-30) to wait for the read to finish before answering.",
            )
        ],
        responses={200: CaptureOutput},
    )
    def get(self, request, capture_id):
        # The wait itself happens in capture_detail (async, no thread held): this answers now.
        parse_wait(request.query_params.get("wait", "0"))
        capture = selectors.capture_get(capture_id=capture_id, user=request.user)
        response = Response(CaptureOutput(capture, context={"request": request}).data)
        response.capture_final = capture.status in selectors.FINAL_STATUSES
        return response


def parse_wait(raw: str) -> float:
    """``?wait=`` in seconds (0 to CAPTURE_WAIT_MAX_SECONDS), else ApplicationError (400)."""
    try:
        wait = float(raw)
    except ValueError:
        raise ApplicationError("invalid", _("wait must be a number of seconds.")) from None
    if not 0 <= wait <= settings.CAPTURE_WAIT_MAX_SECONDS:  # also rejects nan
        raise ApplicationError(
            "invalid",
            _("wait must be between 0 and %(max)s.") % {"max": settings.CAPTURE_WAIT_MAX_SECONDS},
        )
    return wait


_capture_detail_sync = CaptureDetailApi.as_view()
WAIT_DB_SLOTS = 8  # waiting requests of one event loop that use the database at once
_wait_slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _answer_now(request, capture_id):
    """The DRF view (authentication, scope, errors, language, body), in a request thread; the
    thread's database connection is closed after it unless a transaction holds it (a test's),
    so a waiting request holds no connection either."""
    try:
        return _capture_detail_sync(request, capture_id=capture_id)
    finally:
        for conn in connections.all(initialized_only=True):
            if not conn.in_atomic_block:
                conn.close()


async def _answer(request, capture_id):
    loop = asyncio.get_running_loop()
    slots = _wait_slots.get(loop)
    if slots is None:
        slots = _wait_slots[loop] = asyncio.Semaphore(WAIT_DB_SLOTS)
    async with slots:
        return await sync_to_async(_answer_now)(request, capture_id)


@csrf_exempt
async def capture_detail(request, capture_id):
    """GET /api/v1/captures/{id}[?wait=N]: CaptureDetailApi's answer; with ``wait`` > 0 and the
    capture not final yet, it first waits without a thread (``ocrapp.waiting``) until the read
    is DONE/FAILED or N seconds passed, then answers exactly as CaptureDetailApi does."""
    try:
        wait = parse_wait(request.GET.get("wait", "0")) if request.method == "GET" else 0.0
    except ApplicationError:
        wait = 0.0  # CaptureDetailApi answers the 400 (after authentication, in its language)
    key = waiting.canonical_id(capture_id)
    if wait <= 0 or key is None:
        return await sync_to_async(_capture_detail_sync)(request, capture_id=capture_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    ticket = waiting.waiters.register(key)  # before the first look: no wake-up falls between
    try:
        response = await _answer(request, capture_id)
        if getattr(response, "capture_final", True):
            return response  # final already, or an error (401, 404...)
        await ticket.wait(deadline - loop.time())
    finally:
        waiting.waiters.unregister(ticket)
    return await _answer(request, capture_id)


# drf-spectacular documents the view behind the URL through these (as for as_view()).
capture_detail.cls = CaptureDetailApi
capture_detail.initkwargs = {}


class CaptureWithdrawInput(serializers.Serializer):
    # Blank and length are checked by services.capture_withdraw (after the permission check).
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Why (required)."
    )


class CaptureWithdrawApi(APIView):
    @extend_schema(
        operation_id="captures_withdraw",
        request=CaptureWithdrawInput,
        responses={200: CaptureOutput},
        description="Withdraw a capture (needs withdraw_capture, else 403): it leaves serial "
        "search but keeps its reads, history and image. Captures are never deleted.",
    )
    def post(self, request, capture_id):
        data = CaptureWithdrawInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.capture_withdraw(
            capture_id=capture_id, actor=request.user, reason=data.validated_data["reason"]
        )
        capture = selectors.capture_get(capture_id=capture_id, user=request.user)
        return Response(CaptureOutput(capture, context={"request": request}).data)


class SerialSearchApi(APIView):
    @extend_schema(
        operation_id="serials_search",
        parameters=[
            OpenApiParameter("q", OpenApiTypes.STR, required=True, description="Serial or part."),
            OpenApiParameter("field", OpenApiTypes.STR, description="A traced field name."),
            OpenApiParameter(
                "match",
                OpenApiTypes.STR,
                description="Kinds to run, comma-separated: exact, prefix, lookalike, similar "
                "(default all).",
            ),
            *_FILTER_PARAMS,
        ],
        responses={
            200: inline_serializer(
                "SerialSearchResult",
                {
                    "query": serializers.CharField(),
                    "total": serializers.IntegerField(),
                    "total_exact": serializers.BooleanField(),
                    "next_cursor": serializers.CharField(allow_null=True),
                    "next": serializers.CharField(allow_null=True),
                    "results": SerialHitOutput(many=True),
                },
            )
        },
    )
    def get(self, request):
        params = request.query_params
        filters = selectors.search_filters_parse(params=params, default_tz="UTC")
        if not filters.q:
            raise ApplicationError(
                "invalid", _("q is required."), details={"q": [_("This field is required.")]}
            )
        limit = selectors.search_limit_parse(params=params)
        cursor = selectors.param_text(params, "cursor", max_length=512)
        with timezone.override(selectors.time_zone_find(name=filters.tz)):
            page = selectors.serial_search_page(
                q=filters.q, user=request.user, filters=filters, cursor=cursor, limit=limit
            )
            results = SerialHitOutput(page.items, many=True, context={"request": request}).data
        return Response({"query": filters.q, **_page_body(page, results, request)})


class SerialHistoryApi(APIView):
    @extend_schema(
        operation_id="serials_history",
        parameters=[
            OpenApiParameter("part", OpenApiTypes.STR, description="Only this part number's."),
            OpenApiParameter("tz", OpenApiTypes.STR, description="IANA zone of the times."),
        ],
        responses={
            200: inline_serializer(
                "SerialHistory",
                {
                    "value": serializers.CharField(),
                    "display": serializers.CharField(),
                    "history": SerialHistoryItemOutput(many=True),
                },
            )
        },
    )
    def get(self, request, value):
        if "\x00" in value:
            raise ApplicationError("invalid", _("The value must not contain NUL characters."))
        part = selectors.param_text(request.query_params, "part")
        tz = selectors.time_zone_find(
            name=selectors.param_text(request.query_params, "tz", max_length=64) or "UTC"
        )
        records = selectors.serial_history(value=value, user=request.user, part=part)
        if not records:
            raise ApplicationError(
                "not_found", _("No reads of %(value)s.") % {"value": repr(value)}, status_code=404
            )
        with timezone.override(tz):
            history = SerialHistoryItemOutput(records, many=True, context={"request": request}).data
        return Response(
            {"value": records[0].value, "display": records[-1].shown, "history": history}
        )


class CaptureListApi(APIView):
    @extend_schema(
        operation_id="captures_list",
        parameters=[
            OpenApiParameter("q", OpenApiTypes.STR, description="A traced value or its start."),
            OpenApiParameter("sort", OpenApiTypes.STR, description="newest (default), oldest."),
            *_FILTER_PARAMS,
        ],
        responses={
            200: inline_serializer(
                "CaptureList",
                {
                    "total": serializers.IntegerField(),
                    "total_exact": serializers.BooleanField(),
                    "next_cursor": serializers.CharField(allow_null=True),
                    "next": serializers.CharField(allow_null=True),
                    "results": CaptureOutput(many=True),
                },
            )
        },
        description="The captures the caller may see (a station token: its station's), "
        "filtered, one keyset page; follow `next` for the next one.",
    )
    def get(self, request):
        params = request.query_params
        filters = selectors.search_filters_parse(params=params, default_tz="UTC")
        limit = selectors.search_limit_parse(params=params)
        cursor = selectors.param_text(params, "cursor", max_length=512)
        page = selectors.capture_page(
            user=request.user, filters=filters, cursor=cursor, limit=limit
        )
        with timezone.override(selectors.time_zone_find(name=filters.tz)):
            results = CaptureOutput(page.items, many=True, context={"request": request}).data
        return Response(_page_body(page, results, request))


class _AnyFormat(DefaultContentNegotiation):
    """``?format=`` names the export's file format here, not a DRF renderer: no override
    (errors are JSON as everywhere)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class CaptureExportApi(APIView):
    content_negotiation_class = _AnyFormat

    @extend_schema(
        operation_id="captures_export",
        parameters=[
            OpenApiParameter(
                "format", OpenApiTypes.STR, description="csv (default), xlsx or epcis."
            ),
            OpenApiParameter(
                "scope",
                OpenApiTypes.STR,
                description="captures (default: the capture list) or serials (the serial "
                "search for q: one row per matching read).",
            ),
            OpenApiParameter("q", OpenApiTypes.STR, description="A traced value or its start."),
            OpenApiParameter("field", OpenApiTypes.STR, description="scope=serials: a field."),
            OpenApiParameter("match", OpenApiTypes.STR, description="scope=serials: kinds."),
            OpenApiParameter("sort", OpenApiTypes.STR, description="newest (default), oldest."),
            *[p for p in _FILTER_PARAMS if p.name not in ("cursor", "limit")],
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, exports.CONTENT_TYPES["xlsx"]): OpenApiTypes.BINARY,
            (200, "application/ld+json"): OpenApiTypes.OBJECT,
        },
        description="Download every capture (or serial search hit) the caller may see for the "
        "filters (a station token: its station's), streamed: CSV or XLSX (one row per field, "
        "the filters and the export time in a header block / an About sheet) or an EPCIS 2.0 "
        "JSON-LD document (ObjectEvents; corrections as errorDeclaration + corrective event). "
        "Needs export_reads; each export is in the audit trail.",
    )
    def get(self, request):
        return exports.export_response(
            request=request, user=request.user, params=request.query_params, default_tz="UTC"
        )


class CapturesApi(CaptureListApi, CaptureCreateApi):
    """``/api/v1/captures``: GET lists (:class:`CaptureListApi`), POST uploads
    (:class:`CaptureCreateApi`)."""


class CaptureImageApi(APIView):
    @extend_schema(
        operation_id="captures_image",
        parameters=[
            OpenApiParameter("size", OpenApiTypes.STR, description="full (default) or thumb.")
        ],
        responses={(200, "image/*"): OpenApiTypes.BINARY},
        description="The stored photo (or its JPEG thumbnail) for a session or token that may "
        "see the capture; 404 otherwise.",
    )
    def get(self, request, capture_id):
        size = selectors.param_text(request.query_params, "size", max_length=8) or "full"
        if size not in ("full", "thumb"):
            raise ApplicationError(
                "invalid",
                _("size must be full or thumb."),
                details={"size": ["full", "thumb"]},
            )
        capture = selectors.capture_get(capture_id=capture_id, user=request.user)
        return capture_image_response(capture=capture, thumb=size == "thumb")


# Stored formats browsers do not show: the full image is served as a JPEG rendition.
BROWSER_UNREADABLE_FORMATS = frozenset({"HEIF"})


def capture_image_response(*, capture: Capture, thumb: bool) -> HttpResponse:
    """The photo or its thumbnail of a capture already checked to be in scope (API and page):
    410 ``image_purged`` once retention deleted it, 404 ``image_missing`` when the file is
    gone, a JPEG rendition of a HEIC photo (503 ``server_busy`` when the decode budget is full)."""
    if capture.image_purged_at is not None:
        raise ApplicationError(
            "image_purged", _("Image deleted by retention."), status_code=status.HTTP_410_GONE
        )
    try:
        if thumb:
            fh = services.capture_thumbnail_open(capture=capture)
        else:
            fh = capture.image.open("rb")
    except (FileNotFoundError, ValueError, services.ImageMissing):
        raise NotFoundError("image_missing", _("The image file is missing.")) from None
    if not thumb and capture.image_format in BROWSER_UNREADABLE_FORMATS:
        with fh:
            data = fh.read()
        try:
            response = HttpResponse(crops.jpeg_rendition(data), content_type="image/jpeg")
        except OSError:
            raise NotFoundError("image_missing", _("The image file is missing.")) from None
    else:
        response = FileResponse(fh, content_type="image/jpeg" if thumb else None)
    # The stored file never changes (content-addressed by the capture), so browsers may keep it.
    response["Cache-Control"] = "private, max-age=86400"
    return response


# --- review: queue, signed revisions, retry ----------------------------------------------------


class RevisionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    field_id = serializers.IntegerField()
    field = serializers.CharField(source="field.name")
    run = serializers.IntegerField(source="field.read.run")
    seq = serializers.IntegerField()
    old_value = serializers.CharField()
    new_value = serializers.CharField()
    entered_value = serializers.CharField()
    reason_code = serializers.CharField(
        help_text="misread, glare, damaged_label, wrong_field, other or ''."
    )
    reason_text = serializers.CharField(help_text="The reviewer's own words (reason_code other).")
    meaning = serializers.CharField(help_text="reviewed, corrected or approved.")
    signer = serializers.CharField(source="signer.username")
    signer_name = serializers.CharField(help_text="Printed name at signing.")
    signed_at = serializers.DateTimeField()
    valid = serializers.BooleanField(help_text="Whether new_value passed the field's checks.")
    check_reasons = serializers.JSONField(help_text="Failed rules of new_value: [{code, message}].")
    override = serializers.BooleanField(help_text="Signed although it failed its checks.")


class FieldEditInput(serializers.Serializer):
    value = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    override = serializers.BooleanField(required=False, default=False)


class _SignatureInput(serializers.Serializer):
    meaning = serializers.ChoiceField(
        choices=["reviewed", "corrected", "approved"], required=False, default="reviewed"
    )
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="The signer's password: always with a token, in a browser session when due.",
    )


class CaptureReviewInput(_SignatureInput):
    fields = serializers.DictField(child=FieldEditInput(), required=False, default=dict)
    base_revision = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="Revisions of the read the reviewer saw; 409 stale_read if it changed.",
    )


class FieldRevisionInput(_SignatureInput, FieldEditInput):
    base_seq = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="Revisions of the field the reviewer saw; 409 stale_read if it changed.",
    )


class ReviewQueueItemOutput(serializers.Serializer):
    capture_id = serializers.UUIDField(source="capture.pk")
    capture_url = serializers.SerializerMethodField()
    run = serializers.IntegerField()
    created_at = serializers.DateTimeField(source="capture.created_at")
    station = serializers.SerializerMethodField()
    product_type = serializers.CharField(source="capture.product_type.name")
    mislabel = serializers.BooleanField(source="risk_mislabel")
    invalid = serializers.BooleanField(source="risk_invalid")
    min_confidence = serializers.FloatField()
    reasons = serializers.SerializerMethodField()
    fields = serializers.SerializerMethodField(method_name="get_field_rows")

    def get_capture_url(self, obj) -> str:
        return public_url(reverse("api-capture-detail", kwargs={"capture_id": obj.capture_id}))

    def get_station(self, obj) -> dict:
        s = obj.capture.station
        return {"id": s.pk, "line": s.line, "name": s.name}

    def get_reasons(self, obj) -> list:
        return [
            {"code": r.get("code"), "field": r.get("field"), "params": r.get("params") or {}}
            for r in (obj.review or {}).get("reasons") or ()
        ]

    def get_field_rows(self, obj) -> list:
        return [
            {
                "id": f.pk,
                "name": f.name,
                "value": f.current_value,
                "machine_value": f.value,
                "confidence": f.confidence,
                "valid": f.valid,
                "line": f.line.order if f.line_id else None,
                "revisions": len(f.revisions.all()),
            }
            for f in obj.fields.all()
        ]


def _int_param(request, name: str) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApplicationError("invalid", _("%(name)s must be an id.") % {"name": name}) from None


class ReviewQueueListApi(APIView):
    @extend_schema(
        operation_id="review_queue_list",
        parameters=[
            OpenApiParameter("line", OpenApiTypes.STR, description="Line name."),
            OpenApiParameter("station", OpenApiTypes.INT, description="Station id."),
            OpenApiParameter("product_type", OpenApiTypes.STR, description="Id or name."),
            OpenApiParameter(
                "reason",
                OpenApiTypes.STR,
                description="missing, invalid, low_confidence, truncated or mislabel.",
            ),
            OpenApiParameter("limit", OpenApiTypes.INT, description="At most 500 (default 100)."),
        ],
        responses={
            200: inline_serializer(
                "ReviewQueue",
                {"count": serializers.IntegerField(), "results": ReviewQueueItemOutput(many=True)},
            )
        },
    )
    def get(self, request):
        roles.require(
            request.user, "review_read", message=_("You are not allowed to review reads.")
        )
        filters = selectors.review_filters_parse(params=request.query_params)
        limit = max(1, min(_int_param(request, "limit") or 100, 500))
        reads = selectors.review_queue(user=request.user, filters=filters, limit=limit)
        return Response(
            {
                "count": selectors.review_queue_count(user=request.user, filters=filters),
                "results": ReviewQueueItemOutput(
                    reads, many=True, context={"request": request}
                ).data,
            }
        )


def _signed_response(request, capture_id, revisions, checked: bool, status_code: int):
    if checked:
        signature.password_checked(request)
    capture = selectors.capture_get(capture_id=capture_id, user=request.user)
    return Response(
        {
            "capture": CaptureOutput(capture, context={"request": request}).data,
            "revisions": RevisionOutput(revisions, many=True).data,
        },
        status=status_code,
    )


class CaptureReviewApi(APIView):
    @extend_schema(
        operation_id="captures_review",
        request=CaptureReviewInput,
        responses={
            200: inline_serializer(
                "CaptureReviewed",
                {"capture": CaptureOutput(), "revisions": RevisionOutput(many=True)},
            )
        },
        description=(
            "Sign the capture's latest read: every field gets a revision; fields in `fields` "
            "are corrected (a reason is required), the others keep their value with `meaning`. "
            "Invalid values are refused (400 invalid_value) unless `override` with a reason. "
            "403 password_required / signature_failed when the password is due / wrong."
        ),
    )
    def post(self, request, capture_id):
        data = CaptureReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        edits = {
            name: services.FieldEdit(
                value=e.get("value"), reason=e.get("reason", ""), override=e.get("override", False)
            )
            for name, e in v.get("fields", {}).items()
        }
        revisions, checked = services.read_review(
            user=request.user,
            capture_id=capture_id,
            edits=edits,
            meaning=v.get("meaning", "reviewed"),
            password=v.get("password") or None,
            password_due=signature.password_due(request),
            base_revision=v.get("base_revision"),
        )
        return _signed_response(request, capture_id, revisions, checked, status.HTTP_200_OK)


class FieldRevisionCreateApi(APIView):
    @extend_schema(
        operation_id="fields_revisions_create",
        request=FieldRevisionInput,
        responses={
            201: inline_serializer(
                "FieldRevised",
                {"capture": CaptureOutput(), "revisions": RevisionOutput(many=True)},
            )
        },
    )
    def post(self, request, field_id):
        data = FieldRevisionInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        revision, checked = services.field_revise(
            user=request.user,
            field_id=field_id,
            value=v.get("value"),
            reason=v.get("reason", ""),
            meaning=v.get("meaning", "reviewed"),
            override=v.get("override", False),
            password=v.get("password") or None,
            password_due=signature.password_due(request),
            base_seq=v.get("base_seq"),
        )
        capture_id = revision.field.read.capture_id
        return _signed_response(request, capture_id, [revision], checked, status.HTTP_201_CREATED)


class CaptureRevisionListApi(APIView):
    @extend_schema(
        operation_id="captures_revisions_list",
        responses={
            200: inline_serializer(
                "CaptureRevisions",
                {"capture_id": serializers.UUIDField(), "revisions": RevisionOutput(many=True)},
            )
        },
    )
    def get(self, request, capture_id):
        capture = selectors.capture_get(capture_id=capture_id, user=request.user)
        revisions = selectors.capture_revisions(capture=capture)
        return Response(
            {"capture_id": capture.pk, "revisions": RevisionOutput(revisions, many=True).data}
        )


class CaptureRetryApi(APIView):
    @extend_schema(
        operation_id="captures_retry",
        request=None,
        responses={202: CaptureOutput},
        description="Read a FAILED capture again (a new run; 409 not_failed otherwise).",
    )
    def post(self, request, capture_id):
        capture = services.capture_retry(user=request.user, capture_id=capture_id)
        body = CaptureOutput(capture, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


# --- webhooks (ocrapp/webhooks.py) ------------------------------------------------------------


class WebhookEndpointOutput(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    active = serializers.BooleanField()
    secret_prefix = serializers.CharField(help_text="The secret's first characters (whsec_...).")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    deactivated_at = serializers.DateTimeField(allow_null=True)
    deliveries_url = serializers.SerializerMethodField()

    def get_deliveries_url(self, obj) -> str:
        return public_url(reverse("api-webhook-deliveries", kwargs={"endpoint_id": obj.pk}))


class WebhookEndpointCreatedOutput(WebhookEndpointOutput):
    secret = serializers.CharField(
        help_text="The signing secret (whsec_ + base64). Shown in this answer only: store it."
    )


class WebhookEndpointCreateInput(serializers.Serializer):
    url = serializers.CharField(max_length=webhooks.URL_MAX, help_text="http(s) URL.")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=list(events.EVENT_TYPES)), allow_empty=False
    )
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=webhooks.DESCRIPTION_MAX
    )


class WebhookDeliveryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    endpoint_id = serializers.IntegerField()
    event_type = serializers.CharField()
    msg_id = serializers.CharField(help_text="webhook-id: the same on every retry and replay.")
    status = serializers.CharField(help_text="pending, delivered or failed.")
    attempts = serializers.IntegerField(help_text="Requests sent, retries and replays included.")
    replays = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    payload = serializers.JSONField(help_text='The body sent: {"type", "timestamp", "data"}.')
    replay_url = serializers.SerializerMethodField()

    def get_replay_url(self, obj) -> str:
        return public_url(reverse("api-webhook-delivery-replay", kwargs={"delivery_id": obj.pk}))


class WebhooksApi(APIView):
    @extend_schema(
        operation_id="webhooks_list",
        responses={
            200: inline_serializer("WebhookList", {"results": WebhookEndpointOutput(many=True)})
        },
        description="Every webhook endpoint (view_webhooks: quality managers, auditors, admins).",
    )
    def get(self, request):
        endpoints = webhooks.webhook_endpoint_list(user=request.user)
        return Response({"results": WebhookEndpointOutput(endpoints, many=True).data})

    @extend_schema(
        operation_id="webhooks_create",
        request=WebhookEndpointCreateInput,
        responses={201: WebhookEndpointCreatedOutput},
        description="Create an endpoint (manage_webhooks). The answer carries the signing "
        "secret, once; it is never shown again.",
    )
    def post(self, request):
        webhooks._require_manage(request.user)  # before the body is looked at
        data = WebhookEndpointCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        endpoint, secret = webhooks.webhook_endpoint_create(
            user=request.user,
            url=v["url"],
            event_types=v["event_types"],
            description=v.get("description", ""),
        )
        body = dict(WebhookEndpointOutput(endpoint).data, secret=secret)
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class WebhookDeactivateApi(APIView):
    @extend_schema(
        operation_id="webhooks_deactivate",
        request=None,
        responses={200: WebhookEndpointOutput},
        description="Deactivate an endpoint (manage_webhooks); its pending deliveries fail.",
    )
    def post(self, request, endpoint_id):
        endpoint = webhooks.webhook_endpoint_deactivate(user=request.user, endpoint_id=endpoint_id)
        return Response(WebhookEndpointOutput(endpoint).data)


def _before_param(request) -> int | None:
    before = _int_param(request, "before")
    if before is not None and selectors.as_id(before) is None:
        raise ApplicationError("invalid", _("%(name)s must be an id.") % {"name": "before"})
    return before


class WebhookDeliveryListApi(APIView):
    @extend_schema(
        operation_id="webhooks_deliveries_list",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, description="pending, delivered, failed."),
            OpenApiParameter("before", OpenApiTypes.INT, description="Delivery ids below this."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1-200 (default 50)."),
        ],
        responses={
            200: inline_serializer(
                "WebhookDeliveries",
                {
                    "next": serializers.CharField(allow_null=True),
                    "results": WebhookDeliveryOutput(many=True),
                },
            )
        },
        description="The delivery log of an endpoint, newest first (view_webhooks).",
    )
    def get(self, request, endpoint_id):
        endpoint = webhooks.webhook_endpoint_get(user=request.user, endpoint_id=endpoint_id)
        limit = max(1, min(_int_param(request, "limit") or 50, 200))
        deliveries = webhooks.webhook_delivery_list(
            user=request.user,
            endpoint_id=endpoint.pk,
            status=selectors.param_text(request.query_params, "status", max_length=16),
            before=_before_param(request),
            limit=limit,
        )
        next_url = None
        if len(deliveries) == limit:
            params = request.query_params.copy()
            params["before"] = str(deliveries[-1].pk)
            next_url = request.build_absolute_uri(request.path + "?" + params.urlencode())
        return Response(
            {"next": next_url, "results": WebhookDeliveryOutput(deliveries, many=True).data}
        )


class WebhookDeliveryReplayApi(APIView):
    @extend_schema(
        operation_id="webhook_deliveries_replay",
        request=None,
        responses={202: WebhookDeliveryOutput},
        description="Send a delivered or failed delivery again (manage_webhooks): same message "
        "id, a new attempt now. 409 while it is pending or its endpoint is inactive.",
    )
    def post(self, request, delivery_id):
        delivery = webhooks.webhook_delivery_replay(user=request.user, delivery_id=delivery_id)
        return Response(WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


# --- traceability alarms (ocrapp/alarms.py) ------------------------------------------------


class AlarmStepOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    by = serializers.CharField(help_text="Printed name at the time; 'system' for the system.")
    reason = serializers.CharField()
    by_system = serializers.BooleanField(
        required=False, help_text="closed only: closed by the system after a correction."
    )


class AlarmOutput(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    kind = serializers.CharField(
        help_text="duplicate, lookalike, out_of_sequence, mismatch or not_expected."
    )
    state = serializers.CharField(help_text="open, acknowledged or closed.")
    created_at = serializers.DateTimeField()
    capture_id = serializers.UUIDField()
    capture_url = serializers.SerializerMethodField()
    read_run = serializers.IntegerField(source="read.run")
    field_id = serializers.IntegerField(allow_null=True)
    other_capture_id = serializers.UUIDField(
        allow_null=True, help_text="The other capture of a pair (duplicate, look-alike, sequence)."
    )
    value = serializers.CharField(help_text="The serial, normalised.")
    display = serializers.CharField(help_text="The value as printed.")
    other_display = serializers.CharField(
        help_text="The other capture's value, or the code's value of a mismatch, as printed."
    )
    part_number = serializers.CharField()
    gtin = serializers.CharField()
    line = serializers.CharField(help_text="At capture time.")
    station = serializers.CharField(source="station_label", help_text="At capture time.")
    station_id = serializers.IntegerField()
    product_type = serializers.CharField(source="product_type.name")
    details = serializers.JSONField()
    acknowledged = serializers.SerializerMethodField()
    closed = serializers.SerializerMethodField()

    def _abs(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_url(self, obj) -> str:
        return self._abs(reverse("api-alarm-detail", kwargs={"alarm_id": obj.pk}))

    def get_capture_url(self, obj) -> str:
        return self._abs(reverse("api-capture-detail", kwargs={"capture_id": obj.capture_id}))

    @extend_schema_field(AlarmStepOutput(allow_null=True))
    def get_acknowledged(self, obj) -> dict | None:
        if obj.acknowledged_at is None:
            return None
        return {
            "at": serializers.DateTimeField().to_representation(obj.acknowledged_at),
            "by": obj.acknowledged_by_name,
            "reason": obj.acknowledge_reason,
        }

    @extend_schema_field(AlarmStepOutput(allow_null=True))
    def get_closed(self, obj) -> dict | None:
        if obj.closed_at is None:
            return None
        return {
            "at": serializers.DateTimeField().to_representation(obj.closed_at),
            "by": obj.closed_by_name,
            "reason": obj.close_reason,
            "by_system": obj.closed_by_id is None,
        }


class AlarmReasonInput(serializers.Serializer):
    # blank, NUL and length are checked by the service (after the permission check)
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=False, help_text="Why."
    )


class AlarmListApi(APIView):
    @extend_schema(
        operation_id="alarms_list",
        parameters=[
            OpenApiParameter(
                "kind",
                OpenApiTypes.STR,
                description="duplicate, lookalike, out_of_sequence, mismatch, not_expected.",
            ),
            OpenApiParameter(
                "state", OpenApiTypes.STR, description="open, acknowledged, closed or active."
            ),
            OpenApiParameter("line", OpenApiTypes.STR, description="Line at capture time."),
            OpenApiParameter("station", OpenApiTypes.STR, description="Station id or line/name."),
            OpenApiParameter("product_type", OpenApiTypes.STR, description="Id or name."),
            OpenApiParameter("capture", OpenApiTypes.UUID, description="One capture's alarms."),
            OpenApiParameter("tz", OpenApiTypes.STR, description="IANA zone of the times."),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="next_cursor of before."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1-200 (default 50)."),
        ],
        responses={
            200: inline_serializer(
                "AlarmList",
                {
                    "total": serializers.IntegerField(),
                    "total_exact": serializers.BooleanField(),
                    "next_cursor": serializers.CharField(allow_null=True),
                    "next": serializers.CharField(allow_null=True),
                    "results": AlarmOutput(many=True),
                },
            )
        },
        description="The alarms of the captures the caller may see (a station token: its "
        "station's), newest first, one keyset page; follow `next` for the next one.",
    )
    def get(self, request):
        params = request.query_params
        filters = selectors.alarm_filters_parse(params=params)
        limit = selectors.search_limit_parse(params=params)
        cursor = selectors.param_text(params, "cursor", max_length=512)
        tz = selectors.time_zone_find(
            name=selectors.param_text(params, "tz", max_length=64) or "UTC"
        )
        page = selectors.alarm_page(user=request.user, filters=filters, cursor=cursor, limit=limit)
        with timezone.override(tz):
            results = AlarmOutput(page.items, many=True, context={"request": request}).data
        return Response(_page_body(page, results, request))


class AlarmDetailApi(APIView):
    @extend_schema(operation_id="alarms_retrieve", responses={200: AlarmOutput})
    def get(self, request, alarm_id):
        alarm = selectors.alarm_get(alarm_id=alarm_id, user=request.user)
        return Response(AlarmOutput(alarm, context={"request": request}).data)


class _AlarmStateApi(APIView):
    action = ""

    def post(self, request, alarm_id):
        data = AlarmReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        change = (
            services.alarm_acknowledge if self.action == "acknowledge" else services.alarm_close
        )
        change(alarm_id=alarm_id, user=request.user, reason=data.validated_data["reason"])
        alarm = selectors.alarm_get(alarm_id=alarm_id, user=request.user)
        return Response(AlarmOutput(alarm, context={"request": request}).data)


class AlarmAcknowledgeApi(_AlarmStateApi):
    action = "acknowledge"

    @extend_schema(
        operation_id="alarms_acknowledge",
        request=AlarmReasonInput,
        responses={200: AlarmOutput},
        description="Acknowledge an open alarm with a reason (manage_alarms: quality managers; "
        "403 otherwise; 409 alarm_not_open once acknowledged or closed).",
    )
    def post(self, request, alarm_id):
        return super().post(request, alarm_id)


class AlarmCloseApi(_AlarmStateApi):
    action = "close"

    @extend_schema(
        operation_id="alarms_close",
        request=AlarmReasonInput,
        responses={200: AlarmOutput},
        description="Close an open or acknowledged alarm with a reason (manage_alarms; 409 "
        "alarm_closed when it is closed already).",
    )
    def post(self, request, alarm_id):
        return super().post(request, alarm_id)


class ExpectedSerialImportInput(serializers.Serializer):
    file = serializers.FileField(
        allow_empty_file=True,
        help_text="CSV, UTF-8: serial[,work_order] per row, optional header row 'serial'.",
    )
    work_order = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Work order of rows without one."
    )
    replace = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Deactivate the active serials of these work orders that the file omits.",
    )


class ExpectedSerialImportApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="product_types_expected_serials_import",
        request={"multipart/form-data": ExpectedSerialImportInput},
        responses={
            200: inline_serializer(
                "ExpectedSerialImport",
                {
                    "added": serializers.IntegerField(),
                    "reactivated": serializers.IntegerField(),
                    "unchanged": serializers.IntegerField(),
                    "deactivated": serializers.IntegerField(),
                    "work_orders": serializers.ListField(child=serializers.CharField()),
                    "active_total": serializers.IntegerField(),
                },
            )
        },
        description="Import a product type's expected serials (manage_alarms). All or nothing: "
        "a bad row is a 400 invalid_csv naming its line.",
    )
    def post(self, request, product_type_id):
        roles.require(
            request.user,
            "manage_alarms",
            message=_("You are not allowed to acknowledge or close alarms."),
        )
        data = ExpectedSerialImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        services.upload_check_size(size=upload.size)
        report = services.expected_serials_import(
            product_type_id=product_type_id,
            user=request.user,
            data=upload.read(),
            work_order=data.validated_data["work_order"],
            replace=data.validated_data["replace"],
        )
        return Response(dataclasses.asdict(report))
