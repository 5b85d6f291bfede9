"""bench/load.py, bounded: line clients posting real photos and waiting with ?wait=30 through
the whole app stack (devstack run: uvicorn, a real Celery worker, PostgreSQL, Redis) lose,
duplicate or alter no upload and get no 5xx. No latency assertion (bench/NOTES-reliability.md
has the 50-client numbers)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import HEADER, run_load  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_accepted_upload_is_read_once_and_stored_as_sent_under_load():
    with tempfile.TemporaryDirectory(prefix="load-") as var_dir:  # short: the PG socket
        report = run_load(
            clients=16, count=48, duration=300, drain=240, fast=True, var_dir=Path(var_dir)
        )
    table = f"{HEADER}\n{report.row()}"
    print(table)
    detail = f"{table}\n{report.log_tail}"
    assert len(report.uploads) == 48, detail
    assert len(report.accepted) == 48 and report.not_accepted == 0, detail
    assert report.http_5xx == 0, detail
    assert report.lost == [] and report.duplicated == [], detail
    assert report.sha_mismatch == [], detail
    assert report.done + report.failed == 48, detail
    assert all(u.answered for u in report.uploads), detail  # each client got its final answer
    assert report.waits_open_max >= 2, detail  # the clients did wait side by side
    assert report.stop_seconds is not None and report.leftovers == [], detail
