"""API tokens: stored as sha256 with a visible prefix, shown once (admin action, command),
``Token`` and ``Bearer`` headers, revocation, last use, audit rows, and the migration of the
plain ``rest_framework.authtoken`` keys."""

from __future__ import annotations

import hashlib
import importlib
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.test import APIClient

from ocrapp import roles, services
from ocrapp.models import ApiToken, AuditEvent, Station

pytestmark = pytest.mark.django_db

SEARCH = "/api/v1/serials?q=SN1"


def _client(header: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


def _everything_stored() -> str:
    """Every column of every token and audit row, as text."""
    rows = list(ApiToken.objects.values()) + list(AuditEvent.objects.values())
    return json.dumps(rows, default=str)


def test_the_hash_is_stored_not_the_key(station):
    key = services.station_token_issue(station=station)
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:8] and len(key) >= 40
    assert token.station == station and token.user == Station.objects.get().token_owner
    assert key not in _everything_stored()
    assert key[8:20] not in _everything_stored()


def test_token_and_bearer_headers_authenticate(station_token):
    for scheme in ("Token", "Bearer", "token"):
        resp = _client(f"{scheme} {station_token}").get(SEARCH)
        assert resp.status_code == 200, (scheme, resp.content)


@pytest.mark.parametrize("header", ["Token nope", "Bearer nope", "Token a b", "Bearer"])
def test_bad_keys_are_401(station_token, header):
    resp = _client(header).get(SEARCH)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "authentication_failed"
    assert resp["WWW-Authenticate"] == "Token"


def test_a_revoked_token_is_401_and_the_revocation_is_audited(station, user):
    key = services.station_token_issue(station=station)
    assert _client(f"Token {key}").get(SEARCH).status_code == 200
    token = ApiToken.objects.get()
    assert services.api_token_revoke(token=token, actor=user, reason="tablet lost")
    resp = _client(f"Token {key}").get(SEARCH)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "authentication_failed"
    token.refresh_from_db()
    assert token.revoked_at is not None
    event = AuditEvent.objects.get(action="api_token.revoke")
    assert (event.actor, event.object_id, event.reason) == (user, str(token.pk), "tablet lost")
    assert event.after["revoked_at"] and event.before == {"revoked_at": None}
    # revoking again changes nothing and writes nothing
    assert not services.api_token_revoke(token=token, actor=user)
    assert AuditEvent.objects.filter(action="api_token.revoke").count() == 1


def test_rotating_revokes_the_old_keys(station):
    old = services.station_token_issue(station=station)
    new = services.station_token_issue(station=station, rotate=True)
    assert _client(f"Token {old}").get(SEARCH).status_code == 401
    assert _client(f"Token {new}").get(SEARCH).status_code == 200


def test_a_token_of_an_inactive_user_is_401(station, station_token):
    owner = Station.objects.get().token_owner
    owner.is_active = False
    owner.save()
    assert _client(f"Token {station_token}").get(SEARCH).status_code == 401


def test_last_used_is_updated_at_most_once_a_minute(station_token):
    token = ApiToken.objects.get()
    assert token.last_used_at is None
    client = _client(f"Token {station_token}")
    client.get(SEARCH)
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=30)
    client.get(SEARCH)
    token.refresh_from_db()
    assert token.last_used_at == first  # within the minute: no write
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get(SEARCH)
    token.refresh_from_db()
    assert token.last_used_at > first


def test_issuing_is_audited_with_the_prefix_only(station):
    key = services.station_token_issue(station=station, reason="new PLC")
    token = ApiToken.objects.get()
    issue = AuditEvent.objects.get(action="api_token.issue")
    assert issue.object_type == "ocrapp.apitoken" and issue.object_id == str(token.pk)
    assert issue.after["prefix"] == key[:8] and issue.after["station"] == "LINE-1 / station-A"
    assert issue.reason == "new PLC"
    # the station's service user was made with the line_client role, and that is audited too
    owner = Station.objects.get().token_owner
    assert list(owner.groups.values_list("name", flat=True)) == [roles.LINE_CLIENT]
    assert not owner.has_usable_password()
    # (services.user_create: action "create" on "auth.user", like every user the admin makes)
    made = AuditEvent.objects.get(object_type="auth.user", action="create", object_id=str(owner.pk))
    assert made.after["groups"] == [roles.LINE_CLIENT] and made.after["password"] == "unusable"
    assert made.reason == "new PLC"
    assert AuditEvent.objects.filter(action="station.token_owner_set").count() == 1


# --- admin ------------------------------------------------------------------------------------


@pytest.fixture
def boss_client(client, db):
    admin = services.user_create_with_role(username="boss", role=roles.ADMIN, is_staff=True)
    client.force_login(admin)
    client.admin = admin
    return client


def test_admin_action_shows_the_key_once_and_then_only_the_prefix(boss_client, station):
    resp = boss_client.post(
        "/admin/ocrapp/station/",
        {"action": "issue_token", "_selected_action": [station.pk]},
        follow=True,
    )
    assert resp.status_code == 200
    token = ApiToken.objects.get()
    shown = [str(m) for m in resp.context["messages"]]
    assert len(shown) == 1 and "LINE-1 / station-A" in shown[0]
    key = shown[0].split(": ", 1)[1].split(" ", 1)[0]
    assert hashlib.sha256(key.encode()).hexdigest() == token.key_hash
    assert _client(f"Token {key}").get(SEARCH).status_code == 200
    assert AuditEvent.objects.get(action="api_token.issue").actor == boss_client.admin
    # never again in full: not on the station list, the token list or the token page
    for url in (
        "/admin/ocrapp/station/",
        "/admin/ocrapp/apitoken/",
        f"/admin/ocrapp/apitoken/{token.pk}/change/",
    ):
        html = boss_client.get(url).content.decode()
        assert key not in html, url
        assert f"{token.prefix}…" in html, url


def test_admin_revoke_action(boss_client, station_token):
    token = ApiToken.objects.get()
    resp = boss_client.post(
        "/admin/ocrapp/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )
    assert resp.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.get(action="api_token.revoke").actor == boss_client.admin
    assert _client(f"Token {station_token}").get(SEARCH).status_code == 401


def test_the_admin_cannot_add_edit_or_delete_tokens(boss_client, station_token):
    token = ApiToken.objects.get()
    assert boss_client.get("/admin/ocrapp/apitoken/add/").status_code == 403
    assert boss_client.get(f"/admin/ocrapp/apitoken/{token.pk}/delete/").status_code == 403
    before = ApiToken.objects.values().get()
    boss_client.post(f"/admin/ocrapp/apitoken/{token.pk}/change/", {"name": "renamed"})
    assert ApiToken.objects.values().get() == before


# --- management command -----------------------------------------------------------------------


def test_issue_token_command_prints_the_key_once(station):
    out = StringIO()
    call_command("issue_token", "--station", "LINE-1/station-A", "--name", "PLC 7", stdout=out)
    key = out.getvalue().strip().rsplit(" ", 1)[1]
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest() and token.name == "PLC 7"
    assert _client(f"Bearer {key}").get(SEARCH).status_code == 200
    with pytest.raises(CommandError, match="Unknown station"):
        call_command("issue_token", "--station", "LINE-9/none", stdout=StringIO())
    assert ApiToken.objects.count() == 1


# --- migration of plain authtoken keys ------------------------------------------------------


def test_a_plain_authtoken_key_keeps_working_after_the_migration(station, user):
    """An install that still has ``authtoken_token`` (plain keys): migration 0007 hashes each
    key into an ApiToken, drops the table, and the line software's key keeps working."""
    owner = services.user_create_with_role(username="station-legacy", role=roles.LINE_CLIENT)
    owner.groups.clear()  # made before roles existed: the migration gives it line_client
    Station.objects.filter(pk=station.pk).update(token_owner=owner)
    old_key = "0123456789abcdef0123456789abcdef01234567"  # DRF's 40 hex characters
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamptz NOT NULL, user_id integer NOT NULL UNIQUE)"
        )
        cur.execute(
            "INSERT INTO authtoken_token VALUES (%s, now() - interval '30 days', %s)",
            [old_key, owner.pk],
        )
    migration = importlib.import_module("ocrapp.migrations.0007_roles_hash_tokens")
    apps = (
        MigrationExecutor(connection)
        .loader.project_state(("ocrapp", "0007_roles_hash_tokens"))
        .apps
    )
    with connection.schema_editor() as editor:
        migration.forwards(apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(old_key.encode()).hexdigest()
    assert (token.prefix, token.user, token.station) == (old_key[:8], owner, station)
    assert old_key not in _everything_stored()
    owner.refresh_from_db()
    assert roles.can(owner, "upload_capture")
    resp = _client(f"Token {old_key}").get(SEARCH)
    assert resp.status_code == 200, resp.content
    event = AuditEvent.objects.get(action="api_token.migrate")
    assert event.object_id == str(token.pk) and event.after["prefix"] == old_key[:8]
    # on a database without the plain table it does nothing
    with connection.schema_editor() as editor:
        migration.forwards(apps, editor)
    assert ApiToken.objects.count() == 1


def test_the_worker_app_loads_with_the_token_admin():
    """``workers.celery`` runs django.setup(), which imports ocrapp.admin: the admin must not
    import services (-> workers.tasks -> workers.celery) at import time."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ocrapp.settings"}
    proc = subprocess.run(
        [sys.executable, "-c", "import workers.celery"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
