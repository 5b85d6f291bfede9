"""REST API v1 (DRF). One view per operation; serializers validate and shape, never save."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ocrapp import selectors, services
from ocrapp.errors import ApplicationError
from ocrapp.models import Capture

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
    image_url = serializers.SerializerMethodField()
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
    finished_at = serializers.DateTimeField()
    fields = serializers.SerializerMethodField(method_name="get_field_values")
    needs_review = serializers.SerializerMethodField()
    read = serializers.SerializerMethodField()

    def _url(self, name: str, obj: Capture) -> str:
        path = reverse(name, kwargs={"capture_id": obj.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_url(self, obj: Capture) -> str:
        return self._url("api-capture-detail", obj)

    def get_image_url(self, obj: Capture) -> str:
        return self._url("capture-image", obj)

    def get_station(self, obj: Capture) -> dict:
        return {"id": obj.station_id, "line": obj.station.line, "name": obj.station.name}

    def get_failure(self, obj: Capture) -> dict | None:
        if obj.status != Capture.Status.FAILED:
            return None
        return {"code": obj.failure_code, "reason": obj.failure_reason}

    def get_field_values(self, obj: Capture) -> dict:
        """Convenience map: field name -> normalised value (empty when not found)."""
        read = selectors.capture_latest_read(capture=obj)
        return {f.name: f.value for f in read.fields.all()} if read else {}

    def get_needs_review(self, obj: Capture) -> bool | None:
        """Whether a person must check this read (null until it is read)."""
        read = selectors.capture_latest_read(capture=obj)
        return read.needs_review if read else None

    def get_read(self, obj: Capture) -> dict | None:
        read = selectors.capture_latest_read(capture=obj)
        return ReadOutput(read).data if read else None


class SerialHitOutput(serializers.Serializer):
    value = serializers.CharField()
    match = serializers.CharField()
    similarity = serializers.FloatField()
    reads = serializers.IntegerField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    field_names = serializers.ListField(child=serializers.CharField())
    history_url = serializers.SerializerMethodField()

    def get_history_url(self, obj) -> str:
        path = reverse("api-serial-history", kwargs={"value": obj.value})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class SerialHistoryItemOutput(serializers.Serializer):
    capture_id = serializers.UUIDField(source="capture.pk")
    captured_at = serializers.DateTimeField(source="created_at")
    field = serializers.CharField(source="field_name")
    raw_value = serializers.CharField(source="field.raw_value")
    confidence = serializers.FloatField(source="field.confidence")
    valid = serializers.BooleanField(source="field.valid")
    station = serializers.CharField(source="station.__str__")
    product_type = serializers.CharField(source="product_type.name")
    capture_status = serializers.CharField(source="capture.status")
    client_ref = serializers.CharField(source="capture.client_ref")


# --- views -----------------------------------------------------------------------------------


class CaptureCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

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
            raise ApplicationError("invalid", "Idempotency-Key must be at most 128 characters.")
        capture, created = services.capture_create(
            user=request.user,
            image_bytes=upload.read(),
            original_filename=upload.name or "",
            product_type=product_type,
            station=station,
            client_ref=data.validated_data.get("client_ref", ""),
            idempotency_key=key,
        )
        capture = selectors.capture_get(capture_id=capture.pk)
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
        raw_wait = request.query_params.get("wait", "0")
        try:
            wait = float(raw_wait)
        except ValueError:
            raise ApplicationError("invalid", "wait must be a number of seconds.") from None
        if not 0 <= wait <= settings.CAPTURE_WAIT_MAX_SECONDS:
            raise ApplicationError(
                "invalid", f"wait must be between 0 and {settings.CAPTURE_WAIT_MAX_SECONDS}."
            )
        if wait > 0:
            capture = selectors.capture_wait(capture_id=capture_id, timeout=wait)
        else:
            capture = selectors.capture_get(capture_id=capture_id)
        return Response(CaptureOutput(capture, context={"request": request}).data)


class SerialSearchApi(APIView):
    @extend_schema(
        operation_id="serials_search",
        parameters=[
            OpenApiParameter("q", OpenApiTypes.STR, required=True, description="Serial or part."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="At most 200 (default 50)."),
        ],
        responses={
            200: inline_serializer(
                "SerialSearchResult",
                {"query": serializers.CharField(), "results": SerialHitOutput(many=True)},
            )
        },
    )
    def get(self, request):
        q = request.query_params.get("q", "").strip()
        if not q:
            raise ApplicationError("invalid", "q is required.", details={"q": ["Required."]})
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            raise ApplicationError("invalid", "limit must be an integer.") from None
        limit = max(1, min(limit, 200))
        hits = selectors.serial_search(q=q, limit=limit)
        return Response(
            {
                "query": q,
                "results": SerialHitOutput(hits, many=True, context={"request": request}).data,
            }
        )


class SerialHistoryApi(APIView):
    @extend_schema(
        operation_id="serials_history",
        responses={
            200: inline_serializer(
                "SerialHistory",
                {"value": serializers.CharField(), "history": SerialHistoryItemOutput(many=True)},
            )
        },
    )
    def get(self, request, value):
        records = selectors.serial_history(value=value)
        if not records:
            raise ApplicationError("not_found", f"No reads of {value!r}.", status_code=404)
        return Response(
            {"value": records[0].value, "history": SerialHistoryItemOutput(records, many=True).data}
        )
