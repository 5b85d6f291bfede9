"""Server errors found by fuzzing (tests/ocrapp/test_schemathesis.py), each pinned as a
regression: a clear 400 in the JSON error shape, never a 500."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from ocrapp import roles, services
from tests.review_data import person

pytestmark = pytest.mark.django_db


@pytest.fixture
def qm_token_client():
    _token, key = services.api_token_issue(user=person("ada", roles.QUALITY_MANAGER))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.mark.parametrize(
    "params",
    [
        {"product_type": "\x00nameplate"},  # PostgreSQL text cannot hold NUL (was a DataError)
        {"line": "LINE-1\x00"},
        {"station": "²"},  # str.isdigit() but not int() (was a ValueError)
        {"station": "9" * 500},  # far past bigint (a 5000-digit URL is a 414 now: limits)
        {"station": "99999999999999999999"},  # past bigint
    ],
)
def test_bad_review_queue_filters_are_400(qm_token_client, product_type, params):
    resp = qm_token_client.get("/api/v1/review-queue", params)
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["code"] == "invalid"
    assert set(resp.json()["error"]) == {"code", "message", "details"}


def test_good_review_queue_filters_still_work(qm_token_client, product_type, station):
    resp = qm_token_client.get(
        "/api/v1/review-queue",
        {"product_type": product_type.name, "station": str(station.pk), "line": "LINE-1"},
    )
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"count": 0, "results": []}
