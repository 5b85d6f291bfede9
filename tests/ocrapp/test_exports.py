"""Issue 13 (5): exports of the capture list and of the serial search as CSV, XLSX and EPCIS 2.0
JSON-LD, scoped, streamed, audited.

Reads are stored with the real ``services.capture_create`` + ``read_save`` and corrected with the
real ``services.field_revise``, against the real PostgreSQL of the test run; the EPCIS document
is validated against the EPCIS 2.0 JSON schema of the GS1 work group (``tests/data/epcis``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import tracemalloc
from pathlib import Path

import jsonschema
import pytest
from django.core.management import call_command
from django.urls import reverse
from openpyxl import load_workbook
from rest_framework.test import APIClient

from ocrapp import exports, roles, selectors, services
from ocrapp.models import AuditEvent, Field
from tests.results import read_result
from tests.review_data import PASSWORD, person, stored_capture

pytestmark = pytest.mark.django_db

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "data" / "epcis" / "EPCIS-JSON-Schema.json").read_text()
)
URL = "/api/v1/captures/export"
# jsonschema checks "uri" and "date-time" only with optional packages that are not installed:
# the two formats the schema uses are checked here (RFC 3986 absolute URI, RFC 3339 date-time).
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(
        re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+", value)
    )


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        return False
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(SCHEMA, format_checker=FORMATS)


GTIN = "09506000134352"


@pytest.fixture
def qm():
    return person("qm", roles.QUALITY_MANAGER, first="Quality", last="Manager")


@pytest.fixture
def station_b():
    return services.station_create(line="LINE-2", name="station-B")


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _body(response) -> bytes:
    assert response.status_code == 200, getattr(response, "content", b"")[:500]
    assert response.streaming
    return b"".join(response.streaming_content)


def _csv(data: bytes) -> tuple[list[str], list[dict]]:
    text = data.decode("utf-8").lstrip("\ufeff")
    lines = text.splitlines()
    header = [ln for ln in lines if ln.startswith("# ") or ln.startswith('"# ')]
    start = lines.index("")  # the blank line after the header block
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[start + 1 :]))))
    return header, rows


def _with_gtin(serial: str) -> dict:
    """A read whose DataMatrix carries GS1 (01) GTIN and (21) serial."""
    result = read_result(serial).to_dict()
    result["codes"] = [
        {
            "format": "DataMatrix",
            "text": f"(01){GTIN}(21){serial}",
            "raw_bytes_b64": None,
            "polygon": [[0, 0], [10, 0], [10, 10], [0, 10]],
            "gs1": [
                {"ai": "01", "name": "GTIN", "value": GTIN, "valid": True, "reason": None,
                 "normalised": GTIN, "field": "gtin"},
                {"ai": "21", "name": "SERIAL", "value": serial, "valid": True, "reason": None,
                 "normalised": serial, "field": "serial_number"},
            ],
            "gs1_errors": [],
            "symbology_identifier": "]d2",
            "content_type": "GS1",
            "orientation": 0,
        }
    ]  # fmt: skip
    return result


@pytest.fixture
def world(qm, station, station_b, product_type):
    """Three reads: SN-EXP-0001 at A (with a GTIN code), SN-EXP-0002 at A (its serial later
    corrected to SN-EXP-0003 by a signed revision), SN-EXP-0009 at B."""
    a1 = stored_capture(qm, station, product_type, _with_gtin("SN-EXP-0001"))
    a2 = stored_capture(qm, station, product_type, read_result("SN-EXP-0002").to_dict())
    b1 = stored_capture(qm, station_b, product_type, read_result("SN-EXP-0009").to_dict())
    field = Field.objects.get(read__capture=a2, name="serial_number")
    services.field_revise(
        user=qm,
        field_id=field.pk,
        value="SN-EXP-0003",
        reason="misread",
        meaning="corrected",
        password=PASSWORD,
    )
    return {"a1": a1, "a2": a2, "b1": b1}


def test_csv_has_the_header_block_and_one_row_per_field(qm, world):
    before = AuditEvent.objects.filter(action="export").count()
    data = _body(_client(qm).get(URL, {"format": "csv", "tz": "Asia/Seoul", "sort": "oldest"}))
    header, rows = _csv(data)
    joined = "\n".join(header)
    assert "Filters: sort=oldest, tz=Asia/Seoul" in joined
    exported_at = re.search(r"Exported at: (\S+)", joined).group(1).rstrip('"')
    assert exported_at.endswith("+09:00")  # the export time in the user's zone
    assert "Exported by: qm" in joined
    assert [r["capture_id"] for r in rows if r["field"] == "serial_number"] == [
        str(world[k].pk) for k in ("a1", "a2", "b1")
    ]
    assert len(rows) == 6  # serial + part number of each read
    first = next(r for r in rows if r["field"] == "serial_number")
    assert first["value"] == "SN-EXP-0001" and first["valid"] == "yes"
    assert first["station"] == "LINE-1 / station-A" and first["line"] == "LINE-1"
    assert first["captured_at"].endswith("+09:00")
    assert first["sha256"] == world["a1"].sha256 and first["alarms"] == "0"
    fixed = next(
        r for r in rows if r["capture_id"] == str(world["a2"].pk) and r["field"] == "serial_number"
    )
    assert fixed["value"] == "SN-EXP-0003"  # in force, as printed
    assert "0002" in fixed["machine_value"] and "0002" in fixed["was"]  # the machine read, "was"
    assert fixed["revisions"] == "1" and fixed["signed_by"] == "Quality Manager (qm)"
    [event] = AuditEvent.objects.filter(action="export").order_by("-id")[:1]
    assert AuditEvent.objects.filter(action="export").count() == before + 1
    assert event.actor == qm and event.after["rows"] == 6 and event.after["complete"] is True
    assert event.after["filters"] == {"sort": "oldest", "tz": "Asia/Seoul"}
    assert event.after["format"] == "csv" and event.after["scope"] == "captures"


def test_xlsx_opens_with_the_rows_and_an_about_sheet(qm, world, station):
    resp = _client(qm).get(URL, {"format": "xlsx", "station": station.pk, "tz": "UTC"})
    assert resp["Content-Type"] == exports.CONTENT_TYPES["xlsx"]
    assert resp["Content-Disposition"].endswith('.xlsx"')
    wb = load_workbook(io.BytesIO(_body(resp)), read_only=True)
    assert wb.sheetnames == ["Reads", "About"]
    rows = list(wb["Reads"].iter_rows(values_only=True))
    assert list(rows[0]) == list(exports.COLUMNS)
    data = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert {d["capture_id"] for d in data} == {str(world["a1"].pk), str(world["a2"].pk)}
    assert {d["value"] for d in data if d["field"] == "serial_number"} == {
        "SN-EXP-0001",
        "SN-EXP-0003",
    }
    assert all(isinstance(d["confidence"], float) for d in data)
    about = dict(wb["About"].iter_rows(values_only=True))
    assert about["Filters"] == f"station={station.pk}, tz=UTC"
    assert about["Rows"] == 4 and about["Exported by"] == "qm"
    assert AuditEvent.objects.filter(action="export").latest("id").after["rows"] == 4


def test_epcis_document_is_valid_and_declares_corrections(qm, world):
    data = _body(_client(qm).get(URL, {"format": "epcis", "sort": "oldest", "tz": "Asia/Seoul"}))
    doc = json.loads(data)
    validator = _validator()
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    assert doc["@context"][0] == exports.EPCIS_CONTEXT and doc["schemaVersion"] == "2.0"
    events = doc["epcisBody"]["eventList"]
    assert len(events) == 5  # a1, a2 (machine read), a2 declared in error, its correction, b1
    e1 = events[0]
    assert e1["type"] == "ObjectEvent" and e1["action"] == "OBSERVE"
    assert e1["bizStep"] == "inspecting" and e1["eventTimeZoneOffset"] == "+09:00"
    assert e1["epcList"] == [f"https://id.gs1.org/01/{GTIN}/21/SN-EXP-0001"]
    assert e1["readPoint"]["id"].endswith(f"/id/stations/{world['a1'].station_id}")
    assert re.fullmatch(r"ni:///sha-256;[0-9a-f]{64}\?ver=CBV2\.0", e1["eventID"])
    read = e1["sr:read"]
    assert read["captureID"] == str(world["a1"].pk)
    assert {f["name"] for f in read["fields"]} == {"serial_number", "part_number"}
    original, declared, corrective = events[1:4]
    assert "errorDeclaration" not in original
    assert declared["eventID"] == original["eventID"]  # the same event, now declared in error
    assert declared["errorDeclaration"]["reason"] == "incorrect_data"
    assert declared["errorDeclaration"]["correctiveEventIDs"] == [corrective["eventID"]]
    assert corrective["eventTime"] == original["eventTime"]
    assert corrective["eventID"] != original["eventID"]
    serial = next(f for f in corrective["sr:read"]["fields"] if f["name"] == "serial_number")
    assert serial["value"] == "SN-EXP-0003"
    assert corrective["sr:read"]["correction"]["reason"] == "misread"
    # no GTIN known: our own URI for the serial, under PUBLIC_BASE_URL
    assert corrective["epcList"][0].endswith("/SN-EXP-0003")
    assert "id.gs1.org" not in corrective["epcList"][0]
    # the event id is the hash of the event's canonical form: recomputed, it is the same
    ns = exports.ext_namespace()
    assert exports.event_hash(e1, namespace=ns) == e1["eventID"]
    changed = {**e1, "eventTime": events[4]["eventTime"]}
    assert exports.event_hash(changed, namespace=ns) != e1["eventID"]


def test_the_schema_refuses_what_the_standard_refuses(qm, world):
    """The check can fail: the same document broken in ways EPCIS 2.0 forbids is refused."""
    doc = json.loads(_body(_client(qm).get(URL, {"format": "epcis"})))
    validator = _validator()
    for breaks in (
        lambda e: e.update(action="LOOK"),
        lambda e: e.update(eventTimeZoneOffset="+9"),
        lambda e: e.update(ilmd={"sr:x": 1}),  # ilmd only with ADD
        lambda e: e.pop("eventTime"),
        lambda e: e.update(eventTime="2026-12-01 10:00"),  # no RFC 3339 date-time
        lambda e: e.update(eventID="not a uri"),
        lambda e: e.update(extra=1),  # an extension must be namespaced (a URI / CURIE)
    ):
        bad = json.loads(json.dumps(doc))
        breaks(bad["epcisBody"]["eventList"][0])
        assert list(validator.iter_errors(bad)), breaks


def test_a_station_token_exports_only_its_station(world, station, station_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station_token}")
    _header, rows = _csv(_body(client.get(URL)))
    assert {r["capture_id"] for r in rows} == {str(world["a1"].pk), str(world["a2"].pk)}
    doc = json.loads(_body(client.get(URL, {"format": "epcis", "q": "SN-EXP-0009"})))
    assert doc["epcisBody"]["eventList"] == []  # B's serial is outside its scope
    search = _body(client.get(URL, {"scope": "serials", "q": "SN-EXP-000"}))
    assert str(world["b1"].pk) not in search.decode()


def test_serial_search_export_has_the_matched_reads(qm, world):
    _header, rows = _csv(
        _body(_client(qm).get(URL, {"scope": "serials", "q": "SN-EXP-0003", "match": "exact"}))
    )
    assert [(r["capture_id"], r["match"], r["matched_value"]) for r in rows] == [
        (str(world["a2"].pk), "exact", "SN-EXP-0003")
    ]
    _header, was = _csv(
        _body(_client(qm).get(URL, {"scope": "serials", "q": "SN-EXP-0002", "match": "exact"}))
    )
    assert [(r["capture_id"], r["matched_was"]) for r in was] == [(str(world["a2"].pk), "yes")]
    _header, prefix = _csv(
        _body(_client(qm).get(URL, {"scope": "serials", "q": "SN-EXP-000", "match": "prefix"}))
    )
    assert {r["match"] for r in prefix} == {"prefix"} and len(prefix) == 4  # 0001, 0002, 0003, 0009
    # a misread (8 for 9, then X for 0): found as "similar", the same values the search shows
    q = "SNEXPX008"
    _header, similar = _csv(_body(_client(qm).get(URL, {"scope": "serials", "q": q})))
    shown = {h.value for h in selectors.serial_search(q=q, user=qm)}
    assert {r["matched_value"] for r in similar if r["match"] == "similar"} >= {"SN-EXP-0009"}
    assert {r["matched_value"].replace("-", "") for r in similar} == shown


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"format": "pdf"}, 400, "invalid"),
        ({"scope": "everything"}, 400, "invalid"),
        ({"scope": "serials"}, 400, "invalid"),
        ({"tz": "Mars/Olympus"}, 400, "invalid"),
        ({"from": "yesterday"}, 400, "invalid"),
        ({"q": "SN\x00"}, 400, "invalid"),
    ],
)
def test_bad_parameters_are_json_errors_and_nothing_is_audited(qm, params, status, code):
    resp = _client(qm).get(URL, params)
    assert resp.status_code == status and resp.json()["error"]["code"] == code
    assert not AuditEvent.objects.filter(action="export").exists()


def test_export_needs_the_permission(world, station):
    operator = person("op", roles.OPERATOR, stations=[station])
    resp = _client(operator).get(URL)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"
    assert APIClient().get(URL).status_code in (401, 403)


def test_pages_link_the_exports_with_their_filters(client, qm, world, station):
    client.force_login(qm)
    page = client.get(reverse("capture-list"), {"station": station.pk, "tz": "Asia/Seoul"})
    links = re.findall(r'href="(/api/v1/captures/export\?[^"]+)"', page.content.decode())
    assert len(links) == 3
    link = links[0].replace("&amp;", "&")
    assert f"station={station.pk}" in link and "tz=Asia%2FSeoul" in link
    assert "format=csv" in link and "scope=captures" in link
    _header, rows = _csv(_body(client.get(link)))
    assert {r["capture_id"] for r in rows} == {str(world["a1"].pk), str(world["a2"].pk)}
    search = client.get(reverse("search"), {"q": "SN-EXP-0003"}).content.decode()
    assert "scope=serials" in search and "q=SN-EXP-0003" in search
    operator = person("op2", roles.OPERATOR, stations=[station])
    client.force_login(operator)
    assert "/api/v1/captures/export" not in client.get(reverse("capture-list")).content.decode()


def test_streaming_memory_stays_bounded_over_20k_reads(qm):
    """20,000 synthetic reads (about 60,000 rows): tracemalloc's peak while the CSV streams
    stays well below the size of the file, and about what the first 5,000 reads took."""
    call_command("fill_reads", 20000, "--batch", "20000", "--days", "30")
    filters = selectors.search_filters_parse(params={"tz": "UTC"})
    info = exports.ExportInfo("captures", [], exports.timezone.now(), "UTC", "qm")
    tz = selectors.time_zone_find(name="UTC")

    def peak(limit_rows: int | None) -> tuple[int, int]:
        groups = exports.capture_groups(user=qm, filters=filters, chunk=1000)
        counter = [0]
        size = 0
        tracemalloc.start()
        try:
            for part in exports.csv_stream(groups, info, tz, counter):
                size += len(part)
                if limit_rows and counter[0] >= limit_rows:
                    break
            return tracemalloc.get_traced_memory()[1], size
        finally:
            tracemalloc.stop()

    peak_small, _size = peak(15000)
    peak_all, size = peak(None)
    assert size > 5_000_000  # about 60,000 rows
    assert peak_all < size / 2, (peak_all, size)  # a list of the rows alone is bigger
    assert peak_all < 2 * peak_small + 2_000_000, (peak_all, peak_small)


def test_the_response_streams_before_the_export_is_read(qm, world):
    resp = _client(qm).get(URL)
    assert resp.streaming and resp["Content-Type"].startswith("text/csv")
    assert not AuditEvent.objects.filter(action="export").exists()  # nothing read yet
    first = next(iter(resp.streaming_content))
    assert first.startswith("\ufeff# ".encode())
    resp.close()


def test_event_hash_ignores_key_order_and_declarations():
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-12-01T10:00:00.000+09:00",
        "eventTimeZoneOffset": "+09:00",
        "epcList": ["https://id.gs1.org/01/09506000134352/21/B", "https://id.gs1.org/01/09506000134352/21/A"],
        "action": "OBSERVE",
        "bizStep": "inspecting",
        "readPoint": {"id": "https://example.com/id/stations/1"},
        "sr:read": {"fields": [{"name": "a", "value": "1"}]},
    }  # fmt: skip
    h = exports.event_hash(event, namespace="https://example.com/ns#")
    shuffled = dict(reversed(list(event.items())))
    shuffled["epcList"] = list(reversed(event["epcList"]))
    shuffled["errorDeclaration"] = {"declarationTime": "2026-12-02T00:00:00Z"}
    shuffled["recordTime"] = "2026-12-02T00:00:00Z"
    same_instant = replace_time(event, "2026-12-01T01:00:00.000+00:00")
    assert exports.event_hash(shuffled, namespace="https://example.com/ns#") == h
    assert exports.event_hash(same_instant, namespace="https://example.com/ns#") == h
    other = {**event, "bizStep": "shipping"}
    assert exports.event_hash(other, namespace="https://example.com/ns#") != h


def replace_time(event: dict, when: str) -> dict:
    return {**event, "eventTime": when}
