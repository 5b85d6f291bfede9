"""Operations against a real Celery worker (real Redis broker, real OCR models):

- /readyz turns 200 once the warm worker's heartbeat says its models are loaded, names the
  models check while a worker without warm-up has none, and the worker check once it stops;
- /metrics numbers move after a real read (request counter, stage histogram, captures);
- the worker's JSON log lines of a read carry its capture id and task id.
"""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ocrapp import health
from tests.conftest import run_celery_worker, wait_for
from tests.images import label_png
from tests.ocrapp.test_ops import samples, value

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST_BEAT = {"WORKER_HEARTBEAT_INTERVAL": "1", "WORKER_HEARTBEAT_TTL": "3"}


@pytest.fixture(scope="module")
def json_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A warm worker (OCR_WARMUP on) that logs JSON."""
    env = {"LOG_FORMAT": "json", "OCR_WARMUP": "1", **FAST_BEAT}
    with run_celery_worker(django_db_blocker, tmp_path_factory.mktemp("jw"), env) as worker:
        yield worker


def _clear_heartbeats():
    client = health.redis_client()
    for key in client.scan_iter(match=f"{health.HEARTBEAT_PREFIX}*"):
        client.delete(key)


def test_readyz_follows_a_worker_without_models_and_its_stop(
    django_db_blocker, tmp_path, client, settings
):
    settings.WORKER_HEARTBEAT_TTL = 3
    _clear_heartbeats()
    assert client.get("/readyz").json()["failing"] == ["worker", "models"]
    env = {"OCR_WARMUP": "0", **FAST_BEAT}
    with run_celery_worker(django_db_blocker, tmp_path, env) as worker:
        body = wait_for(
            lambda: (b := client.get("/readyz").json())["checks"]["worker"]["ok"] and b, 60
        )
        assert body["failing"] == ["models"], (body, worker.log()[-2000:])
        assert body["checks"]["models"]["error"] == "models_not_loaded"
    # stopped (its pool child deletes its heartbeat; a killed one lets it expire in 3 s)
    body = wait_for(lambda: (b := client.get("/readyz")).status_code == 503 and b.json(), 10)
    assert body["failing"] == ["worker", "models"]
    assert body["checks"]["worker"]["error"] == "no_worker"


def test_ready_metrics_and_json_logs_of_a_real_read(
    json_worker, station_client, product_type, client, settings
):
    settings.WORKER_HEARTBEAT_TTL = 3
    resp = wait_for(lambda: (r := client.get("/readyz")).status_code == 200 and r, 240)
    body = resp.json()
    assert body["failing"] == [] and body["checks"]["models"]["device"] == "cpu"
    assert {m["stage"] for m in body["checks"]["models"]["models"]} >= {"detection", "recognition"}
    assert body["checks"]["models"]["providers"]

    before = samples(client)
    upload = station_client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile(
                "l.png", label_png(["S/N: SN20260777", "P/N: PN-7731"]), "image/png"
            ),
            "product_type": "nameplate",
        },
        format="multipart",
    )
    assert upload.status_code == 202, upload.content
    capture_id = upload.json()["id"]
    done = station_client.get(f"/api/v1/captures/{capture_id}?wait=30").json()
    if done["status"] not in ("DONE", "FAILED"):
        done = station_client.get(f"/api/v1/captures/{capture_id}?wait=30").json()
    assert done["status"] == "DONE", (done, json_worker.log()[-3000:])
    after = samples(client)

    key = {"view": "api-capture-create", "method": "POST", "status": "202"}
    assert value(after, "serialread_http_requests_total", **key) == (
        value(before, "serialread_http_requests_total", **key) + 1
    )
    for stage in ("total", *done["read"]["timings_ms"]):
        assert value(after, "serialread_read_stage_seconds_count", stage=stage) == (
            value(before, "serialread_read_stage_seconds_count", stage=stage) + 1
        ), stage
    total_s = done["read"]["timings_ms"]["total"] / 1000.0
    grew = value(after, "serialread_read_stage_seconds_sum", stage="total") - value(
        before, "serialread_read_stage_seconds_sum", stage="total"
    )
    assert grew == pytest.approx(total_s, rel=1e-6)
    assert value(after, "serialread_captures", status="DONE") == (
        value(before, "serialread_captures", status="DONE") + 1
    )
    assert value(after, "serialread_workers_models_loaded") >= 1

    # the worker's log: JSON lines; those of this read carry its capture id and task id
    task_lines = wait_for(
        lambda: [
            line
            for line in _json_lines(json_worker.log())
            if line.get("capture_id") == capture_id
            and "succeeded" in line["message"]  # Celery's own line, after the task returned
        ],
        20,
    )
    lines = [
        line for line in _json_lines(json_worker.log()) if line.get("capture_id") == capture_id
    ]
    loggers = {line["logger"] for line in lines}
    assert "workers.tasks" in loggers and task_lines, loggers
    assert len({line["task_id"] for line in lines}) == 1
    ours = [line for line in lines if line["logger"] == "workers.tasks"]
    assert any(line["message"].startswith("reading capture") for line in ours)
    saved = next(line for line in ours if " read: saved" in line["message"])
    assert saved["total_ms"] == pytest.approx(done["read"]["timings_ms"]["total"])
    for line in lines:
        assert {"time", "level", "logger", "message", "pid"} <= set(line)


def _json_lines(text: str) -> list[dict]:
    out = []
    for raw in text.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return out
