from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from ocrapp import api, dashboard_views, ops_views

# Django's own 400s (RequestDataTooBig, TooManyFieldsSent, SuspiciousOperation): JSON under /api/.
handler400 = "ocrapp.limits.bad_request"
# and unknown API URLs, refusals outside DRF, unexpected failures: JSON under /api/ too
handler403 = "ocrapp.limits.permission_denied"
handler404 = "ocrapp.limits.not_found"
handler500 = "ocrapp.limits.server_error"

api_v1 = [
    # GET lists (filters, keyset pages), POST uploads: one URL, CapturesApi
    path("captures", api.CapturesApi.as_view(), name="api-capture-create"),
    # before captures/<id>: "export" is no capture id
    path("captures/export", api.CaptureExportApi.as_view(), name="api-capture-export"),
    path("captures/<str:capture_id>", api.capture_detail, name="api-capture-detail"),
    path(
        "captures/<str:capture_id>/image", api.CaptureImageApi.as_view(), name="api-capture-image"
    ),
    path(
        "captures/<str:capture_id>/withdraw",
        api.CaptureWithdrawApi.as_view(),
        name="api-capture-withdraw",
    ),
    path("serials", api.SerialSearchApi.as_view(), name="api-serial-search"),
    path("serials/<str:value>/history", api.SerialHistoryApi.as_view(), name="api-serial-history"),
    # review: queue, signed revisions, retry
    path("review-queue", api.ReviewQueueListApi.as_view(), name="api-review-queue"),
    path(
        "captures/<str:capture_id>/review",
        api.CaptureReviewApi.as_view(),
        name="api-capture-review",
    ),
    path(
        "captures/<str:capture_id>/revisions",
        api.CaptureRevisionListApi.as_view(),
        name="api-capture-revisions",
    ),
    path(
        "captures/<str:capture_id>/retry", api.CaptureRetryApi.as_view(), name="api-capture-retry"
    ),
    path(
        "fields/<str:field_id>/revisions",
        api.FieldRevisionCreateApi.as_view(),
        name="api-field-revisions",
    ),
    # webhooks (ocrapp/webhooks.py): endpoints, their delivery log, replay
    path("webhooks", api.WebhooksApi.as_view(), name="api-webhooks"),
    path(
        "webhooks/<str:endpoint_id>/deactivate",
        api.WebhookDeactivateApi.as_view(),
        name="api-webhook-deactivate",
    ),
    path(
        "webhooks/<str:endpoint_id>/deliveries",
        api.WebhookDeliveryListApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        "webhook-deliveries/<str:delivery_id>/replay",
        api.WebhookDeliveryReplayApi.as_view(),
        name="api-webhook-delivery-replay",
    ),
    # dashboard (wt-dash): series per line/station and the drift check
    path("dashboard", dashboard_views.DashboardApi.as_view(), name="api-dashboard"),
    path("drift", dashboard_views.DriftApi.as_view(), name="api-drift"),
    # traceability alarms (ocrapp/alarms.py) and expected-serial lists
    path("alarms", api.AlarmListApi.as_view(), name="api-alarm-list"),
    path("alarms/<str:alarm_id>", api.AlarmDetailApi.as_view(), name="api-alarm-detail"),
    path(
        "alarms/<str:alarm_id>/acknowledge",
        api.AlarmAcknowledgeApi.as_view(),
        name="api-alarm-acknowledge",
    ),
    path("alarms/<str:alarm_id>/close", api.AlarmCloseApi.as_view(), name="api-alarm-close"),
    path(
        "product-types/<str:product_type_id>/expected-serials",
        api.ExpectedSerialImportApi.as_view(),
        name="api-expected-serials",
    ),
]

urlpatterns = [
    # operations: unauthenticated probes and metrics (ocrapp/ops_views.py)
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    # split view: the init script is its own request (?script), so no inline script (CSP)
    path(
        "api/docs",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="ocrapp/swagger_ui.html"
        ),
        name="api-docs",
    ),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("ocrapp.web_urls")),
]
