"""HTML pages: upload (with live results), captures, capture detail, serial search and history.

Views only read through ``ocrapp.selectors``; uploads go from the browser to the REST API
(``POST /api/v1/captures``), so there is one write path for people and line software. The
upload page's live result card and its "Recent captures" list are fragments rendered here
(:func:`capture_card`, :func:`capture_recent`) from the same templates as the capture page and
the capture list, so a read is rendered to HTML in one place.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ocrapp import roles, selectors
from ocrapp.errors import NotFoundError
from ocrapp.models import Capture, Field, Read
from ocrapp.templatetags.ocrui import (
    code_check,
    code_format_label,
    correction_html,
    field_reason_texts,
    review_reasons,
    review_threshold,
)
from workers.contract import FieldDict, FieldResult, QualityReport, QualityWarning, ReviewDecision

RECENT_ON_UPLOAD = 10
RECENT_ON_LIST = 50
MAX_QUERY_LENGTH = 128
_ZERO_UUID = uuid.UUID(int=0)


@dataclass(frozen=True)
class FieldView:
    field: FieldResult
    polygon: list | None  # the field's box, else the polygon of the line it came from
    check_reasons: list[str]  # translated failed rules (invalid fields)
    code_check: str  # "match" | "mismatch" | "code" | "": what a code on the label says
    code_text: str  # translated sentence for code_check
    corrected_html: str  # "corrected from <raw>" with the changed characters marked, or ""


@dataclass(frozen=True)
class ReviewView:
    needs_review: bool
    reasons: list[dict[str, str]]  # [{code, field, text}], text translated
    threshold: float  # the auto-accept confidence the decision used


@dataclass(frozen=True)
class CodeView:
    format: str  # as people write it ("QR", "Code 128")
    text: str
    elements: list[dict]  # GS1 elements [{ai, name, value, valid, reason, ...}]
    errors: list[str]  # GS1 parse problems
    polygon: list | None


@dataclass(frozen=True)
class CaptureView:
    """What the capture templates need, computed once from the prefetched capture."""

    capture: Capture
    read: Read | None
    lines: list
    fields: list[FieldView]
    warnings: tuple[QualityWarning, ...]
    serial: str
    threshold: float
    review: ReviewView | None
    codes: list[CodeView]

    @property
    def failed(self) -> bool:
        return self.capture.status == Capture.Status.FAILED

    @property
    def finished(self) -> bool:
        return self.capture.status in selectors.FINAL_STATUSES


def _field_result(row: Field) -> FieldResult:
    """The contract's form of a stored field (the row keeps the same names; its line is a
    foreign key instead of ``line_index``)."""
    stored = {key: getattr(row, key) for key in FieldDict.__annotations__ if hasattr(row, key)}
    stored["line_index"] = row.line.order if row.line_id and row.line else None
    return FieldResult.from_dict(stored)


def _field_view(row: Field, codes: list[dict], mismatches: list[dict]) -> FieldView:
    f = _field_result(row)
    kind, text = code_check(f, codes, mismatches)
    return FieldView(
        field=f,
        polygon=row.box or (row.line.polygon if row.line_id and row.line else None),
        check_reasons=[] if f.valid else field_reason_texts(f.reasons, f.reason),
        code_check=kind,
        code_text=text,
        corrected_html=correction_html(f),
    )


def _capture_view(capture: Capture) -> CaptureView:
    read = selectors.capture_latest_read(capture=capture)
    threshold = capture.product_type.auto_accept_threshold
    if read is None:
        return CaptureView(
            capture=capture,
            read=None,
            lines=[],
            fields=[],
            warnings=(),
            serial="",
            threshold=threshold,
            review=None,
            codes=[],
        )
    fields = [_field_view(row, read.codes, read.mismatches) for row in read.fields.all()]
    decision = ReviewDecision.from_dict(read.review) if read.review else None
    results = [fv.field for fv in fields]
    review = ReviewView(
        needs_review=read.needs_review,
        reasons=review_reasons(decision, results, read.codes, read.mismatches, threshold),
        threshold=review_threshold(decision, threshold),
    )
    serial = next((f.value for f in results if f.name == "serial_number" and f.value), "")
    return CaptureView(
        capture=capture,
        read=read,
        lines=list(read.lines.all()),
        fields=fields,
        warnings=QualityReport.from_dict(read.quality).warnings,
        serial=serial,
        threshold=threshold,
        review=review,
        codes=[_code_view(c) for c in read.codes],
    )


def _code_view(code: dict) -> CodeView:
    """A decoded code as the templates show it (``barcodes.CodeResult.to_dict()``)."""
    return CodeView(
        format=code_format_label(code.get("format")),
        text=str(code.get("text") or ""),
        elements=list(code.get("gs1") or ()),
        errors=[str(e) for e in code.get("gs1_errors") or ()],
        polygon=code.get("polygon") or None,
    )


def _capture_or_404(request: HttpRequest, capture_id: uuid.UUID | str) -> Capture:
    """The capture if the user may see it (``roles``); 404 otherwise, as for an unknown id."""
    try:
        return selectors.capture_get(capture_id=capture_id, user=request.user)
    except NotFoundError:
        raise Http404(_("No capture with this id.")) from None


def ui_strings() -> dict[str, str]:
    """Translated strings of ``upload.js`` (sent as a JSON script tag): upload and waiting
    states only; the result itself is the server-rendered card (:func:`capture_card`)."""
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
    }


def _recent(request: HttpRequest, limit: int) -> list[CaptureView]:
    return [_capture_view(c) for c in selectors.capture_list(user=request.user, limit=limit)]


@login_required
@require_GET
def upload_page(request: HttpRequest) -> HttpResponse:
    """The home page: uploading for users who may upload (to the stations they may upload
    to); the others (auditors) are sent to the capture list."""
    if not roles.can(request.user, "upload_capture"):
        return redirect("capture-list")
    return render(
        request,
        "ocrapp/upload.html",
        {
            "stations": list(selectors.station_list(user=request.user)),
            "product_types": list(selectors.product_type_list()),
            "recent": _recent(request, RECENT_ON_UPLOAD),
            "ui_strings": ui_strings(),
            "api_create_url": reverse("api-capture-create"),
            "detail_url_template": reverse("capture-detail", kwargs={"capture_id": _ZERO_UUID}),
            "card_url_template": reverse("capture-card", kwargs={"capture_id": _ZERO_UUID}),
            "zero_uuid": str(_ZERO_UUID),
        },
    )


@login_required
@require_GET
def capture_list_page(request: HttpRequest) -> HttpResponse:
    return render(request, "ocrapp/capture_list.html", {"recent": _recent(request, RECENT_ON_LIST)})


@login_required
@require_GET
def capture_page(request: HttpRequest, capture_id: uuid.UUID) -> HttpResponse:
    view = _capture_view(_capture_or_404(request, capture_id))
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
@never_cache
def capture_card(request: HttpRequest, capture_id: uuid.UUID) -> HttpResponse:
    """The result section of the capture page alone (``_result_section.html``): the upload
    page puts it into its live card, so both show one server rendering. While the capture is
    PENDING or PROCESSING it says that the photo is still being read."""
    view = _capture_view(_capture_or_404(request, capture_id))
    return render(request, "ocrapp/_result_section.html", {"cv": view})


@login_required
@require_GET
@never_cache
def capture_recent(request: HttpRequest) -> HttpResponse:
    """The upload page's "Recent captures" list alone (``_capture_items.html``), for
    ``upload.js`` to refresh it as reads finish."""
    return render(
        request, "ocrapp/_capture_items.html", {"recent": _recent(request, RECENT_ON_UPLOAD)}
    )


@login_required
@require_GET
def capture_image(request: HttpRequest, capture_id: uuid.UUID) -> FileResponse:
    capture = _capture_or_404(request, capture_id)
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
    hits = selectors.serial_search(q=q, user=request.user) if q else []
    return render(
        request,
        "ocrapp/search.html",
        {"q": q, "hits": hits},
    )


@login_required
@require_GET
def serial_page(request: HttpRequest, value: str) -> HttpResponse:
    records = selectors.serial_history(value=value, user=request.user)
    return render(
        request,
        "ocrapp/serial_history.html",
        {
            "value": records[0].value if records else value,
            "records": records,
        },
        status=200 if records else 404,
    )
