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

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from ocrapp import crops, roles, selectors, services, signature
from ocrapp.audit import printed_name
from ocrapp.errors import ApplicationError, NotFoundError
from ocrapp.models import REVISION_REASONS, Alarm, Capture, Field, FieldRevision, Read
from ocrapp.templatetags.ocrui import (
    code_check,
    code_format_label,
    correction_html,
    field_reason_texts,
    review_reasons,
    review_threshold,
)
from workers.contract import FieldDict, FieldResult, QualityReport, QualityWarning, ReviewDecision
from workers.fieldspec import TRACED_FIELDS

RECENT_ON_UPLOAD = 10
RECENT_ON_LIST = 50
MAX_QUERY_LENGTH = 128
REVIEW_PAGE_SIZE = 50
REVIEW_FILTER_REASONS = ("mislabel", "invalid", "missing", "low_confidence", "truncated")
_ZERO_UUID = uuid.UUID(int=0)


@dataclass(frozen=True)
class FieldView:
    field: FieldResult
    polygon: list | None  # the field's box, else the polygon of the line it came from
    check_reasons: list[str]  # translated failed rules (invalid fields)
    code_check: str  # "match" | "mismatch" | "code" | "": what a code on the label says
    code_text: str  # translated sentence for code_check
    corrected_html: str  # "corrected from <raw>" with the changed characters marked, or ""
    field_id: int = 0
    current_value: str = ""  # the value in force (the machine read until a signed revision)
    revision: FieldRevision | None = None  # the latest signed revision, if any

    @property
    def revised(self) -> bool:
        """A person changed the value (the machine read is shown beside it)."""
        return self.current_value != self.field.value

    @property
    def valid_now(self) -> bool:
        """Whether the value in force passed its checks (the latest revision's check)."""
        return self.revision.valid if self.revision is not None else self.field.valid


@dataclass(frozen=True)
class ReviewView:
    needs_review: bool  # the machine asked for a person and no one has signed every field yet
    reasons: list[dict[str, str]]  # [{code, field, text}], text translated
    threshold: float  # the auto-accept confidence the decision used
    signed: bool = False  # every field of the read carries a signed revision


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
    revisions = list(row.revisions.all())  # prefetched, by seq
    latest = revisions[-1] if revisions else None
    if latest is not None:
        valid = latest.valid
        reasons = [(r.get("code", ""), r.get("message", "")) for r in latest.check_reasons]
    else:
        valid, reasons = f.valid, list(f.reasons)
    return FieldView(
        field=f,
        polygon=row.box or (row.line.polygon if row.line_id and row.line else None),
        check_reasons=[] if valid else field_reason_texts(reasons, f.reason if not latest else ""),
        code_check=kind,
        code_text=text,
        corrected_html=correction_html(f),
        field_id=row.pk,
        current_value=row.current_value,
        revision=latest,
    )


def _capture_view(capture: Capture, read: Read | None = None) -> CaptureView:
    """``read``: the capture's latest read when the caller has it already (the review queue)."""
    if read is None:
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
    signed = bool(fields) and all(fv.revision is not None for fv in fields)
    review = ReviewView(
        needs_review=read.needs_review and not signed,
        reasons=review_reasons(decision, results, read.codes, read.mismatches, threshold),
        threshold=review_threshold(decision, threshold),
        signed=signed,
    )
    serial = next(
        (
            fv.current_value
            for fv in fields
            if fv.field.name == "serial_number" and fv.current_value
        ),
        "",
    )
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


def page_time_zone(request: HttpRequest) -> str:
    """The time zone of a page: ``tz`` in the URL (shareable), else the browser's (the ``tz``
    cookie set by ``tz.js``), else the server's ``TIME_ZONE``; an unknown cookie is ignored."""
    cookie = request.COOKIES.get("tz", "")[:64]
    if cookie:
        try:
            selectors.time_zone_find(name=cookie)
        except ApplicationError:
            cookie = ""
    return cookie or settings.TIME_ZONE


def _page_filters(request: HttpRequest) -> tuple[selectors.SearchFilters, str, list[str]]:
    """The filters of the search and capture list pages (in the URL), the zone to show times
    in, and what was wrong with them (shown on the page, the list then unfiltered)."""
    tz = page_time_zone(request)
    try:
        filters = selectors.search_filters_parse(params=request.GET, default_tz=tz)
        return filters, filters.tz or tz, []
    except ApplicationError as exc:
        return selectors.SearchFilters(tz=tz), tz, [exc.message]


def _filter_context(request: HttpRequest, filters: selectors.SearchFilters, tz: str) -> dict:
    def local(when):
        return timezone.localtime(when, selectors.time_zone_find(name=tz)) if when else None

    date_to = local(filters.date_to)
    return {
        "filters": filters,
        "tz": tz,
        "from_value": request.GET.get("from", "").strip()[:32],
        "to_value": request.GET.get("to", "").strip()[:32],
        "date_from_local": local(filters.date_from),
        "date_to_local": date_to,
        "choices": selectors.review_filter_choices(user=request.user),
        "statuses": Capture.Status.choices,
        "review_states": selectors.REVIEW_STATES,
        "traced_fields": TRACED_FIELDS,
        "alarm_kinds": Alarm.Kind.choices,
    }


def _export_links(request: HttpRequest, tz: str, scope: str, errors: list[str]) -> list[dict]:
    """The "Export CSV / XLSX / EPCIS" links carrying the page's filters (the URL's, without the
    cursor) and its time zone to ``GET /api/v1/captures/export`` (session); none for users
    without ``export_reads`` or while a filter is wrong."""
    if errors or not roles.can(request.user, "export_reads"):
        return []
    params = request.GET.copy()
    for name in ("cursor", "format", "scope"):
        params.pop(name, None)
    if not params.get("tz"):
        params["tz"] = tz
    params["scope"] = scope
    links = []
    for fmt, label in (
        ("csv", _("Export CSV")),
        ("xlsx", _("Export XLSX")),
        ("epcis", _("Export EPCIS")),
    ):
        params["format"] = fmt
        links.append(
            {
                "format": fmt,
                "label": label,
                "url": reverse("api-capture-export") + "?" + params.urlencode(),
            }
        )
    return links


def _next_url(request: HttpRequest, cursor: str) -> str:
    if not cursor:
        return ""
    params = request.GET.copy()
    params["cursor"] = cursor
    return request.path + "?" + params.urlencode()


@login_required
@require_GET
def capture_list_page(request: HttpRequest) -> HttpResponse:
    """The captures the user may see, filtered (the URL carries the filters), one keyset
    page at a time with the total."""
    filters, tz, errors = _page_filters(request)
    cursor = request.GET.get("cursor", "")[:512]
    try:
        page = selectors.capture_page(
            user=request.user, filters=filters, cursor=cursor, limit=RECENT_ON_LIST
        )
    except ApplicationError as exc:  # a stale or edited cursor: the first page
        errors.append(exc.message)
        page = selectors.capture_page(user=request.user, filters=filters, limit=RECENT_ON_LIST)
    with timezone.override(selectors.time_zone_find(name=tz)):
        return render(
            request,
            "ocrapp/capture_list.html",
            {
                "recent": [_capture_view(c) for c in page.items],
                "page": page,
                "next_url": _next_url(request, page.next_cursor),
                "errors": errors,
                "client_ref": filters.client_ref,
                "export_links": _export_links(request, tz, "captures", errors),
                **_filter_context(request, filters, tz),
            },
        )


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
            # review: every signed revision, and the re-read of a failed capture
            "revisions": selectors.capture_revisions(capture=view.capture),
            "can_retry": view.failed
            and not view.capture.withdrawn
            and roles.can(request.user, "retry_capture"),
            "retry_url": reverse("api-capture-retry", kwargs={"capture_id": view.capture.pk}),
            "alarms": selectors.capture_alarms(capture=view.capture),
            "can_manage_alarms": roles.can(request.user, "manage_alarms"),
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


def _image(request: HttpRequest, capture_id: uuid.UUID, *, thumb: bool) -> HttpResponse:
    from ocrapp.api import capture_image_response

    capture = _capture_or_404(request, capture_id)
    if capture.image_purged_at is not None:
        return HttpResponse(_("Image deleted by retention."), status=410, content_type="text/plain")
    try:
        return capture_image_response(capture=capture, thumb=thumb)
    except NotFoundError:
        raise Http404(_("The image file is missing.")) from None


@login_required
@require_GET
def capture_image(request: HttpRequest, capture_id: uuid.UUID) -> HttpResponse:
    return _image(request, capture_id, thumb=False)


@login_required
@require_GET
def capture_thumbnail(request: HttpRequest, capture_id: uuid.UUID) -> HttpResponse:
    """The capture's thumbnail (JPEG, made once and stored beside the photo)."""
    return _image(request, capture_id, thumb=True)


@login_required
@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    """One search over serials and every traced field (printed, from codes, and "was"), with
    the filters of the capture list; keyset pages."""
    filters, tz, errors = _page_filters(request)
    q = filters.q[:MAX_QUERY_LENGTH]
    page = None
    if q:
        cursor = request.GET.get("cursor", "")[:512]
        try:
            page = selectors.serial_search_page(
                q=q, user=request.user, filters=filters, cursor=cursor
            )
        except ApplicationError as exc:
            errors.append(exc.message)
            page = selectors.serial_search_page(q=q, user=request.user, filters=filters)
    with timezone.override(selectors.time_zone_find(name=tz)):
        return render(
            request,
            "ocrapp/search.html",
            {
                "q": q,
                "hits": page.items if page else [],
                "page": page,
                "next_url": _next_url(request, page.next_cursor) if page else "",
                "errors": errors,
                "export_links": _export_links(request, tz, "serials", errors) if q else [],
                **_filter_context(request, filters, tz),
            },
        )


@login_required
@require_GET
def serial_page(request: HttpRequest, value: str) -> HttpResponse:
    """One timeline per serial (``?part=`` per part + serial): thumbnail, time, line, station,
    product type, fields, confidence, revisions and alarms of every read."""
    tz = page_time_zone(request)
    part = request.GET.get("part", "").strip()[:128].replace("\x00", "")
    records = (
        selectors.serial_history(value=value, user=request.user, part=part)
        if "\x00" not in value
        else []
    )
    with timezone.override(selectors.time_zone_find(name=tz)):
        return render(
            request,
            "ocrapp/serial_history.html",
            {
                "value": records[-1].shown if records else value,
                "key": records[0].value if records else value,
                "records": records,
                "part": part,
                "tz": tz,
            },
            status=200 if records else 404,
        )


# --- review: the queue page, line crops, revisions on the capture page ----------------------


@dataclass(frozen=True)
class CharView:
    ch: str
    confidence: float | None
    in_field: bool

    @property
    def shade(self) -> str:
        """CSS class of a character's confidence (``c-high`` / ``c-mid`` / ``c-low``)."""
        if self.confidence is None:
            return "c-none"
        if self.confidence >= 0.9:
            return "c-high"
        return "c-mid" if self.confidence >= 0.6 else "c-low"


@dataclass(frozen=True)
class ReviewFieldView:
    """One field of a queued read, as the reviewer works it."""

    fv: FieldView
    line_order: int | None  # the crop of this line is shown beside the value
    chars: list[CharView]  # the line's text, per character, the field's span marked
    suggestions: list  # selectors.Suggestion
    risk: str  # "mislabel" | "invalid" | "low" | "": why this field is flagged


@dataclass(frozen=True)
class ReviewItemView:
    cv: CaptureView
    fields: list[ReviewFieldView]
    primary: str  # the field that typing corrects first (the riskiest)
    base_revision: int
    mislabel: bool
    invalid: bool
    min_confidence: float


def _chars(row: Field) -> list[CharView]:
    if not row.line_id or row.line is None:
        return []
    line = row.line
    span = selectors.field_span(field=row) or (-1, -1)
    confs = list(line.char_confidences or [])
    return [
        CharView(
            ch=ch,
            confidence=float(confs[i]) if i < len(confs) else None,
            in_field=span[0] <= i < span[1],
        )
        for i, ch in enumerate(line.text)
    ]


def _review_item(read: Read) -> ReviewItemView:
    capture = read.capture
    cv = _capture_view(capture, read)
    flagged = {r["field"]: r["code"] for r in cv.review.reasons} if cv.review else {}
    rows = {row.pk: row for row in read.fields.all()}
    fields, order = [], []
    for fv in cv.fields:
        row = rows[fv.field_id]
        code = flagged.get(fv.field.name, "")
        risk = {"mislabel": "mislabel", "invalid": "invalid", "missing": "invalid"}.get(code, "")
        if not risk and fv.field.code_match is False:
            risk = "mislabel"
        if not risk and not fv.valid_now:
            risk = "invalid"
        if not risk and code in ("low_confidence", "truncated"):
            risk = "low"
        fields.append(
            ReviewFieldView(
                fv=fv,
                line_order=row.line.order if row.line_id and row.line else None,
                chars=_chars(row),
                suggestions=selectors.field_suggestions(field=row, capture=capture),
                risk=risk,
            )
        )
        rank = {"mislabel": 0, "invalid": 1, "low": 2}.get(risk, 3)
        order.append((rank, fv.field.confidence, fv.field.name))
    return ReviewItemView(
        cv=cv,
        fields=fields,
        primary=min(order)[2] if order else "",
        base_revision=sum(len(row.revisions.all()) for row in rows.values()),
        mislabel=read.risk_mislabel,
        invalid=read.risk_invalid,
        min_confidence=read.min_confidence,
    )


def review_strings() -> dict[str, str]:
    """Translated strings of ``review.js`` (a JSON script tag)."""
    return {
        "signing": _("Signing…"),
        "signed": _("Signed"),
        "reason_needed": _("Pick a reason for the correction (1–4) or type one."),
        "wrong_password": _("The password is wrong; nothing was signed."),
        "password_needed": _("Enter your password to sign."),
        "stale": _("Someone else signed this read meanwhile. Reload the page."),
        "network_error": _("Network error. Check the connection and try again."),
        "server_error": _("The server answered with an error (%(status)s)."),
        "invalid": _("The value fails its checks. Correct it, or sign it anyway with a reason."),
        "empty": _("The queue is empty. Every read has been reviewed."),
        "meaning_reviewed": _("reviewed"),
        "meaning_corrected": _("corrected"),
        "meaning_approved": _("approved"),
        "position": _("%(n)s of %(total)s"),
    }


def _ensure_can(request: HttpRequest, code: str) -> None:
    if not roles.can(request.user, code):
        raise PermissionDenied


@login_required
@require_GET
def review_page(request: HttpRequest) -> HttpResponse:
    """The review queue, worked with the keyboard (or by touch): see ``review.js``."""
    _ensure_can(request, "review_read")
    try:
        filters = selectors.review_filters_parse(params=request.GET)
    except ApplicationError:
        filters = selectors.ReviewFilters()
    reads = selectors.review_queue(user=request.user, filters=filters, limit=REVIEW_PAGE_SIZE)
    due_at = signature.password_due_at(request)
    return render(
        request,
        "ocrapp/review.html",
        {
            "items": [_review_item(read) for read in reads],
            "total": selectors.review_queue_count(user=request.user, filters=filters),
            "filters": filters,
            "choices": selectors.review_filter_choices(user=request.user),
            "reason_codes": REVIEW_FILTER_REASONS,
            "revision_reasons": [c for c in REVISION_REASONS if c != "other"],
            "signer_name": printed_name(request.user),
            "password_due_at": due_at.isoformat() if due_at else "",
            "reauth_minutes": settings.SIGNATURE_REAUTH_MINUTES,
            "review_strings": review_strings(),
            "review_url_template": reverse("api-capture-review", kwargs={"capture_id": _ZERO_UUID}),
            "zero_uuid": str(_ZERO_UUID),
        },
    )


@login_required
@require_GET
def line_crop_image(request: HttpRequest, capture_id: uuid.UUID, order: int) -> HttpResponse:
    """The rectified crop of one text line of the capture's latest read (PNG, Pillow only)."""
    capture = _capture_in_scope(request, capture_id)
    read = selectors.capture_latest_read(capture=capture)
    line = next((ln for ln in read.lines.all() if ln.order == order), None) if read else None
    if line is None:
        raise Http404(_("No such text line."))
    if capture.image_purged_at is not None:
        return HttpResponse(_("Image deleted by retention."), status=410, content_type="text/plain")
    try:
        with capture.image.open("rb") as fh:
            photo = crops.open_photo(fh.read())
        png = crops.png_bytes(crops.line_crop(photo, line.polygon))
    except (FileNotFoundError, ValueError, OSError):
        raise Http404(_("The line cannot be cut from the photo.")) from None
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"  # the photo and its lines never change
    return response


def _capture_in_scope(request: HttpRequest, capture_id: uuid.UUID) -> Capture:
    try:
        return selectors.capture_get(capture_id=capture_id, user=request.user)
    except NotFoundError:
        raise Http404(_("No capture with this id.")) from None


# --- webhooks (ocrapp/webhooks.py) ------------------------------------------------------------

WEBHOOK_LOG_SIZE = 50


def _webhook_context(request: HttpRequest) -> dict:
    from ocrapp import events, webhooks

    endpoint_id = selectors.as_id(request.GET.get("endpoint", ""))
    status = request.GET.get("status", "").strip()
    if status not in webhooks.Delivery.values:
        status = ""
    return {
        "endpoints": list(webhooks.webhook_endpoint_list(user=request.user)),
        "deliveries": webhooks.webhook_delivery_list(
            user=request.user, endpoint_id=endpoint_id, status=status, limit=WEBHOOK_LOG_SIZE
        ),
        "event_types": events.EVENT_TYPES,
        "statuses": webhooks.Delivery.choices,
        "selected_endpoint": endpoint_id,
        "selected_status": status,
        "can_manage": webhooks.can_manage(request.user),
    }


@login_required
@never_cache
def webhooks_page(request: HttpRequest) -> HttpResponse:
    """Webhook endpoints and their delivery log (``view_webhooks``); with ``manage_webhooks``:
    create (the secret is shown in this answer only), deactivate, replay (POST forms)."""
    from ocrapp import webhooks

    if not webhooks.can_view(request.user):
        raise PermissionDenied
    created = None
    error = ""
    status_code = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "create":
                endpoint, secret = webhooks.webhook_endpoint_create(
                    user=request.user,
                    url=request.POST.get("url", ""),
                    event_types=request.POST.getlist("event_types"),
                    description=request.POST.get("description", ""),
                )
                created = {"endpoint": endpoint, "secret": secret}
            elif action == "deactivate":
                endpoint = webhooks.webhook_endpoint_deactivate(
                    user=request.user, endpoint_id=request.POST.get("endpoint_id", "")
                )
                messages.success(request, _("Webhook %(url)s deactivated.") % {"url": endpoint.url})
                return redirect("webhooks")
            elif action == "replay":
                delivery = webhooks.webhook_delivery_replay(
                    user=request.user, delivery_id=request.POST.get("delivery_id", "")
                )
                messages.success(
                    request, _("Delivery %(id)s is sent again.") % {"id": delivery.msg_id}
                )
                return redirect(request.get_full_path())
            else:
                raise ApplicationError("invalid", _("Unknown action."))
        except PermissionDenied:
            raise
        except ApplicationError as exc:
            error, status_code = exc.message, exc.status_code
    elif request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    context = _webhook_context(request)
    context.update(created=created, error=error, form=request.POST if error else {})
    return render(request, "ocrapp/webhooks.html", context, status=status_code)


# --- traceability alarms: the list page and the acknowledge / close forms ------------------

ALARM_PAGE_SIZE = 50


@login_required
@require_GET
def alarm_list_page(request: HttpRequest) -> HttpResponse:
    """The alarms the user may see, filtered (kind, state, line, product type, station: in the
    URL), newest first, one keyset page; quality managers acknowledge and close them here."""
    errors: list[str] = []
    try:
        filters = selectors.alarm_filters_parse(params=request.GET)
    except ApplicationError as exc:
        filters, errors = selectors.AlarmFilters(), [exc.message]
    cursor = request.GET.get("cursor", "")[:512]
    try:
        page = selectors.alarm_page(
            user=request.user, filters=filters, cursor=cursor, limit=ALARM_PAGE_SIZE
        )
    except ApplicationError as exc:  # a stale or edited cursor: the first page
        errors.append(exc.message)
        page = selectors.alarm_page(user=request.user, filters=filters, limit=ALARM_PAGE_SIZE)
    tz = page_time_zone(request)
    with timezone.override(selectors.time_zone_find(name=tz)):
        return render(
            request,
            "ocrapp/alarms.html",
            {
                "alarms": page.items,
                "page": page,
                "next_url": _next_url(request, page.next_cursor),
                "filters": filters,
                "errors": errors,
                "kinds": Alarm.Kind.choices,
                "states": Alarm.State.choices,
                "choices": selectors.review_filter_choices(user=request.user),
                "can_manage_alarms": roles.can(request.user, "manage_alarms"),
                "tz": tz,
            },
        )


@login_required
@require_POST
def alarm_action(request: HttpRequest, alarm_id: int, action: str) -> HttpResponse:
    """The acknowledge / close form of an alarm (``manage_alarms``; 403 page otherwise): the
    service checks reason, scope and state; back to the page the form was on, with a message."""
    if action not in ("acknowledge", "close"):
        raise Http404(_("No such action."))
    if not roles.can(request.user, "manage_alarms"):
        raise PermissionDenied
    change = services.alarm_acknowledge if action == "acknowledge" else services.alarm_close
    try:
        change(alarm_id=alarm_id, user=request.user, reason=request.POST.get("reason", ""))
    except NotFoundError:
        raise Http404(_("No alarm with this id.")) from None
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        done = _("Alarm acknowledged.") if action == "acknowledge" else _("Alarm closed.")
        messages.success(request, done)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = reverse("alarm-list")
    return redirect(back)
