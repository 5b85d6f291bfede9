"""Exports through the real ASGI server (uvicorn as devstack runs it, ``web_server``): the CSV
arrives chunked (no Content-Length: streamed, not collected first), complete, scoped to the
station token, and the export is audited once the stream ends. The 20,000 synthetic reads are
written by ``manage.py fill_reads``."""

from __future__ import annotations

import csv
import io

import pytest
import requests
from django.core.management import call_command

from ocrapp import services
from ocrapp.models import AuditEvent, Capture
from tests.integration.test_wait_server import web_server

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_csv_streams_through_uvicorn(django_db_blocker, tmp_path):
    call_command("fill_reads", 6000, "--days", "10", "--lines", "2", "--stations-per-line", "1")
    station = Capture.objects.order_by("created_at").first().station
    key = services.station_token_issue(station=station)
    expected = Capture.objects.filter(station=station).count()
    with web_server(django_db_blocker, tmp_path, workers=1) as server:
        with requests.get(
            f"{server.url}/api/v1/captures/export",
            params={"format": "csv"},
            headers={"Authorization": f"Token {key}"},
            stream=True,
            timeout=120,
        ) as resp:
            assert resp.status_code == 200, resp.text[:500]
            assert "Content-Length" not in resp.headers
            assert resp.headers.get("Transfer-Encoding") == "chunked"
            chunks = [c for c in resp.iter_content(chunk_size=None) if c]
        assert len(chunks) > 1, "the body came in one piece"
        text = b"".join(chunks).decode("utf-8-sig")
        body = text[text.index("\r\n\r\n") + 4 :]
        rows = list(csv.DictReader(io.StringIO(body)))
        assert {r["station"] for r in rows} == {f"{station.line} / {station.name}"}
        assert len({r["capture_id"] for r in rows}) == expected
        event = AuditEvent.objects.filter(action="export").latest("id")
        assert event.after["rows"] == len(rows) and event.after["complete"] is True
