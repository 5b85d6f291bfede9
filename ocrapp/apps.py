from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class OcrappConfig(AppConfig):
    name = "ocrapp"
    verbose_name = _("Serial reader")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ocrapp import (
            events,
            signature,  # noqa: F401  (connects the login time of signatures)
            webhooks,
        )

        events.subscribe(webhooks.on_event)  # one delivery per subscribed endpoint


class OcrAdminConfig(admin_apps.AdminConfig):
    """``django.contrib.admin`` with the audited admin site (``ocrapp.admin_site``); named in
    INSTALLED_APPS instead of ``django.contrib.admin``."""

    default = False
    default_site = "ocrapp.admin_site.AuditedAdminSite"
