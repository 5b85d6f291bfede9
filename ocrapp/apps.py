import gc

from django.apps import AppConfig
from django.conf import settings
from django.contrib.admin import apps as admin_apps
from django.core.signals import request_finished
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
        request_finished.connect(collect_after_request, dispatch_uid="ocrapp.collect_after_request")


def tune_gc() -> None:
    """The garbage collector of a long-running process (web, worker): what start-up loaded
    is frozen (never scanned again), and a young collection runs every ``PY_GC_GEN0``
    allocations instead of every 700 (0: Python's defaults). A web process also collects the
    young generation when each response is finished (:func:`collect_after_request`).

    Why: a list page builds thousands of model instances that refer to each other (prefetch
    caches), so they are freed only by the collector. A collection inside the request finds
    them alive and moves them to an older generation, whose collection (every tenth young
    one) then walks ten pages' worth of them: 130-160 ms, one page in twenty at 1M reads.
    Collected when the response is done, the page's objects are garbage still in the young
    generation: about 2 ms per page and no pause (bench/NOTES-search.md)."""
    if settings.PY_GC_GEN0 <= 0:
        return
    gc.freeze()
    gc.set_threshold(settings.PY_GC_GEN0, 10, 10)


def collect_after_request(**_kwargs) -> None:
    """The collection the interpreter would run next, run now that a response is finished
    (``request_finished``): the young generation, each tenth time also the middle one, each
    hundredth time the old one, as Python's own thresholds would."""
    if settings.PY_GC_GEN0 <= 0:
        return
    _t0, t1, t2 = gc.get_threshold()
    _c0, c1, c2 = gc.get_count()
    gc.collect(2 if c1 >= t1 and c2 >= t2 else 1 if c1 >= t1 else 0)


class OcrAdminConfig(admin_apps.AdminConfig):
    """``django.contrib.admin`` with the audited admin site (``ocrapp.admin_site``); named in
    INSTALLED_APPS instead of ``django.contrib.admin``."""

    default = False
    default_site = "ocrapp.admin_site.AuditedAdminSite"
