"""Environment configuration, parsed and validated once (12-factor)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/serialread"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def database_from_url(url: str) -> dict:
    """Turn ``postgresql://user:pass@host:port/name?host=/socket/dir`` into a DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"DATABASE_URL must be a postgresql:// URL, got {parsed.scheme!r}"
        )
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    host = query.pop("host", None) or (unquote(parsed.hostname) if parsed.hostname else "")
    name = unquote(parsed.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL must name a database")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        # 60 s for the worker and WSGI; ocrapp/asgi.py sets 0: under ASGI every request runs in
        # a thread of its own, so a connection kept after it would never be used again.
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": query,
        "TEST": {"NAME": f"test_{name}"},
    }


IMAGE_STORAGE_KINDS = ("local", "s3")
S3_ADDRESSING_STYLES = ("auto", "path", "virtual")


def image_storage_from_env(environ: Mapping[str, str] | None = None) -> dict:
    """The ``STORAGES["default"]`` entry (where capture images live), chosen by IMAGE_STORAGE.

    ``local`` (default): files under MEDIA_ROOT. ``s3``: an S3-compatible bucket through
    django-storages, configured by S3_BUCKET (required), S3_ENDPOINT_URL, S3_REGION,
    S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY (else boto3's own credential chain) and
    S3_ADDRESSING_STYLE (``path`` for MinIO and most self-hosted servers). Objects get no ACL
    (never public-read), URLs are signed and an existing name is never overwritten.
    """
    env = os.environ if environ is None else environ
    kind = (env.get("IMAGE_STORAGE") or "local").strip().lower()
    if kind not in IMAGE_STORAGE_KINDS:
        raise ImproperlyConfigured(
            f"IMAGE_STORAGE must be one of {', '.join(IMAGE_STORAGE_KINDS)}, "
            f"got {env.get('IMAGE_STORAGE')!r}"
        )
    if kind == "local":
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}

    def get(name: str) -> str | None:
        return (env.get(name) or "").strip() or None

    bucket = get("S3_BUCKET")
    if not bucket:
        raise ImproperlyConfigured("IMAGE_STORAGE=s3 needs S3_BUCKET (the bucket for images)")
    endpoint = get("S3_ENDPOINT_URL")
    if endpoint and urlparse(endpoint).scheme not in {"http", "https"}:
        raise ImproperlyConfigured(
            f"S3_ENDPOINT_URL must be an http:// or https:// URL, got {endpoint!r}"
        )
    addressing = (get("S3_ADDRESSING_STYLE") or "").lower() or None
    if addressing is not None and addressing not in S3_ADDRESSING_STYLES:
        raise ImproperlyConfigured(
            f"S3_ADDRESSING_STYLE must be one of {', '.join(S3_ADDRESSING_STYLES)}, "
            f"got {addressing!r}"
        )
    access_key, secret_key = get("S3_ACCESS_KEY_ID"), get("S3_SECRET_ACCESS_KEY")
    if bool(access_key) != bool(secret_key):
        raise ImproperlyConfigured(
            "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together (or neither, "
            "to use boto3's own credentials)"
        )
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "region_name": get("S3_REGION"),
            "access_key": access_key,
            "secret_key": secret_key,
            "addressing_style": addressing,
            "signature_version": "s3v4",
            "default_acl": None,  # no ACL header: the bucket stays private, never public-read
            "querystring_auth": True,  # any URL handed out is signed and expires
            "file_overwrite": False,  # a name already taken gets a new one, nothing is replaced
        },
    }
