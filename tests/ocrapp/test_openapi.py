"""The OpenAPI schema documents every error answer (``ocrapp.openapi``) and is valid OpenAPI 3."""

from __future__ import annotations

import jsonschema
import pytest
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from ocrapp.openapi import ERROR_COMPONENT, document_errors, error_statuses

pytestmark = pytest.mark.django_db

METHODS = {"get", "put", "post", "delete", "patch"}
ERROR_REF = f"#/components/schemas/{ERROR_COMPONENT}"


def _schema(lang: str | None = None) -> dict:
    url = "/api/schema?format=json" + (f"&lang={lang}" if lang else "")
    resp = APIClient().get(url)
    assert resp.status_code == 200
    return resp.json()


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def test_the_schema_validates_as_openapi_3():
    schema = _schema()
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises jsonschema.ValidationError


def test_every_operation_documents_its_errors_with_the_error_component():
    schema = _schema()
    operations = list(_operations(schema))
    assert len(operations) >= 10
    for path, method, op in operations:
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        label = f"{method.upper()} {path}"
        assert errors, label
        for status, response in errors.items():
            assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (
                label,
                status,
            )
            assert response["description"], (label, status)
        assert {"406", "414", "429", "431"} <= set(errors), label
        assert {"401", "403"} <= set(errors), label  # every API operation needs a token
        if "{" in path:
            assert "404" in errors, label
        if method == "post":
            assert "409" in errors, label
        if "requestBody" in op:
            assert {"400", "413", "415"} <= set(errors), label
        else:
            assert not {"413", "415"} & set(errors), label
        assert "429" not in errors or "Retry-After" in errors["429"]["headers"], label


def test_statuses_follow_what_each_operation_can_answer():
    ops = {op["operationId"]: op for _p, _m, op in _operations(_schema())}
    assert "503" in ops["captures_create"]["responses"]
    assert "503" in ops["captures_retry"]["responses"]
    assert "503" not in ops["serials_search"]["responses"]
    assert "409" not in ops["serials_search"]["responses"]
    assert "404" not in ops["serials_search"]["responses"]
    assert "404" in ops["serials_history"]["responses"]
    # an open operation without parameters (e.g. a health check) gets no 400/401/403/404
    assert error_statuses({"security": [{}]}, path="/healthz", method="get") == [
        "406",
        "414",
        "429",
        "431",
    ]


def test_the_error_component_matches_real_error_answers(station_client, product_type):
    component = _schema()["components"]["schemas"][ERROR_COMPONENT]
    answers = [
        APIClient().get("/api/v1/serials?q=x"),  # 401 not_authenticated
        APIClient(HTTP_AUTHORIZATION="Token nope").get("/api/v1/serials?q=x"),  # 401
        station_client.get("/api/v1/captures/00000000-0000-0000-0000-000000000000"),  # 404
        station_client.get("/api/v1/serials"),  # 400
        station_client.get("/api/v1/review-queue"),  # 403
        station_client.post("/api/v1/captures", {"a": 1}, format="json"),  # 415
        station_client.get("/api/v1/serials?q=x", HTTP_ACCEPT="image/png"),  # 406
    ]
    assert [r.status_code for r in answers] == [401, 401, 404, 400, 403, 415, 406]
    for resp in answers:
        assert resp["Content-Type"].startswith("application/json")
        jsonschema.validate(resp.json(), component)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"detail": "Not found."}, component)


def test_error_descriptions_are_translated():
    schema = _schema(lang="ko")
    response = schema["paths"]["/api/v1/captures"]["post"]["responses"]["413"]
    assert (
        response["description"]
        != _schema()["paths"]["/api/v1/captures"]["post"]["responses"]["413"]["description"]
    )


def test_the_upload_is_a_binary_file_part():
    """A file field in a request body is ``format: binary`` (was ``uri``: clients and fuzzers
    sent the photo as a text field)."""
    schemas = _schema()["components"]["schemas"]
    op = _schema()["paths"]["/api/v1/captures"]["post"]
    ref = op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    image = schemas[ref.rsplit("/", 1)[1]]["properties"]["image"]
    assert image["type"] == "string" and image["format"] == "binary"


def test_every_null_in_a_new_capture_is_documented_as_nullable(station_client, product_type):
    """A PENDING capture's null values (finished_at was documented as a plain string)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.images import label_png

    upload = SimpleUploadedFile("label.png", label_png(["S/N: SN1"]), "image/png")
    resp = station_client.post(
        "/api/v1/captures", {"image": upload, "product_type": product_type.name}, format="multipart"
    )
    assert resp.status_code == 202, resp.content
    nulls = sorted(k for k, v in resp.json().items() if v is None)
    assert "finished_at" in nulls
    properties = _schema()["components"]["schemas"]["CaptureOutput"]["properties"]
    assert [k for k in nulls if not properties[k].get("nullable")] == []


def test_an_error_a_view_declares_without_a_body_gets_the_error_body():
    schema = {
        "paths": {
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "no"}},
                }
            }
        }
    }
    responses = document_errors(schema, None, None, True)["paths"]["/readyz"]["get"]["responses"]
    assert responses["503"]["description"] == "no"
    assert responses["503"]["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}
    assert "content" not in responses["200"]
    assert sorted(responses) == ["200", "406", "414", "429", "431", "503"]
    assert ERROR_COMPONENT in schema["components"]["schemas"]
