"""Demo data: one login per role with a random password printed once, the station's line-client
token printed once, no superuser; nothing else creates a superuser with a known password."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from ocrapp import roles
from ocrapp.demo import DEMO_USERS, LEGACY_DEMO_LOGIN
from ocrapp.models import ApiToken, AuditEvent, Station

pytestmark = pytest.mark.django_db
ROOT = Path(settings.BASE_DIR)


def _seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _logins(output: str) -> dict[str, str]:
    return dict(re.findall(r"web login: (\S+) / (\S+)", output))


def test_one_login_per_role_with_a_random_password_printed_once(client):
    User = get_user_model()
    output = _seed()
    logins = _logins(output)
    assert set(logins) == {d.username for d in DEMO_USERS}
    station = Station.objects.get(line="LINE-1", name="station-A")
    for demo in DEMO_USERS:
        user = User.objects.get(username=demo.username)
        assert list(user.groups.values_list("name", flat=True)) == [demo.role]
        assert user.check_password(logins[demo.username])
        assert len(logins[demo.username]) >= 16
        assert not user.is_superuser and user.is_staff == (demo.role == roles.ADMIN)
    assert list(station.members.values_list("username", flat=True)) == ["demo-operator"]
    assert not User.objects.filter(is_superuser=True).exists()
    # the station's line client: its service user and token
    key = re.search(r"station LINE-1/station-A API token \(shown once\): (\S+)", output).group(1)
    assert list(station.token_owner.groups.values_list("name", flat=True)) == [roles.LINE_CLIENT]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/serials?q=SN1").status_code == 200
    # the printed passwords log in; the admin reaches the admin site
    assert client.login(username="demo-admin", password=logins["demo-admin"])
    assert client.get("/admin/ocrapp/apitoken/").status_code == 200
    # every login is made through services.user_create (one "create" event on "auth.user")
    made = AuditEvent.objects.filter(object_type="auth.user", action="create")
    assert made.count() == len(DEMO_USERS) + 1  # + the station's service user
    trail = str(list(AuditEvent.objects.values_list("before", "after", "reason")))
    assert not [u for u, pw in logins.items() if pw in trail]  # passwords are never recorded
    assert key not in trail


def test_a_second_run_prints_no_secret_and_changes_nothing():
    first = _logins(_seed())
    again = _seed()
    assert _logins(again) == {} and "API token (shown once)" not in again
    token = ApiToken.objects.get()
    assert f"has API token {token.prefix}…" in again
    User = get_user_model()
    for username, password in first.items():
        assert User.objects.get(username=username).check_password(password)
    reset = _logins(_seed("--reset-passwords"))
    assert set(reset) == set(first)
    for username, password in reset.items():
        assert password != first[username]
        assert User.objects.get(username=username).check_password(password)
    assert ApiToken.objects.count() == 1


def test_the_old_demo_superuser_with_the_published_password_is_locked():
    User = get_user_model()
    username, password = LEGACY_DEMO_LOGIN
    User.objects.create_superuser(username=username, password=password, email="")
    output = _seed()
    legacy = User.objects.get(username=username)
    assert not legacy.has_usable_password()
    assert "locked the old 'demo' login" in output
    locked = AuditEvent.objects.filter(
        object_type="auth.user", object_id=str(legacy.pk), action="password_change"
    )
    assert [(e.before["password"], e.after["password"]) for e in locked] == [("usable", "unusable")]


def test_nothing_outside_the_demo_command_creates_a_superuser_or_a_fixed_password():
    sources = [p for p in (ROOT / "ocrapp").rglob("*.py") if "migrations" not in p.parts]
    for path in sources:
        text = path.read_text()
        assert "create_superuser" not in text, path
    for name in ("docker-compose.yml", "Makefile", "Dockerfile", "ocrapp/devstack.py"):
        text = (ROOT / name).read_text()
        for needle in ("createsuperuser", "DJANGO_SUPERUSER_PASSWORD", "DEMO_PASSWORD"):
            assert needle not in text, (name, needle)
    assert (
        LEGACY_DEMO_LOGIN[1] not in (ROOT / "ocrapp/management/commands/seed_demo.py").read_text()
    )
