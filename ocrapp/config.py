"""Environment configuration, parsed and validated once (12-factor)."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
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
    # DB_POOL_SIZE > 0: a psycopg connection pool per process (ocrapp/asgi.py sets 20): under
    # ASGI every request runs in a thread of its own, so without a pool each request would open
    # a new connection (tens of ms) and a kept one would never be used again.
    pool_size = env_int("DB_POOL_SIZE", 0, minimum=0)
    if pool_size:
        query = {**query, "pool": {"min_size": 2, "max_size": pool_size, "timeout": 10}}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        # 60 s for the worker and WSGI; with a pool connections go back to it after each request
        "CONN_MAX_AGE": 0 if pool_size else env_int("DB_CONN_MAX_AGE", 60, minimum=0),
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


# --- deployment mode, secret key, hosts, public URL, cache (the security settings) ---

ENVIRONMENTS = ("development", "production")
_WILDCARD_BIND = {"", "0.0.0.0", "::", "[::]"}
_LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
# Words that mark a key as a placeholder someone forgot to replace (compared case-folded).
_PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "placeholder", "insecure", "example")
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_FILE = "secret_key"  # in the var dir: the generated development key


def django_env(environ: Mapping[str, str] | None = None) -> str:
    """``DJANGO_ENV``: ``development`` (default) or ``production``."""
    env = os.environ if environ is None else environ
    value = (env.get("DJANGO_ENV") or "development").strip().lower()
    if value not in ENVIRONMENTS:
        raise ImproperlyConfigured(
            f"DJANGO_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env.get('DJANGO_ENV')!r}"
        )
    return value


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` is not fit for production (None: it is)."""
    if not key:
        return "it is not set"
    folded = key.casefold()
    if key.startswith("django-insecure-") or any(m in folded for m in _PLACEHOLDER_MARKS):
        return "it is a placeholder"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"it is shorter than {SECRET_KEY_MIN_LENGTH} characters"
    if len(set(key)) < 5:
        return "it has fewer than 5 different characters"
    return None


def secret_key_from_env(
    *, production: bool, var_dir: Path, environ: Mapping[str, str] | None = None
) -> str:
    """``DJANGO_SECRET_KEY``. In production it must be set and strong (else startup is refused
    with the reason). In development an unset key is generated once and kept in
    ``<var dir>/secret_key`` (mode 0600), so that every process of the app shares it and
    sessions survive a restart."""
    env = os.environ if environ is None else environ
    key = (env.get("DJANGO_SECRET_KEY") or "").strip()
    if production:
        problem = secret_key_problem(key)
        if problem:
            raise ImproperlyConfigured(
                f"DJANGO_ENV=production refuses to start: DJANGO_SECRET_KEY is not usable "
                f"({problem}). Set it to a random value of at least {SECRET_KEY_MIN_LENGTH} "
                'characters, e.g. the output of: python -c "import secrets; '
                'print(secrets.token_urlsafe(50))"'
            )
        return key
    if key:
        return key
    return _generated_secret_key(var_dir / SECRET_KEY_FILE)


def _generated_secret_key(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text().strip() or _write_secret_key(path)
    try:
        return _write_secret_key(path)
    except OSError:  # read-only var dir: a key for this process only (sessions do not survive)
        return secrets.token_urlsafe(50)


def _write_secret_key(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the app made it first: use theirs
        for _ in range(50):
            existing = path.read_text().strip()
            if existing:
                return existing
            time.sleep(0.02)
        raise
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def public_base_url_from_env(*, production: bool, environ: Mapping[str, str] | None = None) -> str:
    """``PUBLIC_BASE_URL``: the scheme, host and port clients reach the app at
    (``https://serial.example.com``); every absolute URL the app hands out (the API's ``url``
    fields, ``Location``) is built from it, never from the request's ``Host`` header. Default
    (development only; production requires it): ``http://HOST:PORT`` of the web server
    (``127.0.0.1:8000``; a wildcard bind address gives ``localhost``)."""
    env = os.environ if environ is None else environ
    raw = (env.get("PUBLIC_BASE_URL") or "").strip()
    if not raw:
        if production:
            raise ImproperlyConfigured(
                "DJANGO_ENV=production needs PUBLIC_BASE_URL (e.g. https://serial.example.com): "
                "absolute URLs are built from it, never from the request's Host header"
            )
        host = (env.get("HOST") or "127.0.0.1").strip()
        host = "localhost" if host in _WILDCARD_BIND else host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{env.get('PORT') or '8000'}"
    parsed = urlparse(raw)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ImproperlyConfigured(
            f"PUBLIC_BASE_URL must be an http:// or https:// URL with a host, got {raw!r}"
        )
    if parsed.path.strip("/") or parsed.query or parsed.fragment or parsed.username:
        raise ImproperlyConfigured(
            f"PUBLIC_BASE_URL must be scheme://host[:port] only (no path, query or user), "
            f"got {raw!r}"
        )
    return f"{parsed.scheme}://{parsed.netloc}"


def allowed_hosts_from_env(*, public_base_url: str, environ: Mapping[str, str] | None = None):
    """``DJANGO_ALLOWED_HOSTS`` (comma-separated; ``*`` only when written there), always with the
    host of PUBLIC_BASE_URL. Unset: the loopback names, ``HOST`` (unless a wildcard bind
    address) and the public host."""
    env = os.environ if environ is None else environ
    public_host = urlparse(public_base_url).hostname or ""
    if ":" in public_host:
        public_host = f"[{public_host}]"
    raw = env.get("DJANGO_ALLOWED_HOSTS")
    if raw is not None and raw.strip():
        hosts = [h.strip() for h in raw.split(",") if h.strip()]
    else:
        bind = (env.get("HOST") or "").strip()
        hosts = list(_LOOPBACK_HOSTS)
        if bind not in _WILDCARD_BIND:
            hosts.append(f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind)
    if public_host and public_host not in hosts:
        hosts.append(public_host)
    return list(dict.fromkeys(hosts))


def cache_from_env(*, broker_url: str, environ: Mapping[str, str] | None = None) -> dict:
    """``CACHES["default"]``: shared by every web process (rate limits, login lockouts).
    ``CACHE_URL``: ``redis://...`` / ``rediss://...``, ``db`` (the ``ocrapp_cache`` table,
    made by the migrations or ``manage.py createcachetable``) or ``locmem`` (one process only,
    never for more than one web process). Unset: the Redis of CELERY_BROKER_URL, database 1 (the
    broker's queues stay in its own database), when the broker is Redis; else ``db``."""
    env = os.environ if environ is None else environ
    url = (env.get("CACHE_URL") or "").strip()
    if not url:
        parsed = urlparse(broker_url)
        url = parsed._replace(path="/1").geturl() if parsed.scheme in {"redis", "rediss"} else "db"
    scheme = urlparse(url).scheme
    if scheme in {"redis", "rediss"}:
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "serialread",
        }
    if url == "db":
        return {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "ocrapp_cache",
        }
    if url == "locmem":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    raise ImproperlyConfigured(f"CACHE_URL must be redis://..., db or locmem, got {url!r}")


RATE_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"120/minute"`` -> (120, 60); ``"off"``, ``"0"`` or empty -> None (no limit)."""
    text = (rate or "").strip().lower()
    if text in {"", "0", "off", "none"}:
        return None
    try:
        count, period = text.split("/", 1)
        number = int(count)
        seconds = RATE_PERIODS[period.strip()[:1]]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(
            f"a rate must look like 120/minute (second, minute, hour, day) or off, got {rate!r}"
        ) from None
    return (number, seconds) if number > 0 else None


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc
    if not value >= minimum:  # also refuses nan
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value
