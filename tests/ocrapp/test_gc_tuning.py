"""The process's garbage collector settings (``ocrapp.apps.tune_gc``, ``collect_after_request``)."""

from __future__ import annotations

import gc
import weakref

from django.conf import settings
from django.test import override_settings

from ocrapp.apps import collect_after_request, tune_gc


def test_startup_freezes_what_it_loaded_and_widens_the_young_generation():
    assert settings.PY_GC_GEN0 == 50_000
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


class _Node:
    pass


def _cycle() -> weakref.ref:
    """A garbage cycle (only the collector frees it), as a page's model instances are."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_finished_response_collects_the_young_generation(client):
    gone = _cycle()
    assert gone() is not None  # the young generation has not been collected meanwhile
    client.get("/healthz")
    assert gone() is None  # request_finished ran collect_after_request


def test_collect_after_request_runs_the_generation_python_would():
    before = gc.get_threshold()
    seen: list[int] = []

    def cb(phase, info):
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(cb)
    try:
        gc.set_threshold(1_000_000, 3, 2)
        gc.collect()
        for _ in range(12):
            collect_after_request()
        # young each time; the middle one once three young ones were counted, the old one
        # once two middle ones were (the thresholds set above)
        assert seen == [2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2]
        seen.clear()
        with override_settings(PY_GC_GEN0=0):
            collect_after_request()
        assert seen == []
    finally:
        gc.callbacks.remove(cb)
        gc.set_threshold(*before)
