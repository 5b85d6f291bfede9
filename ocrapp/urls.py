from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from ocrapp import api

api_v1 = [
    path("captures", api.CaptureCreateApi.as_view(), name="api-capture-create"),
    path("captures/<str:capture_id>", api.CaptureDetailApi.as_view(), name="api-capture-detail"),
    path(
        "captures/<str:capture_id>/withdraw",
        api.CaptureWithdrawApi.as_view(),
        name="api-capture-withdraw",
    ),
    path("serials", api.SerialSearchApi.as_view(), name="api-serial-search"),
    path("serials/<str:value>/history", api.SerialHistoryApi.as_view(), name="api-serial-history"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("ocrapp.web_urls")),
]
