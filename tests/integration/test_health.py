"""Container healthchecks against the real processes: a real Celery worker (real broker, real
models) is healthy once its pool process has warmed up, reports the providers its sessions got,
and the read it saves records those same providers; the reaper's heartbeat file is kept fresh."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ocrapp.models import Read
from tests.conftest import _test_database_url, wait_for
from tests.images import label_png

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def _health(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ocrapp.healthcheck", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_worker_is_healthy_once_warm_and_its_reads_record_the_same_providers(
    celery_worker_proc, station_client, product_type
):
    node = f"test-ocr-{os.getpid()}@{socket.gethostname()}"
    done = wait_for(lambda: (r := _health("worker", "--node", node)).returncode == 0 and r, 120)
    assert "warm on cpu ['CPUExecutionProvider']" in done.stdout, celery_worker_proc.log()[-2000:]
    other = _health("worker", "--node", f"nobody-{os.getpid()}@{socket.gethostname()}")
    assert other.returncode == 1 and "did not answer" in other.stderr

    resp = station_client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile("l.png", label_png(["S/N: SN20260077"]), "image/png"),
            "product_type": "nameplate",
        },
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    read = wait_for(lambda: Read.objects.filter(capture_id=resp.json()["id"]).first(), 90)
    assert read.device == "cpu" and read.providers == ["CPUExecutionProvider"]


def test_reaper_keeps_its_heartbeat_fresh(tmp_path):
    beat = tmp_path / "reaper.alive"
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "capture_reaper", "--interval", "0.3", "--heartbeat"]
        + [str(beat)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(beat.exists, 60)
        first = beat.stat().st_mtime
        # the loop stops (paused, so it cannot touch the file between our steps) and its
        # last beat is ten minutes old...
        proc.send_signal(signal.SIGSTOP)
        old = time.time() - 600
        os.utime(beat, (old, old))
        stale = _health("reaper", "--heartbeat", str(beat), "--max-age", "60")
        assert stale.returncode == 1, stale.stdout
        # ...once it runs again it touches the file within a pass
        proc.send_signal(signal.SIGCONT)
        wait_for(lambda: beat.stat().st_mtime >= first, 30)
        fresh = _health("reaper", "--heartbeat", str(beat), "--max-age", "60")
        assert fresh.returncode == 0, fresh.stderr
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(20)
