"""HTML pages (owned by views.py)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from ocrapp import dashboard_views, views
from ocrapp.lockout import LockoutAuthenticationForm

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, authentication_form=LockoutAuthenticationForm
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.upload_page, name="upload"),
    path("captures/", views.capture_list_page, name="capture-list"),
    path("captures/recent/", views.capture_recent, name="capture-recent"),
    path("captures/<uuid:capture_id>/", views.capture_page, name="capture-detail"),
    path("captures/<uuid:capture_id>/card", views.capture_card, name="capture-card"),
    path("captures/<uuid:capture_id>/image", views.capture_image, name="capture-image"),
    path("captures/<uuid:capture_id>/thumb.jpg", views.capture_thumbnail, name="capture-thumb"),
    path(
        "captures/<uuid:capture_id>/lines/<int:order>/crop.png",
        views.line_crop_image,
        name="line-crop",
    ),
    path("review/", views.review_page, name="review"),
    path("search/", views.search_page, name="search"),
    path("webhooks/", views.webhooks_page, name="webhooks"),
    path("dashboard/", dashboard_views.dashboard_page, name="dashboard"),
    path("alarms/", views.alarm_list_page, name="alarm-list"),
    path("alarms/<int:alarm_id>/<str:action>", views.alarm_action, name="alarm-action"),
    # path: part numbers and lots may contain "/" (identifier_key drops it, the URL keeps the value as printed).
    path("serials/<path:value>/", views.serial_page, name="serial-history"),
]
