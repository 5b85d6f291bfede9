import threading

import pytest
from django.db import connection

from ocrapp import services
from ocrapp.models import Capture
from tests.images import label_png
from tests.results import result_dict

pytestmark = pytest.mark.django_db


def _post(client, product_type, data=None, **extra):
    payload = {"product_type": product_type.name}
    if data is not False:
        from django.core.files.uploadedfile import SimpleUploadedFile

        payload["image"] = SimpleUploadedFile(
            "label.png", data or label_png(["S/N: SN20260042"]), "image/png"
        )
    payload.update(extra.pop("fields", {}))
    return client.post("/api/v1/captures", payload, format="multipart", **extra)


def test_create_returns_202_with_status_and_url(station_client, product_type, station):
    resp = _post(station_client, product_type, fields={"client_ref": "PLC-7"})
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["status"] == "PENDING"
    assert body["url"].endswith(f"/api/v1/captures/{body['id']}")
    assert resp["Location"] == body["url"]
    assert body["station"]["id"] == station.pk and body["client_ref"] == "PLC-7"
    assert body["read"] is None


def test_idempotency_key_header_replays(station_client, product_type):
    data = label_png(["S/N: SN1"])
    r1 = _post(station_client, product_type, data, HTTP_IDEMPOTENCY_KEY="abc")
    r2 = _post(station_client, product_type, data, HTTP_IDEMPOTENCY_KEY="abc")
    assert r1.status_code == r2.status_code == 202
    assert r1.json()["id"] == r2.json()["id"]
    assert r2["Idempotent-Replayed"] == "true"
    r3 = _post(station_client, product_type, label_png(["other"]), HTTP_IDEMPOTENCY_KEY="abc")
    assert r3.status_code == 409
    assert r3.json()["error"]["code"] == "idempotency_key_reused"
    assert Capture.objects.count() == 1


def test_detail_shows_lines_fields_quality_timings(station_client, product_type):
    capture_id = _post(station_client, product_type).json()["id"]
    services.capture_claim(capture_id=capture_id)
    services.read_save(capture_id=capture_id, result=result_dict("SN20260042"))
    body = station_client.get(f"/api/v1/captures/{capture_id}").json()
    assert body["status"] == "DONE"
    assert body["fields"]["serial_number"] == "SN20260042"
    read = body["read"]
    assert read["lines"][0]["text"] == "S/N: SN20260042"
    assert read["lines"][0]["polygon"][0] == [40, 40]
    assert read["fields"][0]["line"] == 0 and read["fields"][0]["valid"] is True
    assert read["timings_ms"]["total"] == 93.0 and read["quality"]["ok"] is True
    assert read["models"][0]["name"] == "test-det"


def test_detail_unknown_and_malformed_ids_are_404(station_client):
    for cid in ["00000000-0000-0000-0000-000000000000", "not-a-uuid"]:
        resp = station_client.get(f"/api/v1/captures/{cid}")
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("wait", ["-1", "31", "abc"])
def test_wait_must_be_in_range(station_client, product_type, wait):
    capture_id = _post(station_client, product_type).json()["id"]
    resp = station_client.get(f"/api/v1/captures/{capture_id}?wait={wait}")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid"


@pytest.mark.django_db(transaction=True)
def test_wait_returns_when_read_finishes(station_client, product_type):
    capture_id = _post(station_client, product_type).json()["id"]
    finisher_started = threading.Event()

    def finish():
        finisher_started.set()
        threading.Event().wait(0.5)
        services.capture_claim(capture_id=capture_id)
        services.read_save(capture_id=capture_id, result=result_dict())
        connection.close()

    t = threading.Thread(target=finish)
    t.start()
    finisher_started.wait()
    body = station_client.get(f"/api/v1/captures/{capture_id}?wait=30").json()
    t.join()
    assert body["status"] == "DONE"
    assert body["fields"]["serial_number"] == "SN20260042"


def test_wait_times_out_with_pending_status(station_client, product_type):
    capture_id = _post(station_client, product_type).json()["id"]
    body = station_client.get(f"/api/v1/captures/{capture_id}?wait=0.3").json()
    assert body["status"] == "PENDING"


def test_serial_search_and_history(station_client, product_type):
    for serial in ["SN20260042", "SN20260042", "SN20260099"]:
        cid = _post(station_client, product_type, label_png([serial])).json()["id"]
        services.capture_claim(capture_id=cid)
        services.read_save(capture_id=cid, result=result_dict(serial))
    body = station_client.get("/api/v1/serials", {"q": "SN2026004"}).json()
    results = [(r["value"], r["match"], r["reads"]) for r in body["results"]]
    assert results[0] == ("SN20260042", "prefix", 2)
    assert all(match == "similar" for _, match, _ in results[1:])  # ranked after prefix hits
    assert body["results"][0]["history_url"].endswith("/api/v1/serials/SN20260042/history")
    hist = station_client.get("/api/v1/serials/sn-20260042/history").json()
    assert hist["value"] == "SN20260042"
    assert len(hist["history"]) == 2
    assert hist["history"][0]["station"] == "LINE-1 / station-A"
    missing = station_client.get("/api/v1/serials/NOPE/history")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    empty = station_client.get("/api/v1/serials")
    assert empty.status_code == 400 and empty.json()["error"]["details"]["q"]


def test_openapi_schema_and_docs(station_client):
    schema = station_client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    doc = schema.json()
    assert doc["openapi"].startswith("3.")
    assert {
        "/api/v1/captures",
        "/api/v1/captures/{capture_id}",
        "/api/v1/serials",
        "/api/v1/serials/{value}/history",
    } <= set(doc["paths"])
    docs = station_client.get("/api/docs")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


@pytest.mark.django_db(transaction=True)
def test_waiting_request_does_not_block_other_requests(live_server, product_type, station_token):
    """A ?wait=N call holds only its own server thread: other calls are answered meanwhile."""
    import json
    import urllib.request

    from django.core.files.uploadedfile import SimpleUploadedFile
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station_token}")
    capture_id = client.post(
        "/api/v1/captures",
        {
            "image": SimpleUploadedFile("a.png", label_png(["S/N: 1"]), "image/png"),
            "product_type": product_type.name,
        },
        format="multipart",
    ).json()["id"]
    headers = {"Authorization": f"Token {station_token}"}

    def get(path):
        req = urllib.request.Request(live_server.url + path, headers=headers)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    waited = {}
    waiter = threading.Thread(
        target=lambda: waited.update(get(f"/api/v1/captures/{capture_id}?wait=8"))
    )
    waiter.start()
    threading.Event().wait(0.5)
    other = get("/api/v1/serials?q=SN1")  # served while the waiter is still waiting
    still_waiting = waiter.is_alive()
    waiter.join()
    assert (other["query"], other["results"], other["total"]) == ("SN1", [], 0)
    assert still_waiting
    assert waited["status"] == "PENDING"
