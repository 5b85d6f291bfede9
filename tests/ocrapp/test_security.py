"""Security settings (issue 12.4): hosts and absolute URLs, production mode, CSP, API rate
limits per token and the login lockout."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.urls import reverse

from ocrapp import config, lockout, services
from ocrapp.models import AuditEvent, Capture
from tests.images import label_png

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = secrets.token_urlsafe(50)
PRODUCTION = {
    "DJANGO_ENV": "production",
    "DJANGO_SECRET_KEY": STRONG_KEY,
    "PUBLIC_BASE_URL": "https://serial.example.com",
}


def _manage_env(extra: dict[str, str]) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "PUBLIC_BASE_URL", "HOST", "PORT", "CSP"))
    }
    return {**keep, "DJANGO_SETTINGS_MODULE": "ocrapp.settings", **extra}


def _run(argv: list[str], extra: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, env=_manage_env(extra), timeout=120
    )


# --- configuration ------------------------------------------------------------------------


def test_allowed_hosts_are_loopback_and_the_public_host_by_default():
    hosts = config.allowed_hosts_from_env(public_base_url="http://127.0.0.1:8000", environ={})
    assert "*" not in hosts
    assert {"localhost", "127.0.0.1", "[::1]"} <= set(hosts)
    hosts = config.allowed_hosts_from_env(
        public_base_url="https://serial.example.com", environ={"HOST": "10.0.0.5"}
    )
    assert "10.0.0.5" in hosts and "serial.example.com" in hosts and "*" not in hosts
    wildcard = config.allowed_hosts_from_env(
        public_base_url="http://localhost:8000", environ={"HOST": "0.0.0.0"}
    )
    assert "0.0.0.0" not in wildcard and "*" not in wildcard
    explicit = config.allowed_hosts_from_env(
        public_base_url="https://a.example", environ={"DJANGO_ALLOWED_HOSTS": "*"}
    )
    assert explicit == ["*", "a.example"]


def test_public_base_url_default_and_validation():
    assert config.public_base_url_from_env(production=False, environ={}) == "http://127.0.0.1:8000"
    env = {"HOST": "0.0.0.0", "PORT": "9001"}
    assert config.public_base_url_from_env(production=False, environ=env) == (
        "http://localhost:9001"
    )
    env = {"PUBLIC_BASE_URL": "https://serial.example.com/"}
    assert config.public_base_url_from_env(production=True, environ=env) == (
        "https://serial.example.com"
    )
    with pytest.raises(ImproperlyConfigured, match="needs PUBLIC_BASE_URL"):
        config.public_base_url_from_env(production=True, environ={})
    for bad in ("ftp://x.example", "https://x.example/app", "serial.example.com"):
        with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL"):
            config.public_base_url_from_env(production=False, environ={"PUBLIC_BASE_URL": bad})


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "not set"),
        ("change-me-in-production", "placeholder"),
        ("django-insecure-" + "x1y2z3" * 10, "placeholder"),
        ("s3cr3t-but-short", "shorter than 50"),
        ("ab" * 40, "fewer than 5 different"),
    ],
)
def test_weak_secret_keys_are_named(key, problem):
    assert problem in config.secret_key_problem(key)


def test_strong_secret_key_and_generated_development_key(tmp_path):
    assert config.secret_key_problem(STRONG_KEY) is None
    key = config.secret_key_from_env(production=False, var_dir=tmp_path, environ={})
    assert len(key) >= 50 and config.secret_key_problem(key) is None
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    again = config.secret_key_from_env(production=False, var_dir=tmp_path, environ={})
    assert again == key  # every process of the app shares it


def test_cache_follows_the_broker():
    redis = config.cache_from_env(broker_url="redis://r:6379/0", environ={})
    assert redis["BACKEND"].endswith("RedisCache") and redis["LOCATION"] == "redis://r:6379/1"
    other = config.cache_from_env(broker_url="amqp://rabbit//", environ={})
    assert other["BACKEND"].endswith("DatabaseCache")
    explicit = config.cache_from_env(broker_url="redis://r/0", environ={"CACHE_URL": "db"})
    assert explicit["BACKEND"].endswith("DatabaseCache")
    with pytest.raises(ImproperlyConfigured, match="CACHE_URL"):
        config.cache_from_env(broker_url="redis://r/0", environ={"CACHE_URL": "memcached://x"})


# --- production mode (subprocesses: settings are read at start) ----------------------------


def test_check_deploy_is_clean_in_production():
    out = _run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_check_deploy_warns_in_development():
    """The same check fails without production settings (so the test above can fail)."""
    out = _run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        {"DJANGO_SECRET_KEY": STRONG_KEY},
    )
    assert out.returncode != 0
    assert "security.W004" in out.stderr + out.stdout  # no HSTS


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"DJANGO_SECRET_KEY": "change-me-in-production"}, "placeholder"),
        ({"DJANGO_SECRET_KEY": ""}, "not set"),
        ({"DJANGO_SECRET_KEY": "short-but-random-9f8e7d"}, "shorter than 50"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG"),
        ({"PUBLIC_BASE_URL": ""}, "needs PUBLIC_BASE_URL"),
    ],
)
def test_production_refuses_to_start(extra, message):
    out = _run([sys.executable, "manage.py", "check"], {**PRODUCTION, **extra})
    assert out.returncode != 0
    assert "ImproperlyConfigured" in out.stderr and message in out.stderr


PROBE = """
import json, django
django.setup()
from django.test import Client
c = Client()
page = c.get("/login/", secure=True, headers={"host": "serial.example.com"})
plain = c.get("/login/", headers={"host": "serial.example.com"})
evil = c.get("/login/", secure=True, headers={"host": "evil.example"})
print(json.dumps({
    "status": page.status_code,
    "headers": dict(page.headers),
    "csrf_cookie": {k: page.cookies["csrftoken"][k] for k in ("secure", "httponly", "samesite")},
    "plain": [plain.status_code, plain.headers.get("Location")],
    "evil": evil.status_code,
}))
"""


def test_production_response_headers():
    out = _run([sys.executable, "-c", PROBE], PRODUCTION)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    hsts = headers["strict-transport-security"]
    assert "max-age=31536000" in hsts and "includeSubDomains" in hsts and "preload" in hsts
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert seen["csrf_cookie"]["secure"] is True
    # plain HTTP is sent to HTTPS; a Host that is not ours is refused
    assert seen["plain"] == [301, "https://serial.example.com/login/"]
    assert seen["evil"] == 400


def test_production_behind_a_tls_proxy():
    """No redirect of its own (the proxy does it), https known from X-Forwarded-Proto; still
    clean for check --deploy (the choice is made explicitly)."""
    proxy = {
        **PRODUCTION,
        "DJANGO_SSL_REDIRECT": "false",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    }
    out = _run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], proxy)
    assert out.returncode == 0, out.stdout + out.stderr
    probe = (
        "import django; django.setup(); from django.test import Client; c = Client(); "
        "r = c.get('/login/', headers={'host': 'serial.example.com', "
        "'x-forwarded-proto': 'https'}); print(r.status_code, r.wsgi_request.is_secure())"
    )
    out = _run([sys.executable, "-c", probe], proxy)
    assert out.stdout.split()[-2:] == ["200", "True"], out.stderr


@pytest.mark.django_db
def test_seed_demo_refuses_in_production(django_user_model):
    with override_settings(PRODUCTION=True), pytest.raises(CommandError, match="production"):
        call_command("seed_demo")
    assert not django_user_model.objects.filter(username__startswith="demo-").exists()


# --- absolute URLs from PUBLIC_BASE_URL ------------------------------------------------------


def _upload(client, product_type, **extra):
    image = SimpleUploadedFile("label.png", label_png(["S/N: SN20260042"]), "image/png")
    payload = {"product_type": product_type.name, "image": image}
    return client.post("/api/v1/captures", payload, format="multipart", **extra)


@override_settings(PUBLIC_BASE_URL="https://serial.example.com")
def test_absolute_urls_ignore_the_host_header(station_client, product_type):
    resp = _upload(station_client, product_type, HTTP_HOST="localhost")
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["url"] == f"https://serial.example.com/api/v1/captures/{body['id']}"
    assert resp["Location"] == body["url"]
    assert body["image_url"].startswith("https://serial.example.com/api/v1/captures/")
    detail = station_client.get(f"/api/v1/captures/{body['id']}", HTTP_HOST="127.0.0.1")
    assert detail.json()["url"] == body["url"]


def test_unknown_host_header_is_refused(station_client, product_type):
    before = Capture.objects.count()
    resp = _upload(station_client, product_type, HTTP_HOST="evil.example")
    assert resp.status_code == 400
    assert Capture.objects.count() == before


# --- Content-Security-Policy (also in development) ----------------------------------------


def test_csp_header_and_pages_without_inline_script(client, user):
    page = client.get(reverse("login"))
    csp = page["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    html = page.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"<style|\sstyle=\"|\son[a-z]+=", html)


def test_swagger_ui_loads_no_inline_script_or_style(client):
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "Content-Security-Policy" in docs
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html
    script_src = re.findall(r'<script src="([^"]+)"', html)[-1].replace("&amp;", "&")
    script = client.get(script_src)
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


@override_settings(CSP_MODE="report-only")
def test_csp_report_only_mode(client):
    page = client.get(reverse("login"))
    assert "Content-Security-Policy" not in page
    assert "default-src 'self'" in page["Content-Security-Policy-Report-Only"]


# --- API rate limits per token -------------------------------------------------------------


@override_settings(API_RATE_READ="2/minute")
def test_reads_over_the_rate_get_429_with_retry_after(station_client, station):
    assert station_client.get("/api/v1/serials?q=SN1").status_code == 200
    assert station_client.get("/api/v1/serials?q=SN1").status_code == 200
    resp = station_client.get("/api/v1/serials?q=SN1")
    assert resp.status_code == 429
    body = resp.json()
    assert body["error"]["code"] == "throttled" and body["error"]["message"]
    assert 1 <= int(resp["Retry-After"]) <= 60
    korean = station_client.get("/api/v1/serials?q=SN1", HTTP_ACCEPT_LANGUAGE="ko")
    assert korean.status_code == 429
    assert korean.json()["error"]["message"] != body["error"]["message"]  # DRF's Korean
    # the limit is per token: another station's token still gets through
    from rest_framework.test import APIClient

    other = services.station_token_issue(station=services.station_create(line="L2", name="B"))
    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Token {other}")
    assert fresh.get("/api/v1/serials?q=SN1").status_code == 200


@override_settings(API_RATE_UPLOAD="1/minute", API_RATE_READ="100/minute")
def test_uploads_have_their_own_rate_and_nothing_is_stored_over_it(station_client, product_type):
    assert _upload(station_client, product_type).status_code == 202
    before = Capture.objects.count()
    resp = _upload(station_client, product_type)
    assert resp.status_code == 429 and resp["Retry-After"]
    assert resp.json()["error"]["code"] == "throttled"
    assert Capture.objects.count() == before
    assert station_client.get("/api/v1/serials?q=SN1").status_code == 200  # reads still go


def test_rate_syntax():
    assert config.parse_rate("120/minute") == (120, 60)
    assert config.parse_rate("5/s") == (5, 1)
    assert config.parse_rate("off") is None and config.parse_rate("0/hour") is None
    with pytest.raises(ImproperlyConfigured):
        config.parse_rate("lots")


# --- login lockout -------------------------------------------------------------------------

LOCK = {"LOGIN_LOCKOUT_ATTEMPTS": 3, "LOGIN_LOCKOUT_SECONDS": 2, "LOGIN_LOCKOUT_WINDOW": 60}


def _login(client, password, username="operator", **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


@override_settings(**LOCK)
def test_lockout_after_wrong_passwords(client, user):
    for _ in range(2):
        resp = _login(client, "wrong")
        assert resp.status_code == 200 and "didn't match" in resp.content.decode()
    third = _login(client, "wrong").content.decode()
    assert "this account is locked" in third and "Try again at" in third
    events = AuditEvent.objects.filter(action=lockout.LOGIN_LOCKED_ACTION)
    assert events.count() == 1
    event = events.get()
    assert event.actor_id == user.pk and event.after["failures"] == 3
    assert event.after["scope"] == "username"

    # the right password does not work while locked, and says so
    resp = _login(client, "op-pass-1234")
    assert resp.status_code == 200 and "this account is locked" in resp.content.decode()
    assert "_auth_user_id" not in client.session
    assert events.count() == 1  # one audit row per lockout

    time.sleep(2.2)  # LOGIN_LOCKOUT_SECONDS
    ok = _login(client, "op-pass-1234")
    assert ok.status_code == 302 and ok["Location"] == reverse("upload")


@override_settings(**LOCK)
def test_lockout_message_in_korean(client, user):
    for _ in range(3):
        resp = _login(client, "wrong", HTTP_ACCEPT_LANGUAGE="ko")
    html = resp.content.decode()
    assert "잠겼습니다" in html and "this account is locked" not in html


@override_settings(**LOCK)
def test_a_good_password_resets_the_count(client, user):
    _login(client, "wrong")
    _login(client, "wrong")
    assert _login(client, "op-pass-1234").status_code == 302
    client.logout()
    _login(client, "wrong")
    _login(client, "wrong")
    assert _login(client, "op-pass-1234").status_code == 302  # not locked: the count restarted


@override_settings(LOGIN_LOCKOUT_ATTEMPTS=0, LOGIN_LOCKOUT_IP_ATTEMPTS=3, LOGIN_LOCKOUT_SECONDS=60)
def test_lockout_per_address_across_usernames(client, user):
    for name in ("alice", "bob", "carol"):
        _login(client, "guess", username=name, REMOTE_ADDR="203.0.113.9")
    resp = _login(client, "op-pass-1234", REMOTE_ADDR="203.0.113.9")
    assert "from your network address" in resp.content.decode()
    event = AuditEvent.objects.get(action=lockout.LOGIN_LOCKED_ACTION)
    assert event.after["scope"] == "ip" and event.after["ip"] == "203.0.113.9"
    other = _login(client, "op-pass-1234", REMOTE_ADDR="198.51.100.7")  # another address
    assert other.status_code == 302


@override_settings(**LOCK)
def test_signature_passwords_count_and_a_locked_signer_cannot_sign(user):
    def sign(password):
        return services.signature_check(user=user, password=password, password_due=True, obj=user)

    for _ in range(2):
        with pytest.raises(services.ApplicationError) as err:
            sign("wrong")
        assert err.value.code == "signature_failed"
    with pytest.raises(services.ApplicationError) as err:
        sign("wrong")
    assert err.value.code == "account_locked" and err.value.status_code == 403
    assert 1 <= err.value.details["retry_after"] <= 2
    with pytest.raises(services.ApplicationError) as err:
        sign("op-pass-1234")  # the right password, refused while locked
    assert err.value.code == "account_locked"
    assert AuditEvent.objects.filter(action=lockout.LOGIN_LOCKED_ACTION).count() == 1
    assert AuditEvent.objects.filter(action="signature_failed").count() == 3
    time.sleep(2.2)
    assert sign("op-pass-1234") is True


@override_settings(**LOCK)
def test_admin_login_counts_toward_the_lockout(client, django_user_model):
    django_user_model.objects.create_user(
        username="boss", password="b0ss-pass-5678", is_staff=True, is_superuser=True
    )
    for _ in range(3):
        client.post("/admin/login/", {"username": "boss", "password": "nope"})
    resp = client.post("/admin/login/", {"username": "boss", "password": "b0ss-pass-5678"})
    assert resp.status_code == 200 and "this account is locked" in resp.content.decode()


@override_settings(**LOCK)
def test_own_password_change_counts_toward_the_lockout(client, django_user_model):
    staff = django_user_model.objects.create_user(
        username="yoon", password="old-pass-1234", is_staff=True
    )
    client.force_login(staff)

    def change(old):
        return client.post(
            reverse("admin:password_change"),
            {
                "old_password": old,
                "new_password1": "N3w-pass-5678",
                "new_password2": "N3w-pass-5678",
            },
        )

    for _ in range(3):
        assert change("guess").status_code == 200
    resp = change("old-pass-1234")  # right, but locked
    assert resp.status_code == 200 and "this account is locked" in resp.content.decode()
    staff.refresh_from_db()
    assert staff.check_password("old-pass-1234")
    assert AuditEvent.objects.filter(action=lockout.LOGIN_LOCKED_ACTION, actor=staff).exists()


DB_CACHE = {"default": config.cache_from_env(broker_url="amqp://rabbit//", environ={})}


@pytest.mark.django_db
def test_rate_limit_and_lockout_on_the_database_cache(station_client, user, client):
    """Without a Redis broker the limits live in the ocrapp_cache table (as the migration
    makes it when CACHES uses it)."""
    from django.db import connection

    with override_settings(CACHES=DB_CACHE, API_RATE_READ="1/minute", **LOCK):
        call_command("createcachetable", verbosity=0)
        assert "ocrapp_cache" in connection.introspection.table_names()
        assert station_client.get("/api/v1/serials?q=SN1").status_code == 200
        assert station_client.get("/api/v1/serials?q=SN1").status_code == 429
        for _ in range(3):
            _login(client, "wrong")
        assert "this account is locked" in _login(client, "op-pass-1234").content.decode()
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM ocrapp_cache WHERE cache_key LIKE %s", ["%lockout%"])
            assert cur.fetchone()[0] >= 1


@pytest.mark.parametrize(("env", "seeded"), [({}, True), ({"DJANGO_ENV": "production"}, False)])
def test_devstack_seeds_demo_users_only_outside_production(monkeypatch, env, seeded):
    from ocrapp import devstack

    commands = []
    monkeypatch.setattr(devstack, "_manage", lambda _env, *args: commands.append(args[0]))
    devstack.prepare(env)
    assert commands[:2] == ["migrate", "collectstatic"]
    assert ("seed_demo" in commands) is seeded
