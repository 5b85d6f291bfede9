import gc

from django.apps import AppConfig
from django.conf import settings
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
        tune_gc()


def tune_gc() -> None:
    """The garbage collector of a long-running process (web, worker): what start-up loaded
    is frozen (never scanned again), and a young collection runs every ``PY_GC_GEN0``
    allocations instead of every 700 (0: Python's defaults). A list page builds thousands of
    model instances that refer to each other (prefetch caches), so they outlive the young
    collections inside the request and are freed only by full collections: with the
    defaults, one page in ten took 150 ms more at 1M reads (bench/NOTES-search.md)."""
    if settings.PY_GC_GEN0 <= 0:
        return
    gc.freeze()
    gc.set_threshold(settings.PY_GC_GEN0, 10, 10)


class OcrAdminConfig(admin_apps.AdminConfig):
    """``django.contrib.admin`` with the audited admin site (``ocrapp.admin_site``); named in
    INSTALLED_APPS instead of ``django.contrib.admin``."""

    default = False
    default_site = "ocrapp.admin_site.AuditedAdminSite"
