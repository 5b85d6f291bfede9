"""bench/faults.py, bounded: the whole app stack (devstack run) loses no capture while a pool
child, the worker main process, Redis and PostgreSQL die during a batch posted through the API.

Short leases and the rules extractor (``fast``): the lifecycle is under test, not the models.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.faults import FAULTS, run_faults  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_no_capture_is_lost_or_duplicated_when_processes_and_services_die():
    with tempfile.TemporaryDirectory(
        prefix="faults-"
    ) as var_dir:  # short: the PG socket lives here
        report = run_faults(
            images=8,
            concurrency=1,
            interval=0.3,
            gap=1.0,
            timeout=100,
            fast=True,
            var_dir=Path(var_dir),
        )
    print(report.table())
    detail = f"{report.table()}\n{report.log_tail}"
    assert [f.fault for f in report.faults] == list(FAULTS), detail
    assert all(f.action and not f.action.startswith("no ") for f in report.faults), detail
    assert report.accepted == report.images and report.not_accepted == 0, detail
    assert report.lost == [], detail
    assert report.duplicated == [], detail
    assert report.done + sum(report.failed.values()) == report.accepted, detail
    assert report.all_final_after_last_fault is not None, detail
    # SIGTERM stopped the stack within the bound (else it was killed), and nothing was left
    assert report.stop_seconds is not None and report.leftovers == [], detail
