"""Django settings. Everything that differs between machines comes from the environment.

Defaults suit the embedded development stack started by ``python -m ocrapp.devstack run``.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from ocrapp.config import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    allowed_hosts_from_env,
    cache_from_env,
    database_from_url,
    django_env,
    env_bool,
    env_float,
    env_int,
    image_storage_from_env,
    parse_rate,
    public_base_url_from_env,
    secret_key_from_env,
)
from ocrapp.logctx import log_format_from_env, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("APP_VAR_DIR", BASE_DIR / "var"))

# --- security settings (README "Production settings") ---
# DJANGO_ENV=production: DEBUG off, a strong DJANGO_SECRET_KEY and PUBLIC_BASE_URL required,
# Secure cookies, HSTS, HTTPS redirect, no demo users; each switch has its own variable.
DJANGO_ENV = django_env()
PRODUCTION = DJANGO_ENV == "production"
DEBUG = env_bool("DJANGO_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_ENV=production refuses to start with DJANGO_DEBUG on")
SECRET_KEY = secret_key_from_env(production=PRODUCTION, var_dir=VAR_DIR)
# Absolute URLs (API "url" fields, Location) come from here, never from the Host header.
PUBLIC_BASE_URL = public_base_url_from_env(production=PRODUCTION)
ALLOWED_HOSTS = allowed_hosts_from_env(public_base_url=PUBLIC_BASE_URL)
CSRF_TRUSTED_ORIGINS = list(
    dict.fromkeys(
        [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]
        + [PUBLIC_BASE_URL]
    )
)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", PRODUCTION)
# Probes answer on plain HTTP inside the deployment (container healthchecks, Prometheus).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Behind a TLS-terminating proxy: the header it sets to "https" (e.g. X-Forwarded-Proto).
_proxy_ssl_header = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "").strip()
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = os.environ.get("DJANGO_REFERRER_POLICY", "same-origin")
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Content-Security-Policy (ocrapp.security.ContentSecurityPolicyMiddleware), in every mode:
# DJANGO_CSP_MODE enforce (default) | report-only | off; DJANGO_CSP replaces the policy.
CSP_MODE = os.environ.get("DJANGO_CSP_MODE", "enforce").strip().lower()
if CSP_MODE not in {"enforce", "report-only", "off"}:
    raise ImproperlyConfigured(
        f"DJANGO_CSP_MODE must be enforce, report-only or off, got {CSP_MODE!r}"
    )
CSP_POLICY = os.environ.get("DJANGO_CSP", "").strip() or (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# A deliberate choice made in the environment is not a warning of `check --deploy`.
SILENCED_SYSTEM_CHECKS = []
if PRODUCTION and not SECURE_SSL_REDIRECT:  # the TLS proxy in front redirects to HTTPS
    SILENCED_SYSTEM_CHECKS.append("security.W008")
if PRODUCTION and SECURE_HSTS_SECONDS and not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS.append("security.W021")
# The client address of a request: REMOTE_ADDR, or behind a proxy the header it sets
# (CLIENT_IP_HEADER=X-Forwarded-For: its last address, the one the proxy added).
CLIENT_IP_HEADER = os.environ.get("CLIENT_IP_HEADER", "").strip()

# Rate limits per API token (ocrapp.throttling; "N/second|minute|hour|day", "off"): uploads
# (POST /api/v1/captures) and every other API call; over the rate: 429 with Retry-After.
API_RATE_UPLOAD = os.environ.get("API_RATE_UPLOAD", "120/minute")
API_RATE_READ = os.environ.get("API_RATE_READ", "600/minute")
parse_rate(API_RATE_UPLOAD), parse_rate(API_RATE_READ)  # refuse a malformed rate at startup
# Login lockout (ocrapp.lockout): LOGIN_LOCKOUT_ATTEMPTS wrong passwords for one username (or
# LOGIN_LOCKOUT_IP_ATTEMPTS from one address; 0: no limit) within LOGIN_LOCKOUT_WINDOW s lock
# it for LOGIN_LOCKOUT_SECONDS s: web login, admin login, signatures, password change.
LOGIN_LOCKOUT_ATTEMPTS = env_int("LOGIN_LOCKOUT_ATTEMPTS", 5, minimum=0)
LOGIN_LOCKOUT_IP_ATTEMPTS = env_int("LOGIN_LOCKOUT_IP_ATTEMPTS", 30, minimum=0)
LOGIN_LOCKOUT_WINDOW = env_int("LOGIN_LOCKOUT_WINDOW", 900, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
AUTHENTICATION_BACKENDS = ["ocrapp.lockout.LockoutModelBackend"]

INSTALLED_APPS = [
    "ocrapp.apps.OcrAdminConfig",  # django.contrib.admin with the audited site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "ocrapp",
]

MIDDLEWARE = [
    # first: request id + log context + request metrics around everything (ocrapp/observability.py)
    "ocrapp.observability.RequestContextMiddleware",
    # Then: refuses oversized/NUL-carrying requests before anything reads them (ocrapp/limits.py).
    "ocrapp.limits.RequestLimitsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "ocrapp.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ocrapp.urls"
WSGI_APPLICATION = "ocrapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "ocrapp.context_processors.review_nav",
                "ocrapp.context_processors.alarm_nav",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("ko", _("Korean"))]
LOCALE_PATHS = [BASE_DIR / "ocrapp" / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"
# Capture images: local files under MEDIA_ROOT (default) or an S3 bucket (IMAGE_STORAGE=s3);
# code reads and writes them through the storage API only, never by filesystem path.
STORAGES = {
    "default": image_storage_from_env(),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Messages stay on the server until shown (the admin's "Issue token" shows a new key in one).
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "upload"
LOGOUT_REDIRECT_URL = "login"

# Uploads: bytes and pixels are checked before anything is stored (see services.capture_create).
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 25 * 1024 * 1024, minimum=1024)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 40_000_000, minimum=10_000)
MAX_IMAGE_SIDE = env_int("MAX_IMAGE_SIDE", 12_000, minimum=100)
# The web process checks uploads' pixels within this many bytes of decoded images at once
# (ocrapp/imagecheck.py; PNG and JPEG need almost none); a check waits this long for room.
IMAGE_DECODE_BUDGET_BYTES = env_int("IMAGE_DECODE_BUDGET_BYTES", 256 * 1024 * 1024, minimum=1)
IMAGE_DECODE_WAIT_SECONDS = env_int("IMAGE_DECODE_WAIT_SECONDS", 20, minimum=0)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Request limits (ocrapp/limits.py; the web server's own limits must be looser, see there):
# a body over MAX_REQUEST_BYTES is refused by its Content-Length before it is read (413) and a
# chunked one is read only up to it; longer URLs are 414, bigger headers 431 (JSON under /api/).
MAX_REQUEST_BYTES = env_int(
    "MAX_REQUEST_BYTES", MAX_UPLOAD_BYTES + 1024 * 1024, minimum=MAX_UPLOAD_BYTES
)
MAX_URL_LENGTH = env_int("MAX_URL_LENGTH", 4096, minimum=256)
MAX_HEADER_BYTES = env_int("MAX_HEADER_BYTES", 8192, minimum=1024)
MAX_HEADERS_BYTES = env_int("MAX_HEADERS_BYTES", 32768, minimum=MAX_HEADER_BYTES)
MAX_HEADER_COUNT = env_int("MAX_HEADER_COUNT", 100, minimum=10)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
DATA_UPLOAD_MAX_NUMBER_FILES = 10
CAPTURE_WAIT_MAX_SECONDS = 30
# Electronic signatures (review): a browser session gives the password again when its last
# password check is older than this many minutes (0: at every signature; API tokens: always).
SIGNATURE_REAUTH_MINUTES = env_int("SIGNATURE_REAUTH_MINUTES", 15, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # ``Authorization: Token <key>`` (or ``Bearer <key>``), keys stored hashed (ApiToken).
        "ocrapp.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ocrapp.errors.api_exception_handler",
    # JSON, form and multipart parsers that refuse a NUL character in any value (ocrapp/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "ocrapp.parsers.JSONParser",
        "ocrapp.parsers.FormParser",
        "ocrapp.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": None,
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["ocrapp.throttling.ApiRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Serial reader API",
    "DESCRIPTION": "Upload product photos, get serial numbers and key fields back, trace serial history.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # self-hosted assets, no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Request bodies get their own components, so that a file field is `format: binary`
    # (multipart upload) rather than the `uri` a response would carry.
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation's error answers and the Error component, in one place (ocrapp/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "ocrapp.openapi.document_errors",
    ],
}

# Celery (the app lives in workers/celery.py and reads CELERY_* from here).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
# Shared by every web process: rate limits and login lockouts (CACHE_URL; default: the
# broker's Redis, database 1; else the database table ocrapp_cache).
CACHES = {"default": cache_from_env(broker_url=CELERY_BROKER_URL)}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Task routes are declared beside the tasks (workers/tasks.py: read_capture -> queue "ocr").
CELERY_TASK_SOFT_TIME_LIMIT = env_int("OCR_SOFT_TIME_LIMIT", 120, minimum=5)
CELERY_TASK_TIME_LIMIT = env_int("OCR_HARD_TIME_LIMIT", 180, minimum=10)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = False
# Each pool child builds and warms its pipeline at start (workers/celery.py); the parent waits
# this long for its "up" message before it gives up on the child (Celery's default is 4 s).
CELERY_WORKER_PROC_ALIVE_TIMEOUT = float(env_int("OCR_WARMUP_TIMEOUT", 300, minimum=4))
OCR_WARMUP = env_bool("OCR_WARMUP", True)

# Capture lifecycle (services.capture_claim / capture_reap, manage.py capture_reaper): a run of
# the reader holds a capture for OCR_LEASE_SECONDS and renews the lease while it reads; the
# reaper, every OCR_REAP_INTERVAL s, sends again a PENDING capture whose message has waited
# longer than OCR_REAP_PENDING_AFTER s (doubling per resend, at most 16x) and a PROCESSING
# capture whose lease expired; a capture claimed OCR_MAX_ATTEMPTS times without finishing is
# quarantined (FAILED, code "quarantined") instead of being read again.
OCR_MAX_ATTEMPTS = env_int("OCR_MAX_ATTEMPTS", 3, minimum=1)
OCR_LEASE_SECONDS = env_int("OCR_LEASE_SECONDS", 30, minimum=3)
OCR_REAP_INTERVAL = env_int("OCR_REAP_INTERVAL", 10, minimum=1)
OCR_REAP_PENDING_AFTER = env_int("OCR_REAP_PENDING_AFTER", 60, minimum=1)

# Logs (ocrapp/logctx.py): LOG_FORMAT=json (one JSON object a line, with request_id /
# capture_id / task_id) or plain; json by default when DJANGO_ENV=production, else plain.
LOG_FORMAT = log_format_from_env()
LOGGING = logging_config(log_format=LOG_FORMAT, level=os.environ.get("LOG_LEVEL", "INFO"))

# Operations (ocrapp/health.py, ocrapp/metrics.py; README "Operations"). /metrics answers a
# request with "Authorization: Bearer <METRICS_TOKEN>" when METRICS_TOKEN is set, else only
# requests from loopback. Workers write a heartbeat to Redis every WORKER_HEARTBEAT_INTERVAL s
# that lives WORKER_HEARTBEAT_TTL s; /readyz wants one that is fresh.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
WORKER_HEARTBEAT_INTERVAL = env_int("WORKER_HEARTBEAT_INTERVAL", 10, minimum=1)
WORKER_HEARTBEAT_TTL = env_int("WORKER_HEARTBEAT_TTL", 3 * WORKER_HEARTBEAT_INTERVAL, minimum=2)
READYZ_TIMEOUT = float(env_int("READYZ_TIMEOUT_MS", 1000, minimum=50)) / 1000.0

# Webhooks (ocrapp/webhooks.py; README "Webhooks"): requests time out after WEBHOOK_TIMEOUT s;
# network errors, 5xx, 408, 409 and 429 are retried with exponential backoff and jitter from
# WEBHOOK_BACKOFF_BASE s (doubling, at most WEBHOOK_BACKOFF_MAX s; Retry-After is respected up
# to that) until WEBHOOK_MAX_ATTEMPTS requests were sent; the reaper sends again a pending
# delivery whose attempt is more than WEBHOOK_REAP_AFTER s overdue (its message was lost).
# Endpoint URLs on loopback, private or link-local addresses are refused unless
# WEBHOOK_ALLOW_PRIVATE=1 (tests and an internal MES on the plant network).
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_TIMEOUT = env_int("WEBHOOK_TIMEOUT", 10, minimum=1)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
WEBHOOK_BACKOFF_BASE = env_int("WEBHOOK_BACKOFF_BASE", 10, minimum=1)
WEBHOOK_BACKOFF_MAX = env_int("WEBHOOK_BACKOFF_MAX", 3600, minimum=1)
WEBHOOK_REAP_AFTER = env_int("WEBHOOK_REAP_AFTER", 120, minimum=1)
# Dashboard drift check (ocrapp/dashboard.py; README "Dashboard"): a line's (or station's)
# recent DRIFT_RECENT_HOURS against its DRIFT_BASELINE_DAYS before; a statistic drifts when its
# median moves by DRIFT_SHIFT baseline spreads (1.4826 x MAD) with DRIFT_MIN_READS reads in each.
DRIFT_RECENT_HOURS = env_int("DRIFT_RECENT_HOURS", 24, minimum=1)
DRIFT_BASELINE_DAYS = env_int("DRIFT_BASELINE_DAYS", 14, minimum=1)
DRIFT_MIN_READS = env_int("DRIFT_MIN_READS", 30, minimum=2)
DRIFT_SHIFT = env_float("DRIFT_SHIFT", 4.0, minimum=0.1)
# garbage collector of the process (ocrapp.apps.tune_gc; 0: Python's defaults)
PY_GC_GEN0 = env_int("PY_GC_GEN0", 50_000, minimum=0)
# memory of the dashboard's sorts and medians (PostgreSQL work_mem, per transaction)
DASHBOARD_WORK_MEM_MB = env_int("DASHBOARD_WORK_MEM_MB", 32, minimum=1)
# parallel_tuple_cost for the rollup's scan (ocrapp.dashboard._parallel_friendly); PostgreSQL: 0.1
DASHBOARD_PARALLEL_TUPLE_COST = env_float("DASHBOARD_PARALLEL_TUPLE_COST", 0.01)
