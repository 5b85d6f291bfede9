"""The process's garbage collector settings (``ocrapp.apps.tune_gc``)."""

from __future__ import annotations

import gc

from django.conf import settings
from django.test import override_settings

from ocrapp.apps import tune_gc


def test_startup_freezes_what_it_loaded_and_widens_the_young_generation():
    assert settings.PY_GC_GEN0 == 20_000
    assert gc.get_threshold()[0] == settings.PY_GC_GEN0
    assert gc.get_freeze_count() > 10_000  # Django, the apps, the settings


def test_zero_keeps_pythons_defaults():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with override_settings(PY_GC_GEN0=0):
            tune_gc()
        assert gc.get_threshold() == (700, 10, 10)
        with override_settings(PY_GC_GEN0=5_000):
            tune_gc()
        assert gc.get_threshold() == (5_000, 10, 10)
    finally:
        gc.set_threshold(*before)
