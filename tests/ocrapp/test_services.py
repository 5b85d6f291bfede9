import pytest

from ocrapp import selectors, services
from ocrapp.errors import ApplicationError
from ocrapp.models import Capture, Field, Read, SerialRecord, TextLine
from tests.images import label_png
from tests.results import accepted_result_dict, result_dict, review_result_dict
from workers.contract import FieldDict, ReadResultDict, parse_read_result

pytestmark = pytest.mark.django_db


def _capture(user, product_type, station, **kw):
    capture, created = services.capture_create(
        user=user,
        image_bytes=kw.pop("data", label_png(["S/N: X"])),
        product_type=product_type,
        station=station,
        **kw,
    )
    return capture


def _done(capture, serial="SN20260042"):
    assert services.capture_claim(capture_id=capture.pk) is not None
    return services.read_save(capture_id=capture.pk, result=result_dict(serial))


def test_product_type_schema_is_validated():
    with pytest.raises(ApplicationError) as err:
        services.product_type_create(
            name="bad", field_schema={"fields": [{"name": "Serial", "pattern": "([A-Z"}]}
        )
    assert err.value.code == "invalid_schema"
    assert "lowercase identifier" in err.value.message
    assert "regular expression" in err.value.message


def test_capture_create_stores_image_under_random_name(user, product_type, station):
    data = label_png(["S/N: AB1234567"])
    capture = _capture(user, product_type, station, data=data, original_filename="../../x.png")
    capture.refresh_from_db()
    assert capture.status == Capture.Status.PENDING
    assert capture.original_filename == "x.png"
    assert "x.png" not in capture.image.name and capture.image.name.endswith(".png")
    assert capture.image.read() == data
    assert (capture.width, capture.height, capture.image_format) == (900, 420, "PNG")
    assert len(capture.sha256) == 64


def test_token_owner_station_is_used_and_enforced(product_type, station):
    from ocrapp.models import Station

    services.station_token_issue(station=station)
    station.refresh_from_db()
    other = services.station_create(line="LINE-2", name="B")
    owner = station.token_owner
    capture, _ = services.capture_create(
        user=owner, image_bytes=label_png(["A"]), product_type=product_type
    )
    assert capture.station == station
    with pytest.raises(ApplicationError) as err:
        services.capture_create(
            user=owner, image_bytes=label_png(["A"]), product_type=product_type, station=other
        )
    assert err.value.status_code == 403
    assert Station.objects.count() == 2


def test_idempotency_key_returns_first_capture(user, product_type, station):
    data = label_png(["S/N: AB1234567"])
    first, created1 = services.capture_create(
        user=user,
        image_bytes=data,
        product_type=product_type,
        station=station,
        idempotency_key="k-1",
    )
    second, created2 = services.capture_create(
        user=user,
        image_bytes=data,
        product_type=product_type,
        station=station,
        idempotency_key="k-1",
    )
    assert (created1, created2) == (True, False)
    assert first.pk == second.pk
    with pytest.raises(ApplicationError) as err:
        services.capture_create(
            user=user,
            image_bytes=label_png(["other"]),
            product_type=product_type,
            station=station,
            idempotency_key="k-1",
        )
    assert err.value.code == "idempotency_key_reused" and err.value.status_code == 409
    assert Capture.objects.count() == 1


def test_read_save_is_idempotent(user, product_type, station):
    capture = _capture(user, product_type, station)
    read = _done(capture)
    assert read is not None
    # A redelivered message: the claim refuses, and a late save writes nothing.
    assert services.capture_claim(capture_id=capture.pk) is None
    assert services.read_save(capture_id=capture.pk, result=result_dict()) is None
    assert Read.objects.count() == 1
    assert Field.objects.count() == 2 and TextLine.objects.count() == 2
    assert SerialRecord.objects.filter(value="SN20260042").count() == 1
    capture.refresh_from_db()
    assert capture.status == Capture.Status.DONE and capture.finished_at is not None


def test_processing_capture_can_be_reclaimed_after_worker_loss(user, product_type, station):
    capture = _capture(user, product_type, station)
    assert services.capture_claim(capture_id=capture.pk).attempts == 1
    # the worker died; the broker redelivers the message
    assert services.capture_claim(capture_id=capture.pk).attempts == 2
    assert services.read_save(capture_id=capture.pk, result=result_dict()) is not None
    assert Read.objects.filter(capture=capture).count() == 1


def test_fail_does_not_override_done(user, product_type, station):
    capture = _capture(user, product_type, station)
    _done(capture)
    assert services.capture_fail(capture_id=capture.pk, code="x", reason="late") is False
    capture.refresh_from_db()
    assert capture.status == Capture.Status.DONE
    other = _capture(user, product_type, station)
    assert services.capture_fail(capture_id=other.pk, code="bad_image", reason="corrupt") is True
    other.refresh_from_db()
    assert (other.status, other.failure_code) == (Capture.Status.FAILED, "bad_image")


def test_serial_search_exact_prefix_lookalike_similar(user, product_type, station):
    for serial in ["SN20260042", "SN20260043", "AB00Z117", "QQ999999"]:
        _done(_capture(user, product_type, station), serial)
    by_value = {h.value: h for h in selectors.serial_search(q="sn-2026 0042", user=user)}
    assert by_value["SN20260042"].match == "exact"
    assert "QQ999999" not in by_value
    prefix = {h.value: h.match for h in selectors.serial_search(q="SN2026", user=user)}
    assert prefix == {"SN20260042": "prefix", "SN20260043": "prefix"}
    # look-alike characters: O<->0, I<->1, S<->5, Z<->2
    look = {h.value: h.match for h in selectors.serial_search(q="AB0OZ1I7", user=user)}
    assert look.get("AB00Z117") == "lookalike"
    similar = {h.value: h.match for h in selectors.serial_search(q="SN2O26OO42X", user=user)}
    assert "SN20260042" in similar
    assert selectors.serial_search(q="  - ", user=user) == []


def test_serial_history_lists_every_read_in_order(user, product_type, station):
    first = _capture(user, product_type, station)
    _done(first)
    second = _capture(user, product_type, station, client_ref="rework")
    _done(second)
    history = selectors.serial_history(value="sn20260042", user=user)
    assert [r.capture_id for r in history] == [first.pk, second.pk]
    assert history[1].capture.client_ref == "rework"
    assert all(r.field_name == "serial_number" for r in history)


# --- the result contract ----------------------------------------------------------------------


@pytest.mark.parametrize("build", [result_dict, review_result_dict, accepted_result_dict])
def test_test_results_have_the_contract_shape(build):
    payload = build()
    assert set(payload) == set(ReadResultDict.__annotations__)
    assert set(payload["fields"][0]) == set(FieldDict.__annotations__)
    parsed = parse_read_result(payload)
    assert parsed.to_dict() == payload  # the JSON form round-trips through the dataclasses


def test_read_save_stores_the_typed_result(user, product_type, station):
    capture = _capture(user, product_type, station)
    assert services.capture_claim(capture_id=capture.pk) is not None
    read = services.read_save(capture_id=capture.pk, result=review_result_dict())
    read.refresh_from_db()
    assert read.needs_review is True
    assert read.review["reasons"][1]["params"] == {"confidence": 0.6, "threshold": 0.85}
    assert read.codes[0]["format"] == "DataMatrix" and read.mismatches[0]["coded"] == "SN20260099"
    date = read.fields.get(name="mfg_date")
    assert str(date.iso_date) == "2099-01-01"
    assert date.reasons == [{"code": "date_future", "message": "2099-01-01 is in the future"}]
    assert date.line.order == 2
    serial = read.fields.get(name="serial_number")
    assert serial.correction["changes"][0]["position"] == 3 and serial.code_match is False
    assert serial.box == [[40.0, 40.0], [600.0, 40.0], [600.0, 100.0], [40.0, 100.0]]
    assert read.fields.get(name="lot").line is None


def test_read_save_keeps_a_yearless_date_without_a_calendar_date(user, product_type, station):
    """``--11-16`` (a date printed without a year) is stored with its printed value and no
    calendar date: the database never gets a guessed year."""
    capture = _capture(user, product_type, station)
    assert services.capture_claim(capture_id=capture.pk) is not None
    payload = review_result_dict()
    payload["fields"][3].update(
        name="expiry_date",
        raw_value="16 NOV",
        value="16 NOV",
        valid=True,
        reason="",
        reasons=[],
        iso_date="--11-16",
    )
    read = services.read_save(capture_id=capture.pk, result=payload)
    assert read is not None
    exp = read.fields.get(name="expiry_date")
    assert exp.value == "16 NOV" and exp.valid and exp.iso_date is None


def _without(payload: dict, *path):
    *parents, last = path
    node = payload
    for key in parents:
        node = node[key]
    del node[last]
    return payload


def _with(payload: dict, value, *path):
    *parents, last = path
    node = payload
    for key in parents:
        node = node[key]
    node[last] = value
    return payload


@pytest.mark.parametrize(
    ("break_it", "problem"),
    [
        (lambda p: _without(p, "fields"), "result.fields: missing"),
        (lambda p: _without(p, "fields", 0, "valid"), "result.fields[0].valid: missing"),
        (lambda p: _with(p, "0.9", "fields", 1, "confidence"), "result.fields[1].confidence"),
        (lambda p: _with(p, None, "lines", 0, "text"), "result.lines[0].text: must be str"),
        (lambda p: _with(p, "yes", "needs_review"), "result.needs_review: must be bool"),
        (lambda p: _with(p, "high", "quality", "blur"), "result:"),
        (lambda p: _with(p, ["x"], "review", "reasons"), "result:"),
        (lambda p: _with(p, "2099-13-45", "fields", 3, "iso_date"), "fields[3].iso_date"),
        (lambda p: _with(p, "--13-45", "fields", 3, "iso_date"), "fields[3].iso_date"),
        (lambda p: _with(p, "x" * 65, "fields", 0, "name"), "fields[0].name: longer than 64"),
        (lambda p: ["not", "a", "result"], "result: must be an object"),
    ],
)
def test_malformed_result_fails_the_capture_and_stores_nothing(
    user, product_type, station, break_it, problem
):
    capture = _capture(user, product_type, station)
    assert services.capture_claim(capture_id=capture.pk) is not None
    payload = break_it(review_result_dict())
    assert services.read_save(capture_id=capture.pk, result=payload) is None
    capture.refresh_from_db()
    assert capture.status == Capture.Status.FAILED
    assert capture.failure_code == "bad_result"
    assert problem in capture.failure_reason
    assert capture.finished_at is not None
    assert not Read.objects.exists() and not Field.objects.exists()
    assert not TextLine.objects.exists() and not SerialRecord.objects.exists()


def test_malformed_result_for_a_finished_capture_changes_nothing(user, product_type, station):
    capture = _capture(user, product_type, station)
    _done(capture)
    assert services.read_save(capture_id=capture.pk, result={"fields": "?"}) is None
    capture.refresh_from_db()
    assert capture.status == Capture.Status.DONE and capture.failure_code == ""
    assert Read.objects.count() == 1
