"""Operations: /healthz, /readyz (each check failing for real), /metrics (access, exposition,
numbers that move), the request id and the structured log formatters.

Runs against the real PostgreSQL and Redis of the test runner; the worker heartbeat here is
written by the real ``ocrapp.health.Heartbeat`` of this process (the worker itself is in
``tests/integration/test_ops_worker.py``).
"""

from __future__ import annotations

import json
import logging
import socket

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from ocrapp import health, logctx
from ocrapp.models import Capture
from tests.review_data import accepted_result, failed_capture, queued_result, stored_capture


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def no_heartbeats():
    client = health.redis_client()
    for key in client.scan_iter(match=f"{health.HEARTBEAT_PREFIX}*"):
        client.delete(key)
    yield client
    for key in client.scan_iter(match=f"{health.HEARTBEAT_PREFIX}*"):
        client.delete(key)


def samples(client, **headers) -> dict[tuple[str, tuple], float]:
    resp = client.get("/metrics", **headers)
    assert resp.status_code == 200, resp.content
    assert resp["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.content.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(snapshot, name: str, **labels) -> float:
    return snapshot.get((name, tuple(sorted(labels.items()))), 0.0)


# --- /healthz ------------------------------------------------------------------------------------


def test_healthz_answers_without_database_or_session(client, django_assert_num_queries, db):
    with django_assert_num_queries(0):
        resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    assert "Set-Cookie" not in resp.headers and not resp.cookies
    assert client.post("/healthz").status_code == 405


# --- /readyz -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_without_a_worker_names_worker_and_models(client, no_heartbeats):
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "fail"
    assert body["failing"] == ["worker", "models"]
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert body["checks"]["worker"]["error"] == "no_worker"


@pytest.mark.django_db
def test_readyz_worker_up_but_models_not_loaded(client, no_heartbeats):
    beat = health.Heartbeat().start()  # this process has built no pipeline
    try:
        body = client.get("/readyz").json()
    finally:
        beat.stop()
    assert body["failing"] == ["models"]
    assert body["checks"]["worker"]["ok"] and body["checks"]["worker"]["workers"] == 1
    assert body["checks"]["models"]["error"] == "models_not_loaded"
    # stopped: the key is gone at once
    assert client.get("/readyz").json()["checks"]["worker"]["error"] == "no_worker"


@pytest.mark.django_db
def test_readyz_warm_up_error_is_reported(client, no_heartbeats):
    beat = health.Heartbeat(warmup_error="RuntimeError: no model").start()
    try:
        models = client.get("/readyz").json()["checks"]["models"]
    finally:
        beat.stop()
    assert models["ok"] is False and models["warmup_errors"] == ["RuntimeError: no model"]


@pytest.mark.django_db
def test_readyz_broker_down(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["failing"] == ["broker", "worker", "models"]
    assert body["checks"]["broker"]["error"] == "broker_unreachable"
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_readyz_database_down(client):
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(
        HOST="127.0.0.1", PORT=str(_closed_port()), OPTIONS={"connect_timeout": 2}
    )
    try:
        resp = client.get("/readyz")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert resp.status_code == 503
    body = resp.json()
    assert "database" in body["failing"]
    assert body["checks"]["database"]["error"] == "database_unreachable"
    assert body["checks"]["broker"]["ok"] is True
    assert Capture.objects.count() == 0  # the connection works again


def test_readyz_message_in_korean(client, settings, db):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    body = client.get("/readyz", HTTP_ACCEPT_LANGUAGE="ko").json()
    message = body["checks"]["broker"]["message"]
    assert message and message != "The broker (Redis) does not answer."


# --- /metrics ------------------------------------------------------------------------------------


def test_metrics_loopback_only_without_token(client, settings, db):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    resp = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "metrics_loopback_only"


def test_metrics_bearer_token(client, settings, db):
    settings.METRICS_TOKEN = "s3cret-metrics"
    away = {"REMOTE_ADDR": "10.1.2.3"}
    resp = client.get("/metrics", **away)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "metrics_token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **away).status_code == 401
    assert client.get("/metrics").status_code == 401  # loopback needs it too once set
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics", **away)
    assert ok.status_code == 200


def test_metrics_state_moves(client, user, station, product_type, no_heartbeats):
    from workers.tasks import OCR_QUEUE, read_capture

    before = samples(client)
    stored_capture(user, station, product_type, accepted_result("SN20260101"))
    stored_capture(user, station, product_type, queued_result("SN20260102"))
    failed_capture(user, station, product_type)
    client_redis = health.redis_client()
    client_redis.delete(OCR_QUEUE)
    read_capture.delay("00000000-0000-0000-0000-000000000000")  # a real message on the queue
    beat = health.Heartbeat().start()
    try:
        after = samples(client)
    finally:
        beat.stop()
        client_redis.delete(OCR_QUEUE)

    assert (
        value(after, "serialread_captures", status="DONE")
        == value(before, "serialread_captures", status="DONE") + 2
    )
    assert value(after, "serialread_captures_failed", reason="timeout") == 1
    assert (
        value(after, "serialread_review_backlog") == value(before, "serialread_review_backlog") + 1
    )
    assert value(after, "serialread_queue_depth", queue="ocr") == 1
    assert value(after, "serialread_workers") == 1
    assert value(after, "serialread_workers_models_loaded") == 0
    assert value(after, "serialread_metrics_source_up", source="database") == 1
    assert value(after, "serialread_metrics_source_up", source="broker") == 1
    # the stage histogram counts the two stored reads' timings (tests/results.py sets them)
    stages = {
        dict(k[1]).get("stage") for k in after if k[0] == "serialread_read_stage_seconds_count"
    }
    assert stages, "no stage histogram"
    stage = sorted(stages)[0]
    count = value(after, "serialread_read_stage_seconds_count", stage=stage)
    assert count == value(before, "serialread_read_stage_seconds_count", stage=stage) + 2
    assert value(after, "serialread_read_stage_seconds_bucket", stage=stage, le="+Inf") == count


def test_metrics_survive_a_broker_outage(client, settings, db):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    after = samples(client)
    assert value(after, "serialread_metrics_source_up", source="broker") == 0
    assert value(after, "serialread_metrics_source_up", source="database") == 1


def test_request_metrics_count_by_view_and_status(client, db):
    before = samples(client)
    client.get("/healthz")
    client.get("/healthz")
    client.get("/api/v1/captures/00000000-0000-0000-0000-000000000000")  # 401, no token
    after = samples(client)
    key = {"view": "healthz", "method": "GET", "status": "200"}
    assert (
        value(after, "serialread_http_requests_total", **key)
        == value(before, "serialread_http_requests_total", **key) + 2
    )
    key = {"view": "api-capture-detail", "method": "GET", "status": "401"}
    assert (
        value(after, "serialread_http_requests_total", **key)
        == value(before, "serialread_http_requests_total", **key) + 1
    )
    assert value(after, "serialread_http_request_duration_seconds_count", view="healthz") >= 2


# --- request id and logs -------------------------------------------------------------------------


def test_request_id_is_echoed_or_made(client, db):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")["X-Request-ID"]
    assert made and made != "bad id\nwith newline" and len(made) == 32


def test_api_log_lines_carry_request_and_capture_id(station_client, product_type, caplog):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.images import label_png

    caplog.set_level(logging.INFO)
    resp = station_client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile("l.png", label_png(["S/N: SN1"]), "image/png"),
            "product_type": "nameplate",
        },
        format="multipart",
        HTTP_X_REQUEST_ID="req-42",
    )
    assert resp.status_code == 202, resp.content
    capture_id = resp.json()["id"]
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == "req-42"]
    assert {r.name for r in lines} >= {"ocrapp.api", "ocrapp.request"}
    assert all(
        getattr(r, "capture_id", None) == capture_id for r in lines if r.name == "ocrapp.api"
    )
    request_line = next(r for r in lines if r.name == "ocrapp.request")
    assert request_line.capture_id == capture_id and request_line.status == 202


def test_json_formatter():
    fmt = logctx.JsonFormatter()
    with logctx.context(capture_id="c-1", task_id="t-1"):
        record = logging.LogRecord("x.y", logging.WARNING, __file__, 1, "hello %s", ("한국",), None)
        logctx.ContextFilter().filter(record)
    record.stage = "detection"  # as extra={"stage": ...} would
    body = json.loads(fmt.format(record))
    assert body["level"] == "WARNING" and body["logger"] == "x.y"
    assert body["message"] == "hello 한국"
    assert body["capture_id"] == "c-1" and body["task_id"] == "t-1" and "request_id" not in body
    assert body["stage"] == "detection" and body["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    body = json.loads(fmt.format(record))
    assert "ValueError: boom" in body["exc"]


def test_plain_formatter_appends_context():
    fmt = logctx.PlainFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "saved", (), None)
    assert "[" not in fmt.format(record)
    with logctx.context(capture_id="c-9"):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "saved", (), None)
        logctx.ContextFilter().filter(record)
    assert fmt.format(record).endswith("x: saved [capture_id=c-9]")


def test_log_format_setting(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.delenv("LOG_FORMAT", raising=False)
    monkeypatch.setenv("DJANGO_ENV", "production")
    assert logctx.log_format_from_env() == "json"
    monkeypatch.setenv("DJANGO_ENV", "development")
    assert logctx.log_format_from_env() == "plain"
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert logctx.log_format_from_env() == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ImproperlyConfigured):
        logctx.log_format_from_env()
