"""HTML pages: upload (with live results), captures, capture detail, serial search and history.

Views only read through ``ocrapp.selectors``; uploads go from the browser to the REST API
(``POST /api/v1/captures``), so there is one write path for people and line software.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from ocrapp import selectors
from ocrapp.errors import NotFoundError
from ocrapp.models import Capture, Field, Read
from ocrapp.templatetags.ocrui import (
    FAILURE_MESSAGES,
    FIELD_LABELS,
    QUALITY_MESSAGES,
    TEXT_GLARE_MESSAGE,
)

RECENT_ON_UPLOAD = 10
RECENT_ON_LIST = 50
MAX_QUERY_LENGTH = 128
_ZERO_UUID = uuid.UUID(int=0)


@dataclass(frozen=True)
class FieldView:
    field: Field
    polygon: list | None  # the field's box, else the polygon of the line it came from


@dataclass(frozen=True)
class CaptureView:
    """What the capture templates need, computed once from the prefetched capture."""

    capture: Capture
    read: Read | None
    lines: list
    fields: list[FieldView]
    warnings: list[dict]
    serial: str
    threshold: float

    @property
    def failed(self) -> bool:
        return self.capture.status == Capture.Status.FAILED

    @property
    def finished(self) -> bool:
        return self.capture.status in selectors.FINAL_STATUSES


def _capture_view(capture: Capture) -> CaptureView:
    read = selectors.capture_latest_read(capture=capture)
    lines = list(read.lines.all()) if read else []
    fields = []
    serial = ""
    if read:
        for f in read.fields.all():
            polygon = f.box or (f.line.polygon if f.line_id and f.line else None)
            fields.append(FieldView(field=f, polygon=polygon))
            if f.name == "serial_number" and f.value and not serial:
                serial = f.value
    quality = (read.quality if read else None) or {}
    warnings = [w for w in quality.get("warnings", []) if isinstance(w, dict)]
    return CaptureView(
        capture=capture,
        read=read,
        lines=lines,
        fields=fields,
        warnings=warnings,
        serial=serial,
        threshold=capture.product_type.auto_accept_threshold,
    )


def _capture_or_404(capture_id: uuid.UUID | str) -> Capture:
    try:
        return selectors.capture_get(capture_id=capture_id)
    except NotFoundError:
        raise Http404(_("No capture with this id.")) from None


def ui_strings() -> dict[str, Any]:
    """Translated strings for ``upload.js`` (sent as a JSON script tag)."""
    return {
        "queued": _("Waiting to upload"),
        "uploading": _("Uploading…"),
        "uploaded": _("Uploaded. Reading…"),
        "PENDING": _("Waiting for a reader…"),
        "PROCESSING": _("Reading…"),
        "DONE": _("Done"),
        "FAILED": _("Failed"),
        "network_error": _("Network error. Check the connection and try again."),
        "server_error": _("The server answered with an error (%(status)s)."),
        "still_waiting": _("Still reading; this is taking longer than usual."),
        "choose_station": _("Choose a station and a product type first."),
        "not_image": _("This file is not an image."),
        "retry": _("Retry"),
        "open_detail": _("Open capture details"),
        "lines": _("Text lines"),
        "fields": _("Fields"),
        "quality": _("Photo quality"),
        "no_fields": _("No fields were found."),
        "no_lines": _("No text was read."),
        "valid": _("valid"),
        "invalid": _("invalid"),
        "field": _("Field"),
        "value": _("Value"),
        "confidence": _("Confidence"),
        "check": _("Check"),
        "serial_number": _("Serial number"),
        "failed_title": _("The photo could not be read."),
        "photo_alt": _("Uploaded photo with the detected text outlined"),
        "text_glare_message": TEXT_GLARE_MESSAGE,
        "warnings": {code: str(msg) for code, msg in QUALITY_MESSAGES.items()},
        "failures": {code: str(msg) for code, msg in FAILURE_MESSAGES.items()},
        "field_labels": _field_labels(),
    }


def _field_labels() -> dict[str, str]:
    return {name: str(label) for name, label in FIELD_LABELS.items()}


def _recent(limit: int) -> list[CaptureView]:
    return [_capture_view(c) for c in selectors.capture_list(limit=limit)]


@login_required
@require_GET
def upload_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "ocrapp/upload.html",
        {
            "stations": list(selectors.station_list()),
            "product_types": list(selectors.product_type_list()),
            "recent": _recent(RECENT_ON_UPLOAD),
            "ui_strings": ui_strings(),
            "api_create_url": reverse("api-capture-create"),
            "detail_url_template": reverse("capture-detail", kwargs={"capture_id": _ZERO_UUID}),
            "zero_uuid": str(_ZERO_UUID),
            "serial_url_template": reverse("serial-history", kwargs={"value": "__VALUE__"}),
        },
    )


@login_required
@require_GET
def capture_list_page(request: HttpRequest) -> HttpResponse:
    return render(request, "ocrapp/capture_list.html", {"recent": _recent(RECENT_ON_LIST)})


@login_required
@require_GET
def capture_page(request: HttpRequest, capture_id: uuid.UUID) -> HttpResponse:
    view = _capture_view(_capture_or_404(capture_id))
    read = view.read
    return render(
        request,
        "ocrapp/capture_detail.html",
        {
            "cv": view,
            "capture": view.capture,
            "timings": [(k, v) for k, v in (read.timings_ms or {}).items()] if read else [],
        },
    )


@login_required
@require_GET
def capture_image(request: HttpRequest, capture_id: uuid.UUID) -> FileResponse:
    capture = _capture_or_404(capture_id)
    try:
        fh = capture.image.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404(_("The image file is missing.")) from None
    response = FileResponse(fh)
    # The stored file never changes (content-addressed by the capture), so browsers may keep it.
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()[:MAX_QUERY_LENGTH]
    hits = selectors.serial_search(q=q) if q else []
    return render(
        request,
        "ocrapp/search.html",
        {"q": q, "hits": hits},
    )


@login_required
@require_GET
def serial_page(request: HttpRequest, value: str) -> HttpResponse:
    records = selectors.serial_history(value=value)
    return render(
        request,
        "ocrapp/serial_history.html",
        {
            "value": records[0].value if records else value,
            "records": records,
        },
        status=200 if records else 404,
    )
